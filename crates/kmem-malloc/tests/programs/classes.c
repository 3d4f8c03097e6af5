/* malloc's size classes under libkmalloc: kmalloc's (powers of two, 96 and
 * 192) and malloc's own middle classes above 256 bytes (1.5 times a power
 * of two up to 1 KiB, then 1.25, 1.5 and 1.75 times); a block that realloc
 * grows takes kmalloc's class. */
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>

int main(void)
{
    void *volatile boot = malloc(1); /* the first malloc boots the machine */
    free(boot);
    size_t sizes[] = {16,   100,  200,  257,  300,  384,  385,  700,  769,  1025, 1100, 1281,
                      1537, 1793, 2100, 2561, 3073, 3585, 4104, 5121, 6144, 6145, 7169, 8192};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        void *p = malloc(sizes[i]);
        printf("%zu:%zu ", sizes[i], malloc_usable_size(p));
        free(p);
    }
    char *q = malloc(300);
    q = realloc(q, 400);
    printf("\nrealloc 300 -> 400: %zu\n", malloc_usable_size(q));
    free(q);
    return 0;
}
