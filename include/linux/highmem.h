/* SPDX-License-Identifier: GPL-2.0-only OR MIT */
/*
 * linux/highmem.h - temporary mappings of pages (libkmem).
 *
 * Machines booted with highmem= have pages without a permanent address
 * (PageHighMem(); page_address() is NULL until they are mapped). kmap()
 * maps one into the pkmap pool until kunmap() (may sleep for a free slot;
 * a page kmapped twice shares its slot, and page_address() finds it);
 * kmap_local_page() maps into a per-CPU slot until kunmap_local() (nested
 * mappings are undone in reverse order); kmap_atomic() is kmap_local_page()
 * with preemption disabled until kunmap_atomic(). Lowmem pages always get
 * their linear address.
 */
#ifndef _KMEM_LINUX_HIGHMEM_H
#define _KMEM_LINUX_HIGHMEM_H

#include <linux/types.h>
#include <linux/mm.h>

#ifdef __cplusplus
extern "C" {
#endif

void *kmap(struct page *page);
void kunmap(struct page *page);
void *kmap_local_page(struct page *page);
void kunmap_local(const void *addr);
void *kmap_atomic(struct page *page);
void kunmap_atomic(void *addr);

void clear_highpage(struct page *page);
void zero_user(struct page *page, unsigned int start, unsigned int size);
void copy_highpage(struct page *to, struct page *from);
void memcpy_from_page(char *to, struct page *page, size_t offset, size_t len);
void memcpy_to_page(struct page *page, size_t offset, const char *from, size_t len);

#ifdef __cplusplus
}
#endif


#endif /* _KMEM_LINUX_HIGHMEM_H */
