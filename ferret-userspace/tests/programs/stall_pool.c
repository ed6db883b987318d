// A thread pool at rest and one real deadlock, for the stall watchdog at
// scale: `stall_pool THREADS [ALARM_S]` starts THREADS workers that each
// sleep in `idle_wait` (a pool waiting for work), and two threads that take
// two mutexes in opposite order and deadlock; prints "ready" once every
// worker is inside `idle_wait` and both lockers hold their first mutex, and
// is ended by SIGALRM after ALARM_S seconds (default 30).
#define _GNU_SOURCE
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static atomic_int resting;
static pthread_mutex_t first = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t second = PTHREAD_MUTEX_INITIALIZER;
static pthread_barrier_t both_hold_one;

__attribute__((noinline)) void idle_wait(void) {
    atomic_fetch_add(&resting, 1);
    struct timespec ts = {600, 0};
    nanosleep(&ts, NULL); /* RESTS */
}

static void *worker(void *arg) {
    char name[16];
    snprintf(name, sizeof name, "pool-%ld", (long)arg);
    pthread_setname_np(pthread_self(), name);
    idle_wait();
    return NULL;
}

__attribute__((noinline)) void lock_first_then_second(void) {
    pthread_mutex_lock(&first);
    pthread_barrier_wait(&both_hold_one);
    pthread_mutex_lock(&second); /* BLOCKS: first-then-second */
    pthread_mutex_unlock(&second);
    pthread_mutex_unlock(&first);
}

__attribute__((noinline)) void lock_second_then_first(void) {
    pthread_mutex_lock(&second);
    pthread_barrier_wait(&both_hold_one);
    pthread_mutex_lock(&first); /* BLOCKS: second-then-first */
    pthread_mutex_unlock(&first);
    pthread_mutex_unlock(&second);
}

static void *run_a(void *arg) {
    (void)arg;
    pthread_setname_np(pthread_self(), "lock-ab");
    lock_first_then_second();
    return NULL;
}

static void *run_b(void *arg) {
    (void)arg;
    pthread_setname_np(pthread_self(), "lock-ba");
    lock_second_then_first();
    return NULL;
}

int main(int argc, char **argv) {
    long threads = argc > 1 ? atol(argv[1]) : 1000;
    alarm(argc > 2 ? atoi(argv[2]) : 30);
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    // Small stacks, as pools of this size are given: 1000 default 8 MiB
    // stacks would reserve 8 GiB of address space.
    pthread_attr_setstacksize(&attr, 256 * 1024);
    for (long i = 0; i < threads; i++) {
        pthread_t t;
        if (pthread_create(&t, &attr, worker, (void *)i) != 0) {
            perror("pthread_create");
            return 1;
        }
    }
    pthread_barrier_init(&both_hold_one, NULL, 3);
    pthread_t a, b;
    pthread_create(&a, NULL, run_a, NULL);
    pthread_create(&b, NULL, run_b, NULL);
    pthread_barrier_wait(&both_hold_one);
    while (atomic_load(&resting) < threads) usleep(1000);
    printf("ready\n");
    fflush(stdout);
    pthread_join(a, NULL);
    return 0;
}
