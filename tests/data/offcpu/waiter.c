/* A program whose off-CPU time is known: one thread sleeps in wait_here() (nanosleep),
 * another waits for a mutex in lock_wait_here() while a third holds it. Each measures the
 * time it spends inside those functions (CLOCK_MONOTONIC) and prints it, in microseconds,
 * when it ends. It starts measuring when a line comes on stdin (so a tracer can attach
 * first), runs for argv[1] seconds, prints "wait_here US" and "lock_wait_here US", then
 * waits for stdin to close. Built by tests/collector/test_offcpu.py with
 * `cc -O1 -g -fno-omit-frame-pointer -pthread`. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static volatile int running = 1;
static double sleep_spent, lock_spent;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void pause_ms(long ms) {
    struct timespec ts = {0, ms * 1000000L};
    nanosleep(&ts, NULL);
}

/* glibc's nanosleep and pthread_mutex_lock keep no frame pointer, so a frame-pointer walk
 * from inside them skips their caller: these one-line callers are the frames it skips,
 * and wait_here() and lock_wait_here() show. */
__attribute__((noinline)) void sleep_once(void) {
    struct timespec ts = {0, 10 * 1000000L};
    nanosleep(&ts, NULL);
    __asm__ volatile("" ::: "memory"); /* keeps the call out of tail position */
}

__attribute__((noinline)) void lock_once(void) {
    pthread_mutex_lock(&lock);
    __asm__ volatile("" ::: "memory");
}

__attribute__((noinline)) void wait_here(void) {
    double start = now();
    sleep_once();
    sleep_spent += now() - start;
    __asm__ volatile("" ::: "memory");
}

__attribute__((noinline)) void lock_wait_here(void) {
    double start = now();
    lock_once();
    lock_spent += now() - start;
    pthread_mutex_unlock(&lock);
    __asm__ volatile("" ::: "memory");
}

__attribute__((noinline)) void hold_lock(void) {
    pthread_mutex_lock(&lock);
    pause_ms(20);
    pthread_mutex_unlock(&lock);
    __asm__ volatile("" ::: "memory");
}

static void *sleeper(void *arg) {
    (void)arg;
    while (running) wait_here();
    return NULL;
}

static void *waiter(void *arg) {
    (void)arg;
    while (running) {
        lock_wait_here();
        pause_ms(3);
    }
    return NULL;
}

static void *holder(void *arg) {
    (void)arg;
    while (running) {
        hold_lock();
        pause_ms(1);
    }
    return NULL;
}

int main(int argc, char **argv) {
    double seconds = argc > 1 ? atof(argv[1]) : 30.0;
    char line[64];
    pthread_t threads[3];
    if (!fgets(line, sizeof line, stdin)) return 1;
    pthread_create(&threads[0], NULL, holder, NULL);
    pthread_create(&threads[1], NULL, sleeper, NULL);
    pthread_create(&threads[2], NULL, waiter, NULL);
    pause_ms(0);
    struct timespec total = {(time_t)seconds, (long)((seconds - (time_t)seconds) * 1e9)};
    nanosleep(&total, NULL);
    running = 0;
    for (int i = 0; i < 3; i++) pthread_join(threads[i], NULL);
    printf("wait_here %.0f\nlock_wait_here %.0f\n", sleep_spent * 1e6, lock_spent * 1e6);
    fflush(stdout);
    while (fgets(line, sizeof line, stdin)) {
    }
    return 0;
}
