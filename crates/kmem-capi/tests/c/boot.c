/*
 * kmem.h: a program boots its own machine (before anything allocates),
 * a second boot is refused, /proc files are read with snprintf semantics,
 * and unknown names are -ENOENT.
 */
#include <kmem.h>
#include <linux/slab.h>
#include <linux/mm.h>
#include <linux/smp.h>
#include <errno.h>
#include "check.h"

int main(void)
{
	static char buf[1 << 16];
	char small[16];
	ssize_t n, m;
	long total_kb;
	char *line;
	void *p;

	CHECK(!kmem_booted());
	CHECK_EQ(kmem_boot("quiet mem=128M nr_cpus=3 numa=fake=2 slub_debug=FZPU"), 0);
	CHECK(kmem_booted());
	CHECK_EQ(kmem_boot("mem=64M"), -EBUSY);
	CHECK_EQ(nr_cpu_ids, 3);
	CHECK_EQ(nr_node_ids, 2);

	/* The machine is the one asked for, not KMEM_CMDLINE's. */
	n = kmem_proc_read("meminfo", buf, sizeof(buf));
	CHECK(n > 0 && (size_t)n == strlen(buf));
	line = strstr(buf, "MemTotal:");
	CHECK(line != NULL && sscanf(line, "MemTotal: %ld kB", &total_kb) == 1);
	CHECK(total_kb > 120 * 1024 && total_kb <= 128 * 1024);
	CHECK(kmem_proc_read("/proc/buddyinfo", buf, sizeof(buf)) > 0);
	CHECK(strstr(buf, "Node 1, zone") != NULL);

	/* snprintf semantics: truncated, NUL-terminated, full length returned. */
	m = kmem_proc_read("meminfo", small, sizeof(small));
	CHECK_EQ(m, n);
	CHECK_EQ(strlen(small), sizeof(small) - 1);
	CHECK(strncmp(small, "MemTotal:", 9) == 0);
	CHECK_EQ(kmem_proc_read("meminfo", NULL, 0), n);
	CHECK_EQ(kmem_proc_read("nosuchfile", buf, sizeof(buf)), -ENOENT);

	/* Every /proc file the machine has. */
	CHECK(kmem_proc_read("slabinfo", buf, sizeof(buf)) > 0);
	CHECK(kmem_proc_read("pagetypeinfo", buf, sizeof(buf)) > 0);
	CHECK(kmem_proc_read("zoneinfo", buf, sizeof(buf)) > 0);
	CHECK(kmem_proc_read("vmstat", buf, sizeof(buf)) > 0);
	CHECK(kmem_proc_read("vmallocinfo", buf, sizeof(buf)) >= 0);
	CHECK(kmem_proc_read("percpu_stats", buf, sizeof(buf)) > 0);
	CHECK(kmem_proc_read("memblock/memory", buf, sizeof(buf)) > 0);
	CHECK(kmem_proc_read("memblock/reserved", buf, sizeof(buf)) > 0);

	/* slub_debug=FZPU from our command line: a heap overflow is caught. */
	p = kmalloc(24, GFP_KERNEL);
	CHECK(p != NULL);
	((char *)p)[ksize(p)] = 'x'; /* one byte into the red zone */
	kfree(p);
	CHECK(dmesg_contains("Redzone overwritten"));

	/* The log, through kmem_dmesg and kmem_printk. */
	kmem_printk("hello from C");
	CHECK(dmesg_contains("hello from C"));
	CHECK(kmem_dmesg(NULL, 0) > 0);

	printf("boot: ok\n");
	return 0;
}
