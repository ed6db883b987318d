// A ~1 ns function called in a tight loop: the cost of tracing one call.
//
// usage: tight CALLS [WARMUP_MS]
// Prints `calls N ns_per_call X cpu_ns_per_call Y`, timed around the loop
// only, so process start-up and the tracer's attach are not counted; with
// WARMUP_MS, the loop first runs untimed that long, so neither is the
// tracer's own start-up work, which overlaps the target's start. X is
// wall time; Y is this thread's CPU time (user + kernel, which includes the
// uprobe traps and the BPF programs they run), so time the thread spent
// preempted by other work on a busy machine does not count.
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

__attribute__((noipa)) int bench_fn(int x) { return x + 1; }

static double seconds(clockid_t clock) {
    struct timespec ts;
    clock_gettime(clock, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    long calls = argc > 1 ? atol(argv[1]) : 1000000;
    double warmup = argc > 2 ? atof(argv[2]) / 1e3 : 0;
    int v = 0;
    for (double end = seconds(CLOCK_MONOTONIC) + warmup; seconds(CLOCK_MONOTONIC) < end;)
        for (int i = 0; i < 100; i++) v = bench_fn(v);
    double wall = seconds(CLOCK_MONOTONIC), cpu = seconds(CLOCK_THREAD_CPUTIME_ID);
    for (long i = 0; i < calls; i++) v = bench_fn(v);
    cpu = seconds(CLOCK_THREAD_CPUTIME_ID) - cpu;
    wall = seconds(CLOCK_MONOTONIC) - wall;
    printf("calls %ld ns_per_call %.3f cpu_ns_per_call %.3f result %d\n", calls,
           wall * 1e9 / calls, cpu * 1e9 / calls, v);
    return 0;
}
