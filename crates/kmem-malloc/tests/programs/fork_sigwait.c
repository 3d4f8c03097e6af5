/* A daemon's signal handling: every signal blocked, one thread taking them
 * with sigwait and another reading them from a signalfd, while the main
 * thread forks with a block above 4 MiB (RAM the child must copy). The
 * signal libkmalloc stops threads with (SIGRTMIN+7) must never reach the
 * program, and no fork may wait for a stop that cannot come (it used to:
 * sigwait took the signal, and each fork waited 2 s). Prints what the
 * waiters saw besides the SIGUSR1 and SIGUSR2 the program sends itself,
 * and the slowest fork. */
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static volatile int foreign;

static void *waiter(void *arg)
{
    sigset_t *all = arg;
    for (;;) {
        int sig;
        if (sigwait(all, &sig) != 0)
            continue;
        if (sig == SIGUSR1)
            return NULL;
        if (sig != SIGCHLD)
            foreign = sig;
    }
}

static void *reader(void *arg)
{
    int fd = *(int *)arg;
    for (;;) {
        struct signalfd_siginfo si;
        if (read(fd, &si, sizeof si) != (ssize_t)sizeof si)
            continue;
        if (si.ssi_signo == SIGUSR2)
            return NULL;
        if (si.ssi_signo != SIGCHLD)
            foreign = (int)si.ssi_signo;
    }
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

int main(void)
{
    static sigset_t all, usr2;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL);
    sigdelset(&all, SIGUSR2);
    sigemptyset(&usr2);
    sigaddset(&usr2, SIGUSR2);
    sigaddset(&usr2, SIGRTMIN + 7);
    int fd = signalfd(-1, &usr2, SFD_CLOEXEC);
    char *volatile big = malloc(8 << 20);
    memset(big, 1, 8 << 20);
    pthread_t w, r;
    pthread_create(&w, NULL, waiter, &all);
    pthread_create(&r, NULL, reader, &fd);
    usleep(20000);
    double slowest = 0;
    int ok = 1;
    for (int i = 0; i < 4; i++) {
        double t0 = now();
        pid_t p = fork();
        if (p == 0)
            _exit(big[100] == 1 && big[(8 << 20) - 1] == 1 ? 0 : 1);
        double t = now() - t0;
        slowest = t > slowest ? t : slowest;
        int st;
        waitpid(p, &st, 0);
        ok &= WIFEXITED(st) && WEXITSTATUS(st) == 0;
        usleep(10000);
    }
    pthread_kill(w, SIGUSR1);
    pthread_kill(r, SIGUSR2);
    pthread_join(w, NULL);
    pthread_join(r, NULL);
    free(big);
    printf("children %s, foreign signal %d, slowest fork %s\n", ok ? "ok" : "FAILED", foreign,
           slowest < 0.5 ? "under 0.5 s" : "0.5 s or more");
    return 0;
}
