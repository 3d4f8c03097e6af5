/* SPDX-License-Identifier: GPL-2.0-only OR MIT */
/*
 * linux/gfp.h - GFP flags and the page allocator (libkmem).
 *
 * Bit values and composites are the kernel's (include/linux/gfp_types.h,
 * 6.12), the same constants as the Rust core's kmem::gfp. Two 2.6 names are
 * kept: __GFP_REPEAT is __GFP_RETRY_MAYFAIL (its successor), and __GFP_COLD
 * (removed from Linux in 4.15) keeps its meaning on the unused bit 0x200:
 * allocate from the cold end of the per-CPU page list.
 *
 * Allocation failure returns NULL (or 0 for address-returning functions);
 * it prints the kernel's "page allocation failure" report unless
 * __GFP_NOWARN.
 */
#ifndef _KMEM_LINUX_GFP_H
#define _KMEM_LINUX_GFP_H

#include <linux/types.h>
#include <asm/page.h>

#define __GFP_DMA		0x01u
#define __GFP_HIGHMEM		0x02u
#define __GFP_DMA32		0x04u
#define __GFP_MOVABLE		0x08u
#define __GFP_RECLAIMABLE	0x10u
#define __GFP_HIGH		0x20u
#define __GFP_IO		0x40u
#define __GFP_FS		0x80u
#define __GFP_ZERO		0x100u
#define __GFP_COLD		0x200u
#define __GFP_DIRECT_RECLAIM	0x400u
#define __GFP_KSWAPD_RECLAIM	0x800u
#define __GFP_WRITE		0x1000u
#define __GFP_NOWARN		0x2000u
#define __GFP_RETRY_MAYFAIL	0x4000u
#define __GFP_NOFAIL		0x8000u
#define __GFP_NORETRY		0x10000u
#define __GFP_MEMALLOC		0x20000u
#define __GFP_COMP		0x40000u
#define __GFP_NOMEMALLOC	0x80000u
#define __GFP_HARDWALL		0x100000u
#define __GFP_THISNODE		0x200000u
#define __GFP_ACCOUNT		0x400000u
#define __GFP_ZEROTAGS		0x800000u

#define __GFP_BITS_SHIFT	26
#define __GFP_BITS_MASK		((gfp_t)((1u << __GFP_BITS_SHIFT) - 1))

#define __GFP_RECLAIM		(__GFP_DIRECT_RECLAIM | __GFP_KSWAPD_RECLAIM)
/* 2.6 names. */
#define __GFP_REPEAT		__GFP_RETRY_MAYFAIL
#define __GFP_WAIT		__GFP_RECLAIM

#define GFP_ATOMIC		(__GFP_HIGH | __GFP_KSWAPD_RECLAIM)
#define GFP_KERNEL		(__GFP_RECLAIM | __GFP_IO | __GFP_FS)
#define GFP_KERNEL_ACCOUNT	(GFP_KERNEL | __GFP_ACCOUNT)
#define GFP_NOWAIT		(__GFP_KSWAPD_RECLAIM | __GFP_NOWARN)
#define GFP_NOIO		(__GFP_RECLAIM)
#define GFP_NOFS		(__GFP_RECLAIM | __GFP_IO)
#define GFP_USER		(__GFP_RECLAIM | __GFP_IO | __GFP_FS | __GFP_HARDWALL)
#define GFP_DMA			__GFP_DMA
#define GFP_DMA32		__GFP_DMA32
#define GFP_HIGHUSER		(GFP_USER | __GFP_HIGHMEM)
#define GFP_HIGHUSER_MOVABLE	(GFP_HIGHUSER | __GFP_MOVABLE)
#define GFP_TRANSHUGE_LIGHT	((GFP_HIGHUSER_MOVABLE | __GFP_COMP | __GFP_NOMEMALLOC | \
				  __GFP_NOWARN) & ~__GFP_RECLAIM)
#define GFP_TRANSHUGE		(GFP_TRANSHUGE_LIGHT | __GFP_DIRECT_RECLAIM)
/* 2.6: short-lived kernel allocations. */
#define GFP_TEMPORARY		(GFP_KERNEL | __GFP_RECLAIMABLE)

#define GFP_ZONEMASK		(__GFP_DMA | __GFP_HIGHMEM | __GFP_DMA32 | __GFP_MOVABLE)
#define GFP_RECLAIM_MASK	(__GFP_RECLAIM | __GFP_HIGH | __GFP_IO | __GFP_FS | \
				 __GFP_NOWARN | __GFP_RETRY_MAYFAIL | __GFP_NOFAIL | \
				 __GFP_NORETRY | __GFP_MEMALLOC | __GFP_NOMEMALLOC)
#define GFP_CONSTRAINT_MASK	(__GFP_HARDWALL | __GFP_THISNODE)

#ifndef NUMA_NO_NODE
#define NUMA_NO_NODE (-1)
#endif

/* The orders the buddy allocator has: 0 ..= MAX_PAGE_ORDER. */
#define MAX_PAGE_ORDER		10
#define NR_PAGE_ORDERS		(MAX_PAGE_ORDER + 1)
#define PAGE_ALLOC_COSTLY_ORDER	3

/* gfpflags_allow_blocking(): may an allocation with these flags sleep? */
static __inline__ bool gfpflags_allow_blocking(const gfp_t gfp_flags)
{
	return !!(gfp_flags & __GFP_DIRECT_RECLAIM);
}

#ifdef __cplusplus
extern "C" {
#endif

struct page *alloc_pages(gfp_t gfp_mask, unsigned int order);
struct page *alloc_page(gfp_t gfp_mask);
struct page *alloc_pages_node(int nid, gfp_t gfp_mask, unsigned int order);
unsigned long __get_free_pages(gfp_t gfp_mask, unsigned int order);
unsigned long __get_free_page(gfp_t gfp_mask);
unsigned long get_zeroed_page(gfp_t gfp_mask);
void *alloc_pages_exact(size_t size, gfp_t gfp_mask);
void free_pages_exact(void *virt, size_t size);

void __free_pages(struct page *page, unsigned int order);
void __free_page(struct page *page);
void free_hot_page(struct page *page);
void free_cold_page(struct page *page);
void free_pages(unsigned long addr, unsigned int order);
void free_page(unsigned long addr);

unsigned int memalloc_noio_save(void);
void memalloc_noio_restore(unsigned int flags);
unsigned int memalloc_nofs_save(void);
void memalloc_nofs_restore(unsigned int flags);
unsigned int memalloc_noreclaim_save(void);
void memalloc_noreclaim_restore(unsigned int flags);

#ifdef __cplusplus
}
#endif

#endif /* _KMEM_LINUX_GFP_H */
