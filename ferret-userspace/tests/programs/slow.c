// Test target for stopping a recording: `tick()` is called every 10 ms on a
// second thread; after printing "ready", the main thread waits for a line on
// stdin, then enters `forever()`, which never returns.
#include <pthread.h>
#include <stdio.h>
#include <unistd.h>

static volatile long sink;

__attribute__((noinline)) void tick(long i) { sink += i; }

static void *ticker(void *arg) {
    (void)arg;
    for (long i = 0;; i++) {
        tick(i);
        usleep(10 * 1000);
    }
    return NULL;
}

__attribute__((noinline)) void forever(void) {
    for (;;) {
        usleep(100 * 1000);
        sink++;
    }
}

int main(void) {
    pthread_t t;
    pthread_create(&t, NULL, ticker, NULL);
    printf("ready\n");
    fflush(stdout);
    char line[64];
    if (!fgets(line, sizeof line, stdin)) return 1;
    forever();
    return 0;
}
