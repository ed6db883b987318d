// Test target for ring-buffer overflow: THREADS threads call hot() (which
// calls inner()) CALLS times each as fast as they can; then main calls
// after(), which sleeps AFTER_MS (default 100).
// usage: burst THREADS CALLS [AFTER_MS]
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static volatile long sink;
static long calls;

__attribute__((noinline)) void inner(long i) { sink += i; }
__attribute__((noinline)) void hot(long i) { inner(i); sink++; }
static long after_ms = 100;

__attribute__((noinline)) void after(void) { usleep(after_ms * 1000); }

static void *worker(void *arg) {
    (void)arg;
    for (long i = 0; i < calls; i++) hot(i);
    return NULL;
}

int main(int argc, char **argv) {
    int threads = argc > 1 ? atoi(argv[1]) : 2;
    calls = argc > 2 ? atol(argv[2]) : 100000;
    after_ms = argc > 3 ? atol(argv[3]) : 100;
    pthread_t t[16];
    for (int i = 0; i < threads && i < 16; i++) pthread_create(&t[i], NULL, worker, NULL);
    for (int i = 0; i < threads && i < 16; i++) pthread_join(t[i], NULL);
    usleep(200 * 1000);  // let ferret drain the overflowed ring before after()
    after();
    printf("done\n");
    return 0;
}
