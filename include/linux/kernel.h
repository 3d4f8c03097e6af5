/* SPDX-License-Identifier: GPL-2.0-only OR MIT */
/*
 * linux/kernel.h - the helpers kernel code expects, for code built against
 * libkmem: container_of, ARRAY_SIZE, ALIGN and might_sleep().
 *
 * The system's <linux/kernel.h> (UAPI; <sys/sysinfo.h> includes it) comes
 * first.
 */
#ifndef _KMEM_LINUX_KERNEL_H
#define _KMEM_LINUX_KERNEL_H

#if defined(__has_include_next)
#if __has_include_next(<linux/kernel.h>)
#include_next <linux/kernel.h>
#endif
#endif

#include <linux/types.h>
#include <linux/compiler.h>

#ifndef container_of
#define container_of(ptr, type, member) \
	((type *)(void *)((char *)(ptr) - offsetof(type, member)))
#endif
#ifndef ARRAY_SIZE
#define ARRAY_SIZE(arr) (sizeof(arr) / sizeof((arr)[0]))
#endif
#ifndef ALIGN
#define ALIGN(x, a) (((x) + ((__typeof__(x))(a) - 1)) & ~((__typeof__(x))(a) - 1))
#endif
#ifndef ALIGN_DOWN
#define ALIGN_DOWN(x, a) ((x) & ~((__typeof__(x))(a) - 1))
#endif
#ifndef IS_ALIGNED
#define IS_ALIGNED(x, a) (((x) & ((__typeof__(x))(a) - 1)) == 0)
#endif
#ifndef DIV_ROUND_UP
#define DIV_ROUND_UP(n, d) (((n) + (d) - 1) / (d))
#endif

#ifdef __cplusplus
extern "C" {
#endif

/*
 * might_sleep(): from atomic context (get_cpu(), preempt_disable(), a
 * simulated interrupt) this prints the kernel's "BUG: sleeping function
 * called from invalid context at file:line" report, once per call site.
 */
void __might_sleep(const char *file, int line);
#define might_sleep() __might_sleep(__FILE__, __LINE__)
#define might_sleep_if(cond) do { if (cond) might_sleep(); } while (0)

#ifdef __cplusplus
}
#endif

#endif /* _KMEM_LINUX_KERNEL_H */
