/* A heap bug inside the slab object: 2 bytes written past malloc(100),
 * which kmalloc-128's object still holds. slub_debug=FZPU (with U, kmalloc
 * remembers the size asked for) finds it in the "kmalloc Redzone"; the
 * whole usable size (malloc_usable_size) and a realloc'd block's new bytes
 * are the program's and are no bug. */
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(void)
{
    char *volatile p = malloc(100);
    memset(p, 'a', 100);
    p[100] = 'x'; /* the bug */
    p[101] = 'x';
    free(p);
    char *volatile q = malloc(100);
    size_t usable = malloc_usable_size(q);
    memset(q, 'y', usable);
    free(q);
    char *volatile r = malloc(10);
    r = realloc(r, 20);
    memset(r, 'z', 20);
    free(r);
    printf("program finished\n");
    return 0;
}
