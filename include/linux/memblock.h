/* SPDX-License-Identifier: GPL-2.0-only OR MIT */
/*
 * linux/memblock.h - the boot-time allocator (libkmem).
 *
 * A C program runs after its machine booted, when memory belongs to the
 * buddy allocator. As in the kernel, the boot allocators then warn once
 * (WARN_ON_ONCE(slab_is_available())) and fall back to a zeroed GFP_NOWAIT
 * page allocation; memblock_free()/memblock_phys_free() give it back.
 */
#ifndef _KMEM_LINUX_MEMBLOCK_H
#define _KMEM_LINUX_MEMBLOCK_H

#include <linux/types.h>
#include <linux/mm.h>

#define MEMBLOCK_ALLOC_ANYWHERE		(~(phys_addr_t)0)
#define MEMBLOCK_ALLOC_ACCESSIBLE	((phys_addr_t)0)
#define MEMBLOCK_ALLOC_NOLEAKTRACE	((phys_addr_t)1)
#define MEMBLOCK_LOW_LIMIT		((phys_addr_t)0)
#define SMP_CACHE_BYTES			64

#ifdef __cplusplus
extern "C" {
#endif

void *memblock_alloc(phys_addr_t size, phys_addr_t align);
void *memblock_alloc_raw(phys_addr_t size, phys_addr_t align);
void *memblock_alloc_from(phys_addr_t size, phys_addr_t align, phys_addr_t min_addr);
void *memblock_alloc_low(phys_addr_t size, phys_addr_t align);
void *memblock_alloc_node(phys_addr_t size, phys_addr_t align, int nid);
void *memblock_alloc_try_nid(phys_addr_t size, phys_addr_t align, phys_addr_t min_addr,
			     phys_addr_t max_addr, int nid);
void *memblock_alloc_try_nid_raw(phys_addr_t size, phys_addr_t align, phys_addr_t min_addr,
				 phys_addr_t max_addr, int nid);
phys_addr_t memblock_phys_alloc(phys_addr_t size, phys_addr_t align);
void memblock_free(void *ptr, size_t size);
void memblock_phys_free(phys_addr_t base, phys_addr_t size);
phys_addr_t memblock_phys_mem_size(void);
phys_addr_t memblock_reserved_size(void);
phys_addr_t memblock_start_of_DRAM(void);
phys_addr_t memblock_end_of_DRAM(void);

#ifdef __cplusplus
}
#endif

#endif /* _KMEM_LINUX_MEMBLOCK_H */
