/* SPDX-License-Identifier: GPL-2.0-only OR MIT */
/*
 * linux/compiler.h - the kernel's annotations, for code built against libkmem.
 *
 * Address-space markers (__percpu, __iomem, __user, __rcu) and __force are
 * sparse annotations in the kernel; here they are empty. The rest are the
 * GCC/Clang attributes the kernel spells with these names.
 */
#ifndef _KMEM_LINUX_COMPILER_H
#define _KMEM_LINUX_COMPILER_H

#ifndef __percpu
#define __percpu
#endif
#ifndef __iomem
#define __iomem
#endif
#ifndef __user
#define __user
#endif
#ifndef __rcu
#define __rcu
#endif
#ifndef __force
#define __force
#endif
#ifndef __bitwise
#define __bitwise
#endif
#ifndef __must_check
#define __must_check __attribute__((__warn_unused_result__))
#endif
#ifndef __always_inline
#define __always_inline inline __attribute__((__always_inline__))
#endif
#ifndef __malloc
#define __malloc __attribute__((__malloc__))
#endif
#ifndef __alloc_size
#define __alloc_size(...) __attribute__((__alloc_size__(__VA_ARGS__)))
#endif
#ifndef __maybe_unused
#define __maybe_unused __attribute__((__unused__))
#endif
#ifndef __used
#define __used __attribute__((__used__))
#endif
#ifndef __aligned
#define __aligned(x) __attribute__((__aligned__(x)))
#endif
#ifndef __section
#define __section(s) __attribute__((__section__(s)))
#endif
#ifndef likely
#define likely(x) __builtin_expect(!!(x), 1)
#endif
#ifndef unlikely
#define unlikely(x) __builtin_expect(!!(x), 0)
#endif
#ifndef barrier
#define barrier() __asm__ __volatile__("" : : : "memory")
#endif
#ifndef READ_ONCE
#define READ_ONCE(x) (*(const volatile __typeof__(x) *)&(x))
#endif
#ifndef WRITE_ONCE
#define WRITE_ONCE(x, val) do { *(volatile __typeof__(x) *)&(x) = (val); } while (0)
#endif

#endif /* _KMEM_LINUX_COMPILER_H */
