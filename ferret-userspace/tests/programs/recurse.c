// Test target: recursion 200 deep, three times (the kernel caps pending
// uretprobes at 64 per thread; ret-instruction probes have no such cap).
#include <stdio.h>
#include <stdlib.h>

static volatile long sink;

__attribute__((noinline)) long recurse(long depth) {
    if (depth <= 1) return 1;
    long r = recurse(depth - 1) + 1;
    sink = r;  // keeps the call from becoming a tail call
    return r;
}

int main(int argc, char **argv) {
    long depth = argc > 1 ? atol(argv[1]) : 200;
    for (int i = 0; i < 3; i++) printf("depth=%ld\n", recurse(depth));
    return 0;
}
