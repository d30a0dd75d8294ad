/* dist.h - data-parallel training over MPI: every process (rank) holds the
 * whole model, takes its own batches, and the ranks average their gradients
 * so that all of them apply the same update.
 *
 * Built with MPI (meson -Dmpi=auto finds it) and launched by mpirun, these
 * talk to MPI_COMM_WORLD. Built without MPI, or run without a launcher, the
 * same calls are one process: rank 0 of 1, and every collective leaves its
 * data as it is. So callers need no #ifdef.
 *
 * Every rank must make the same collective calls in the same order with the
 * same registry layout (same parameters, same shapes, same order). Only the
 * calling thread talks to MPI (MPI_THREAD_FUNNELED); OpenMP threads inside
 * kernels are fine.
 */
#ifndef NN_DIST_H
#define NN_DIST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "nn.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Starts MPI (MPI_Init_thread, FUNNELED) when this build has it and the
 * environment shows an MPI launcher (mpirun / mpiexec / srun); otherwise one
 * process. false with the reason in err when MPI cannot start, or when a
 * launcher started several ranks of a build without MPI (each would train
 * alone). Call once, before anything else here; argc/argv may be NULL. */
NN_API bool nn_dist_init(int *argc, char ***argv, char *err, size_t errlen);
/* true when this build was compiled with MPI (whether or not it was launched by one). */
NN_API bool nn_dist_available(void);
/* This process's rank in [0, size); 0 before init or without MPI. */
NN_API int nn_dist_rank(void);
/* Number of ranks; 1 before init or without MPI. */
NN_API int nn_dist_size(void);
/* Ends MPI (MPI_Finalize) if init started it; frees the bucket buffer. */
NN_API void nn_dist_finalize(void);
/* Stops every rank with exit status code (MPI_Abort on the world); exit(code) with one rank. */
NN_API _Noreturn void nn_dist_abort(int code);

/* Ranks on this host (MPI_COMM_TYPE_SHARED): for sharing its cores among them. 1 without MPI. */
NN_API int nn_dist_local_size(void);
/* A collective that waits longer than this for the other ranks (one is gone,
 * say its host, or stuck) makes this rank print why and exit(1), which ends
 * the job: never a hang. Default 600 s, or $NN_DIST_TIMEOUT at init; 0 for
 * none. A watchdog thread checks it each second. */
NN_API void nn_dist_set_timeout(double seconds);

/* Rank 0's bytes [0, n) into every rank's buf (MPI_Bcast). */
NN_API void nn_dist_broadcast(void *buf, size_t n);
/* Every rank's parameters become rank 0's, byte for byte (MPI_Bcast). */
NN_API void nn_dist_broadcast_params(nn_params *p);

/* grad <- (sum over ranks of grad) / size for every parameter that requires
 * grad, in place. Grads are packed in registration order into a persistent
 * bucket of nn_dist_bucket_bytes (a tensor may span buckets), each bucket
 * all-reduced (MPI_Allreduce, MPI_SUM) and unpacked. With more than one rank,
 * a parameter that has no grad yet on this rank gets a zeroed one first. extra[0..n_extra) (may be
 * NULL / 0) is summed, not averaged, across ranks in the same call: a step's
 * stop flag or loss rides along at no extra latency. */
NN_API void nn_dist_average_grads(nn_params *p, float *extra, int n_extra);

/* The bucket size in bytes (default 4 MiB); set before or between calls, every rank alike. */
NN_API void nn_dist_set_bucket_bytes(size_t bytes);
NN_API size_t nn_dist_bucket_bytes(void);

/* x[i] <- the sum (or max, or min) over ranks of x[i], i < n, on every rank. */
typedef enum { NN_DIST_SUM, NN_DIST_MAX, NN_DIST_MIN } nn_dist_op;
NN_API void nn_dist_allreduce_doubles(double *x, int n, nn_dist_op op);

/* FNV-1a (64-bit) over the 32-bit words of one tensor's data: equal data,
 * equal checksum; a single flipped bit changes it. */
NN_API uint64_t nn_tensor_checksum(const ag_tensor *t);
/* true if every rank's parameters are bit-identical to rank 0's (a checksum
 * per parameter, all-gathered); else false on every rank, with err naming the
 * first rank that differs and its first differing parameter. */
NN_API bool nn_dist_check_params(const nn_params *p, char *err, size_t errlen);

/* Where nn_dist_average_grads spent its time since init (or the last reset). */
typedef struct {
    int64_t calls;        /* nn_dist_average_grads calls that communicated */
    int64_t buckets;      /* MPI_Allreduce calls they made */
    int64_t bytes;        /* bytes all-reduced (per rank, before the algorithm's own traffic) */
    double reduce_s;      /* wall seconds inside MPI_Allreduce (waiting on the slowest rank included) */
    double total_s;       /* wall seconds in nn_dist_average_grads: pack + reduce + unpack */
} nn_dist_stats;
NN_API nn_dist_stats nn_dist_get_stats(void);
NN_API void nn_dist_reset_stats(void);

#ifdef __cplusplus
}
#endif
#endif
