/*
 * The kmalloc family of linux/slab.h (the seeds' kmalloc/kfree page): size
 * classes, ZERO_SIZE_PTR, kzalloc/kcalloc zeroing and overflow, krealloc in
 * place and moving, ksize, kstrdup/kstrndup/kmemdup, kmalloc_node, GFP_DMA,
 * large kmallocs, misuse reported and not trusted, the kvmalloc family.
 */
#include <linux/slab.h>
#include <linux/string.h>
#include <linux/mm.h>
#include <stdint.h>
#include "check.h"

static int all_zero(const void *p, size_t n)
{
	const unsigned char *c = p;
	size_t i;

	for (i = 0; i < n; i++)
		if (c[i])
			return 0;
	return 1;
}

int main(void)
{
	static const size_t sizes[] = { 1, 8, 13, 64, 96, 100, 192, 1000, 4096, 8192 };
	static const size_t classes[] = { 8, 8, 16, 64, 96, 128, 192, 1024, 4096, 8192 };
	char *p, *q, *s;
	void *big, *z, *dma;
	unsigned long x = 0;
	size_t i;
	/* Run-time sizes, so the compiler does not refuse the overflowing calls. */
	volatile size_t huge = SIZE_MAX, half = SIZE_MAX / 2;

	for (i = 0; i < ARRAY_SIZE(sizes); i++) {
		p = kmalloc(sizes[i], GFP_KERNEL);
		CHECK(p != NULL);
		CHECK_EQ((uintptr_t)p % ARCH_KMALLOC_MINALIGN, 0);
		CHECK_EQ(ksize(p), classes[i]);
		CHECK(virt_addr_valid(p));
		memset(p, 0xab, sizes[i]);
		kfree(p);
	}

	/* kmalloc(0) is ZERO_SIZE_PTR; kfree of it and of NULL does nothing. */
	z = kmalloc(0, GFP_KERNEL);
	CHECK(z == ZERO_SIZE_PTR);
	CHECK(ZERO_OR_NULL_PTR(z) && ZERO_OR_NULL_PTR(NULL));
	kfree(z);
	kfree(NULL);
	CHECK_EQ(ksize(NULL), 0);

	/* Zeroing and overflow. */
	p = kzalloc(500, GFP_KERNEL);
	CHECK(p && all_zero(p, 500));
	kfree(p);
	p = kcalloc(100, 40, GFP_KERNEL);
	CHECK(p && all_zero(p, 4000));
	kfree(p);
	CHECK(kcalloc(half, 3, GFP_KERNEL) == NULL);
	CHECK(kmalloc_array(huge, 2, GFP_KERNEL) == NULL);
	p = kmalloc_array(10, 10, GFP_KERNEL | __GFP_ZERO);
	CHECK(p && all_zero(p, 100));
	kfree(p);

	/* krealloc: in place while ksize allows, then moving with the contents. */
	p = kmalloc(100, GFP_KERNEL);
	CHECK(p != NULL);
	strcpy(p, "kernel");
	q = krealloc(p, 120, GFP_KERNEL);
	CHECK(q == p);
	q = krealloc(p, 5000, GFP_KERNEL);
	CHECK(q != NULL && strcmp(q, "kernel") == 0);
	CHECK_EQ(ksize(q), 8192);
	p = krealloc(q, 0, GFP_KERNEL); /* frees */
	CHECK(p == ZERO_SIZE_PTR);
	p = krealloc(NULL, 10, GFP_KERNEL);
	CHECK(p != NULL);
	p = krealloc_array(p, 8, 8, GFP_KERNEL);
	CHECK(p != NULL && ksize(p) >= 64);
	kfree(p);

	/* Strings and copies. */
	s = kstrdup("hello, kernel", GFP_KERNEL);
	CHECK(s && strcmp(s, "hello, kernel") == 0);
	CHECK_EQ(ksize(s), 16);
	kfree(s);
	s = kstrndup("abcdefgh", 3, GFP_KERNEL);
	CHECK(s && strcmp(s, "abc") == 0);
	kfree(s);
	CHECK(kstrdup(NULL, GFP_KERNEL) == NULL);
	p = kmemdup("\1\2\3\4", 4, GFP_KERNEL);
	CHECK(p && p[0] == 1 && p[3] == 4);
	kfree(p);
	s = kmemdup_nul("xyz!", 3, GFP_KERNEL);
	CHECK(s && strcmp(s, "xyz") == 0);
	kfree_sensitive(s);

	/* Nodes, DMA memory below 16 MiB, a large kmalloc from the page allocator. */
	p = kmalloc_node(64, GFP_KERNEL, 0);
	CHECK(p != NULL);
	kfree(p);
	p = kzalloc_node(64, GFP_KERNEL, NUMA_NO_NODE);
	CHECK(p && all_zero(p, 64));
	kfree(p);
	dma = kmalloc(64, GFP_DMA);
	CHECK(dma != NULL && __pa(dma) < (16UL << 20));
	kfree(dma);
	big = kzalloc(100000, GFP_KERNEL);
	CHECK(big && all_zero(big, 100000));
	CHECK_EQ(ksize(big), 128 << 10);
	CHECK_EQ(kmalloc_size_roundup(100000), 128 << 10);
	kfree(big);
	CHECK(kmalloc(KMALLOC_MAX_SIZE + 1, GFP_KERNEL | __GFP_NOWARN) == NULL);

	/* kfree_bulk. */
	{
		void *v[8];
		for (i = 0; i < 8; i++)
			CHECK((v[i] = kmalloc(32 * (i + 1), GFP_KERNEL)) != NULL);
		kfree_bulk(8, v);
	}

	/* kfree of something kmalloc never gave out: reported, nothing freed. */
	kfree(&x);
	CHECK(dmesg_contains("kfree: invalid pointer"));

	/* kvmalloc: kmalloc for small sizes, vmalloc fallback for big ones. */
	p = kvmalloc(100, GFP_KERNEL);
	CHECK(p && !is_vmalloc_addr(p));
	kvfree(p);
	p = kvzalloc(8 << 20, GFP_KERNEL); /* above KMALLOC_MAX_SIZE: vmalloc */
	CHECK(p && is_vmalloc_addr(p) && all_zero(p, 8 << 20));
	p[(8 << 20) - 1] = 1;
	q = kvrealloc(p, 9 << 20, GFP_KERNEL);
	CHECK(q && q[(8 << 20) - 1] == 1);
	kvfree(q);
	p = kvcalloc(1000, 1000, GFP_KERNEL);
	CHECK(p && all_zero(p, 1000000));
	kvfree(p);
	CHECK(kvmalloc_array(huge, 16, GFP_KERNEL) == NULL);
	p = kvmalloc_node(5000, GFP_KERNEL, NUMA_NO_NODE);
	CHECK(p != NULL);
	kvfree_sensitive(p, 5000);
	p = kvzalloc_node(64, GFP_KERNEL, 0);
	CHECK(p && all_zero(p, 64));
	kvfree(p);

	printf("kmalloc: ok\n");
	return 0;
}
