/* fork under libkmalloc: the child's heap is a private copy. Run with
 * argument "mt" to fork while other threads allocate, "small" to fork with
 * no huge block (above 4 MiB) alive: then the parent does not wait for the
 * child's copy, and writes a huge block while the child starts; or both. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static volatile int stop;

static void *churn(void *arg)
{
    unsigned long n = (unsigned long)arg;
    while (!stop) {
        void *p[64];
        for (int i = 0; i < 64; i++) p[i] = malloc((n * 131 + i * 977) % 20000 + 1);
        for (int i = 0; i < 64; i++) free(p[i]);
        n++;
    }
    return NULL;
}

static int churn_and_check(char tag)
{
    /* Allocate and write a lot; every block must keep its own pattern. */
    enum { N = 3000 };
    static char *blocks[N];
    for (int i = 0; i < N; i++) {
        size_t n = (size_t)(i * 37) % 9000 + 1;
        blocks[i] = malloc(n);
        memset(blocks[i], tag, n);
    }
    int bad = 0;
    for (int i = 0; i < N; i++) {
        size_t n = (size_t)(i * 37) % 9000 + 1;
        for (size_t j = 0; j < n; j++) bad |= blocks[i][j] != tag;
        free(blocks[i]);
    }
    return bad;
}

int main(int argc, char **argv)
{
    int mt = 0, no_huge = 0;
    for (int i = 1; i < argc; i++) {
        mt |= strcmp(argv[i], "mt") == 0;
        no_huge |= strcmp(argv[i], "small") == 0;
    }
    enum { HUGE = 6 << 20 };
    pthread_t th[3];
    if (mt)
        for (long i = 0; i < 3; i++) pthread_create(&th[i], NULL, churn, (void *)i);

    char *small = malloc(64);
    char *big = malloc(no_huge ? 64 : 12 << 20);
    strcpy(small, "parent");
    strcpy(big, "parent-big");
    int pipefd[2];
    if (pipe(pipefd)) return 1;

    for (int round = 0; round < 5; round++) {
        fflush(stdout);
        pid_t pid = fork();
        if (pid == 0) {
            strcpy(small, "child");
            strcpy(big, "child-big");
            int bad = churn_and_check('c');
            if (no_huge) {
                /* None of the parent's huge block shows here. */
                unsigned char *z = calloc(HUGE, 1);
                for (size_t j = 0; j < HUGE; j += 512) bad |= z[j] != 0;
                memset(z, 'c', HUGE);
                free(z);
            }
            char *again = malloc(100);
            strcpy(again, "child-alloc");
            printf("child %d: %s %s %s bad=%d\n", round, small, big, again, bad);
            fflush(stdout);
            /* Tell the parent we wrote; it checks it still sees its own. */
            if (write(pipefd[1], "x", 1) != 1) _exit(3);
            _exit(bad ? 2 : 0);
        }
        char *late = NULL;
        if (no_huge) {
            late = malloc(HUGE);
            memset(late, 'p', HUGE);
        }
        int bad = churn_and_check('p');
        char c;
        if (read(pipefd[0], &c, 1) != 1) return 1;
        int st;
        waitpid(pid, &st, 0);
        if (late) {
            for (size_t j = 0; j < HUGE; j += 512) bad |= late[j] != 'p';
            free(late);
        }
        printf("parent %d: %s %s bad=%d child-exit=%d\n", round, small, big, bad, WEXITSTATUS(st));
    }

    /* fork + exec */
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        execl("/bin/sh", "sh", "-c", "echo exec-child ran", (char *)NULL);
        _exit(127);
    }
    int st;
    waitpid(pid, &st, 0);
    printf("exec child exit=%d\n", WEXITSTATUS(st));

    if (mt) {
        stop = 1;
        for (int i = 0; i < 3; i++) pthread_join(th[i], NULL);
    }
    free(small);
    free(big);
    printf("done\n");
    return 0;
}
