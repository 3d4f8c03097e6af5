/*
 * Every function, macro and flag of the seeds' quick reference (LDD3
 * chapter 8), used with the seeds' own types (int flags, kmem_cache_t,
 * unsigned long addresses) in one driver-like program.
 */
#define _GNU_SOURCE
#include <linux/slab.h>
#include <linux/gfp.h>
#include <linux/mm.h>
#include <linux/mempool.h>
#include <linux/vmalloc.h>
#include <linux/percpu.h>
#include <linux/bootmem.h>
#include <asm/io.h>
#include <asm/page.h>
#include <sys/mman.h>
#include <unistd.h>
#include "check.h"

DECLARE_PER_CPU(int, seed_counter);
DEFINE_PER_CPU(int, seed_counter) = 1;

static int flag_sets[] = {
	GFP_USER, GFP_KERNEL, GFP_NOFS, GFP_NOIO, GFP_ATOMIC,
	GFP_KERNEL | __GFP_DMA, GFP_KERNEL | __GFP_HIGHMEM, GFP_KERNEL | __GFP_COLD,
	GFP_KERNEL | __GFP_NOWARN, GFP_KERNEL | __GFP_HIGH, GFP_KERNEL | __GFP_REPEAT,
	GFP_KERNEL | __GFP_NOFAIL, GFP_KERNEL | __GFP_NORETRY,
};

static int ctors, atomic_ctors;
static void seed_ctor(void *obj, kmem_cache_t *cache, unsigned long flags)
{
	(void)obj;
	(void)cache;
	if (flags & SLAB_CTOR_CONSTRUCTOR)
		ctors++;
	if (flags & SLAB_CTOR_ATOMIC)
		atomic_ctors++;
}

/* As LDD3 writes a pool's allocator: the GFP mask is an int. */
static void *seed_alloc(int gfp_mask, void *pool_data)
{
	return kmalloc((size_t)pool_data, gfp_mask);
}

static void seed_free(void *element, void *pool_data)
{
	(void)pool_data;
	kfree(element);
}

int main(void)
{
	static char slabinfo[1 << 16];
	kmem_cache_t *cache;
	mempool_t *pool;
	struct page *page;
	unsigned long addr;
	void *p, *io;
	int *dyn, cpu, i, flags, fd;

	/* kmalloc / kfree with every flag combination of the seeds. */
	for (i = 0; i < (int)ARRAY_SIZE(flag_sets); i++) {
		flags = flag_sets[i];
		p = kmalloc(100, flags);
		CHECK(p != NULL);
		kfree(p);
	}

	/* Slab caches: the six-argument create, SLAB_NO_REAP, SLAB_CACHE_DMA. */
	cache = kmem_cache_create("seed_cache", 100, 0, SLAB_HWCACHE_ALIGN | SLAB_NO_REAP | SLAB_CACHE_DMA,
				  seed_ctor, NULL);
	CHECK(cache != NULL);
	p = kmem_cache_alloc(cache, GFP_KERNEL);
	CHECK(p != NULL && __pa(p) < (16UL << 20) && ctors > 0);
	CHECK_EQ(atomic_ctors, 0); /* the first slab was built for GFP_KERNEL */
	kmem_cache_free(cache, p);
	CHECK(kmem_proc_read("slabinfo", slabinfo, sizeof(slabinfo)) > 0);
	CHECK(strstr(slabinfo, "\nseed_cache ") != NULL);
	CHECK_EQ(kmem_cache_destroy(cache), 0);

	/* mempool_create with the caller's functions. */
	pool = mempool_create(4, seed_alloc, seed_free, (void *)64);
	CHECK(pool != NULL);
	p = mempool_alloc(pool, GFP_KERNEL);
	CHECK(p != NULL);
	mempool_free(p, pool);
	mempool_destroy(pool);

	/* Page-oriented functions. */
	addr = get_zeroed_page(GFP_KERNEL);
	CHECK(addr && ((char *)addr)[100] == 0);
	free_page(addr);
	addr = __get_free_page(GFP_KERNEL);
	CHECK(addr != 0);
	free_page(addr);
	addr = __get_free_pages(GFP_KERNEL, get_order(3 * PAGE_SIZE));
	CHECK(addr != 0 && get_order(3 * PAGE_SIZE) == 2);
	free_pages(addr, 2);
	page = alloc_pages_node(0, GFP_KERNEL, 1);
	CHECK(page != NULL);
	__free_pages(page, 1);
	page = alloc_pages(GFP_KERNEL, 0);
	CHECK(page != NULL);
	__free_page(page);
	page = alloc_page(GFP_KERNEL);
	CHECK(page != NULL);
	free_hot_page(page);
	page = alloc_page(GFP_KERNEL | __GFP_COLD);
	CHECK(page != NULL);
	free_cold_page(page);

	/* vmalloc / vfree, ioremap / iounmap. */
	p = vmalloc(100000);
	CHECK(p != NULL);
	vfree(p);
	fd = memfd_create("seed-device", 0);
	CHECK(fd >= 0 && ftruncate(fd, PAGE_SIZE) == 0);
	CHECK_EQ(kmem_register_iomem("seed-device", 0xd0000000UL, PAGE_SIZE, fd, 0), 0);
	io = ioremap(0xd0000000UL, PAGE_SIZE);
	CHECK(io != NULL);
	writel(5, io);
	CHECK_EQ(readl(io), 5);
	iounmap(io);
	close(fd);

	/* Per-CPU variables, static and dynamic. */
	for_each_possible_cpu(cpu)
		CHECK_EQ(per_cpu(seed_counter, cpu), 1);
	get_cpu_var(seed_counter)++;
	put_cpu_var(seed_counter);
	dyn = alloc_percpu(int);
	CHECK(dyn != NULL);
	cpu = get_cpu();
	CHECK_EQ(per_cpu(seed_counter, cpu), 2);
	(*per_cpu_ptr(dyn, cpu))++;
	put_cpu();
	free_percpu(dyn);
	p = __alloc_percpu(64, 8);
	CHECK(p != NULL);
	free_percpu(p);

	/* The boot-time allocator, after boot. */
	p = alloc_bootmem(100);
	CHECK(p != NULL);
	free_bootmem(__pa(p), 100);
	p = alloc_bootmem_low(100);
	CHECK(p != NULL);
	free_bootmem(__pa(p), 100);
	p = alloc_bootmem_pages(PAGE_SIZE);
	CHECK(p != NULL);
	free_bootmem(__pa(p), PAGE_SIZE);
	p = alloc_bootmem_low_pages(PAGE_SIZE);
	CHECK(p != NULL);
	free_bootmem(__pa(p), PAGE_SIZE);

	printf("seeds: ok\n");
	return 0;
}
