/* malloc's size classes under libkmalloc: kmalloc's (powers of two, 96 and
 * 192) and malloc's own middle classes above 256 bytes (1.5 times a power
 * of two up to 1 KiB, then 1.25, 1.5 and 1.75 times); a block that realloc
 * grows takes kmalloc's class. */
#include <malloc.h>
#include <stdint.h>
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
    /* A block stays while the new size fits its class and is more than
     * half of it; below half, it moves to the smaller class. */
    char *r = malloc(100);
    uintptr_t at = (uintptr_t)r;
    r = realloc(r, 128);
    int kept128 = (uintptr_t)r == at;
    r = realloc(r, 65);
    int kept65 = (uintptr_t)r == at;
    r = realloc(r, 64);
    printf("realloc 100 -> 128 -> 65 -> 64: %s %s %s %zu\n", kept128 ? "kept" : "moved",
           kept65 ? "kept" : "moved", (uintptr_t)r == at ? "kept" : "moved", malloc_usable_size(r));
    free(r);
    return 0;
}
