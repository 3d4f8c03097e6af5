/* SPDX-License-Identifier: GPL-2.0-only OR MIT */
/*
 * linux/preempt.h - preemption and execution context (libkmem).
 *
 * A thread is a task. preempt_disable() pins it to its CPU for real: no
 * other thread runs a preempt-disabled section on that CPU until the
 * matching preempt_enable(), so plain read-modify-writes of per-CPU data in
 * between are exact. Interrupt context exists only inside
 * kmem_run_in_hardirq() / kmem_run_in_softirq() (kmem.h).
 */
#ifndef _KMEM_LINUX_PREEMPT_H
#define _KMEM_LINUX_PREEMPT_H

#include <linux/types.h>

#define PREEMPT_MASK	0x000000ffU
#define SOFTIRQ_MASK	0x0000ff00U
#define HARDIRQ_MASK	0x000f0000U
#define NMI_MASK	0x00f00000U
#define PREEMPT_OFFSET	0x00000001U
#define SOFTIRQ_OFFSET	0x00000100U
#define HARDIRQ_OFFSET	0x00010000U
#define SOFTIRQ_DISABLE_OFFSET (2 * SOFTIRQ_OFFSET)

#ifdef __cplusplus
extern "C" {
#endif

void preempt_disable(void);
void preempt_enable(void);
void preempt_enable_no_resched(void);
int preempt_count(void);
#define preemptible() (preempt_count() == 0)

bool in_interrupt(void);
bool in_irq(void);
bool in_hardirq(void);
bool in_softirq(void);
bool in_serving_softirq(void);
bool in_nmi(void);
bool in_task(void);
bool in_atomic(void);
bool irqs_disabled(void);

void local_bh_disable(void);
void local_bh_enable(void);

#ifdef __cplusplus
}
#endif

#endif /* _KMEM_LINUX_PREEMPT_H */
