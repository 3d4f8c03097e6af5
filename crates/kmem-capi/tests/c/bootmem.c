/*
 * linux/bootmem.h, linux/memblock.h: the boot-time allocator after boot.
 * As in the kernel, the first late call warns once, and memory comes from
 * the page allocator instead (zeroed); it is given back by free_bootmem /
 * memblock_free. memblock's own view of memory stays readable.
 */
#include <linux/bootmem.h>
#include <linux/memblock.h>
#include <asm/page.h>
#include <stdint.h>
#include "check.h"

static int zeroed(const unsigned char *p, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (p[i])
			return 0;
	return 1;
}

int main(void)
{
	unsigned char *p, *q, *r, *s;
	unsigned long warnings;
	phys_addr_t phys;

	p = alloc_bootmem(1000);
	CHECK(p != NULL && zeroed(p, 1000));
	CHECK_EQ((uintptr_t)p % SMP_CACHE_BYTES, 0);
	CHECK(dmesg_contains("boot memory allocation after the buddy allocator took over"));
	warnings = kmem_warnings();

	q = alloc_bootmem_pages(3 * PAGE_SIZE);
	CHECK(q != NULL && ((uintptr_t)q & ~PAGE_MASK) == 0 && zeroed(q, 3 * PAGE_SIZE));
	r = alloc_bootmem_low(100);
	CHECK(r != NULL && __pa(r) < (4ULL << 30));
	s = alloc_bootmem_low_pages(PAGE_SIZE);
	CHECK(s != NULL && __pa(s) < (4ULL << 30));
	CHECK_EQ(kmem_warnings(), warnings); /* warned once */

	free_bootmem(__pa(p), 1000);
	free_bootmem(__pa(q), 3 * PAGE_SIZE);
	free_bootmem(__pa(r), 100);
	free_bootmem(__pa(s), PAGE_SIZE);

	p = memblock_alloc(5000, SMP_CACHE_BYTES);
	CHECK(p != NULL && zeroed(p, 5000));
	memblock_free(p, 5000);
	p = memblock_alloc_raw(64, 64);
	CHECK(p != NULL);
	memblock_free(p, 64);
	p = memblock_alloc_from(PAGE_SIZE, PAGE_SIZE, 0);
	CHECK(p != NULL);
	memblock_free(p, PAGE_SIZE);
	p = memblock_alloc_low(128, 8);
	CHECK(p != NULL);
	memblock_free(p, 128);
	p = memblock_alloc_node(256, 8, 0);
	CHECK(p != NULL);
	memblock_free(p, 256);
	p = memblock_alloc_try_nid(256, 8, 0, MEMBLOCK_ALLOC_ACCESSIBLE, NUMA_NO_NODE);
	CHECK(p != NULL && zeroed(p, 256));
	memblock_free(p, 256);
	p = memblock_alloc_try_nid_raw(256, 8, 0, MEMBLOCK_ALLOC_ACCESSIBLE, NUMA_NO_NODE);
	CHECK(p != NULL);
	memblock_free(p, 256);
	/* A physical boot allocation after boot: zeroed pages, as the kernel's
	 * kzalloc_node fallback; memblock_phys_free gives them back. */
	phys = memblock_phys_alloc(3 * PAGE_SIZE, PAGE_SIZE);
	CHECK(phys != 0 && zeroed(__va(phys), 3 * PAGE_SIZE));
	memblock_phys_free(phys, 3 * PAGE_SIZE);

	CHECK(memblock_phys_mem_size() > (250ULL << 20) && memblock_phys_mem_size() <= (256ULL << 20));
	CHECK(memblock_reserved_size() > 0);
	CHECK(memblock_start_of_DRAM() < memblock_end_of_DRAM());
	CHECK(kmem_pages_all_free(NULL, 0));

	printf("bootmem: ok\n");
	return 0;
}
