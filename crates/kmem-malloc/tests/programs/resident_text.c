/* How much of libkmalloc's code a small program keeps resident: after a
 * malloc/free loop, counts the present pages of the library's executable
 * mapping through /proc/self/pagemap and prints "resident R of N pages",
 * then "read-only R of N pages" for its first read-only mapping (the one
 * at file offset 0). Given ranges of the library as triples of
 * arguments, LABEL BEGIN END (hexadecimal addresses relative to its load
 * base, e.g. `init` with `__kmem_init_begin` and `__kmem_init_end`), it
 * also prints "LABEL R of N pages" for each range. Last, "stack S kB":
 * the main thread's resident stack. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Whether the page at `va` is present. */
static int present(int pagemap, unsigned long va, long page)
{
    uint64_t entry;
    if (pread(pagemap, &entry, 8, (off_t)(va / page) * 8) != 8) {
        perror("pagemap");
        exit(1);
    }
    return (entry >> 63) & 1;
}

int main(int argc, char **argv)
{
    for (int i = 0; i < 100000; i++) {
        char *p = malloc(64 + i % 512);
        if (!p)
            return 1;
        *(volatile char *)p = 1;
        free(p);
    }
    long page = sysconf(_SC_PAGESIZE);
    FILE *maps = fopen("/proc/self/maps", "r");
    int pagemap = open("/proc/self/pagemap", O_RDONLY);
    if (!maps || pagemap < 0) {
        perror("/proc/self");
        return 1;
    }
    char line[4096];
    long resident = 0, pages = 0, ro_resident = 0, ro_pages = 0;
    while (fgets(line, sizeof line, maps)) {
        unsigned long start, end, offset;
        char perms[5];
        if (sscanf(line, "%lx-%lx %4s %lx", &start, &end, perms, &offset) != 4)
            continue;
        if (!strstr(line, "/libkmalloc.so"))
            continue;
        int code = !strcmp(perms, "r-xp");
        /* The first read-only mapping: the dynamic linker's tables and .rodata. */
        int ro = !strcmp(perms, "r--p") && offset == 0;
        if (!code && !ro)
            continue;
        for (unsigned long va = start; va < end; va += page) {
            int p = present(pagemap, va, page);
            if (code) {
                pages++;
                resident += p;
            } else {
                ro_pages++;
                ro_resident += p;
            }
        }
    }
    printf("resident %ld of %ld pages\n", resident, pages);
    printf("read-only %ld of %ld pages\n", ro_resident, ro_pages);
    Dl_info info;
    if (argc > 1 && (!dladdr((void *)malloc, &info) || !info.dli_fbase)) {
        fprintf(stderr, "no load base for malloc\n");
        return 1;
    }
    for (int i = 1; i + 2 < argc; i += 3) {
        unsigned long base = (unsigned long)info.dli_fbase;
        unsigned long begin = strtoul(argv[i + 1], NULL, 16), end = strtoul(argv[i + 2], NULL, 16);
        long in = 0, in_pages = 0;
        for (unsigned long va = base + (begin & -page); va < base + end; va += page) {
            in_pages++;
            in += present(pagemap, va, page);
        }
        printf("%s %ld of %ld pages\n", argv[i], in, in_pages);
    }
    /* The main thread's resident stack: the boot of the default machine
     * runs on it, and every page a frame touched stays resident. */
    FILE *smaps = fopen("/proc/self/smaps", "r");
    if (!smaps) {
        perror("/proc/self/smaps");
        return 1;
    }
    int in_stack = 0;
    while (fgets(line, sizeof line, smaps)) {
        unsigned long start, end;
        if (sscanf(line, "%lx-%lx ", &start, &end) == 2)
            in_stack = strstr(line, "[stack]") != NULL;
        else if (in_stack && !strncmp(line, "Rss:", 4))
            printf("stack %ld kB\n", atol(line + 4));
    }
    return 0;
}
