// Test target for OpenTelemetry export: THREADS threads each serve ROUNDS
// requests, PAUSE_MS apart. request() → handle() → fast_step(), except every
// SLOW_EVERY-th round (0: never), where handle() calls slow_step(), which
// sleeps 30 ms. Prints its own call counts at exit.
//
// usage: otlp_calls THREADS ROUNDS PAUSE_MS SLOW_EVERY
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static atomic_long request_calls, handle_calls, fast_calls, slow_calls;
static volatile long sink;
static long rounds, pause_ms, slow_every;

__attribute__((noinline)) void fast_step(long i) {
    atomic_fetch_add(&fast_calls, 1);
    sink += i;
}

__attribute__((noinline)) void slow_step(long i) {
    atomic_fetch_add(&slow_calls, 1);
    usleep(30 * 1000);
    sink += i;
}

__attribute__((noinline)) void handle(long i) {
    atomic_fetch_add(&handle_calls, 1);
    if (slow_every > 0 && i % slow_every == 0)
        slow_step(i);
    else
        fast_step(i);
}

__attribute__((noinline)) void request(long i) {
    atomic_fetch_add(&request_calls, 1);
    handle(i);
}

static void *worker(void *arg) {
    (void)arg;
    for (long i = 0; i < rounds; i++) {
        request(i);
        if (pause_ms > 0) usleep(pause_ms * 1000);
    }
    return NULL;
}

int main(int argc, char **argv) {
    int threads = argc > 1 ? atoi(argv[1]) : 1;
    rounds = argc > 2 ? atol(argv[2]) : 10;
    pause_ms = argc > 3 ? atol(argv[3]) : 0;
    slow_every = argc > 4 ? atol(argv[4]) : 0;
    pthread_t tids[16];
    if (threads > 16) threads = 16;
    for (int t = 0; t < threads; t++) pthread_create(&tids[t], NULL, worker, NULL);
    for (int t = 0; t < threads; t++) pthread_join(tids[t], NULL);
    printf("request=%ld handle=%ld fast_step=%ld slow_step=%ld\n", atomic_load(&request_calls),
           atomic_load(&handle_calls), atomic_load(&fast_calls), atomic_load(&slow_calls));
    return 0;
}
