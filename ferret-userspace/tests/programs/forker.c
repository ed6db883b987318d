// Test target for forks and exec. usage: forker fork | exec
//   fork: the parent calls work() 5 times, its forked child 7 times.
//   exec: calls work() 3 times, then execs `sh -c "exit 5"`.
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static volatile long sink;

__attribute__((noinline)) void work(long i) { sink += i; }

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "exec") == 0) {
        for (int i = 0; i < 3; i++) work(i);
        fflush(stdout);
        execl("/bin/sh", "sh", "-c", "exit 5", (char *)NULL);
        return 1;
    }
    pid_t child = fork();
    if (child == 0) {
        for (int i = 0; i < 7; i++) work(i);
        _exit(0);
    }
    for (int i = 0; i < 5; i++) work(i);
    int status;
    waitpid(child, &status, 0);
    printf("child=%d\n", child);
    return 0;
}
