// A thread that spends its time reading the clock (inside the vDSO), for
// the stall watchdog's tests: `stall_clock ALARM_S` is ended by SIGALRM.
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

volatile long last;

__attribute__((noinline)) void poll_clock(void) {
    struct timespec ts;
    last = 0;
    for (;;) {
        clock_gettime(CLOCK_MONOTONIC, &ts); /* POLLS */
        last = ts.tv_nsec;
    }
}

int main(int argc, char **argv) {
    alarm(argc > 1 ? atoi(argv[1]) : 20);
    printf("polling\n");
    fflush(stdout);
    poll_clock();
    return 0;
}
