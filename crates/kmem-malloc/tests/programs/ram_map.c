/* Prints the size of the default machine's RAM in MiB, the end of its
 * physical address space, which tells its firmware map: the RAM memfd's
 * mapping and the private lowmem mapped right below it (an anonymous
 * mapping), whose size it prints too. With private lowmem the memfd is made
 * at the first use of HighMem: a block above 4 MiB, allocated and freed
 * first (its alias is gone by the time the maps are read). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(void)
{
    void *volatile p = malloc(64);
    void *volatile big = malloc(8 << 20);
    free(big);
    char line[512];
    unsigned long long prev_a = 0, prev_b = 0, shared = 0, private = 0;
    int prev_anon = 0;
    FILE *f = fopen("/proc/self/maps", "r");
    while (f && fgets(line, sizeof line, f)) {
        unsigned long long a, b, off, inode;
        char perms[8], dev[16];
        if (sscanf(line, "%llx-%llx %7s %llx %15s %llu", &a, &b, perms, &off, dev, &inode) != 6) continue;
        if (strstr(line, "memfd:kmem-ram")) {
            shared += b - a;
            if (prev_anon && prev_b == a) private = prev_b - prev_a;
        }
        prev_a = a;
        prev_b = b;
        prev_anon = inode == 0 && !strcmp(perms, "rw-p");
    }
    if (f) fclose(f);
    free(p);
    printf("ram %llu MiB, private %llu MiB\n", (shared + private) >> 20, private >> 20);
    return 0;
}
