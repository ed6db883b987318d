// Test target for `ferret watch`: every 1.5 s `sleep_one_second()` sleeps
// for one second; in between, `batch()` calls `tick()` and `grow()` ten
// times, 50 ms apart. `grow()` touches 512 KiB more memory each time (and
// gives it all back at 48 MiB) and spins for a moment, so the resident set
// and the CPU use move from one second to the next.
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define ARENA (48u << 20)
#define STEP (512u << 10)

static volatile unsigned long sink;
static char *arena;
static size_t touched;

__attribute__((noinline)) void tick(long i) { sink += (unsigned long)i; }

__attribute__((noinline)) void grow(long i) {
    if (touched + STEP > ARENA) {
        madvise(arena, ARENA, MADV_DONTNEED);
        touched = 0;
    }
    for (size_t off = 0; off < STEP; off += 4096) arena[touched + off] = (char)i;
    touched += STEP;
    // A little CPU, a different amount each time.
    for (long k = 0; k < (i % 7 + 1) * 200000; k++) sink += (unsigned long)k;
}

__attribute__((noinline)) void batch(long i) {
    tick(i);
    grow(i);
}

__attribute__((noinline)) void sleep_one_second(void) {
    struct timespec ts = {1, 0};
    while (nanosleep(&ts, &ts) != 0) {
    }
}

int main(void) {
    arena = mmap(NULL, ARENA, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (arena == MAP_FAILED) return 1;
    printf("sleeper: pid %d\n", getpid());
    fflush(stdout);
    for (long i = 0;; i++) {
        sleep_one_second();
        for (int k = 0; k < 10; k++) {
            batch(i * 10 + k);
            usleep(50 * 1000);
        }
    }
    return 0;
}
