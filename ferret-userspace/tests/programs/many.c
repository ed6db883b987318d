// Test target for ferret's overhead budget: 300 small functions called flat
// out through a table (what `-s '*'` on a real program looks like), one
// slow function called now and then, and a result that depends on the
// program's arguments, so a probe that disturbed its start would show.
//
// usage: many ITERATIONS [WORD...]
// stdout: the result (the same however it is traced); stderr: how long the
// work took, as the program measured it, and how often `slow` ran.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define F(n) \
    __attribute__((noinline)) long f##n(long x) { return (x ^ n) * 3 + 1; }
#define F10(n) F(n##0) F(n##1) F(n##2) F(n##3) F(n##4) F(n##5) F(n##6) F(n##7) F(n##8) F(n##9)
#define F100(n) F10(n##0) F10(n##1) F10(n##2) F10(n##3) F10(n##4) \
    F10(n##5) F10(n##6) F10(n##7) F10(n##8) F10(n##9)
F100(1) F100(2) F100(3)

#define T(n) f##n,
#define T10(n) T(n##0) T(n##1) T(n##2) T(n##3) T(n##4) T(n##5) T(n##6) T(n##7) T(n##8) T(n##9)
#define T100(n) T10(n##0) T10(n##1) T10(n##2) T10(n##3) T10(n##4) \
    T10(n##5) T10(n##6) T10(n##7) T10(n##8) T10(n##9)
static long (*const table[])(long) = {T100(1) T100(2) T100(3)};
#define FUNCTIONS (sizeof table / sizeof table[0])

static long slow_calls;

__attribute__((noinline)) void slow(void) {
    slow_calls++;
    struct timespec ms = {0, 2 * 1000 * 1000};
    nanosleep(&ms, NULL);
}

static long now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000000000L + t.tv_nsec;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: many ITERATIONS [WORD...]\n");
        return 2;
    }
    long iterations = atol(argv[1]);
    long seed = argc;
    for (int i = 2; i < argc; i++) {
        for (const char *c = argv[i]; *c; c++) seed = seed * 31 + *c;
    }
    long acc = seed;
    long start = now_ns();
    for (long i = 0; i < iterations; i++) {
        for (unsigned k = 0; k < FUNCTIONS; k++) acc = table[k](acc);
        if (i % 100000 == 0) slow();
    }
    long took = now_ns() - start;
    printf("args=%d seed=%ld acc=%ld slow=%ld\n", argc - 2, seed, acc, slow_calls);
    fprintf(stderr, "work_ns=%ld slow_calls=%ld\n", took, slow_calls);
    return 0;
}
