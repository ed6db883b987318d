// A long sleep inside a traced function, for the stall watchdog's tests:
// `stall_sleep ALARM_S` is ended by SIGALRM after ALARM_S seconds.
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

__attribute__((noinline)) void nap(void) {
    sleep(60); /* SLEEPS */
    printf("woke\n");
}

int main(int argc, char **argv) {
    alarm(argc > 1 ? atoi(argv[1]) : 20);
    printf("sleeping\n");
    fflush(stdout);
    nap();
    return 0;
}
