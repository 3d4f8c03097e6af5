/* The C allocator's contract, as any program relies on it. Prints one line
 * per check; the same lines must come out under glibc and libkmalloc. */
#define _GNU_SOURCE
#include <errno.h>
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int failures;
#define CHECK(cond) do { \
        if (cond) printf("ok   %s\n", #cond); \
        else { printf("FAIL %s (line %d)\n", #cond, __LINE__); failures++; } \
    } while (0)

static int aligned(void *p, size_t a) { return ((uintptr_t)p & (a - 1)) == 0; }

static long vmrss_kb(void)
{
    char line[256];
    long kb = -1;
    FILE *f = fopen("/proc/self/status", "r");
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "VmRSS:", 6)) kb = atol(line + 6);
    if (f) fclose(f);
    return kb;
}

int main(void)
{
    /* A big calloc costs memory as it is used, as fresh mmap memory does:
     * 3 MiB (a large kmalloc) and 24 MiB (vmalloc), then one byte written
     * per MiB. First, while the RAM is fresh. */
    long before = vmrss_kb();
    char *c3 = calloc(1, 3 << 20), *c24 = calloc(1, 24 << 20);
    for (size_t off = 0; off < (24u << 20); off += 1 << 20) c24[off] = 1;
    for (size_t off = 0; off < (3u << 20); off += 1 << 20) c3[off] = 1;
    long grown = vmrss_kb() - before;
    CHECK(c3 && c24 && grown < 4096);
    free(c3);
    free(c24);

    /* Every size up to 64 KiB: aligned to 16 (8 for tiny ones), writable, distinct. */
    int bad_align = 0, bad_usable = 0;
    for (size_t n = 1; n <= 65536; n += (n < 512 ? 1 : n / 7)) {
        char *p = malloc(n);
        if (!p || !aligned(p, n <= 8 ? 8 : 16)) bad_align++;
        if (p && malloc_usable_size(p) < n) bad_usable++;
        if (p) { memset(p, 0xa5, n); free(p); }
    }
    CHECK(bad_align == 0);
    CHECK(bad_usable == 0);

    /* malloc(0) gives a unique pointer that can be freed. */
    void *z1 = malloc(0), *z2 = malloc(0);
    CHECK(z1 != NULL && z2 != NULL && z1 != z2);
    free(z1); free(z2);
    free(NULL);

    /* calloc zeroes, also after the memory was dirtied and freed. */
    for (int round = 0; round < 2; round++) {
        size_t sizes[] = { 24, 1000, 5000, 100000, 6 << 20 };
        int nonzero = 0;
        for (unsigned i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
            unsigned char *p = calloc(1, sizes[i]);
            for (size_t j = 0; j < sizes[i]; j++) nonzero |= p[j];
            memset(p, 0xff, sizes[i]);
            free(p);
        }
        CHECK(nonzero == 0);
    }

    /* Overflow and impossible sizes: NULL with ENOMEM (volatile: the
     * compiler must not see the sizes). */
    volatile size_t half = SIZE_MAX / 2, almost = SIZE_MAX - 4096, exa = (size_t)1 << 60;
    volatile size_t quarter = SIZE_MAX / 4;
    errno = 0;
    CHECK(calloc(half, 3) == NULL && errno == ENOMEM);
    errno = 0;
    CHECK(malloc(almost) == NULL && errno == ENOMEM);
    errno = 0;
    CHECK(malloc(exa) == NULL && errno == ENOMEM);
    char *ra = malloc(32);
    strcpy(ra, "kept");
    errno = 0;
    char *rb = reallocarray(ra, quarter, 8);
    CHECK(rb == NULL && errno == ENOMEM);
    if (rb == NULL) {
        CHECK(strcmp(ra, "kept") == 0); /* untouched by the failed reallocarray */
        free(ra);
    } else {
        free(rb);
    }

    /* posix_memalign: EINVAL for bad alignments, errno untouched. */
    void *pm = (void *)1;
    errno = 1234;
    CHECK(posix_memalign(&pm, 24, 100) == EINVAL && pm == (void *)1);
    CHECK(posix_memalign(&pm, 4, 100) == EINVAL);
    CHECK(errno == 1234);
    size_t aligns[] = { 8, 16, 32, 64, 256, 4096, 65536, 1 << 21, 1 << 22, 1 << 23 };
    int bad = 0;
    for (unsigned i = 0; i < sizeof aligns / sizeof aligns[0]; i++) {
        size_t sizes[] = { 1, 100, 5000, 100000, 5 << 20 };
        for (unsigned j = 0; j < sizeof sizes / sizeof sizes[0]; j++) {
            void *p = NULL;
            if (posix_memalign(&p, aligns[i], sizes[j]) != 0 || !aligned(p, aligns[i])) bad++;
            else { memset(p, 1, sizes[j]); free(p); }
            p = memalign(aligns[i], sizes[j]);
            if (!p || !aligned(p, aligns[i])) bad++;
            free(p);
            p = aligned_alloc(aligns[i], sizes[j]);
            if (!p || !aligned(p, aligns[i])) bad++;
            free(p);
        }
    }
    CHECK(bad == 0);
    long page = sysconf(_SC_PAGESIZE);
    void *v = valloc(10);
    CHECK(v && aligned(v, page));
    free(v);
    v = pvalloc(page + 1);
    CHECK(v && aligned(v, page) && malloc_usable_size(v) >= 2 * (size_t)page);
    free(v);

    /* realloc keeps the contents through every size range, both ways. */
    size_t steps[] = { 1, 8, 17, 100, 200, 1000, 8192, 8193, 70000, 1 << 20, 5 << 20, 40 << 20, 3000, 5 };
    unsigned char *r = NULL;
    size_t have = 0;
    int lost = 0;
    for (unsigned i = 0; i < sizeof steps / sizeof steps[0]; i++) {
        r = realloc(r, steps[i]);
        size_t keep = have < steps[i] ? have : steps[i];
        for (size_t j = 0; j < keep; j++) lost |= r[j] != (unsigned char)(j * 7);
        for (size_t j = 0; j < steps[i]; j++) r[j] = (unsigned char)(j * 7);
        have = steps[i];
    }
    CHECK(lost == 0);
    free(r);

    /* Growing one byte at a time stays in place while the usable size allows. */
    char *g = malloc(1);
    size_t moves = 0;
    for (size_t n = 2; n <= 200000; n++) {
        char *h = realloc(g, n);
        if (h != g) moves++;
        g = h;
        g[n - 1] = 1;
    }
    CHECK(moves < 64);
    free(g);

    /* A block keeps its place up to its usable size and when shrunk a
     * little; shrunk more, it keeps its contents. */
    char *q = malloc(100);
    size_t qu = malloc_usable_size(q);
    memset(q, 'q', qu);
    CHECK(qu >= 100 && realloc(q, qu) == q && realloc(q, qu / 2 + 1) == q);
    char *q2 = realloc(q, 20);
    CHECK(q2 != NULL && memcmp(q2, "qqqqqqqqqqqqqqqqqqqq", 20) == 0);
    free(q2);

    /* realloc(p, 0) frees and returns NULL (glibc); realloc(NULL, n) is malloc. */
    CHECK(realloc(malloc(10), 0) == NULL);
    void *rn = realloc(NULL, 40);
    CHECK(rn != NULL);
    free(rn);

    /* Huge blocks: usable and returned. */
    for (int i = 0; i < 20; i++) {
        char *h = malloc((size_t)(16 + i) << 20);
        CHECK(h != NULL);
        h[0] = 1; h[((size_t)(16 + i) << 20) - 1] = 2;
        free(h);
    }

    printf("%s\n", failures ? "FAILED" : "all passed");
    return failures != 0;
}
