// Test target for the overhead guard: fast() is called in a tight loop for
// SECONDS seconds while slow() runs every 100 ms; prints how many fast()
// calls each half second saw.
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static volatile long sink;

__attribute__((noinline)) void fast(long i) { sink += i; }
__attribute__((noinline)) void slow(void) { sink--; }

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    double seconds = argc > 1 ? atof(argv[1]) : 4;
    double start = now(), next_slow = start, next_report = start + 0.5;
    long count = 0;
    for (double t = start; t < start + seconds; t = now()) {
        for (int k = 0; k < 100; k++) fast(k);
        count += 100;
        if (t >= next_slow) { slow(); next_slow += 0.1; }
        if (t >= next_report) { printf("%ld\n", count); count = 0; next_report += 0.5; }
    }
    return 0;
}
