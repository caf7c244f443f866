/*
 * assist.c - one helper thread for work that is too short for an OpenMP team.
 *
 * A batch-1 forward spends most of its time streaming a weight matrix through one gemv of a
 * few microseconds. Splitting it over two cores halves that, but here an OpenMP parallel
 * region costs about 3 us to start and join and a team barrier about 1.7 us, while two
 * threads spinning on a shared flag see each other in about 0.1 us. So this file keeps one
 * thread of its own that spins for a while after each job (then sleeps on a futex), and hands
 * it parts of a job through one atomic word.
 *
 * The caller always takes parts too, and takes whatever the helper has not claimed yet: when
 * the helper is asleep, descheduled on a busy machine, or missing (after fork()), the caller
 * does the whole job itself and waits for nothing. Which thread runs a part changes nothing
 * in its result, so results do not depend on the thread count.
 */
#include "cpu.h"

#include <linux/futex.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#ifdef _OPENMP
#include <omp.h>
#endif

/* how long the helper spins after its last part before it sleeps */
#define SPIN_NS 200000

static struct {
    /* job number << 32 | lo << 16 | hi: parts [lo, hi) are unclaimed. Claims are CAS on the
     * whole word, so the helper never claims a part of another job */
    _Alignas(64) _Atomic uint64_t claim;
    /* the job number, also the futex word the helper sleeps on */
    _Alignas(64) _Atomic uint32_t posted;
    _Atomic int sleeping;
    /* parts finished by the helper in the current job */
    _Alignas(64) _Atomic int helped;
    /* the job: written by the caller before it publishes claim, read after a claim (which
     * orders the read after the write: the claimed part keeps the job in place) */
    cpu_assist_fn fn;
    void *arg;
    int nparts;
    /* 0: not started, 1: running, -1: could not start */
    int state;
    atomic_flag busy;
} A = {.busy = ATOMIC_FLAG_INIT};

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Claims and runs parts of job `job` until none is left; returns how many it ran. The caller
 * takes parts from the front and the helper from the back, so with steady timings each thread
 * gets the same rows every call and keeps them in its own cache (handing parts out in turn
 * made a 256x128 gemv twice as slow as one thread: its rows moved between the cores). */
static int run_parts(uint32_t job, bool front) {
    int ran = 0;
    uint64_t c = atomic_load_explicit(&A.claim, memory_order_acquire);
    for (;;) {
        uint64_t lo = (c >> 16) & 0xffff, hi = c & 0xffff;
        if ((uint32_t)(c >> 32) != job || lo >= hi) return ran;
        uint64_t next = front ? c + (1u << 16) : c - 1;
        if (!atomic_compare_exchange_weak_explicit(&A.claim, &c, next, memory_order_acq_rel,
                                                   memory_order_acquire))
            continue;
        A.fn(A.arg, (int)(front ? lo : hi - 1), A.nparts);
        ran++;
        c = atomic_load_explicit(&A.claim, memory_order_acquire);
    }
}

static void *helper_main(void *unused) {
    (void)unused;
    uint32_t seen = atomic_load(&A.posted);
    for (;;) {
        int64_t t0 = now_ns();
        int spins = 0;
        uint32_t job;
        while ((job = atomic_load_explicit(&A.posted, memory_order_acquire)) == seen) {
            cpu_relax();
            if (++spins % 1024 == 0 && now_ns() - t0 > SPIN_NS) {
                /* seq_cst pairs with the caller's increment and load of sleeping: either we
                 * see its new job here, or it sees us asleep and wakes us */
                atomic_store(&A.sleeping, 1);
                if (atomic_load(&A.posted) == seen)
                    syscall(SYS_futex, &A.posted, FUTEX_WAIT_PRIVATE, seen, NULL, NULL, 0);
                atomic_store(&A.sleeping, 0);
                t0 = now_ns();
            }
        }
        seen = job;
        int ran = run_parts(job, false);
        if (ran) atomic_fetch_add_explicit(&A.helped, ran, memory_order_release);
    }
    return NULL;
}

static bool start_helper(void) {
    if (A.state == 0) {
        pthread_t t;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        pthread_attr_setstacksize(&attr, 1 << 20);
        A.state = pthread_create(&t, &attr, helper_main, NULL) == 0 ? 1 : -1;
        pthread_attr_destroy(&attr);
    }
    return A.state == 1;
}

bool cpu_assist(cpu_assist_fn fn, void *arg, int nparts) {
    if (nparts < 2 || nparts > 0xffff || cpu_threads() < 2) return false;
#ifdef _OPENMP
    if (omp_in_parallel()) return false;
#endif
    /* one job at a time: a second Lua state on another thread runs alone meanwhile */
    if (atomic_flag_test_and_set_explicit(&A.busy, memory_order_acquire)) return false;
    if (!start_helper()) {
        atomic_flag_clear_explicit(&A.busy, memory_order_release);
        return false;
    }
    A.fn = fn;
    A.arg = arg;
    atomic_store_explicit(&A.helped, 0, memory_order_relaxed);
    uint32_t job = atomic_load_explicit(&A.posted, memory_order_relaxed) + 1;
    A.nparts = nparts;
    atomic_store_explicit(&A.claim, (uint64_t)job << 32 | (uint64_t)nparts, memory_order_release);
    atomic_store(&A.posted, job);
    if (atomic_load(&A.sleeping))
        syscall(SYS_futex, &A.posted, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
    int ran = run_parts(job, true);
    /* every part is claimed now; wait for those the helper is still running */
    while (ran + atomic_load_explicit(&A.helped, memory_order_acquire) < nparts)
        cpu_relax();
    atomic_flag_clear_explicit(&A.busy, memory_order_release);
    return true;
}
