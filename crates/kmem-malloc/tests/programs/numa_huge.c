/* Blocks above 4 MiB on every CPU of a machine with fake NUMA nodes
 * (KMEM_CMDLINE=numa=fake=N): vmalloc maps HighMem pages only (lowmem is
 * private), and a node's own lowmem comes before another node's HighMem in
 * its zonelist, so on a CPU of a node with little HighMem such a malloc used
 * to fail with ENOMEM. Prints one line per CPU. */
#define _GNU_SOURCE
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int main(void)
{
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    for (long c = 0; c < cpus && c < 4; c++) {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(c, &set);
        if (sched_setaffinity(0, sizeof set, &set) != 0)
            continue;
        int ok = 1;
        size_t sizes[] = {(4 << 20) + 1, 64 << 20, 256 << 20};
        for (int i = 0; i < 3; i++) {
            char *p = malloc(sizes[i]);
            ok &= p != NULL;
            if (p) {
                memset(p, 1, sizes[i]);
                free(p);
            }
        }
        printf("cpu %ld %s\n", c, ok ? "ok" : "FAILED");
    }
    return 0;
}
