/* SPDX-License-Identifier: GPL-2.0-only OR MIT */
/*
 * linux/mm.h - struct page helpers and memory totals (libkmem).
 */
#ifndef _KMEM_LINUX_MM_H
#define _KMEM_LINUX_MM_H

#include <linux/types.h>
#include <linux/kernel.h>
#include <linux/gfp.h>
#include <linux/topology.h>
#include <asm/page.h>

#define PAGE_ALIGN(addr)	ALIGN((addr), PAGE_SIZE)
#define PAGE_ALIGNED(addr)	IS_ALIGNED((unsigned long)(addr), PAGE_SIZE)
#define offset_in_page(p)	((unsigned long)(p) & ~PAGE_MASK)
#define lowmem_page_address(page) page_address(page)

#ifdef __cplusplus
extern "C" {
#endif

void get_page(struct page *page);
void put_page(struct page *page);
int page_count(const struct page *page);
void split_page(struct page *page, unsigned int order);
int PageHighMem(const struct page *page);
bool is_vmalloc_addr(const void *x);
struct page *vmalloc_to_page(const void *addr);
unsigned long vmalloc_to_pfn(const void *addr);
unsigned long totalram_pages(void);
unsigned long nr_free_pages(void);

#ifdef __cplusplus
}
#endif

#endif /* _KMEM_LINUX_MM_H */
