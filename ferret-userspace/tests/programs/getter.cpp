// Test target for ferret's cost correction: a parent that works for a few
// milliseconds and calls a trivial getter a few hundred times. The program
// times each parent call itself; traced, ferret's corrected figures must
// agree with the untraced ones. The module throws (and catches) an
// exception, so ferret probes its return instructions, as for any C++.
//
// usage: getter CALLS GETS
// stdout: the median parent call, ns, as the program measured it, and the
// number of getter calls.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <time.h>
#include <vector>

struct Widget {
    long v;
    __attribute__((noipa)) long get() const;
};

long Widget::get() const { return v; }

static long gets;

__attribute__((noipa)) long parent(const Widget &w, int n) {
    volatile long work = 0;
    for (long i = 0; i < 20000000; i++) work = work + i;
    long s = work;
    for (int k = 0; k < n; k++) s += w.get();
    gets += n;
    return s;
}

__attribute__((noinline)) void may_throw(int i) {
    if (i < 0) throw std::runtime_error("negative");
}

static long now_ns() {
    timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000000000L + t.tv_nsec;
}

int main(int argc, char **argv) {
    int calls = argc > 1 ? atoi(argv[1]) : 20;
    int n = argc > 2 ? atoi(argv[2]) : 200;
    try {
        may_throw(-1);
    } catch (const std::exception &) {
    }
    Widget w{3};
    std::vector<long> took;
    long sum = 0;
    for (int i = 0; i < calls; i++) {
        long start = now_ns();
        sum += parent(w, n);
        took.push_back(now_ns() - start);
    }
    std::sort(took.begin(), took.end());
    printf("parent_median_ns=%ld gets=%ld sum=%ld\n", took[took.size() / 2], gets, sum);
    return 0;
}
