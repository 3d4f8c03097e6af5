/*
 * linux/percpu.h, linux/smp.h: DEFINE_PER_CPU variables with a copy per CPU
 * (initialised from the definition), DECLARE_PER_CPU across translation
 * units, per_cpu/get_cpu_var/put_cpu_var, this_cpu_* counters updated by
 * many threads that add up exactly, alloc_percpu/per_cpu_ptr/free_percpu,
 * get_cpu/put_cpu pinning, and /proc/meminfo's Percpu line.
 */
// link: percpu_other.c
#include <linux/percpu.h>
#include <linux/smp.h>
#include <linux/slab.h>
#include <pthread.h>
#include <stdint.h>
#include "check.h"

struct stats {
	unsigned long rx, tx;
	int last_cpu;
};

DEFINE_PER_CPU(long, packets);
DEFINE_PER_CPU(struct stats, netstats);
static DEFINE_PER_CPU(int, initialised) = 42;
DEFINE_PER_CPU_SHARED_ALIGNED(unsigned long, aligned_counter);

void count_packet_elsewhere(void);
int other_unit_value(int cpu);

#define THREADS 8
#define ROUNDS 20000
#define NR_DYN 40

static unsigned long *dyn_counter;   /* alloc_percpu(unsigned long) */
static struct stats *dyn_stats;      /* alloc_percpu(struct stats) */

static void *worker(void *arg)
{
	int i;

	(void)arg;
	for (i = 0; i < ROUNDS; i++) {
		struct stats *s;

		this_cpu_inc(packets);
		this_cpu_add(*dyn_counter, 2);
		s = &get_cpu_var(netstats);
		s->rx++;
		s->last_cpu = smp_processor_id();
		put_cpu_var(netstats);

		s = get_cpu_ptr(dyn_stats);
		s->tx += 3;
		put_cpu_ptr(dyn_stats);
		if (i % 100 == 0)
			count_packet_elsewhere();
		(void)raw_cpu_read(aligned_counter);
	}
	return NULL;
}

int main(void)
{
	pthread_t t[THREADS];
	long total = 0;
	unsigned long dyn_total = 0, rx = 0, tx = 0;
	int cpu, i, ncpus = (int)num_possible_cpus();
	static char meminfo[8192];
	long *dyn[NR_DYN];

	CHECK_EQ(nr_cpu_ids, 4); /* KMEM_CMDLINE nr_cpus=4 */

	/* Every CPU starts from the definition's value, and has its own copy. */
	for_each_possible_cpu(cpu) {
		CHECK_EQ(per_cpu(initialised, cpu), 42);
		CHECK_EQ(other_unit_value(cpu), 7);
		CHECK_EQ(per_cpu(packets, cpu), 0);
		per_cpu(initialised, cpu) = cpu;
	}
	for_each_possible_cpu(cpu)
		CHECK_EQ(per_cpu(initialised, cpu), cpu);
	CHECK(&per_cpu(initialised, 0) != &per_cpu(initialised, 1));
	CHECK_EQ((uintptr_t)&per_cpu(aligned_counter, 2) % 64, 0);
	CHECK_EQ(initialised, 42); /* the template itself is untouched */

	dyn_counter = alloc_percpu(unsigned long);
	dyn_stats = alloc_percpu(struct stats);
	CHECK(dyn_counter != NULL && dyn_stats != NULL);
	for_each_possible_cpu(cpu) {
		CHECK_EQ(*per_cpu_ptr(dyn_counter, cpu), 0); /* zeroed */
		CHECK_EQ(per_cpu_ptr(dyn_stats, cpu)->rx, 0);
	}

	for (i = 0; i < THREADS; i++)
		CHECK(pthread_create(&t[i], NULL, worker, NULL) == 0);
	for (i = 0; i < THREADS; i++)
		CHECK(pthread_join(t[i], NULL) == 0);

	for_each_possible_cpu(cpu) {
		total += per_cpu(packets, cpu);
		rx += per_cpu(netstats, cpu).rx;
		dyn_total += *per_cpu_ptr(dyn_counter, cpu);
		tx += per_cpu_ptr(dyn_stats, cpu)->tx;
	}
	CHECK_EQ(total, THREADS * (ROUNDS + ROUNDS / 100));
	CHECK_EQ(rx, THREADS * ROUNDS);
	CHECK_EQ(dyn_total, 2UL * THREADS * ROUNDS);
	CHECK_EQ(tx, 3UL * THREADS * ROUNDS);

	/* get_cpu pins: the CPU does not change, and we are atomic meanwhile. */
	cpu = get_cpu();
	CHECK(cpu >= 0 && cpu < ncpus);
	CHECK(in_atomic() && !preemptible());
	CHECK_EQ(smp_processor_id(), cpu);
	CHECK(this_cpu_ptr(dyn_counter) == per_cpu_ptr(dyn_counter, cpu));
	__this_cpu_write(packets, 5);
	CHECK_EQ(__this_cpu_add_return(packets, 2), 7);
	CHECK_EQ(per_cpu(packets, cpu), 7);
	put_cpu();
	CHECK(!in_atomic());

	/* The other operations. */
	this_cpu_write(aligned_counter, 10);
	CHECK_EQ(this_cpu_xchg(aligned_counter, 11), 10);
	CHECK_EQ(this_cpu_cmpxchg(aligned_counter, 11, 12), 11);
	CHECK_EQ(this_cpu_read(aligned_counter), 12);
	CHECK_EQ(this_cpu_add_return(aligned_counter, 3), 15);
	CHECK_EQ(this_cpu_dec_return(aligned_counter), 14);
	this_cpu_sub(aligned_counter, 4);
	this_cpu_or(aligned_counter, 1);
	this_cpu_and(aligned_counter, ~0UL);
	CHECK_EQ(this_cpu_read(aligned_counter), 11);

	/* Out-of-range CPUs are reported. */
	CHECK(per_cpu_ptr(dyn_counter, ncpus) == NULL);
	CHECK(dmesg_contains("per_cpu_ptr: cpu 4 out of range"));

	/* Allocation limits and meminfo. */
	for (i = 0; i < NR_DYN; i++)
		CHECK((dyn[i] = __alloc_percpu(1024, 64)) != NULL);
	CHECK(kmem_proc_read("meminfo", meminfo, sizeof(meminfo)) > 0);
	CHECK(strstr(meminfo, "\nPercpu:") != NULL);
	for (i = 0; i < NR_DYN; i++)
		free_percpu(dyn[i]);
	CHECK(__alloc_percpu(PCPU_MIN_UNIT_SIZE + 1, 8) == NULL);
	CHECK(__alloc_percpu(64, 3) == NULL);
	free_percpu(NULL);
	free_percpu(dyn_counter);
	free_percpu(dyn_stats);

	printf("percpu: ok\n");
	return 0;
}
