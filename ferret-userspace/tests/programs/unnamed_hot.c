#define _GNU_SOURCE
// Test target for sampling and live tracing: the main thread spends its time
// in crunch() (a function nobody names on ferret's command line), called by
// busy_loop(); a second thread, "bursts", reads a number N per line on stdin,
// calls counted() exactly N times, and answers "burst N done" on stdout, so a
// test knows how many calls each interval held. Runs until killed or stdin
// closes.
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

static volatile unsigned long sink;

// About a millisecond of integer work per call, no calls inside.
__attribute__((noinline)) unsigned long crunch(unsigned long seed) {
    unsigned long x = seed | 1;
    for (int i = 0; i < 400000; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
    }
    return x;
}

__attribute__((noinline)) void busy_loop(void) {
    for (unsigned long i = 0;; i++) sink += crunch(i);
}

__attribute__((noinline)) void counted(long i) { sink += (unsigned long)i; }

static void *bursts(void *arg) {
    (void)arg;
    char line[64];
    while (fgets(line, sizeof line, stdin)) {
        long n = atol(line);
        for (long i = 0; i < n; i++) counted(i);
        printf("burst %ld done\n", n);
        fflush(stdout);
    }
    exit(0);
}

int main(void) {
    pthread_t t;
    pthread_create(&t, NULL, bursts, NULL);
    pthread_setname_np(t, "bursts");
    printf("ready\n");
    fflush(stdout);
    busy_loop();
    return 0;
}
