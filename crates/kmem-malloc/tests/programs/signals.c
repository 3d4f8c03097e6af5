/* Signals arriving while the program allocates must not break the
 * allocator (the handlers themselves do not allocate: malloc is not
 * async-signal-safe). An interval timer fires every 50 us and another
 * thread sends SIGUSR1 storms to the allocating threads. */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

static volatile sig_atomic_t ticks, usr;
static void on_alarm(int s) { (void)s; ticks++; }
static void on_usr1(int s) { (void)s; usr++; }

static int alloc_work(int seed)
{
    int bad = 0;
    for (int round = 0; round < 200; round++) {
        char *p[256];
        for (int i = 0; i < 256; i++) {
            size_t n = (size_t)((i + seed) * 131 + round) % 30000 + 1;
            p[i] = malloc(n);
            memset(p[i], (char)i, n < 64 ? n : 64);
        }
        for (int i = 0; i < 256; i++) {
            size_t n = (size_t)((i + seed) * 131 + round) % 30000 + 1;
            for (size_t j = 0; j < (n < 64 ? n : 64); j++) bad |= p[i][j] != (char)i;
            p[i] = realloc(p[i], n / 2 + 1);
            free(p[i]);
        }
    }
    return bad;
}

static void *worker(void *arg) { return (void *)(long)alloc_work((int)(long)arg); }

int main(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_alarm;
    sa.sa_flags = SA_RESTART;
    sigaction(SIGALRM, &sa, NULL);
    sa.sa_handler = on_usr1;
    sigaction(SIGUSR1, &sa, NULL);
    struct itimerval it = { { 0, 50 }, { 0, 50 } };
    setitimer(ITIMER_REAL, &it, NULL);

    pthread_t th[4];
    for (long i = 0; i < 4; i++) pthread_create(&th[i], NULL, worker, (void *)i);
    for (int k = 0; k < 20000; k++) pthread_kill(th[k % 4], SIGUSR1);
    int bad = alloc_work(99);
    for (int i = 0; i < 4; i++) {
        void *r;
        pthread_join(th[i], &r);
        bad |= (int)(long)r;
    }
    struct itimerval off = { { 0, 0 }, { 0, 0 } };
    setitimer(ITIMER_REAL, &off, NULL);
    printf("signals delivered: %s, allocations intact: %s\n",
           ticks > 0 && usr > 0 ? "yes" : "no", bad ? "no" : "yes");
    return bad;
}
