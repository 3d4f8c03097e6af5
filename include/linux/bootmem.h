/* SPDX-License-Identifier: GPL-2.0-only OR MIT */
/*
 * linux/bootmem.h - the 2.6 boot-time allocator API (libkmem), over
 * memblock (see linux/memblock.h for what happens after boot).
 * free_bootmem() takes a physical address, as in 2.6: free_bootmem(__pa(p), n).
 */
#ifndef _KMEM_LINUX_BOOTMEM_H
#define _KMEM_LINUX_BOOTMEM_H

#include <linux/types.h>
#include <linux/memblock.h>

#ifdef __cplusplus
extern "C" {
#endif

void *alloc_bootmem(unsigned long size);
void *alloc_bootmem_low(unsigned long size);
void *alloc_bootmem_pages(unsigned long size);
void *alloc_bootmem_low_pages(unsigned long size);
void free_bootmem(unsigned long addr, unsigned long size);

#ifdef __cplusplus
}
#endif

#endif /* _KMEM_LINUX_BOOTMEM_H */
