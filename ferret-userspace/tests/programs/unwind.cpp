// Test target: C++ exceptions unwinding through traced frames.
// thrower() throws on odd i; middle() calls it without catching; main catches.
#include <cstdio>
#include <stdexcept>

static volatile int sink;

__attribute__((noinline)) int thrower(int i) {
    if (i % 2) throw std::runtime_error("odd");
    sink = i;
    return i;
}

__attribute__((noinline)) int middle(int i) {
    int r = thrower(i);
    sink = r + 1;
    return r;
}

int main() {
    int caught = 0, returned = 0;
    for (int i = 0; i < 10; i++) {
        try {
            middle(i);
            returned++;
        } catch (const std::exception &e) {
            caught++;
        }
    }
    std::printf("returned=%d caught=%d\n", returned, caught);
    return 3;  // a distinctive status, to check it passes through ferret
}
