// Test target for `ferret watch`: the main thread calls
// `sleep_one_second()` every 1.5 s and `tick()` ten times in between, 50 ms
// apart; a second thread, `grower`, calls `grow()` every 100 ms, which
// touches 256 KiB more memory (giving it all back at 48 MiB) and spins for a
// moment, so the resident set and the CPU use move from one second to the
// next. Prints one line at start (to its log, under `watch`).
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define ARENA (48u << 20)
#define STEP (256u << 10)

static volatile unsigned long sink;
static char *arena;
static size_t touched;

__attribute__((noinline)) void tick(long i) { sink += (unsigned long)i; }

__attribute__((noinline)) void grow(long i) {
    if (touched + STEP > ARENA) {
        madvise(arena, ARENA, MADV_DONTNEED);
        touched = 0;
    }
    for (size_t off = 0; off < STEP; off += 4096) arena[touched + off] = (char)(i | 1);
    touched += STEP;
    // A little CPU, a different amount each time.
    for (long k = 0; k < (i % 7 + 1) * 100000; k++) sink += (unsigned long)k;
}

static void *grower(void *arg) {
    (void)arg;
    for (long i = 0;; i++) {
        grow(i);
        usleep(100 * 1000);
    }
    return NULL;
}

__attribute__((noinline)) void sleep_one_second(void) {
    struct timespec ts = {1, 0};
    while (nanosleep(&ts, &ts) != 0) {
    }
}

int main(void) {
    arena = mmap(NULL, ARENA, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (arena == MAP_FAILED) return 1;
    pthread_t t;
    pthread_create(&t, NULL, grower, NULL);
    pthread_setname_np(t, "grower");
    printf("sleeper: pid %d\n", getpid());
    fflush(stdout);
    for (long i = 0;; i++) {
        sleep_one_second();
        for (int k = 0; k < 10; k++) {
            tick(i * 10 + k);
            usleep(50 * 1000);
        }
    }
    return 0;
}
