// For the separate-debug-file tests, which strip it: `split_debug N MS`
// calls `work` N times, then stalls in `nap` for MS milliseconds, then
// prints `work=N` and exits. Both functions are static, so a stripped
// copy names them nowhere but in its debug file.
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static volatile unsigned long total;

static __attribute__((noinline, noipa)) unsigned long work(unsigned long x) {
    total += x * 3 + 1;
    return total;
}

static __attribute__((noinline, noipa)) void nap(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL); /* NAPS */
}

int main(int argc, char **argv) {
    long n = argc > 1 ? atol(argv[1]) : 1000;
    long ms = argc > 2 ? atol(argv[2]) : 0;
    for (long i = 0; i < n; i++) work((unsigned long)i);
    nap(ms);
    printf("work=%ld\n", n);
    return 0;
}
