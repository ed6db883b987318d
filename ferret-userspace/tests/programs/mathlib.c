// Test target: calls a function of libm (a shared library) a known number of times.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 50;
    volatile double x = 2.0, acc = 0;
    for (int i = 0; i < n; i++) acc += cbrt(x + i);
    printf("calls=%d acc=%.3f\n", n, acc);
    return 0;
}
