/* SPDX-License-Identifier: GPL-2.0-only OR MIT */
/*
 * linux/mempool.h - memory pools (libkmem).
 *
 * A pool keeps min_nr elements in reserve so that allocations that may
 * sleep always succeed eventually: mempool_alloc() tries the pool's
 * allocator first (without reclaim), then the reserve, then the allocator
 * with the caller's full flags, and then sleeps until mempool_free() returns
 * an element. mempool_free() refills the reserve before giving elements
 * back to the allocator.
 *
 * mempool_t can be embedded in a structure (mempool_init/mempool_exit); its
 * contents are private to libkmem.
 */
#ifndef _KMEM_LINUX_MEMPOOL_H
#define _KMEM_LINUX_MEMPOOL_H

#include <linux/types.h>
#include <linux/gfp.h>
#include <linux/slab.h>

/* Size of mempool_t in 8-byte words (checked against the library at build time). */
#define KMEM_MEMPOOL_WORDS 32

typedef void *(mempool_alloc_t)(gfp_t gfp_mask, void *pool_data);
typedef void (mempool_free_t)(void *element, void *pool_data);

typedef struct mempool_s {
	unsigned long long __kmem_private[KMEM_MEMPOOL_WORDS];
} mempool_t;

#ifdef __cplusplus
extern "C" {
#endif

mempool_t *mempool_create(int min_nr, mempool_alloc_t *alloc_fn, mempool_free_t *free_fn,
			  void *pool_data);
#if !defined(__cplusplus) && (defined(__GNUC__) || __STDC_VERSION__ >= 201112L)
/* Pool allocators of the seeds' era (2.6) take the GFP mask as an int
 * (void *alloc(int gfp_mask, void *pool_data)): mempool_create takes them as
 * they are, and any other function type is still checked. (_Generic is C11;
 * GCC and Clang have it in every -std, as an __extension__ before C11.) */
#ifdef __GNUC__
#define __kmem_generic __extension__ _Generic
#else
#define __kmem_generic _Generic
#endif
#define __kmem_mempool_alloc_fn(fn) \
	__kmem_generic((fn), void *(*)(int, void *): (mempool_alloc_t *)(fn), default: (fn))
#define mempool_create(min_nr, alloc_fn, free_fn, pool_data) \
	mempool_create((min_nr), __kmem_mempool_alloc_fn(alloc_fn), (free_fn), (pool_data))
#endif
mempool_t *mempool_create_node(int min_nr, mempool_alloc_t *alloc_fn, mempool_free_t *free_fn,
			       void *pool_data, gfp_t gfp_mask, int nid);
void mempool_destroy(mempool_t *pool);
int mempool_init(mempool_t *pool, int min_nr, mempool_alloc_t *alloc_fn, mempool_free_t *free_fn,
		 void *pool_data);
void mempool_exit(mempool_t *pool);
int mempool_resize(mempool_t *pool, int new_min_nr);
void *mempool_alloc(mempool_t *pool, gfp_t gfp_mask) __malloc;
void *mempool_alloc_preallocated(mempool_t *pool) __malloc;
void mempool_free(void *element, mempool_t *pool);

/* Elements in the reserve now, and the guaranteed reserve (kmem.h extras). */
int kmem_mempool_curr_nr(mempool_t *pool);
int kmem_mempool_min_nr(mempool_t *pool);

/* Ready-made allocators: a slab cache, kmalloc of a size, pages of an order. */
void *mempool_alloc_slab(gfp_t gfp_mask, void *pool_data);
void mempool_free_slab(void *element, void *pool_data);
void *mempool_kmalloc(gfp_t gfp_mask, void *pool_data);
void mempool_kfree(void *element, void *pool_data);
void *mempool_alloc_pages(gfp_t gfp_mask, void *pool_data);
void mempool_free_pages(void *element, void *pool_data);

#ifdef __cplusplus
}
#endif

static __inline__ mempool_t *mempool_create_slab_pool(int min_nr, struct kmem_cache *kc)
{
	return mempool_create(min_nr, mempool_alloc_slab, mempool_free_slab, (void *)kc);
}

static __inline__ int mempool_init_slab_pool(mempool_t *pool, int min_nr, struct kmem_cache *kc)
{
	return mempool_init(pool, min_nr, mempool_alloc_slab, mempool_free_slab, (void *)kc);
}

static __inline__ mempool_t *mempool_create_kmalloc_pool(int min_nr, size_t size)
{
	return mempool_create(min_nr, mempool_kmalloc, mempool_kfree, (void *)size);
}

static __inline__ int mempool_init_kmalloc_pool(mempool_t *pool, int min_nr, size_t size)
{
	return mempool_init(pool, min_nr, mempool_kmalloc, mempool_kfree, (void *)size);
}

static __inline__ mempool_t *mempool_create_page_pool(int min_nr, int order)
{
	return mempool_create(min_nr, mempool_alloc_pages, mempool_free_pages, (void *)(long)order);
}

static __inline__ int mempool_init_page_pool(mempool_t *pool, int min_nr, int order)
{
	return mempool_init(pool, min_nr, mempool_alloc_pages, mempool_free_pages, (void *)(long)order);
}

#endif /* _KMEM_LINUX_MEMPOOL_H */
