// Test target for process metrics: idles, then allocates and touches
// 256 MiB (and holds it, idle), then burns one core, then exits.
// usage: phases IDLE_MS HOLD_MS BURN_MS
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

__attribute__((noinline)) void idle(long ms) { usleep(ms * 1000); }

__attribute__((noinline)) char *allocate(size_t bytes) {
    char *p = malloc(bytes);
    memset(p, 1, bytes);  // touch every page
    return p;
}

static double cpu_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static double burn_cpu_percent;

__attribute__((noinline)) void burn(long ms) {
    volatile unsigned long x = 0;
    double start = now_ms(), cpu_start = cpu_ms();
    double end = start + ms;
    while (now_ms() < end)
        for (int i = 0; i < 10000; i++) x += i;
    // What the burn really got: on a loaded machine, less than a core.
    burn_cpu_percent = 100.0 * (cpu_ms() - cpu_start) / (now_ms() - start);
}

int main(int argc, char **argv) {
    long idle_ms = argc > 1 ? atol(argv[1]) : 1500;
    long hold_ms = argc > 2 ? atol(argv[2]) : 1500;
    long burn_ms = argc > 3 ? atol(argv[3]) : 2000;
    idle(idle_ms);
    char *p = allocate(256UL << 20);
    idle(hold_ms);
    burn(burn_ms);
    printf("done=%d burn_cpu_percent=%.1f\n", p[12345], burn_cpu_percent);
    return 0;
}
