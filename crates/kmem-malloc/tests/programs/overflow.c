/* A heap bug for slub_debug to find: 40 bytes written into a 32-byte
 * block (over the red zone after it), then the block is freed. The writes
 * are volatile so the compiler keeps them. */
#include <stdio.h>
#include <stdlib.h>

int main(void)
{
    char *p = malloc(32);
    volatile char *v = p;
    for (int i = 0; i < 40; i++)
        v[i] = 'x';
    free(p);
    printf("program finished\n");
    return 0;
}
