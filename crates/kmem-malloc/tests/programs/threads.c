/* Thousands of threads: 2000 alive at once, each allocating and freeing
 * (some of it freed by another thread), then 10 waves of 500 short-lived
 * threads. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ALIVE 2000
static pthread_barrier_t barrier;
static char *handoff[ALIVE];

static void *alive(void *arg)
{
    long id = (long)arg;
    char *mine[16];
    for (int i = 0; i < 16; i++) {
        mine[i] = malloc((size_t)(id * 16 + i) % 3000 + 1);
        mine[i][0] = (char)id;
    }
    handoff[id] = malloc(100);
    snprintf(handoff[id], 100, "from %ld", id);
    pthread_barrier_wait(&barrier);
    /* Free the neighbour's handoff block: a cross-thread free. */
    long peer = (id + 1) % ALIVE;
    long ok = strtol(handoff[peer] + 5, NULL, 10) == peer;
    pthread_barrier_wait(&barrier);
    free(handoff[peer]);
    for (int i = 0; i < 16; i++) {
        ok &= mine[i][0] == (char)id;
        free(mine[i]);
    }
    return (void *)ok;
}

static void *brief(void *arg)
{
    char *p = malloc((size_t)(long)arg % 5000 + 1);
    memset(p, 1, (size_t)(long)arg % 5000 + 1);
    free(p);
    return NULL;
}

int main(void)
{
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 64 * 1024);
    pthread_barrier_init(&barrier, NULL, ALIVE);
    static pthread_t th[ALIVE];
    for (long i = 0; i < ALIVE; i++)
        if (pthread_create(&th[i], &attr, alive, (void *)i)) { printf("create failed\n"); return 1; }
    long good = 0;
    for (int i = 0; i < ALIVE; i++) {
        void *r;
        pthread_join(th[i], &r);
        good += (long)r;
    }
    for (int wave = 0; wave < 10; wave++) {
        for (long i = 0; i < 500; i++) pthread_create(&th[i], &attr, brief, (void *)(i + wave));
        for (int i = 0; i < 500; i++) pthread_join(th[i], NULL);
    }
    printf("%ld of %d threads saw their memory intact\n", good, ALIVE);
    return good != ALIVE;
}
