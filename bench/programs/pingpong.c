// Two threads passing a byte back and forth through two pipes: every round
// each blocks once in read() and is woken once, so the scheduler switches
// several times a round. Each thread calls the traced `join()` once at its
// start, so ferret keeps scheduler counters for it (they start at a
// thread's first probe hit); nothing is traced in the loop itself.
//
// usage: pingpong ROUNDS
// prints: rounds N ns_per_round X switches S (voluntary switches of both
// threads over the timed rounds, from getrusage)
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

static int ping[2], pong[2];
static long rounds;

__attribute__((noinline)) void join(void) { __asm__ volatile(""); }

static void *other(void *arg) {
    (void)arg;
    join();
    char c;
    for (long i = 0; i < rounds; i++) {
        if (read(ping[0], &c, 1) != 1 || write(pong[1], &c, 1) != 1) exit(1);
    }
    return NULL;
}

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    rounds = argc > 1 ? atol(argv[1]) : 100000;
    if (pipe(ping) || pipe(pong)) return 1;
    join();
    pthread_t t;
    pthread_create(&t, NULL, other, NULL);
    struct rusage before, after;
    getrusage(RUSAGE_SELF, &before);
    double start = now();
    char c = 'x';
    for (long i = 0; i < rounds; i++) {
        if (write(ping[1], &c, 1) != 1 || read(pong[0], &c, 1) != 1) return 1;
    }
    double took = now() - start;
    pthread_join(t, NULL);
    getrusage(RUSAGE_SELF, &after);
    printf("rounds %ld ns_per_round %.1f switches %ld\n", rounds, took * 1e9 / rounds,
           after.ru_nvcsw - before.ru_nvcsw);
    return 0;
}
