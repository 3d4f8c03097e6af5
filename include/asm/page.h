/* SPDX-License-Identifier: GPL-2.0-only OR MIT */
/*
 * asm/page.h - pages and the linear map (libkmem, x86-64 values).
 *
 * The machine's RAM is mapped once as its linear map, so __pa/__va,
 * virt_to_page and pfn arithmetic are plain arithmetic, as in the kernel.
 * struct page is the machine's page descriptor; C code only holds pointers.
 */
#ifndef _KMEM_ASM_PAGE_H
#define _KMEM_ASM_PAGE_H

#include <linux/types.h>

#define PAGE_SHIFT	12
#define PAGE_SIZE	(1UL << PAGE_SHIFT)
#define PAGE_MASK	(~(PAGE_SIZE - 1))

struct page;

#ifdef __cplusplus
extern "C" {
#endif

phys_addr_t virt_to_phys(const volatile void *address);
void *phys_to_virt(phys_addr_t address);
struct page *virt_to_page(const void *addr);
struct page *pfn_to_page(unsigned long pfn);
unsigned long page_to_pfn(const struct page *page);
int pfn_valid(unsigned long pfn);
bool virt_addr_valid(const void *addr);
void *page_address(const struct page *page);

#ifdef __cplusplus
}
#endif

#define __pa(x)			virt_to_phys((const volatile void *)(x))
#define __va(x)			phys_to_virt((phys_addr_t)(x))
#define __pa_symbol(x)		__pa(x)
#define pfn_to_kaddr(pfn)	__va((phys_addr_t)(pfn) << PAGE_SHIFT)
#define virt_to_pfn(kaddr)	((unsigned long)(__pa(kaddr) >> PAGE_SHIFT))
#define page_to_virt(page)	page_address(page)
#define page_to_phys(page)	((phys_addr_t)page_to_pfn(page) << PAGE_SHIFT)
#define phys_to_page(phys)	pfn_to_page((unsigned long)((phys) >> PAGE_SHIFT))

/*
 * get_order(size): the allocation order for size bytes (asm-generic/getorder.h):
 * the smallest order with PAGE_SIZE << order >= size.
 */
static __inline__ __attribute__((__const__)) int get_order(unsigned long size)
{
	int order = 0;

	size--;
	size >>= PAGE_SHIFT;
	while (size) {
		order++;
		size >>= 1;
	}
	return order;
}

#endif /* _KMEM_ASM_PAGE_H */
