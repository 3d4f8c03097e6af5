/* The program takes the signal libkmalloc stops threads with (SIGRTMIN+7)
 * before its first malloc, then forks with another thread running and a
 * block above 4 MiB (RAM the child must copy): libkmalloc cannot stop the
 * thread for the copy, and says so once. */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static volatile int stop;

static void *churn(void *arg)
{
    (void)arg;
    while (!stop)
        free(malloc(100));
    return NULL;
}

static void handler(int sig)
{
    (void)sig;
}

int main(void)
{
    signal(SIGRTMIN + 7, handler);
    char *volatile big = malloc(8 << 20);
    memset(big, 1, 8 << 20);
    pthread_t t;
    pthread_create(&t, NULL, churn, NULL);
    int ok = 1;
    for (int i = 0; i < 3; i++) {
        pid_t p = fork();
        if (p == 0)
            _exit(big[100] == 1 && big[(8 << 20) - 1] == 1 ? 0 : 1);
        int st;
        waitpid(p, &st, 0);
        ok &= WIFEXITED(st) && WEXITSTATUS(st) == 0;
    }
    stop = 1;
    pthread_join(t, NULL);
    free(big);
    printf("children %s\n", ok ? "ok" : "FAILED");
    return 0;
}
