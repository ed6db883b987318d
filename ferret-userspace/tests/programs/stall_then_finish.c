// Stalls three ways, then finishes normally, for checking that capturing
// stalls changes nothing in the target: it sleeps, spins, and waits for a
// mutex another thread holds (each for 2.5 s), printing as it goes, then
// prints a checksum of its work and exits with status 7.
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_barrier_t locked;
static volatile unsigned long work;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

__attribute__((noinline)) void slow_sleep(void) {
    struct timespec ts = {2, 500000000};
    nanosleep(&ts, NULL);
}

__attribute__((noinline)) unsigned long busy_spin(void) {
    double end = now() + 2.5;
    unsigned long n = 0;
    while (now() < end) {
        for (int i = 0; i < 1000; i++) work += i;
        n++;
    }
    return n > 0;
}

static void *holder(void *arg) {
    (void)arg;
    pthread_setname_np(pthread_self(), "holder");
    pthread_mutex_lock(&lock);
    pthread_barrier_wait(&locked);
    struct timespec ts = {2, 500000000};
    nanosleep(&ts, NULL);
    pthread_mutex_unlock(&lock);
    return NULL;
}

__attribute__((noinline)) void wait_for_lock(void) {
    pthread_mutex_lock(&lock);
    pthread_mutex_unlock(&lock);
}

int main(void) {
    printf("start\n");
    fflush(stdout);
    slow_sleep();
    printf("slept\n");
    fflush(stdout);
    unsigned long spun = busy_spin();
    printf("spun %lu\n", spun);
    fflush(stdout);
    pthread_barrier_init(&locked, NULL, 2);
    pthread_t t;
    pthread_create(&t, NULL, holder, NULL);
    pthread_barrier_wait(&locked);
    wait_for_lock();
    pthread_join(t, NULL);
    unsigned long sum = 0;
    for (unsigned long i = 0; i < 1000000; i++) sum += i * i % 7;
    printf("done %lu\n", sum);
    return 7;
}
