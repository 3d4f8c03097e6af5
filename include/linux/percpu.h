/* SPDX-License-Identifier: GPL-2.0-only OR MIT */
/*
 * linux/percpu.h - per-CPU variables and memory (libkmem).
 *
 * Dynamic: alloc_percpu(type) / __alloc_percpu(size, align) return a
 * per-CPU pointer (zeroed on every CPU); per_cpu_ptr(p, cpu) is CPU cpu's
 * copy, this_cpu_ptr(p) the current CPU's; free_percpu(p) frees it.
 *
 * Static: DEFINE_PER_CPU(type, name) [= initialiser] defines a variable in
 * the section "kmem_percpu", as the kernel uses .data..percpu: the variable
 * is the template, and every CPU gets its own copy of it (initialised from
 * it) when the machine comes up. Reach the copies with per_cpu(name, cpu),
 * get_cpu_var(name)/put_cpu_var(name), this_cpu_*(name) and
 * per_cpu_ptr(&name, cpu) - never through the name itself. Each executable
 * and shared object that includes this header registers its section with
 * libkmem from a constructor (the linker's __start_kmem_percpu and
 * __stop_kmem_percpu symbols, hidden, so each object registers its own).
 *
 * this_cpu_*(pcp) are the kernel's preemption-safe operations: preemption is
 * disabled around a plain read-modify-write of the current CPU's copy. A
 * preempt-disabled thread owns its CPU (no other thread runs such a section
 * on that CPU meanwhile), so counters updated this way add up exactly.
 * __this_cpu_*() and raw_cpu_*() skip the preemption calls: for callers that
 * already disabled preemption (get_cpu(), get_cpu_var()).
 *
 * pcp is an lvalue: a DEFINE_PER_CPU variable, or *p for a pointer from
 * alloc_percpu(), as in the kernel (this_cpu_inc(*counter)).
 */
#ifndef _KMEM_LINUX_PERCPU_H
#define _KMEM_LINUX_PERCPU_H

#include <linux/types.h>
#include <linux/compiler.h>
#include <linux/gfp.h>
#include <linux/preempt.h>
#include <linux/smp.h>

#define PCPU_MIN_UNIT_SIZE	(32 << 10)
#define PCPU_MIN_ALLOC_SIZE	4
#define PERCPU_SECTION_NAME	"kmem_percpu"

#ifdef __cplusplus
extern "C" {
#endif

void *__alloc_percpu(size_t size, size_t align);
void *__alloc_percpu_gfp(size_t size, size_t align, gfp_t gfp);
void free_percpu(void *ptr);
void *kmem_per_cpu_ptr(const void *ptr, int cpu);
void *kmem_this_cpu_ptr(const void *ptr);
void kmem_percpu_register(void *start, void *end);

#ifdef __cplusplus
}
#endif

#define alloc_percpu(type) \
	((type __percpu *)__alloc_percpu(sizeof(type), __alignof__(type)))
#define alloc_percpu_gfp(type, gfp) \
	((type __percpu *)__alloc_percpu_gfp(sizeof(type), __alignof__(type), (gfp)))

/* Definitions and declarations. */
#define DEFINE_PER_CPU_SECTION(type, name, sec) \
	__attribute__((__section__(PERCPU_SECTION_NAME), __used__)) __typeof__(type) name
#define DECLARE_PER_CPU_SECTION(type, name, sec) extern __typeof__(type) name
#define DEFINE_PER_CPU(type, name)		DEFINE_PER_CPU_SECTION(type, name, "")
#define DECLARE_PER_CPU(type, name)		DECLARE_PER_CPU_SECTION(type, name, "")
#define DEFINE_PER_CPU_ALIGNED(type, name)	DEFINE_PER_CPU(type, name) __attribute__((__aligned__(64)))
#define DECLARE_PER_CPU_ALIGNED(type, name)	DECLARE_PER_CPU(type, name) __attribute__((__aligned__(64)))
#define DEFINE_PER_CPU_SHARED_ALIGNED(type, name) DEFINE_PER_CPU_ALIGNED(type, name)
#define DECLARE_PER_CPU_SHARED_ALIGNED(type, name) DECLARE_PER_CPU_ALIGNED(type, name)
#define DEFINE_PER_CPU_READ_MOSTLY(type, name)	DEFINE_PER_CPU(type, name)
#define DECLARE_PER_CPU_READ_MOSTLY(type, name)	DECLARE_PER_CPU(type, name)
#define DEFINE_PER_CPU_PAGE_ALIGNED(type, name)	DEFINE_PER_CPU(type, name) __attribute__((__aligned__(4096)))
#define DECLARE_PER_CPU_PAGE_ALIGNED(type, name) DECLARE_PER_CPU(type, name) __attribute__((__aligned__(4096)))
#define EXPORT_PER_CPU_SYMBOL(var)
#define EXPORT_PER_CPU_SYMBOL_GPL(var)

/* This object's kmem_percpu section, registered before main(). */
extern char __start_kmem_percpu[] __attribute__((__weak__, __visibility__("hidden")));
extern char __stop_kmem_percpu[] __attribute__((__weak__, __visibility__("hidden")));
static void __attribute__((__constructor__, __used__)) __kmem_percpu_register_object(void)
{
	kmem_percpu_register(__start_kmem_percpu, __stop_kmem_percpu);
}

/* Pointers to CPUs' copies. */
#define per_cpu_ptr(ptr, cpu) \
	((__typeof__(ptr))kmem_per_cpu_ptr((const void *)(ptr), (int)(cpu)))
#define per_cpu(var, cpu)	(*per_cpu_ptr(&(var), (cpu)))
#define this_cpu_ptr(ptr)	((__typeof__(ptr))kmem_this_cpu_ptr((const void *)(ptr)))
#define raw_cpu_ptr(ptr)	this_cpu_ptr(ptr)
#define get_cpu_ptr(ptr)	({ preempt_disable(); this_cpu_ptr(ptr); })
#define put_cpu_ptr(ptr)	do { (void)(ptr); preempt_enable(); } while (0)
#define get_cpu_var(var)	(*({ preempt_disable(); this_cpu_ptr(&(var)); }))
#define put_cpu_var(var)	do { (void)&(var); preempt_enable(); } while (0)

/* Operations on the current CPU's copy; the caller has preemption disabled. */
#define __this_cpu_read(pcp)		(*this_cpu_ptr(&(pcp)))
#define __this_cpu_write(pcp, val)	do { *this_cpu_ptr(&(pcp)) = (val); } while (0)
#define __this_cpu_add(pcp, val)	do { *this_cpu_ptr(&(pcp)) += (val); } while (0)
#define __this_cpu_sub(pcp, val)	__this_cpu_add(pcp, -(__typeof__(pcp))(val))
#define __this_cpu_inc(pcp)		__this_cpu_add(pcp, 1)
#define __this_cpu_dec(pcp)		__this_cpu_sub(pcp, 1)
#define __this_cpu_and(pcp, val)	do { *this_cpu_ptr(&(pcp)) &= (val); } while (0)
#define __this_cpu_or(pcp, val)		do { *this_cpu_ptr(&(pcp)) |= (val); } while (0)
#define __this_cpu_add_return(pcp, val)	(*this_cpu_ptr(&(pcp)) += (val))
#define __this_cpu_sub_return(pcp, val)	__this_cpu_add_return(pcp, -(__typeof__(pcp))(val))
#define __this_cpu_inc_return(pcp)	__this_cpu_add_return(pcp, 1)
#define __this_cpu_dec_return(pcp)	__this_cpu_sub_return(pcp, 1)
#define __this_cpu_xchg(pcp, nval) ({					\
	__typeof__(&(pcp)) __kmem_p = this_cpu_ptr(&(pcp));		\
	__typeof__(pcp) __kmem_old = *__kmem_p;				\
	*__kmem_p = (nval);						\
	__kmem_old;							\
})
#define __this_cpu_cmpxchg(pcp, oval, nval) ({				\
	__typeof__(&(pcp)) __kmem_p = this_cpu_ptr(&(pcp));		\
	__typeof__(pcp) __kmem_old = *__kmem_p;				\
	if (__kmem_old == (oval))					\
		*__kmem_p = (nval);					\
	__kmem_old;							\
})

#define raw_cpu_read(pcp)		__this_cpu_read(pcp)
#define raw_cpu_write(pcp, val)		__this_cpu_write(pcp, val)
#define raw_cpu_add(pcp, val)		__this_cpu_add(pcp, val)
#define raw_cpu_sub(pcp, val)		__this_cpu_sub(pcp, val)
#define raw_cpu_inc(pcp)		__this_cpu_inc(pcp)
#define raw_cpu_dec(pcp)		__this_cpu_dec(pcp)

/* The preemption-safe operations. */
#define __kmem_pcpu_safe(expr) ({					\
	preempt_disable();						\
	__typeof__(expr) __kmem_r = (expr);				\
	preempt_enable();						\
	__kmem_r;							\
})
#define __kmem_pcpu_safe_void(stmt) do { preempt_disable(); stmt; preempt_enable(); } while (0)

#define this_cpu_read(pcp)		__kmem_pcpu_safe(__this_cpu_read(pcp))
#define this_cpu_write(pcp, val)	__kmem_pcpu_safe_void(__this_cpu_write(pcp, val))
#define this_cpu_add(pcp, val)		__kmem_pcpu_safe_void(__this_cpu_add(pcp, val))
#define this_cpu_sub(pcp, val)		__kmem_pcpu_safe_void(__this_cpu_sub(pcp, val))
#define this_cpu_inc(pcp)		__kmem_pcpu_safe_void(__this_cpu_inc(pcp))
#define this_cpu_dec(pcp)		__kmem_pcpu_safe_void(__this_cpu_dec(pcp))
#define this_cpu_and(pcp, val)		__kmem_pcpu_safe_void(__this_cpu_and(pcp, val))
#define this_cpu_or(pcp, val)		__kmem_pcpu_safe_void(__this_cpu_or(pcp, val))
#define this_cpu_add_return(pcp, val)	__kmem_pcpu_safe(__this_cpu_add_return(pcp, val))
#define this_cpu_sub_return(pcp, val)	__kmem_pcpu_safe(__this_cpu_sub_return(pcp, val))
#define this_cpu_inc_return(pcp)	__kmem_pcpu_safe(__this_cpu_inc_return(pcp))
#define this_cpu_dec_return(pcp)	__kmem_pcpu_safe(__this_cpu_dec_return(pcp))
#define this_cpu_xchg(pcp, nval)	__kmem_pcpu_safe(__this_cpu_xchg(pcp, nval))
#define this_cpu_cmpxchg(pcp, oval, nval) __kmem_pcpu_safe(__this_cpu_cmpxchg(pcp, oval, nval))

#endif /* _KMEM_LINUX_PERCPU_H */
