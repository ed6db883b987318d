// A thread spinning in an infinite loop, for the stall watchdog's tests:
// `stall_spin ALARM_S` is ended by SIGALRM after ALARM_S seconds.
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

volatile unsigned long spins;

__attribute__((noinline)) void spin_forever(void) {
    // Not a bare loop: a loop starting at the function's first instruction
    // would fire its entry probe on every turn.
    spins = 0;
    for (;;) {
        spins++; /* SPINS */
    }
}

static void *run(void *arg) {
    (void)arg;
    pthread_setname_np(pthread_self(), "spinner");
    spin_forever();
    return NULL;
}

int main(int argc, char **argv) {
    alarm(argc > 1 ? atoi(argv[1]) : 20);
    pthread_t t;
    pthread_create(&t, NULL, run, NULL);
    printf("spinning\n");
    fflush(stdout);
    pthread_join(t, NULL);
    return 0;
}
