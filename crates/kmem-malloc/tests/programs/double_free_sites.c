/* A double free under slub_debug=FZPU: the report's tracks name the
 * program's call sites (built with -rdynamic, so that the loader knows
 * main and release by name), not libkmalloc's. */
#include <stdio.h>
#include <stdlib.h>

__attribute__((noinline)) void release(char *p)
{
    free(p);
}

int main(void)
{
    char *volatile p = malloc(40);
    release(p);
    release(p); /* the bug */
    printf("program finished\n");
    return 0;
}
