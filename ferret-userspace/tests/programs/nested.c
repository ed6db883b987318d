// Test target: nested calls on several threads, a 200 ms sleep, and its own
// call counts printed at exit so tests can compare them with what ferret saw.
//
// usage: nested THREADS ITERATIONS [GATE_FILE]
// With GATE_FILE, prints "ready" and waits until the file exists before
// starting any thread (so a test can attach by pid first).
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static atomic_long outer_calls, middle_calls, leaf_calls, sleeper_calls;
static volatile long sink;

__attribute__((noinline)) void leaf(long i) {
    atomic_fetch_add(&leaf_calls, 1);
    sink += i;
}

__attribute__((noinline)) void middle(long i) {
    atomic_fetch_add(&middle_calls, 1);
    for (long k = 0; k < 3; k++) leaf(i + k);
}

__attribute__((noinline)) void outer(long i) {
    atomic_fetch_add(&outer_calls, 1);
    middle(i);
    middle(i + 1);
}

static long slept_ns;

__attribute__((noinline)) void sleeper(void) {
    struct timespec a, b;
    atomic_fetch_add(&sleeper_calls, 1);
    clock_gettime(CLOCK_MONOTONIC, &a);
    usleep(200 * 1000);
    clock_gettime(CLOCK_MONOTONIC, &b);
    slept_ns = (b.tv_sec - a.tv_sec) * 1000000000L + (b.tv_nsec - a.tv_nsec);
}

static long iterations;

static void *worker(void *arg) {
    (void)arg;
    for (long i = 0; i < iterations; i++) outer(i);
    return NULL;
}

int main(int argc, char **argv) {
    int threads = argc > 1 ? atoi(argv[1]) : 4;
    iterations = argc > 2 ? atol(argv[2]) : 100;
    if (argc > 3) {
        printf("ready\n");
        fflush(stdout);
        while (access(argv[3], F_OK) != 0) usleep(10 * 1000);
    }
    pthread_t tids[64];
    if (threads > 64) threads = 64;
    for (int t = 0; t < threads; t++) pthread_create(&tids[t], NULL, worker, NULL);
    sleeper();
    for (int t = 0; t < threads; t++) pthread_join(tids[t], NULL);
    printf("outer=%ld middle=%ld leaf=%ld sleeper=%ld slept_ns=%ld\n", atomic_load(&outer_calls),
           atomic_load(&middle_calls), atomic_load(&leaf_calls), atomic_load(&sleeper_calls),
           slept_ns);
    return 0;
}
