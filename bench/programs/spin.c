// CPU-bound work with no calls to trace: what sampling costs the target.
//
// usage: spin UNITS [WARMUP_MS]
// One unit is a fixed amount of integer work (tens of microseconds) in
// spin_unit(). Prints `units N ns_per_unit X cpu_ns_per_unit Y
// cpu_total_ns Z`: X and Y timed around the loop only (after WARMUP_MS of
// untimed work, so ferret's start does not overlap it); Y is this thread's
// CPU time, which includes the timer interrupts that sample it and the BPF
// program they run; Z is the whole process's CPU time.
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

__attribute__((noinline)) unsigned long spin_unit(unsigned long x) {
    for (int i = 0; i < 20000; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
    }
    return x;
}

static double seconds(clockid_t clock) {
    struct timespec ts;
    clock_gettime(clock, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    long units = argc > 1 ? atol(argv[1]) : 10000;
    double warmup = argc > 2 ? atof(argv[2]) / 1e3 : 0;
    unsigned long v = 1;
    for (double end = seconds(CLOCK_MONOTONIC) + warmup; seconds(CLOCK_MONOTONIC) < end;)
        v = spin_unit(v);
    double wall = seconds(CLOCK_MONOTONIC), cpu = seconds(CLOCK_THREAD_CPUTIME_ID);
    for (long i = 0; i < units; i++) v = spin_unit(v);
    cpu = seconds(CLOCK_THREAD_CPUTIME_ID) - cpu;
    wall = seconds(CLOCK_MONOTONIC) - wall;
    printf("units %ld ns_per_unit %.3f cpu_ns_per_unit %.3f cpu_total_ns %.0f result %lu\n", units,
           wall * 1e9 / units, cpu * 1e9 / units, seconds(CLOCK_PROCESS_CPUTIME_ID) * 1e9, v);
    return 0;
}
