/* SPDX-License-Identifier: GPL-2.0-only OR MIT */
/*
 * linux/vmalloc.h - virtually contiguous memory (libkmem).
 *
 * vmalloc maps scattered pages of the machine's RAM into its vmalloc window
 * (for real: the same page is visible at its linear address and at its
 * vmalloc address), with a guard page after each area. vfree of anything
 * vmalloc did not hand out is reported ("Trying to vfree() nonexistent vm
 * area") and frees nothing. The kvmalloc family is in linux/slab.h.
 */
#ifndef _KMEM_LINUX_VMALLOC_H
#define _KMEM_LINUX_VMALLOC_H

#include <linux/types.h>
#include <linux/gfp.h>
#include <linux/mm.h>

/* vm_struct flags. */
#define VM_IOREMAP		0x00000001
#define VM_ALLOC		0x00000002
#define VM_MAP			0x00000004
#define VM_USERMAP		0x00000008
#define VM_UNINITIALIZED	0x00000020

/* Page protections (x86-64 PTE bits); vmap maps read-write in any case. */
typedef unsigned long pgprot_t;
#define PAGE_KERNEL		((pgprot_t)0x8000000000000163UL)
#define PAGE_KERNEL_RO		((pgprot_t)0x8000000000000161UL)

#ifdef __cplusplus
extern "C" {
#endif

void *vmalloc(unsigned long size) __malloc;
void *vzalloc(unsigned long size) __malloc;
void *__vmalloc(unsigned long size, gfp_t gfp_mask) __malloc;
void *__vmalloc_node(unsigned long size, unsigned long align, gfp_t gfp_mask, int node,
		     const void *caller) __malloc;
void *vmalloc_node(unsigned long size, int node) __malloc;
void *vzalloc_node(unsigned long size, int node) __malloc;
void *vmalloc_32(unsigned long size) __malloc;
void *vmalloc_user(unsigned long size) __malloc;
void *vmalloc_array(size_t n, size_t size) __malloc;
void *vcalloc(size_t n, size_t size) __malloc;
void vfree(const void *addr);

void *vmap(struct page **pages, unsigned int count, unsigned long flags, pgprot_t prot);
void vunmap(const void *addr);
void vm_unmap_aliases(void);

#ifdef __cplusplus
}
#endif

#endif /* _KMEM_LINUX_VMALLOC_H */
