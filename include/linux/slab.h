/* SPDX-License-Identifier: GPL-2.0-only OR MIT */
/*
 * linux/slab.h - slab caches and the kmalloc family (libkmem).
 *
 * Caches are SLUB's (per-CPU lock-free fast paths, partial lists,
 * slub_debug=FZPU). Both forms of kmem_cache_create compile:
 *
 *   kmem_cache_create(name, size, align, flags, ctor)        modern, 5 args,
 *                                                             ctor(void *obj)
 *   kmem_cache_create(name, size, offset, flags, ctor, dtor) 2.6, 6 args,
 *        ctor/dtor(void *obj, kmem_cache_t *cache, unsigned long flags)
 *
 * The 2.6 constructor is called with SLAB_CTOR_CONSTRUCTOR (plus
 * SLAB_CTOR_ATOMIC when the allocation may not sleep) for every object of a
 * new slab; the destructor runs on every object of a slab given back.
 * Failure is NULL (never ERR_PTR); kmalloc(0) is ZERO_SIZE_PTR; kfree(NULL)
 * and kfree(ZERO_SIZE_PTR) do nothing; freeing anything kmalloc did not hand
 * out is reported the kernel's way and frees nothing.
 *
 * Flag values are the kernel's (6.12), the same constants as the Rust
 * core's kmem::slab::flags. SLAB_NO_REAP (2.6; its old value is SLAB_KMALLOC
 * today) lives on the unused bit 0x40000000; as in 2.6, it keeps the cache
 * from the reaper (the memory-pressure shrinker), not from kmem_cache_shrink.
 */
#ifndef _KMEM_LINUX_SLAB_H
#define _KMEM_LINUX_SLAB_H

#include <linux/types.h>
#include <linux/gfp.h>

/* Cache flags (slab_flags_t). */
#define SLAB_CONSISTENCY_CHECKS	0x00000100U
#define SLAB_DEBUG_FREE		SLAB_CONSISTENCY_CHECKS
#define SLAB_RED_ZONE		0x00000400U
#define SLAB_POISON		0x00000800U
#define SLAB_KMALLOC		0x00001000U
#define SLAB_HWCACHE_ALIGN	0x00002000U
#define SLAB_MUST_HWCACHE_ALIGN	SLAB_HWCACHE_ALIGN
#define SLAB_CACHE_DMA		0x00004000U
#define SLAB_CACHE_DMA32	0x00008000U
#define SLAB_STORE_USER		0x00010000U
#define SLAB_RECLAIM_ACCOUNT	0x00020000U
#define SLAB_PANIC		0x00040000U
#define SLAB_TYPESAFE_BY_RCU	0x00080000U
#define SLAB_DESTROY_BY_RCU	SLAB_TYPESAFE_BY_RCU
#define SLAB_TRACE		0x00200000U
#define SLAB_DEBUG_OBJECTS	0x00400000U
#define SLAB_NOLEAKTRACE	0x00800000U
#define SLAB_NO_MERGE		0x01000000U
#define SLAB_FAILSLAB		0x02000000U
#define SLAB_ACCOUNT		0x04000000U
#define SLAB_KASAN		0x08000000U
#define SLAB_NO_USER_FLAGS	0x10000000U
#define SLAB_SKIP_KFENCE	0x20000000U
#define SLAB_NO_REAP		0x40000000U
#define SLAB_MEM_SPREAD		0U	/* removed in 6.9; accepted as no flag */

/* Flags passed to 2.6 constructors and destructors. */
#define SLAB_CTOR_CONSTRUCTOR	0x001UL
#define SLAB_CTOR_ATOMIC	0x002UL
#define SLAB_CTOR_VERIFY	0x004UL

/* kmalloc limits. */
#define ARCH_KMALLOC_MINALIGN	8
#define ARCH_SLAB_MINALIGN	8
#define KMALLOC_SHIFT_LOW	3
#define KMALLOC_SHIFT_HIGH	13
#define KMALLOC_MIN_SIZE	(1UL << KMALLOC_SHIFT_LOW)
#define KMALLOC_MAX_CACHE_SIZE	(1UL << KMALLOC_SHIFT_HIGH)
#define KMALLOC_MAX_SIZE	(4UL << 20)
#define KMALLOC_MAX_ORDER	10

/* kmalloc(0) returns this: not NULL, and faults if dereferenced. */
#define ZERO_SIZE_PTR		((void *)16)
#define ZERO_OR_NULL_PTR(x)	((unsigned long)(x) <= (unsigned long)ZERO_SIZE_PTR)

struct kmem_cache;
typedef struct kmem_cache kmem_cache_t;

#ifdef __cplusplus
extern "C" {
#endif

struct kmem_cache *kmem_cache_create(const char *name, size_t size, size_t align,
				     slab_flags_t flags, void (*ctor)(void *));
kmem_cache_t *kmem_cache_create_legacy(const char *name, size_t size, size_t offset,
				       unsigned long flags,
				       void (*ctor)(void *, kmem_cache_t *, unsigned long),
				       void (*dtor)(void *, kmem_cache_t *, unsigned long));
int kmem_cache_destroy(kmem_cache_t *cache);
int kmem_cache_shrink(kmem_cache_t *cache);
unsigned int kmem_cache_size(kmem_cache_t *cache);

void *kmem_cache_alloc(kmem_cache_t *cache, gfp_t flags);
void *kmem_cache_zalloc(kmem_cache_t *cache, gfp_t flags);
void *kmem_cache_alloc_node(kmem_cache_t *cache, gfp_t flags, int node);
void kmem_cache_free(kmem_cache_t *cache, const void *obj);
int kmem_cache_alloc_bulk(kmem_cache_t *cache, gfp_t flags, size_t size, void **p);
void kmem_cache_free_bulk(kmem_cache_t *cache, size_t size, void **p);

void *kmalloc(size_t size, gfp_t flags) __malloc __alloc_size(1);
void *kzalloc(size_t size, gfp_t flags) __malloc __alloc_size(1);
void *kmalloc_node(size_t size, gfp_t flags, int node) __malloc __alloc_size(1);
void *kzalloc_node(size_t size, gfp_t flags, int node) __malloc __alloc_size(1);
void *kmalloc_array(size_t n, size_t size, gfp_t flags) __malloc __alloc_size(1, 2);
void *kcalloc(size_t n, size_t size, gfp_t flags) __malloc __alloc_size(1, 2);
void *kmalloc_array_node(size_t n, size_t size, gfp_t flags, int node) __malloc __alloc_size(1, 2);
void *kcalloc_node(size_t n, size_t size, gfp_t flags, int node) __malloc __alloc_size(1, 2);
void *krealloc(const void *p, size_t new_size, gfp_t flags) __must_check __alloc_size(2);
void *krealloc_array(void *p, size_t new_n, size_t new_size, gfp_t flags) __must_check __alloc_size(2, 3);
void kfree(const void *objp);
void kfree_sensitive(const void *objp);
void kfree_bulk(size_t size, void **p);
size_t ksize(const void *objp);
size_t kmalloc_size_roundup(size_t size);

char *kstrdup(const char *s, gfp_t gfp) __malloc;
char *kstrndup(const char *s, size_t max, gfp_t gfp) __malloc;
void *kmemdup(const void *src, size_t len, gfp_t gfp) __malloc __alloc_size(2);
char *kmemdup_nul(const char *s, size_t len, gfp_t gfp) __malloc;

void *kvmalloc(size_t size, gfp_t flags) __malloc __alloc_size(1);
void *kvzalloc(size_t size, gfp_t flags) __malloc __alloc_size(1);
void *kvmalloc_node(size_t size, gfp_t flags, int node) __malloc __alloc_size(1);
void *kvzalloc_node(size_t size, gfp_t flags, int node) __malloc __alloc_size(1);
void *kvmalloc_array(size_t n, size_t size, gfp_t flags) __malloc __alloc_size(1, 2);
void *kvcalloc(size_t n, size_t size, gfp_t flags) __malloc __alloc_size(1, 2);
void *kvrealloc(const void *p, size_t size, gfp_t flags) __must_check __alloc_size(2);
void kvfree(const void *addr);
void kvfree_sensitive(const void *addr, size_t len);

#ifdef __cplusplus
}
#endif

/* 5.9 renamed kzfree to kfree_sensitive. */
#define kzfree(p) kfree_sensitive(p)

/*
 * kmem_cache_create(): five arguments go to the modern form, six to the 2.6
 * form with a destructor (argument-count dispatch).
 */
#define __KMEM_CACHE_CREATE_PICK(_1, _2, _3, _4, _5, _6, fn, ...) fn
#define kmem_cache_create(...) \
	__KMEM_CACHE_CREATE_PICK(__VA_ARGS__, kmem_cache_create_legacy, \
				 kmem_cache_create, kmem_cache_create_wrong_number_of_arguments, \
				 kmem_cache_create_wrong_number_of_arguments, \
				 kmem_cache_create_wrong_number_of_arguments, \
				 kmem_cache_create_wrong_number_of_arguments)(__VA_ARGS__)

/* KMEM_CACHE(struct, flags): a cache named after a structure, aligned to it. */
#define KMEM_CACHE(__struct, __flags) \
	kmem_cache_create(#__struct, sizeof(struct __struct), \
			  __alignof__(struct __struct), (__flags), NULL)

#endif /* _KMEM_LINUX_SLAB_H */
