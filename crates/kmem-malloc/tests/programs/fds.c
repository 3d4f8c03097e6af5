/* Descriptors are the program's: a program under libkmalloc may put its own
 * files on any number (a shell's `exec 3>file`), close every descriptor it
 * did not open (a daemon's closefrom) or put a file on the very number the
 * allocator's RAM memfd had. Its files must keep exactly what it wrote, and
 * the allocator must go on working: small, large and huge (vmalloc) blocks,
 * memory given back to the host, fork with a private heap. The output is
 * the same with and without the preload. */
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

static char dir[512];

static int open_file(int n)
{
    char path[600];
    snprintf(path, sizeof path, "%s/file%d", dir, n);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (fd < 0) {
        perror("open");
        exit(1);
    }
    return fd;
}

/* Writes line `i` of file `n` through `fd`. */
static void put_line(int fd, int n, int i)
{
    char line[64];
    int len = snprintf(line, sizeof line, "file %d line %d\n", n, i);
    if (write(fd, line, (size_t)len) != len) {
        perror("write");
        exit(1);
    }
}

/* Reads the file back and compares it with what was written. */
static int file_ok(int fd, int n, int lines)
{
    size_t cap = 64 * (size_t)lines + 1, len = 0;
    char *want = malloc(cap), *got = malloc(cap);
    for (int i = 0; i < lines; i++)
        len += (size_t)snprintf(want + len, cap - len, "file %d line %d\n", n, i);
    ssize_t r = pread(fd, got, cap, 0);
    int ok = r == (ssize_t)len && memcmp(want, got, len) == 0;
    free(want);
    free(got);
    return ok;
}

/* Allocation work that reaches every path: small and large blocks, a huge
 * one (vmalloc), frees that give memory back; each block keeps its own
 * pattern. */
static int churn(char tag)
{
    enum { N = 2000 };
    static char *b[N];
    int bad = 0;
    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < N; i++) {
            size_t n = (size_t)(i * 53 + round * 7) % 30000 + 1;
            b[i] = malloc(n);
            memset(b[i], tag, n);
        }
        size_t hn = (size_t)(6 + round) << 20;
        char *huge = malloc(hn);
        memset(huge, tag, hn);
        for (size_t j = 0; j < hn; j += 4096) bad |= huge[j] != tag;
        free(huge);
        for (int i = 0; i < N; i++) {
            size_t n = (size_t)(i * 53 + round * 7) % 30000 + 1;
            for (size_t j = 0; j < n; j += 64) bad |= b[i][j] != tag;
            free(b[i]);
        }
    }
    return bad;
}

/* A fork whose child writes its own heap; the parent's stays as it was. */
static int fork_ok(void)
{
    char *mine = malloc(100000);
    memset(mine, 'p', 100000);
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        memset(mine, 'c', 100000);
        int bad = churn('k');
        for (int i = 0; i < 100000; i++) bad |= mine[i] != 'c';
        _exit(bad ? 2 : 0);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    int ok = WIFEXITED(st) && WEXITSTATUS(st) == 0;
    for (int i = 0; i < 100000; i++) ok &= mine[i] == 'p';
    free(mine);
    return ok;
}

/* The number of the allocator's RAM memfd, or -1 (none: no preload). */
static int ram_fd(void)
{
    DIR *d = opendir("/proc/self/fd");
    int found = -1;
    struct dirent *e;
    while (d && (e = readdir(d))) {
        char path[300], target[300];
        snprintf(path, sizeof path, "/proc/self/fd/%s", e->d_name);
        ssize_t n = readlink(path, target, sizeof target - 1);
        if (n > 0) {
            target[n] = 0;
            if (strstr(target, "kmem-ram")) found = atoi(e->d_name);
        }
    }
    if (d) closedir(d);
    return found;
}

static void report(const char *phase, int first, int last, int lines)
{
    int bad = churn('a');
    int forked = fork_ok();
    printf("%s: churn %s, fork %s,", phase, bad ? "BAD" : "ok", forked ? "ok" : "BAD");
    for (int n = first; n <= last; n++) printf(" file%d %s", n, file_ok(n, n, lines) ? "ok" : "DAMAGED");
    printf("\n");
}

int main(void)
{
    snprintf(dir, sizeof dir, "%s", getenv("FDS_DIR") ? getenv("FDS_DIR") : "/tmp");
    free(malloc(64)); /* boot */

    /* 1. A shell's `exec 3>file` ... `exec 9>file`. */
    for (int n = 3; n <= 9; n++) {
        int fd = open_file(n);
        if (fd != n) {
            dup2(fd, n);
            close(fd);
        }
    }
    for (int i = 0; i < 500; i++)
        for (int n = 3; n <= 9; n++) {
            put_line(n, n, i);
            if (i % 100 == 0) churn('s');
        }
    report("low numbers", 3, 9, 500);

    /* 2. A program's file on the number the RAM memfd has. */
    int mine = ram_fd();
    if (mine >= 0) {
        int fd = open_file(mine);
        dup2(fd, mine);
        close(fd);
        for (int i = 0; i < 300; i++) put_line(mine, mine, i);
        int bad = churn('r');
        int forked = fork_ok();
        printf("on the memfd's number: churn %s, fork %s, file %s\n", bad ? "BAD" : "ok", forked ? "ok" : "BAD",
               file_ok(mine, mine, 300) ? "ok" : "DAMAGED");
        close(mine);
    } else {
        printf("on the memfd's number: churn ok, fork ok, file ok\n");
    }

    /* 3. A daemon's closefrom(3), then files on the lowest numbers again. */
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    for (int fd = 3; fd < (int)rl.rlim_cur && fd < 65536; fd++) close(fd);
    for (int n = 3; n <= 5; n++) {
        int fd = open_file(n);
        if (fd != n) {
            printf("open gave %d, not %d\n", fd, n);
            return 1;
        }
    }
    for (int i = 0; i < 400; i++)
        for (int n = 3; n <= 5; n++) {
            put_line(n, n, i);
            if (i % 100 == 0) churn('d');
        }
    report("after closefrom", 3, 5, 400);
    printf("done\n");
    return 0;
}
