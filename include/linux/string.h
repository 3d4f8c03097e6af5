/* SPDX-License-Identifier: GPL-2.0-only OR MIT */
/*
 * linux/string.h - the C library's string functions plus the kernel's
 * kmalloc'd copies (kstrdup, kstrndup, kmemdup, kmemdup_nul; libkmem).
 */
#ifndef _KMEM_LINUX_STRING_H
#define _KMEM_LINUX_STRING_H

#if defined(__has_include_next)
#if __has_include_next(<linux/string.h>)
#include_next <linux/string.h>
#endif
#endif

#include <string.h>
#include <linux/slab.h>

#endif /* _KMEM_LINUX_STRING_H */
