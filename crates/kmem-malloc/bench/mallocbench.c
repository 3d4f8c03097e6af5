/* Classic malloc workloads, for comparing allocators through LD_PRELOAD
 * (scripts/bench-malloc.sh runs it under glibc, libkmalloc, mimalloc and
 * jemalloc).
 *
 *   mallocbench WORKLOAD [N] [THREADS]
 *
 * Prints "WORKLOAD seconds peak-RSS-kB" (wall time of the timed part, then
 * the process's VmHWM, -1 if /proc is missing). Workloads:
 *
 *   pair      malloc(64) + free, N times, one thread; bench_pair() is the
 *             loop alone (for callgrind --toggle-collect=bench_pair)
 *   larson    server-style: each thread keeps 1000 blocks of 16..1024
 *             bytes and replaces random ones, N times; every 1/8 of the run
 *             the threads pass their blocks to the next thread, whose
 *             replacements then free memory another thread allocated
 *   mixed     one thread keeps 1000 blocks of 16..256 bytes and replaces
 *             random ones, N times: every allocation and free picks one of
 *             seven size classes at random (what larson does within a
 *             thread, without the threads)
 *   prodcons  THREADS/2 producer/consumer pairs: the producer allocates
 *             16..512-byte blocks and hands them through a ring to the
 *             consumer, which frees them (every free is cross-thread)
 *   falseshare each thread allocates 8-byte objects and writes each 1000
 *             times before freeing it: objects of different threads on one
 *             cache line would slow this down (Hoard's cache-thrash)
 *   frag      fragmentation-heavy symbolic program: builds lists and trees of
 *             8..200-byte nodes, keeps every 10th, frees the rest; N rounds
 *   large     very large blocks: allocates 1..64 MiB blocks, touches every
 *             page, frees them, N times
 *
 * Deterministic: every thread uses its own xorshift generator.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static inline uint64_t xorshift(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

/* ---- pair ---------------------------------------------------------------- */

__attribute__((noinline)) void bench_pair(long n)
{
    for (long i = 0; i < n; i++) {
        void *volatile p = malloc(64);
        free(p);
    }
}

/* ---- larson -------------------------------------------------------------- */

#define LARSON_SLOTS 1000
static long larson_n;
static int nthreads;
static void **larson_slots[64];
static pthread_barrier_t barrier;

static void *larson_thread(void *arg)
{
    long id = (long)arg;
    uint64_t seed = 0x9e3779b97f4a7c15ull * (id + 1);
    for (int phase = 0; phase < 8; phase++) {
        /* Work on the blocks of thread (id + phase) % n. */
        void **slots = larson_slots[(id + phase) % nthreads];
        for (long i = 0; i < larson_n / 8; i++) {
            int k = xorshift(&seed) % LARSON_SLOTS;
            free(slots[k]);
            size_t sz = 16 + xorshift(&seed) % 1009;
            slots[k] = malloc(sz);
            *(char *)slots[k] = (char)i;
        }
        pthread_barrier_wait(&barrier);
    }
    return NULL;
}

static void larson(long n)
{
    larson_n = n;
    for (int t = 0; t < nthreads; t++) {
        larson_slots[t] = malloc(LARSON_SLOTS * sizeof(void *));
        uint64_t seed = 12345 + t;
        for (int k = 0; k < LARSON_SLOTS; k++) larson_slots[t][k] = malloc(16 + xorshift(&seed) % 1009);
    }
    pthread_barrier_init(&barrier, NULL, nthreads);
    pthread_t th[64];
    for (long t = 0; t < nthreads; t++) pthread_create(&th[t], NULL, larson_thread, (void *)t);
    for (int t = 0; t < nthreads; t++) pthread_join(th[t], NULL);
    for (int t = 0; t < nthreads; t++) {
        for (int k = 0; k < LARSON_SLOTS; k++) free(larson_slots[t][k]);
        free(larson_slots[t]);
    }
}

/* ---- mixed sizes on one thread ------------------------------------------- */

static void mixed(long n)
{
    void *slots[LARSON_SLOTS];
    uint64_t seed = 12345;
    for (int k = 0; k < LARSON_SLOTS; k++) slots[k] = malloc(16 + xorshift(&seed) % 241);
    for (long i = 0; i < n; i++) {
        int k = xorshift(&seed) % LARSON_SLOTS;
        free(slots[k]);
        slots[k] = malloc(16 + xorshift(&seed) % 241);
        *(char *)slots[k] = (char)i;
    }
    for (int k = 0; k < LARSON_SLOTS; k++) free(slots[k]);
}

/* ---- producer/consumer --------------------------------------------------- */

#define RING 1024
struct ring {
    void *slot[RING];
    _Alignas(64) volatile long head;
    _Alignas(64) volatile long tail;
    long n;
};

static void *producer(void *arg)
{
    struct ring *r = arg;
    uint64_t seed = (uintptr_t)r | 1;
    for (long i = 0; i < r->n; i++) {
        void *p = malloc(16 + xorshift(&seed) % 497);
        *(long *)p = i;
        while (r->head - __atomic_load_n(&r->tail, __ATOMIC_ACQUIRE) >= RING) sched_yield();
        r->slot[r->head % RING] = p;
        __atomic_store_n(&r->head, r->head + 1, __ATOMIC_RELEASE);
    }
    return NULL;
}

static void *consumer(void *arg)
{
    struct ring *r = arg;
    for (long i = 0; i < r->n; i++) {
        while (__atomic_load_n(&r->head, __ATOMIC_ACQUIRE) == r->tail) sched_yield();
        void *p = r->slot[r->tail % RING];
        if (*(long *)p != i) abort();
        free(p);
        __atomic_store_n(&r->tail, r->tail + 1, __ATOMIC_RELEASE);
    }
    return NULL;
}

static void prodcons(long n)
{
    int pairs = nthreads / 2 > 0 ? nthreads / 2 : 1;
    struct ring *rings = aligned_alloc(64, sizeof(struct ring) * pairs);
    pthread_t th[64];
    for (int i = 0; i < pairs; i++) {
        memset(&rings[i], 0, sizeof rings[i]);
        rings[i].n = n;
        pthread_create(&th[2 * i], NULL, producer, &rings[i]);
        pthread_create(&th[2 * i + 1], NULL, consumer, &rings[i]);
    }
    for (int i = 0; i < 2 * pairs; i++) pthread_join(th[i], NULL);
    free(rings);
}

/* ---- false sharing ------------------------------------------------------- */

static long fs_n;

static void *falseshare_thread(void *arg)
{
    (void)arg;
    for (long i = 0; i < fs_n; i++) {
        volatile char *p = malloc(8);
        for (int k = 0; k < 1000; k++) p[k & 7]++;
        free((void *)p);
    }
    return NULL;
}

static void falseshare(long n)
{
    fs_n = n;
    pthread_t th[64];
    for (long t = 0; t < nthreads; t++) pthread_create(&th[t], NULL, falseshare_thread, (void *)t);
    for (int t = 0; t < nthreads; t++) pthread_join(th[t], NULL);
}

/* ---- fragmentation-heavy symbolic program -------------------------------- */

struct node {
    struct node *left, *right;
    long value;
    char name[];
};

static struct node *build(uint64_t *seed, int depth)
{
    if (depth == 0) return NULL;
    size_t extra = xorshift(seed) % 176;
    struct node *n = malloc(sizeof *n + extra + 1);
    n->value = (long)(xorshift(seed) % 1000);
    memset(n->name, 'a' + (int)(n->value % 26), extra);
    n->name[extra] = 0;
    n->left = build(seed, depth - 1);
    n->right = build(seed, depth - 1);
    return n;
}

static long walk_free(struct node *n, long *kept, struct node ***keep, long *nkeep, long cap)
{
    if (!n) return 0;
    long s = n->value + walk_free(n->left, kept, keep, nkeep, cap) + walk_free(n->right, kept, keep, nkeep, cap);
    if ((n->value % 10) == 0 && *nkeep < cap) {
        n->left = n->right = NULL;
        (*keep)[(*nkeep)++] = n;
        (*kept)++;
    } else {
        free(n);
    }
    return s;
}

static void frag(long rounds)
{
    uint64_t seed = 42;
    long cap = rounds * 1200, nkeep = 0, kept = 0, sum = 0;
    struct node **keep = malloc(sizeof(struct node *) * cap);
    for (long r = 0; r < rounds; r++) {
        struct node *t = build(&seed, 12 + (int)(r % 3));
        sum += walk_free(t, &kept, &keep, &nkeep, cap);
        /* Strings of growing lists, realloc'ed as they grow. */
        char *s = NULL;
        size_t len = 0;
        for (int i = 0; i < 500; i++) {
            s = realloc(s, len + 17);
            memcpy(s + len, "symbol-0123456789", 17);
            len += 17;
        }
        free(s);
        /* Drop the older half of what was kept. */
        if (r % 16 == 15) {
            long half = nkeep / 2;
            for (long i = 0; i < half; i++) free(keep[i]);
            memmove(keep, keep + half, sizeof(struct node *) * (nkeep - half));
            nkeep -= half;
        }
    }
    for (long i = 0; i < nkeep; i++) free(keep[i]);
    free(keep);
    if (sum == 42) printf("unlikely\n");
}

/* ---- very large blocks --------------------------------------------------- */

static void large(long n)
{
    uint64_t seed = 7;
    for (long i = 0; i < n; i++) {
        size_t sz = ((size_t)1 + xorshift(&seed) % 64) << 20;
        volatile char *p = malloc(sz);
        for (size_t off = 0; off < sz; off += 4096) p[off] = (char)off;
        free((void *)p);
    }
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: mallocbench pair|larson|mixed|prodcons|falseshare|frag|large [N] [THREADS]\n");
        return 2;
    }
    const char *w = argv[1];
    long n = argc > 2 ? atol(argv[2]) : 0;
    nthreads = argc > 3 ? atoi(argv[3]) : 2;
    if (nthreads < 1 || nthreads > 64) nthreads = 2;
    /* Warm up (boots libkmalloc's machine, fills thread caches). */
    free(malloc(64));
    double t0 = now();
    if (!strcmp(w, "pair")) bench_pair(n ? n : 20000000);
    else if (!strcmp(w, "larson")) larson(n ? n : 4000000);
    else if (!strcmp(w, "mixed")) mixed(n ? n : 4000000);
    else if (!strcmp(w, "prodcons")) prodcons(n ? n : 2000000);
    else if (!strcmp(w, "falseshare")) falseshare(n ? n : 200000);
    else if (!strcmp(w, "frag")) frag(n ? n : 160);
    else if (!strcmp(w, "large")) large(n ? n : 200);
    else {
        fprintf(stderr, "unknown workload %s\n", w);
        return 2;
    }
    double secs = now() - t0;
    /* The process's own peak RSS: a parent's wait4 would count what the
     * process held before its exec too (Linux keeps the larger maxrss). */
    long hwm_kb = -1;
    FILE *st = fopen("/proc/self/status", "r");
    if (st) {
        char line[256];
        while (fgets(line, sizeof line, st))
            if (!strncmp(line, "VmHWM:", 6)) hwm_kb = atol(line + 6);
        fclose(st);
    }
    printf("%s %.6f %ld\n", w, secs, hwm_kb);
    return 0;
}
