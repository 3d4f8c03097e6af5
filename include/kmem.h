/* SPDX-License-Identifier: GPL-2.0-only OR MIT */
/*
 * kmem.h - what libkmem has and the kernel does not: booting the machine the
 * C API runs on, reading its /proc files and its log, simulated interrupt
 * context, and a check that every page came back.
 *
 * Every libkmem function runs on one machine per process: the one booted
 * with kmem_boot() before anything else allocated, or else the default
 * machine, booted on first use from the KMEM_CMDLINE environment variable
 * (kernel-style boot parameters, e.g. "mem=256M nr_cpus=4 slub_debug=FZPU").
 *
 * Reading functions have snprintf semantics: at most size - 1 bytes and a
 * NUL are written, and the full length of the text is returned, so
 * kmem_proc_read(name, NULL, 0) + 1 is the buffer size needed.
 */
#ifndef _KMEM_KMEM_H
#define _KMEM_KMEM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Boot the machine from a command line: 0, -EBUSY if a machine is already
 * up (kmem_boot() must come before the first allocation), -EINVAL for a
 * command line that cannot boot, -ENOMEM if the host refused the memory. */
int kmem_boot(const char *cmdline);
/* Whether the machine is up. */
bool kmem_booted(void);

/* The text of /proc/<name>: slabinfo, buddyinfo, pagetypeinfo, zoneinfo,
 * meminfo, vmstat, vmallocinfo, percpu_stats, memblock/memory,
 * memblock/reserved (a leading "/proc/" is accepted). -ENOENT if unknown. */
ssize_t kmem_proc_read(const char *name, char *buf, size_t size);
/* The machine's kernel log. */
ssize_t kmem_dmesg(char *buf, size_t size);
/* Append a line to the kernel log. */
void kmem_printk(const char *msg);
/* Kernel warnings (WARN) printed since boot. */
unsigned long kmem_warnings(void);

/* Call fn(arg) in simulated hardirq / softirq context on the current CPU:
 * in_interrupt() is true, and a sleeping allocation that would have to wait
 * (the slab slow path, reclaim) is reported ("BUG: sleeping function called
 * from invalid context", once per call site) and does not sleep: it takes
 * free pages only, and fails if there are none - use GFP_ATOMIC there, as in
 * an interrupt handler. One the per-CPU fast
 * paths serve at once is not checked (the kernel checks every one only with
 * CONFIG_DEBUG_ATOMIC_SLEEP). */
void kmem_run_in_hardirq(void (*fn)(void *), void *arg);
void kmem_run_in_softirq(void (*fn)(void *), void *arg);

/* Give back every slab cache's empty slabs (CPU slabs too), purge lazily
 * freed vmalloc areas, release empty per-CPU chunks and drain the per-CPU
 * page lists: afterwards nr_free_pages() counts all memory not in use. */
void kmem_drain(void);
/* kmem_drain(), then compare the buddy free lists with their state at boot:
 * true if every page came back. Otherwise the differences are written to
 * why (snprintf semantics; why may be NULL). Subsystems used for the first
 * time may keep some memory (caches of their records), as in the kernel:
 * compare nr_free_pages() around a second round of work in that case. */
bool kmem_pages_all_free(char *why, size_t size);

/* Device memory for ioremap() (asm/io.h): make [phys, phys + size) the
 * contents of fd from offset (a memfd_create() standing for a device's
 * registers, or a device file such as a PCI BAR's resource0), as a PCI core
 * does when it finds a BAR; the range shows in /proc/iomem under name. All
 * numbers page-aligned, the range free in the memory map (the PCI hole below
 * 4 GiB is the usual place). 0, -EINVAL, -EBUSY or -ENOMEM. */
int kmem_register_iomem(const char *name, uint64_t phys, size_t size, int fd, off_t offset);

#ifdef __cplusplus
}
#endif

#endif /* _KMEM_KMEM_H */
