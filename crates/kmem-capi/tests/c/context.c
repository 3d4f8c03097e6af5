/*
 * linux/preempt.h, linux/kernel.h's might_sleep, linux/gfp.h's allocation
 * scopes: task, atomic and (simulated) interrupt context; GFP_ATOMIC in an
 * interrupt handler; a sleeping allocation from atomic context reported
 * the kernel's way and failing rather than sleeping.
 */
#include <linux/kernel.h>
#include <linux/preempt.h>
#include <linux/smp.h>
#include <linux/slab.h>
#include <linux/gfp.h>
#include "check.h"

static void *irq_buf;
static int irq_saw_interrupt, irq_saw_hardirq, irq_saw_atomic, irq_saw_task;

static void rx_interrupt(void *arg)
{
	irq_saw_interrupt = in_interrupt();
	irq_saw_hardirq = in_irq() && in_hardirq() && irqs_disabled();
	irq_saw_atomic = in_atomic();
	irq_saw_task = in_task();
	/* The right way in an interrupt handler. */
	irq_buf = kmalloc(1500, GFP_ATOMIC);
	*(int *)arg += 1;
}

static void *sleepy_buf;
static void sleepy_softirq(void *arg)
{
	(void)arg;
	CHECK(in_softirq() && in_serving_softirq() && in_interrupt() && !in_irq());
	/* The wrong way: may sleep. Reported, and it does not sleep. */
	sleepy_buf = kmalloc(64, GFP_KERNEL);
}

int main(void)
{
	int calls = 0, cpu;
	unsigned int a, b;

	CHECK(in_task() && !in_interrupt() && !in_atomic() && !in_nmi());
	CHECK_EQ(preempt_count(), 0);
	CHECK(preemptible());

	kmem_run_in_hardirq(rx_interrupt, &calls);
	CHECK_EQ(calls, 1);
	CHECK(irq_saw_interrupt && irq_saw_hardirq && irq_saw_atomic && !irq_saw_task);
	CHECK(irq_buf != NULL);
	kfree(irq_buf);
	CHECK(!in_interrupt());

	kmem_run_in_softirq(sleepy_softirq, NULL);
	CHECK(dmesg_contains("BUG: sleeping function called from invalid context"));
	kfree(sleepy_buf); /* NULL or memory from the free lists */

	/* might_sleep() from a get_cpu() section names this file and line. */
	cpu = get_cpu();
	CHECK(cpu >= 0 && (unsigned int)cpu < nr_cpu_ids);
	CHECK(in_atomic());
	might_sleep();
	put_cpu();
	CHECK(dmesg_contains("BUG: sleeping function called from invalid context at "));
	CHECK(dmesg_contains("context.c:"));
	might_sleep(); /* fine in task context: no report */

	/* Nesting. */
	preempt_disable();
	preempt_disable();
	CHECK_EQ(preempt_count(), 2);
	preempt_enable();
	preempt_enable_no_resched();
	CHECK_EQ(preempt_count(), 0);
	local_bh_disable();
	CHECK(in_softirq() && !in_serving_softirq());
	local_bh_enable();
	CHECK(!in_softirq());

	/* Allocation scopes return the previous state, as the kernel's. */
	a = memalloc_noio_save();
	b = memalloc_noio_save();
	CHECK_EQ(a, 0);
	CHECK(b != 0); /* PF_MEMALLOC_NOIO was already set */
	memalloc_noio_restore(b);
	memalloc_noio_restore(a);
	CHECK_EQ(memalloc_noio_save(), 0);
	memalloc_noio_restore(0);
	a = memalloc_nofs_save();
	CHECK_EQ(a, 0);
	CHECK(memalloc_nofs_save() != 0);
	memalloc_nofs_restore(a);
	a = memalloc_noreclaim_save();
	CHECK_EQ(a, 0);
	memalloc_noreclaim_restore(a);

	printf("context: ok\n");
	return 0;
}
