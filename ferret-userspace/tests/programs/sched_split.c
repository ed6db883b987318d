// Where a call's time goes (the CPU / runnable / blocked split, e2e).
//
// `work` computes for 300 ms of its thread's CPU time (`compute`), sleeps
// 300 ms (`nap`), then waits about 320 ms for a mutex another thread holds
// (`wait_lock`); it prints the thread CPU time and wall time it measured
// itself around the call. Then two threads pinned to one CPU each need
// 300 ms of CPU (`spin`), so each waits for the other: each prints its own
// thread CPU time and wall time.
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <semaphore.h>
#include <stdio.h>
#include <stdint.h>
#include <time.h>

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static sem_t held, napped;
static volatile uint64_t sink;

static uint64_t now_ns(clockid_t clock) {
    struct timespec ts;
    clock_gettime(clock, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0) {
    }
}

/* Burns `ms` of this thread's own CPU time, however long that takes. */
__attribute__((noinline)) void compute(long ms) {
    uint64_t until = now_ns(CLOCK_THREAD_CPUTIME_ID) + (uint64_t)ms * 1000000u;
    while (now_ns(CLOCK_THREAD_CPUTIME_ID) < until) {
        for (int i = 0; i < 10000; i++) sink += (uint64_t)i * sink + 1;
    }
}

__attribute__((noinline)) void nap(long ms) { sleep_ms(ms); }

__attribute__((noinline)) void wait_lock(void) {
    pthread_mutex_lock(&lock);
    pthread_mutex_unlock(&lock);
}

__attribute__((noinline)) void work(void) {
    compute(300);
    nap(300);
    sem_post(&napped);
    wait_lock();
}

static void *holder(void *arg) {
    (void)arg;
    pthread_mutex_lock(&lock);
    sem_post(&held);
    sem_wait(&napped);
    sleep_ms(320);
    pthread_mutex_unlock(&lock);
    return NULL;
}

__attribute__((noinline)) void spin(long ms) { compute(ms); }

static void *pinned(void *arg) {
    long id = (long)arg;
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(0, &one);
    pthread_setaffinity_np(pthread_self(), sizeof one, &one);
    sched_yield();
    uint64_t cpu0 = now_ns(CLOCK_THREAD_CPUTIME_ID), wall0 = now_ns(CLOCK_MONOTONIC);
    spin(300);
    uint64_t cpu1 = now_ns(CLOCK_THREAD_CPUTIME_ID), wall1 = now_ns(CLOCK_MONOTONIC);
    printf("spin%ld_cpu_ns=%llu spin%ld_wall_ns=%llu\n", id, (unsigned long long)(cpu1 - cpu0), id,
           (unsigned long long)(wall1 - wall0));
    return NULL;
}

int main(void) {
    sem_init(&held, 0, 0);
    sem_init(&napped, 0, 0);
    pthread_t h;
    pthread_create(&h, NULL, holder, NULL);
    sem_wait(&held);
    uint64_t cpu0 = now_ns(CLOCK_THREAD_CPUTIME_ID), wall0 = now_ns(CLOCK_MONOTONIC);
    work();
    uint64_t cpu1 = now_ns(CLOCK_THREAD_CPUTIME_ID), wall1 = now_ns(CLOCK_MONOTONIC);
    pthread_join(h, NULL);
    printf("work_cpu_ns=%llu work_wall_ns=%llu\n", (unsigned long long)(cpu1 - cpu0),
           (unsigned long long)(wall1 - wall0));
    fflush(stdout);

    pthread_t a, b;
    pthread_create(&a, NULL, pinned, (void *)1L);
    pthread_create(&b, NULL, pinned, (void *)2L);
    pthread_join(a, NULL);
    pthread_join(b, NULL);
    return 0;
}
