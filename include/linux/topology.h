/* SPDX-License-Identifier: GPL-2.0-only OR MIT */
/*
 * linux/topology.h - NUMA nodes (libkmem). Machines booted with
 * numa=fake=N have N nodes; CPUs are spread over them.
 */
#ifndef _KMEM_LINUX_TOPOLOGY_H
#define _KMEM_LINUX_TOPOLOGY_H

#include <linux/types.h>
#include <linux/smp.h>

#ifndef NUMA_NO_NODE
#define NUMA_NO_NODE (-1)
#endif

#ifdef __cplusplus
extern "C" {
#endif

int numa_node_id(void);
int cpu_to_node(int cpu);
unsigned int kmem_nr_node_ids(void);

#ifdef __cplusplus
}
#endif

#define nr_node_ids kmem_nr_node_ids()
#define numa_mem_id() numa_node_id()

#endif /* _KMEM_LINUX_TOPOLOGY_H */
