/* threads.c - how many threads each parallel loop gets.
 *
 * A loop is cut into parts by its work and the thread count alone (ag_parts:
 * work / grain, at most ag_set_num_threads' count), so whatever depends on
 * the split -- partial sums added in part order -- comes out the same on any
 * machine and under any load. The parts run on a team (ag_team): the
 * thread count, at most the CPUs, fewer while the machine is busy (a cap).
 * Every region gets that same team: libgomp ends the threads a smaller team
 * leaves out and creates them anew for the next larger one (tens of
 * microseconds each), which costs more than idle members at a barrier. So
 * a loop goes parallel only with parts for at least half the team (on two
 * threads, where the grains were tuned: any 2 parts); below that, and for
 * one part, it runs on the calling thread without entering OpenMP.
 *
 * Why the cap: libgomp's threads spin at each barrier (for milliseconds; it
 * reads OMP_WAIT_POLICY and GOMP_SPINCOUNT once, in its own constructor,
 * before any code of ours runs, so the library cannot change them). With
 * other processes on the cores a worker is descheduled while the master
 * spins out its slice at the region's end: every parallel loop then costs a
 * scheduler slice, and the small models' steps were 200x slower at 2
 * threads than at 1. So each region is timed (ag_region_*; a BLAS call as a
 * whole, ag_team_note): its team came late when a worker started its share
 * more than 50 us and more than half the region's time after the master (it
 * cost more than it gave). Two late teams among the last 8 halve the cap,
 * down to 1 (no region, no barrier at all); after a back-off (50 ms,
 * doubling while probes fail within a second, at most 2 s) a probe doubles
 * it again. Results never change with it: the parts stay, only the threads
 * running them change. AG_ADAPTIVE_THREADS=0 keeps the cap at the CPUs;
 * AG_THREADS_TRACE=1 prints each change on stderr. */
#include "internal.h"

#include <omp.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#ifdef AG_HAVE_OPENBLAS
void openblas_set_num_threads(int n);
#endif

/* A worker that starts this much later than the master, and later than
 * half the region's time, cost more than it gave: its team came late. */
#define LATE_NS 50000
/* teams remembered, and how many of them late before the cap halves */
#define HISTORY_MASK 0xffu
#define LATE_TO_HALVE 2
#define BACKOFF_MIN_NS 50000000LL
#define BACKOFF_MAX_NS 2000000000LL
#define HELD_NS 1000000000LL

static struct {
    atomic_int requested;   /* ag_set_num_threads, or OpenMP's default; 0 until first use */
    atomic_int limit;       /* requested, at most the CPUs this process may run on */
    atomic_int cap;         /* most threads a region may use now, 1..limit */
    atomic_uint history;    /* a bit per recent region, 1 when its team came late */
    atomic_llong probe_at;  /* while capped: when to try twice as many threads */
    atomic_llong raised_at; /* when a probe last raised the cap */
    atomic_llong backoff;   /* wait before the next probe */
    atomic_int adaptive;    /* 0 when AG_ADAPTIVE_THREADS=0: the cap stays put */
    atomic_int trace;       /* AG_THREADS_TRACE=1: each change of the cap on stderr */
} pool;

int64_t ag_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void trace(const char *why, int cap, int64_t now)
{
    if (atomic_load_explicit(&pool.trace, memory_order_relaxed))
        fprintf(stderr, "agrad threads: %.3f s: %s, %d of %d in use\n", (double)now / 1e9, why,
                cap, atomic_load(&pool.requested));
}

/* Starts over with n threads: parts up to n, teams up to the CPUs (more
 * threads than CPUs only queue behind each other at every barrier). */
static void reset(int n)
{
    int cpus = omp_get_num_procs();
    int limit = n < cpus ? n : cpus;
    atomic_store(&pool.limit, limit < 1 ? 1 : limit);
    atomic_store(&pool.cap, limit < 1 ? 1 : limit);
    atomic_store(&pool.history, 0u);
    atomic_store(&pool.backoff, BACKOFF_MIN_NS);
    atomic_store(&pool.raised_at, 0);
    atomic_store(&pool.probe_at, 0);
    atomic_store(&pool.requested, n);
}

static int requested(void)
{
    int n = atomic_load_explicit(&pool.requested, memory_order_relaxed);
    if (n > 0)
        return n;
    /* first use: OpenMP's count (OMP_NUM_THREADS, else the cores) */
    const char *e = getenv("AG_ADAPTIVE_THREADS"), *t = getenv("AG_THREADS_TRACE");
    atomic_store(&pool.adaptive, !(e && e[0] == '0' && !e[1]));
    atomic_store(&pool.trace, t && t[0] == '1');
    n = omp_get_max_threads();
    reset(n < 1 ? 1 : n);
    return atomic_load(&pool.requested);
}

void ag_set_num_threads(int n)
{
    if (n < 1)
        n = 1;
    requested(); /* reads the environment once */
    omp_set_num_threads(n);
#ifdef AG_HAVE_OPENBLAS
    /* The OpenMP build of OpenBLAS runs on our OpenMP pool; this keeps its
     * own idea of the count in step so the two never oversubscribe. */
    openblas_set_num_threads(n);
#endif
    reset(n); /* what the pool learnt about contention starts over */
}

int ag_get_num_threads(void) { return requested(); }

int ag_threads_in_use(void)
{
    requested();
    return atomic_load(&pool.cap);
}

void ag_team_hold_cap(int cap, int64_t hold_ns)
{
    requested();
    int limit = atomic_load(&pool.limit);
    atomic_store(&pool.cap, cap < 1 ? 1 : cap > limit ? limit : cap);
    atomic_store(&pool.history, 0u);
    atomic_store(&pool.probe_at, ag_now_ns() + hold_ns);
}

int ag_parts(int64_t work, int64_t grain)
{
    int64_t p = work / (grain > 1 ? grain : 1);
    int n = requested();
    return p >= n ? n : p < 1 ? 1 : (int)p;
}

int ag_parts_past(int64_t work, int64_t min)
{
    if (work <= min)
        return 1;
    int p = ag_parts(work, min);
    return p >= 2 ? p : requested() >= 2 ? 2 : 1;
}

int ag_team(int parts)
{
    if (parts < 2 || omp_in_parallel())
        return 1;
    requested();
    int cap = atomic_load_explicit(&pool.cap, memory_order_relaxed);
    int limit = atomic_load_explicit(&pool.limit, memory_order_relaxed);
    if (cap < limit) {
        /* capped: time to probe? */
        int64_t now = ag_now_ns();
        if (now >= atomic_load(&pool.probe_at)) {
            cap = 2 * cap < limit ? 2 * cap : limit;
            atomic_store(&pool.history, 0u);
            atomic_store(&pool.raised_at, now);
            atomic_store(&pool.cap, cap);
            trace("probe", cap, now);
        }
    }
    /* One team size for every region (see internal.h), so a loop goes
     * parallel only when each member gets half a part's work or more: the
     * grains were tuned on two threads, where that is any 2 parts. */
    return 2 * parts >= cap ? cap : 1;
}

void ag_region_begin(ag_region *r)
{
    atomic_store_explicit(&r->late, 0, memory_order_relaxed);
    r->t0 = ag_now_ns();
}

void ag_region_enter(ag_region *r)
{
    if (omp_get_thread_num() == 0)
        return;
    int64_t d = ag_now_ns() - r->t0;
    long long seen = atomic_load_explicit(&r->late, memory_order_relaxed);
    while (d > seen &&
           !atomic_compare_exchange_weak_explicit(&r->late, &seen, d, memory_order_relaxed,
                                                  memory_order_relaxed))
        ;
}

void ag_team_note(int team, bool late, int64_t now)
{
    unsigned h = ((atomic_load_explicit(&pool.history, memory_order_relaxed) << 1) | late) &
                 HISTORY_MASK;
    atomic_store_explicit(&pool.history, h, memory_order_relaxed);
    if (!late || __builtin_popcount(h) < LATE_TO_HALVE || !atomic_load(&pool.adaptive))
        return;
    /* Halve the team that came late. A probe that failed within a second
     * of raising the cap means the load is still there: wait longer next
     * time; a cap that held longer met new load: probe again soon. */
    int cap = atomic_load(&pool.cap);
    int next = (team < cap ? team : cap) / 2;
    atomic_store(&pool.cap, next < 1 ? 1 : next);
    atomic_store(&pool.history, 0u);
    long long backoff = atomic_load(&pool.backoff);
    if (now - atomic_load(&pool.raised_at) < HELD_NS)
        backoff = 2 * backoff < BACKOFF_MAX_NS ? 2 * backoff : BACKOFF_MAX_NS;
    else
        backoff = BACKOFF_MIN_NS;
    atomic_store(&pool.backoff, backoff);
    atomic_store(&pool.probe_at, now + backoff);
    trace("workers late", next < 1 ? 1 : next, now);
}

void ag_region_end(ag_region *r, int team)
{
    int64_t now = ag_now_ns(), wall = now - r->t0;
    int64_t late = atomic_load_explicit(&r->late, memory_order_relaxed);
    ag_team_note(team, late > LATE_NS && 2 * late > wall, now);
}

void ag_parallel_for(int64_t n, int64_t min_per_thread,
                     void (*fn)(int64_t lo, int64_t hi, void *user), void *user)
{
    if (n <= 0)
        return;
    int parts = ag_parts(n, min_per_thread);
    /* serial without entering the OpenMP runtime (see AG_PARALLEL) */
    if (parts < 2 || omp_in_parallel()) {
        fn(0, n, user);
        return;
    }
    int team = ag_team(parts);
    if (team < 2) {
        for (int p = 0; p < parts; p++)
            fn(n * p / parts, n * (p + 1) / parts, user);
        return;
    }
    ag_region r;
    ag_region_begin(&r);
#pragma omp parallel num_threads(team)
    {
        ag_region_enter(&r);
#pragma omp for schedule(static) nowait
        for (int p = 0; p < parts; p++)
            fn(n * p / parts, n * (p + 1) / parts, user);
    }
    ag_region_end(&r, team);
}

/* The parts' sums added in part order, on this thread. */
static double serial_sum(int64_t n, int parts, double (*range)(int64_t, int64_t, void *),
                         void *user)
{
    double s = 0;
    for (int p = 0; p < parts; p++)
        s += range(n * p / parts, n * (p + 1) / parts, user);
    return s;
}

double ag_parallel_sum(int64_t n, int64_t work,
                       double (*range)(int64_t lo, int64_t hi, void *user), void *user)
{
    int parts = ag_par_parts(work);
    if (parts < 2 || omp_in_parallel())
        return parts < 2 ? range(0, n, user) : serial_sum(n, parts, range, user);
    double stack[16], *part = parts <= 16 ? stack : malloc((size_t)parts * sizeof *part);
    if (!part)
        return serial_sum(n, parts, range, user);
    int team = ag_team(parts);
    if (team < 2) {
        for (int p = 0; p < parts; p++)
            part[p] = range(n * p / parts, n * (p + 1) / parts, user);
    } else {
        ag_region r;
        ag_region_begin(&r);
#pragma omp parallel num_threads(team)
        {
            ag_region_enter(&r);
#pragma omp for schedule(static) nowait
            for (int p = 0; p < parts; p++)
                part[p] = range(n * p / parts, n * (p + 1) / parts, user);
        }
        ag_region_end(&r, team);
    }
    double s = 0;
    for (int p = 0; p < parts; p++)
        s += part[p];
    if (part != stack)
        free(part);
    return s;
}
