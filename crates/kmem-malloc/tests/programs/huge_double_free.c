/* A double free of a block above 4 MiB (a vmalloc area): libkmalloc
 * reports it (vfree's warning) and the program goes on; glibc aborts. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(void)
{
    char *p = malloc(6 << 20);
    if (!p)
        return 1;
    memset(p, 1, 6 << 20);
    free(p);
    free(p); /* the bug */
    /* The allocator still works. */
    char *q = malloc(6 << 20);
    if (!q)
        return 1;
    memset(q, 2, 6 << 20);
    printf("q[0] %d, q[last] %d\n", q[0], q[(6 << 20) - 1]);
    free(q);
    printf("program finished\n");
    return 0;
}
