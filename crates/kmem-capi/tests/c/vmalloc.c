/*
 * linux/vmalloc.h: vmalloc memory is the machine's pages mapped for real
 * into the vmalloc window (the same page seen at two addresses), vzalloc
 * zeroes, vmap maps pages of our own, /proc/vmallocinfo lists the areas,
 * and vfree of anything else is reported.
 */
#include <linux/vmalloc.h>
#include <linux/slab.h>
#include <linux/mm.h>
#include <stdint.h>
#include "check.h"

#ifndef KMEM_TEST_STATIC
/* The line of /proc/vmallocinfo text `info` that contains `what`. */
static const char *line_of(const char *info, const char *what, char *line, size_t size)
{
	const char *at = strstr(info, what), *start, *end;

	if (!at)
		return NULL;
	for (start = at; start > info && start[-1] != '\n'; start--)
		;
	end = strchr(at, '\n');
	if (!end)
		end = at + strlen(at);
	if ((size_t)(end - start) >= size)
		return NULL;
	memcpy(line, start, end - start);
	line[end - start] = 0;
	return line;
}
#endif

/* A round of vmalloc work that frees everything it allocates. */
static void workload(void)
{
	void *held[40];
	size_t i;

	for (i = 0; i < 40; i++)
		CHECK((held[i] = vmalloc((i + 1) * 37 * PAGE_SIZE / 3)) != NULL);
	for (i = 0; i < 40; i++)
		vfree(held[i]);
}

int main(void)
{
	struct page *pages[4];
	unsigned char *v, *w, *m;
	static char info[1 << 16];
	unsigned long x = 0, start;
	size_t i;

	v = vmalloc(10 * PAGE_SIZE + 100);
	CHECK(v != NULL && ((uintptr_t)v & ~PAGE_MASK) == 0);
	CHECK(is_vmalloc_addr(v));
	CHECK(!virt_addr_valid(v));
	for (i = 0; i < 11; i++) {
		struct page *pg = vmalloc_to_page(v + i * PAGE_SIZE);
		unsigned char *lin;

		CHECK(pg != NULL);
		CHECK_EQ(vmalloc_to_pfn(v + i * PAGE_SIZE), page_to_pfn(pg));
		lin = page_address(pg);
		CHECK(lin != NULL && lin != v + i * PAGE_SIZE);
		/* A store through one address is seen through the other. */
		v[i * PAGE_SIZE + 7] = (unsigned char)(i + 1);
		CHECK_EQ(lin[7], i + 1);
		lin[8] = 0x42;
		CHECK_EQ(v[i * PAGE_SIZE + 8], 0x42);
	}

	w = vzalloc(1 << 20);
	CHECK(w != NULL);
	for (i = 0; i < (1 << 20); i++)
		CHECK_EQ(w[i], 0);

	CHECK(kmem_proc_read("vmallocinfo", info, sizeof(info)) > 0);
	CHECK(strstr(info, "pages=11 vmalloc") != NULL);
	CHECK(strstr(info, "pages=256 vmalloc") != NULL);
#ifndef KMEM_TEST_STATIC
	/* The area names its caller in this program (symbol+0xoff, or the
	 * program's file+0xoff), as the kernel's %pS does, not libkmem's own
	 * source line. (Linked statically, libkmem is part of the program.) */
	{
		char line[256];

		CHECK(line_of(info, "pages=11 vmalloc", line, sizeof(line)) != NULL);
		CHECK(strstr(line, "+0x") != NULL);
		CHECK(strstr(line, ".rs:") == NULL);
	}
#endif
	vfree(w);
	vfree(v);
	vfree(NULL);

	/* Other flavours. */
	v = vmalloc_32(3 * PAGE_SIZE);
	CHECK(v != NULL && page_to_pfn(vmalloc_to_page(v)) < (4UL << 30) / PAGE_SIZE);
	vfree(v);
	v = vmalloc_user(PAGE_SIZE);
	CHECK(v != NULL && v[0] == 0);
	vfree(v);
	v = __vmalloc(5 * PAGE_SIZE, GFP_KERNEL | __GFP_ZERO);
	CHECK(v != NULL && v[5 * PAGE_SIZE - 1] == 0);
	vfree(v);
	v = vmalloc_node(PAGE_SIZE, 0);
	CHECK(v != NULL);
	vfree(v);
	v = __vmalloc_node(5 * PAGE_SIZE, 8 * PAGE_SIZE, GFP_KERNEL | __GFP_ZERO, NUMA_NO_NODE,
			   __builtin_return_address(0));
	CHECK(v != NULL && ((uintptr_t)v & (8 * PAGE_SIZE - 1)) == 0 && v[5 * PAGE_SIZE - 1] == 0);
	vfree(v);
	CHECK(__vmalloc_node(PAGE_SIZE, 3 * PAGE_SIZE, GFP_KERNEL, NUMA_NO_NODE, NULL) == NULL);
	CHECK(__vmalloc_node(PAGE_SIZE, 1UL << 63, GFP_KERNEL | __GFP_NOWARN, NUMA_NO_NODE, NULL) == NULL);
	v = vzalloc_node(PAGE_SIZE, NUMA_NO_NODE);
	CHECK(v != NULL && v[100] == 0);
	vfree(v);
	v = vcalloc(1000, 100);
	CHECK(v != NULL && v[99999] == 0);
	vfree(v);
	{
		volatile size_t huge = SIZE_MAX;
		CHECK(vmalloc_array(huge, 2) == NULL);
	}
	v = vmalloc_array(10, PAGE_SIZE);
	CHECK(v != NULL);
	vfree(v);

	/* vmap: our pages, contiguous in the window. */
	for (i = 0; i < 4; i++) {
		pages[i] = alloc_page(GFP_KERNEL);
		CHECK(pages[i] != NULL);
		memset(page_address(pages[i]), (int)i + 1, PAGE_SIZE);
	}
	m = vmap(pages, 4, VM_MAP, PAGE_KERNEL);
	CHECK(m != NULL && is_vmalloc_addr(m));
	for (i = 0; i < 4; i++) {
		CHECK_EQ(m[i * PAGE_SIZE], i + 1);
		CHECK(vmalloc_to_page(m + i * PAGE_SIZE) == pages[i]);
	}
	vunmap(m);
	for (i = 0; i < 4; i++)
		__free_page(pages[i]);

	/* vfree of something vmalloc never gave out: reported, nothing freed. */
	vfree(&x);
	CHECK(dmesg_contains("Trying to vfree() nonexistent vm area"));

	/* Every page comes back (the records' caches are warm by now). */
	workload();
	kmem_drain();
	start = nr_free_pages();
	workload();
	vm_unmap_aliases();
	kmem_drain();
	CHECK(nr_free_pages() >= start); /* nothing leaked */
	printf("vmalloc: ok\n");
	return 0;
}
