/* The fork gate's phase page (a shared anonymous page, `/dev/zero
 * (deleted)` with `rw-s` in /proc/self/maps) is mapped by the first fork
 * that stops other threads, not at the boot: a program that never forks
 * with threads never has one. Prints the number of such mappings after the
 * boot, after a fork with one thread, after a fork with a second thread
 * running, and in a child of that fork after its own fork with a thread
 * (its own page in place of its parent's: still one mapping). */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static int shared_pages(void)
{
    FILE *f = fopen("/proc/self/maps", "r");
    char line[512];
    int n = 0;
    while (fgets(line, sizeof line, f))
        if (strstr(line, " rw-s ") && strstr(line, "/dev/zero (deleted)"))
            n++;
    fclose(f);
    return n;
}

static atomic_int stop;

static void *spin(void *arg)
{
    (void)arg;
    while (!atomic_load(&stop)) {
        void *volatile p = malloc(48);
        free(p);
    }
    return NULL;
}

/* Forks a child that allocates and exits; returns its exit status. */
static int fork_once(void)
{
    pid_t pid = fork();
    if (pid == 0) {
        void *volatile p = malloc(100);
        free(p);
        _exit(0);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    return st;
}

int main(void)
{
    void *volatile p = malloc(64);
    free(p);
    printf("after boot %d\n", shared_pages());
    int st = fork_once();
    printf("after a one-thread fork %d (status %d)\n", shared_pages(), st);
    pthread_t t;
    pthread_create(&t, NULL, spin, NULL);
    st = fork_once();
    printf("after a fork with a thread %d (status %d)\n", shared_pages(), st);
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        /* The child has one thread again: start one, fork, look. */
        atomic_store(&stop, 0);
        pthread_t u;
        pthread_create(&u, NULL, spin, NULL);
        int cst = fork_once();
        printf("child after a fork with a thread %d (status %d)\n", shared_pages(), cst);
        atomic_store(&stop, 1);
        pthread_join(u, NULL);
        fflush(stdout);
        _exit(0);
    }
    waitpid(pid, &st, 0);
    atomic_store(&stop, 1);
    pthread_join(t, NULL);
    printf("done (status %d)\n", st);
    return 0;
}
