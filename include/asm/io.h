/* SPDX-License-Identifier: GPL-2.0-only OR MIT */
/*
 * asm/io.h - device memory and the linear map (libkmem, x86-64).
 *
 * ioremap() maps device memory into the vmalloc window; RAM the page
 * allocator may own is refused with the kernel's "ioremap on RAM" warning,
 * and a range with nothing behind it gives NULL. A process has no devices:
 * kmem_register_iomem() (kmem.h) puts a file descriptor (a memfd standing
 * for a device's registers, or a real device file) at a physical address
 * first. Reserved RAM (the BIOS areas below 1 MiB) can be mapped, as on x86.
 *
 * readb()..writeq() and ioread*()/iowrite*() are single volatile accesses,
 * little-endian (x86's native order), as the kernel's.
 */
#ifndef _KMEM_ASM_IO_H
#define _KMEM_ASM_IO_H

#include <linux/types.h>
#include <linux/compiler.h>
#include <asm/page.h>

#ifdef __cplusplus
extern "C" {
#endif

void __iomem *ioremap(resource_size_t offset, unsigned long size);
void __iomem *ioremap_nocache(resource_size_t offset, unsigned long size);
void __iomem *ioremap_uc(resource_size_t offset, unsigned long size);
void __iomem *ioremap_wc(resource_size_t offset, unsigned long size);
void __iomem *ioremap_wt(resource_size_t offset, unsigned long size);
void __iomem *ioremap_cache(resource_size_t offset, unsigned long size);
void iounmap(volatile void __iomem *addr);

void memcpy_fromio(void *dst, const volatile void __iomem *src, size_t count);
void memcpy_toio(volatile void __iomem *dst, const void *src, size_t count);
void memset_io(volatile void __iomem *dst, int c, size_t count);

#ifdef __cplusplus
}
#endif

static __inline__ u8 readb(const volatile void __iomem *addr) { return *(const volatile u8 *)addr; }
static __inline__ u16 readw(const volatile void __iomem *addr) { return *(const volatile u16 *)addr; }
static __inline__ u32 readl(const volatile void __iomem *addr) { return *(const volatile u32 *)addr; }
static __inline__ u64 readq(const volatile void __iomem *addr) { return *(const volatile u64 *)addr; }
static __inline__ void writeb(u8 val, volatile void __iomem *addr) { *(volatile u8 *)addr = val; }
static __inline__ void writew(u16 val, volatile void __iomem *addr) { *(volatile u16 *)addr = val; }
static __inline__ void writel(u32 val, volatile void __iomem *addr) { *(volatile u32 *)addr = val; }
static __inline__ void writeq(u64 val, volatile void __iomem *addr) { *(volatile u64 *)addr = val; }

#define readb_relaxed(a)	readb(a)
#define readw_relaxed(a)	readw(a)
#define readl_relaxed(a)	readl(a)
#define readq_relaxed(a)	readq(a)
#define writeb_relaxed(v, a)	writeb(v, a)
#define writew_relaxed(v, a)	writew(v, a)
#define writel_relaxed(v, a)	writel(v, a)
#define writeq_relaxed(v, a)	writeq(v, a)
#define __raw_readl(a)		readl(a)
#define __raw_writel(v, a)	writel(v, a)

static __inline__ unsigned int ioread8(const volatile void __iomem *addr) { return readb(addr); }
static __inline__ unsigned int ioread16(const volatile void __iomem *addr) { return readw(addr); }
static __inline__ unsigned int ioread32(const volatile void __iomem *addr) { return readl(addr); }
static __inline__ void iowrite8(u8 val, volatile void __iomem *addr) { writeb(val, addr); }
static __inline__ void iowrite16(u16 val, volatile void __iomem *addr) { writew(val, addr); }
static __inline__ void iowrite32(u32 val, volatile void __iomem *addr) { writel(val, addr); }

#endif /* _KMEM_ASM_IO_H */
