/* SPDX-License-Identifier: GPL-2.0-only OR MIT */
/*
 * linux/smp.h - CPU ids (libkmem).
 *
 * CPUs are the machine's (nr_cpus= on the boot command line, default the
 * host's); a thread runs on the machine CPU its host CPU folds onto.
 * get_cpu() pins the caller to its CPU until put_cpu() (see
 * linux/preempt.h).
 */
#ifndef _KMEM_LINUX_SMP_H
#define _KMEM_LINUX_SMP_H

#include <linux/types.h>
#include <linux/preempt.h>

#ifdef __cplusplus
extern "C" {
#endif

int smp_processor_id(void);
int raw_smp_processor_id(void);
int get_cpu(void);
void put_cpu(void);
unsigned int kmem_nr_cpu_ids(void);

#ifdef __cplusplus
}
#endif

#define nr_cpu_ids kmem_nr_cpu_ids()
#define num_possible_cpus() kmem_nr_cpu_ids()
#define num_online_cpus() kmem_nr_cpu_ids()
#define num_present_cpus() kmem_nr_cpu_ids()
#define cpu_possible(cpu) ((unsigned int)(cpu) < kmem_nr_cpu_ids())
#define cpu_online(cpu) cpu_possible(cpu)
#define for_each_possible_cpu(cpu) \
	for ((cpu) = 0; (unsigned int)(cpu) < kmem_nr_cpu_ids(); (cpu)++)
#define for_each_online_cpu(cpu) for_each_possible_cpu(cpu)
#define for_each_present_cpu(cpu) for_each_possible_cpu(cpu)

#endif /* _KMEM_LINUX_SMP_H */
