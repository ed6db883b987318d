// Sustained load: THREADS threads call a three-deep chain of small functions
// (load_outer -> load_mid -> load_leaf) as fast as they can.
//
// usage: load THREADS SECONDS     (SECONDS 0: until killed)
// At the end prints `calls N seconds S` (three traced calls per iteration).
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static volatile int stop;
static volatile long sink;

__attribute__((noipa)) long load_leaf(long x) { return x * 3 + 1; }
__attribute__((noipa)) long load_mid(long x) { return load_leaf(x) + 2; }
__attribute__((noipa)) long load_outer(long x) { return load_mid(x) ^ 5; }

static void *worker(void *arg) {
    long *calls = arg;
    long v = 0, n = 0;
    while (!stop) {
        v = load_outer(v);
        n += 3;
    }
    sink = v;
    *calls = n;
    return NULL;
}

int main(int argc, char **argv) {
    int threads = argc > 1 ? atoi(argv[1]) : 4;
    int seconds = argc > 2 ? atoi(argv[2]) : 10;
    if (threads < 1 || threads > 256) return 2;
    pthread_t tids[256];
    long calls[256] = {0};
    struct timespec start, end;
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (int i = 0; i < threads; i++) pthread_create(&tids[i], NULL, worker, &calls[i]);
    if (seconds > 0) {
        sleep(seconds);
    } else {
        for (;;) pause();
    }
    stop = 1;
    long total = 0;
    for (int i = 0; i < threads; i++) {
        pthread_join(tids[i], NULL);
        total += calls[i];
    }
    clock_gettime(CLOCK_MONOTONIC, &end);
    printf("calls %ld seconds %.3f\n", total,
           (end.tv_sec - start.tv_sec) + (end.tv_nsec - start.tv_nsec) / 1e9);
    return 0;
}
