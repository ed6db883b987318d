// Two threads take two mutexes in opposite order and deadlock, for the
// stall watchdog's tests. `stall_deadlock [DELAY_MS [ALARM_S]]` waits
// DELAY_MS before the threads start (so ferret can attach first or after),
// prints "deadlocked" once both hold their first lock, and is ended by
// SIGALRM after ALARM_S seconds (default 20) so nothing is left behind.
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static pthread_mutex_t first = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t second = PTHREAD_MUTEX_INITIALIZER;
static pthread_barrier_t both_hold_one;

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
    alarm(argc > 2 ? atoi(argv[2]) : 20);
    if (argc > 1) usleep(atoi(argv[1]) * 1000);
    pthread_barrier_init(&both_hold_one, NULL, 3);
    pthread_t a, b;
    pthread_create(&a, NULL, run_a, NULL);
    pthread_create(&b, NULL, run_b, NULL);
    pthread_barrier_wait(&both_hold_one);
    printf("deadlocked\n");
    fflush(stdout);
    pthread_join(a, NULL);
    pthread_join(b, NULL);
    return 0;
}
