// Test target: creates TOTAL short-lived threads, BATCH at a time; each
// calls work() once.
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

static volatile long sink;

__attribute__((noinline)) void work(long i) { sink += i; }

static void *run(void *arg) {
    work((long)arg);
    return NULL;
}

int main(int argc, char **argv) {
    long total = argc > 1 ? atol(argv[1]) : 2000;
    long batch = 50;
    pthread_t t[50];
    for (long done = 0; done < total; done += batch) {
        long n = total - done < batch ? total - done : batch;
        for (long i = 0; i < n; i++) pthread_create(&t[i], NULL, run, (void *)(done + i));
        for (long i = 0; i < n; i++) pthread_join(t[i], NULL);
    }
    printf("threads=%ld\n", total);
    return 0;
}
