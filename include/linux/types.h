/* SPDX-License-Identifier: GPL-2.0-only OR MIT */
/*
 * linux/types.h - the kernel's basic types, for code built against libkmem.
 *
 * The system's <linux/types.h> (the kernel's UAPI header: __u32, __le32, ...)
 * is included first, so system headers that include <linux/types.h> still
 * get what they expect when -Iinclude puts this directory first.
 */
#ifndef _KMEM_LINUX_TYPES_H
#define _KMEM_LINUX_TYPES_H

#if defined(__has_include_next)
#if __has_include_next(<linux/types.h>)
#include_next <linux/types.h>
#endif
#endif

#include <stddef.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <linux/compiler.h>

typedef uint8_t u8;
typedef uint16_t u16;
typedef uint32_t u32;
typedef uint64_t u64;
typedef int8_t s8;
typedef int16_t s16;
typedef int32_t s32;
typedef int64_t s64;

/* GFP flags (include/linux/gfp_types.h). */
typedef unsigned int gfp_t;
/* Slab cache flags (include/linux/slab.h). */
typedef unsigned int slab_flags_t;
/* Physical addresses. */
typedef u64 phys_addr_t;
typedef u64 dma_addr_t;
typedef phys_addr_t resource_size_t;
typedef unsigned long pgoff_t;

#endif /* _KMEM_LINUX_TYPES_H */
