/* dist.c - data-parallel collectives (dist.h) over MPI_COMM_WORLD, or one
 * process when the build has no MPI (NN_HAVE_MPI unset) or nothing launched
 * it under mpirun. The single-process path never touches MPI, so every
 * collective below returns early when there is one rank. */
#include "dist.h"
#include "private.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifdef NN_HAVE_MPI
#include <mpi.h>
#include <pthread.h>
#include <signal.h>
#include <unistd.h>
#endif

/* A run of floats in the bucket: grads of one tensor from off (tensor >= 0),
 * or the caller's extra values (tensor == -1). */
typedef struct {
    int tensor;
    int64_t off, n;
} segment;

static struct {
    bool mpi_on;          /* we called MPI_Init_thread and must finalize */
    int rank, size, local_size;
    size_t bucket_bytes;
    float *bucket;        /* persistent: bucket_bytes / 4 floats */
    size_t bucket_cap;    /* floats */
    segment *segs;
    int nsegs, segs_cap;
    nn_dist_stats stats;
} g = {.rank = 0, .size = 1, .local_size = 1, .bucket_bytes = (size_t)4 << 20};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ---------------------------------------------------------------- watchdog */

#ifdef NN_HAVE_MPI
/* Open MPI's mpirun ends the job when a rank exits or is killed, but a rank
 * that stops answering (its host gone, a stuck process) would leave the
 * others in MPI_Allreduce for ever. The watchdog thread turns such a wait
 * into an exit once it outlasts the timeout. It never calls MPI (the library
 * runs at MPI_THREAD_FUNNELED). */
static struct {
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool running, quit;
    double timeout;       /* seconds; 0 off */
    double since;         /* when the current collective began; 0 when none */
    const char *what;
} wd = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER, .timeout = 600};

static void *watchdog(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&wd.mu);
    while (!wd.quit) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += 1;
        pthread_cond_timedwait(&wd.cv, &wd.mu, &ts);
        double waited = wd.since > 0 ? now_s() - wd.since : 0;
        if (!wd.quit && wd.timeout > 0 && waited > wd.timeout) {
            fprintf(stderr, "nn_dist: rank %d has waited %.0f s in %s for the other ranks (timeout "
                    "%.0f s, NN_DIST_TIMEOUT): one of them is gone or stuck; exiting\n", g.rank,
                    waited, wd.what, wd.timeout);
            fflush(stderr);
            _exit(1);
        }
    }
    pthread_mutex_unlock(&wd.mu);
    return NULL;
}

static void coll_begin(const char *what)
{
    pthread_mutex_lock(&wd.mu);
    wd.since = now_s();
    wd.what = what;
    pthread_mutex_unlock(&wd.mu);
}

static void coll_end(void)
{
    pthread_mutex_lock(&wd.mu);
    wd.since = 0;
    pthread_mutex_unlock(&wd.mu);
}
#endif

void nn_dist_set_timeout(double seconds)
{
#ifdef NN_HAVE_MPI
    pthread_mutex_lock(&wd.mu);
    wd.timeout = seconds > 0 ? seconds : 0;
    pthread_mutex_unlock(&wd.mu);
#else
    (void)seconds;
#endif
}

static void *xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (!q)
        nn_oom();
    return q;
}

bool nn_dist_available(void)
{
#ifdef NN_HAVE_MPI
    return true;
#else
    return false;
#endif
}

/* Whether an MPI launcher started us: Open MPI's mpirun, MPICH's hydra and
 * Slurm (PMI / PMIx) each leave a variable. Without one we stay a single
 * process and never start MPI, so `gpt train` alone behaves as it always has
 * (and Open MPI's singleton start-up, which forks a daemon, is not paid). */
static bool launched_by_mpi(void)
{
    static const char *vars[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "PMI_RANK"};
    for (size_t i = 0; i < sizeof vars / sizeof *vars; i++)
        if (getenv(vars[i]))
            return true;
    return false;
}

#ifndef NN_HAVE_MPI
/* The number of ranks the launcher says it started, or 0 when it does not say. */
static long launched_size(void)
{
    const char *n = getenv("OMPI_COMM_WORLD_SIZE");
    if (!n)
        n = getenv("PMI_SIZE");
    return n ? atol(n) : 0;
}
#endif

bool nn_dist_init(int *argc, char ***argv, char *err, size_t errlen)
{
#ifdef NN_HAVE_MPI
    int inited = 0;
    MPI_Initialized(&inited);
    if (inited || !launched_by_mpi())
        return true;
    int provided = 0;
    if (MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS) {
        snprintf(err, errlen, "MPI_Init_thread failed");
        return false;
    }
    g.mpi_on = true;
    if (provided < MPI_THREAD_FUNNELED) {
        snprintf(err, errlen, "this MPI gives thread level %d, and FUNNELED (%d) is needed for "
                 "OpenMP kernels", provided, MPI_THREAD_FUNNELED);
        return false;
    }
    MPI_Comm_rank(MPI_COMM_WORLD, &g.rank);
    MPI_Comm_size(MPI_COMM_WORLD, &g.size);
    MPI_Comm host;
    MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &host);
    MPI_Comm_size(host, &g.local_size);
    MPI_Comm_free(&host);
    const char *t = getenv("NN_DIST_TIMEOUT");
    if (t && *t)
        nn_dist_set_timeout(atof(t));
    wd.quit = false;
    /* the thread starts with every signal blocked, so the program's handlers
     * (gpt train's SIGINT/SIGTERM) run on its own threads */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    if (pthread_create(&wd.thread, NULL, watchdog, NULL) == 0)
        wd.running = true;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
#else
    (void)argc, (void)argv;
    /* N copies of a one-process build would each train alone and write the
     * same files: refuse instead */
    if (launched_by_mpi() && launched_size() > 1) {
        snprintf(err, errlen, "started as one of %ld MPI ranks, but this build has no MPI "
                 "(install libopenmpi-dev and reconfigure, meson -Dmpi=enabled)", launched_size());
        return false;
    }
#endif
    return true;
}

int nn_dist_rank(void) { return g.rank; }
int nn_dist_size(void) { return g.size; }
int nn_dist_local_size(void) { return g.local_size; }

void nn_dist_finalize(void)
{
#ifdef NN_HAVE_MPI
    if (wd.running) {
        pthread_mutex_lock(&wd.mu);
        wd.quit = true;
        pthread_cond_signal(&wd.cv);
        pthread_mutex_unlock(&wd.mu);
        pthread_join(wd.thread, NULL);
        wd.running = false;
    }
    if (g.mpi_on) {
        MPI_Finalize();
        g.mpi_on = false;
    }
#endif
    free(g.bucket);
    free(g.segs);
    g.bucket = NULL, g.bucket_cap = 0;
    g.segs = NULL, g.segs_cap = g.nsegs = 0;
    g.rank = 0, g.size = 1, g.local_size = 1;
}

_Noreturn void nn_dist_abort(int code)
{
    fflush(stdout);
    fflush(stderr);
#ifdef NN_HAVE_MPI
    if (g.mpi_on)
        MPI_Abort(MPI_COMM_WORLD, code);
#endif
    exit(code);
}

/* ---------------------------------------------------------------- raw collectives */

/* MPI counts are int: a long run goes in pieces of at most this many elements. */
#define MAX_COUNT ((int64_t)1 << 30)

static void bcast_bytes(void *x, size_t n)
{
#ifdef NN_HAVE_MPI
    coll_begin("a broadcast");
    for (size_t off = 0; off < n; off += (size_t)MAX_COUNT) {
        size_t k = n - off < (size_t)MAX_COUNT ? n - off : (size_t)MAX_COUNT;
        MPI_Bcast((char *)x + off, (int)k, MPI_BYTE, 0, MPI_COMM_WORLD);
    }
    coll_end();
#else
    (void)x, (void)n;
#endif
}

static void sum_floats(float *x, int n)
{
#ifdef NN_HAVE_MPI
    coll_begin("the gradient all-reduce");
    MPI_Allreduce(MPI_IN_PLACE, x, n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
    coll_end();
#else
    (void)x, (void)n;
#endif
}

/* all[r * n + i] <- rank r's mine[i]. */
static void allgather_u64(const uint64_t *mine, uint64_t *all, int n)
{
#ifdef NN_HAVE_MPI
    coll_begin("an all-gather");
    MPI_Allgather(mine, n, MPI_UINT64_T, all, n, MPI_UINT64_T, MPI_COMM_WORLD);
    coll_end();
#else
    memcpy(all, mine, (size_t)n * sizeof *mine);
#endif
}

void nn_dist_allreduce_doubles(double *x, int n, nn_dist_op op)
{
    if (g.size == 1 || n <= 0)
        return;
#ifdef NN_HAVE_MPI
    MPI_Op mop = op == NN_DIST_MAX ? MPI_MAX : op == NN_DIST_MIN ? MPI_MIN : MPI_SUM;
    coll_begin("an all-reduce");
    MPI_Allreduce(MPI_IN_PLACE, x, n, MPI_DOUBLE, mop, MPI_COMM_WORLD);
    coll_end();
#else
    (void)x, (void)op;
#endif
}

void nn_dist_broadcast(void *buf, size_t n)
{
    if (g.size > 1)
        bcast_bytes(buf, n);
}

/* ---------------------------------------------------------------- parameters */

/* Stops every rank unless all of them hold registries of the same size: a
 * collective over different layouts would mix up tensors or hang. */
static void check_layout(const nn_params *p)
{
    uint64_t mine[2] = {(uint64_t)p->n, (uint64_t)nn_params_numel(p)};
    uint64_t *all = xrealloc(NULL, (size_t)g.size * sizeof mine);
    allgather_u64(mine, all, 2);
    for (int r = 1; r < g.size; r++)
        if (all[2 * r] != all[0] || all[2 * r + 1] != all[1]) {
            if (g.rank == 0)
                fprintf(stderr, "nn_dist: rank %d has %llu parameters (%llu elements), rank 0 has "
                        "%llu (%llu): every rank must build the same model\n", r,
                        (unsigned long long)all[2 * r], (unsigned long long)all[2 * r + 1],
                        (unsigned long long)all[0], (unsigned long long)all[1]);
            free(all);
            nn_dist_abort(1);
        }
    free(all);
}

void nn_dist_broadcast_params(nn_params *p)
{
    if (g.size == 1)
        return;
    check_layout(p);
    for (int i = 0; i < p->n; i++)
        bcast_bytes(p->items[i]->data, (size_t)p->items[i]->numel * sizeof(float));
}

void nn_dist_set_bucket_bytes(size_t bytes)
{
    if (bytes < sizeof(float))
        bytes = sizeof(float);
    if (bytes > (size_t)MAX_COUNT * sizeof(float))
        bytes = (size_t)MAX_COUNT * sizeof(float);
    g.bucket_bytes = bytes;
}

size_t nn_dist_bucket_bytes(void) { return g.bucket_bytes; }

static void add_segment(int tensor, int64_t off, int64_t n)
{
    if (g.nsegs == g.segs_cap) {
        g.segs_cap = g.segs_cap ? 2 * g.segs_cap : 64;
        g.segs = xrealloc(g.segs, (size_t)g.segs_cap * sizeof *g.segs);
    }
    g.segs[g.nsegs++] = (segment){tensor, off, n};
}

/* All-reduces the bucket's first `fill` floats and scatters them back: grads
 * divided by the number of ranks, extras as plain sums. */
static void flush(const nn_params *p, float *extra, size_t fill)
{
    if (fill == 0)
        return;
    double t0 = now_s();
    sum_floats(g.bucket, (int)fill);
    g.stats.reduce_s += now_s() - t0;
    g.stats.buckets++;
    g.stats.bytes += (int64_t)(fill * sizeof(float));
    const float ranks = (float)g.size;
    const float *src = g.bucket;
    for (int s = 0; s < g.nsegs; s++) {
        const segment *sg = &g.segs[s];
        if (sg->tensor < 0)
            memcpy(extra + sg->off, src, (size_t)sg->n * sizeof(float));
        else {
            float *dst = p->items[sg->tensor]->grad + sg->off;
            for (int64_t k = 0; k < sg->n; k++)
                dst[k] = src[k] / ranks;
        }
        src += sg->n;
    }
    g.nsegs = 0;
}

/* Copies n floats from src into the bucket as segment (tensor, off...),
 * flushing whenever the bucket fills, so a tensor larger than a bucket spans
 * several. */
static void pack(const nn_params *p, float *extra, size_t *fill, int tensor, const float *src,
                 int64_t n)
{
    int64_t off = 0;
    while (off < n) {
        int64_t room = (int64_t)(g.bucket_cap - *fill);
        int64_t k = n - off < room ? n - off : room;
        memcpy(g.bucket + *fill, src + off, (size_t)k * sizeof(float));
        add_segment(tensor, off, k);
        *fill += (size_t)k;
        off += k;
        if (*fill == g.bucket_cap) {
            flush(p, extra, *fill);
            *fill = 0;
        }
    }
}

void nn_dist_average_grads(nn_params *p, float *extra, int n_extra)
{
    if (g.size == 1)
        return;
    double t0 = now_s();
    size_t cap = g.bucket_bytes / sizeof(float);
    if (cap != g.bucket_cap) {
        free(g.bucket);
        g.bucket = xrealloc(NULL, cap * sizeof(float));
        g.bucket_cap = cap;
    }
    g.nsegs = 0;
    size_t fill = 0;
    for (int i = 0; i < p->n; i++) {
        ag_tensor *t = p->items[i];
        if (!ag_requires_grad(t))
            continue;
        if (!t->grad)
            ag_zero_grad(t);
        pack(p, extra, &fill, i, t->grad, t->numel);
    }
    if (extra && n_extra > 0)
        pack(p, extra, &fill, -1, extra, n_extra);
    flush(p, extra, fill);
    g.stats.calls++;
    g.stats.total_s += now_s() - t0;
}

/* ---------------------------------------------------------------- equality check */

uint64_t nn_tensor_checksum(const ag_tensor *t)
{
    /* word-wise FNV-1a: 4 bytes per multiply, fast enough to run at every
     * evaluation over the lecture model's 43 MB */
    uint64_t h = 0xcbf29ce484222325ull;
    const float *d = t->data;
    for (int64_t k = 0; k < t->numel; k++) {
        uint32_t w;
        memcpy(&w, &d[k], sizeof w);
        h = (h ^ w) * 0x100000001b3ull;
    }
    return h;
}

bool nn_dist_check_params(const nn_params *p, char *err, size_t errlen)
{
    if (g.size == 1)
        return true;
    check_layout(p);
    int n = p->n;
    uint64_t *mine = xrealloc(NULL, (size_t)(n ? n : 1) * sizeof *mine);
    uint64_t *all = xrealloc(NULL, (size_t)g.size * (size_t)(n ? n : 1) * sizeof *all);
    for (int i = 0; i < n; i++)
        mine[i] = nn_tensor_checksum(p->items[i]);
    if (n > 0)
        allgather_u64(mine, all, n);
    bool same = true;
    for (int r = 1; r < g.size && same; r++)
        for (int i = 0; i < n; i++)
            if (all[(size_t)r * (size_t)n + (size_t)i] != all[i]) {
                snprintf(err, errlen, "rank %d's parameters differ from rank 0's, first at %s "
                         "(checksum %016llx, rank 0 has %016llx)", r, p->items[i]->name,
                         (unsigned long long)all[(size_t)r * (size_t)n + (size_t)i],
                         (unsigned long long)all[i]);
                same = false;
                break;
            }
    free(mine);
    free(all);
    return same;
}

/* ---------------------------------------------------------------- stats */

nn_dist_stats nn_dist_get_stats(void) { return g.stats; }
void nn_dist_reset_stats(void) { memset(&g.stats, 0, sizeof g.stats); }
