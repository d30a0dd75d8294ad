/* broadcast.c - NumPy broadcasting: output shapes, strides, and the sum that
 * undoes a broadcast in backward. */
#include "internal.h"

bool ag_broadcast_shape(const ag_tensor *a, const ag_tensor *b, int *ndim, int64_t *shape)
{
    int nd = a->ndim > b->ndim ? a->ndim : b->ndim;
    for (int i = 0; i < nd; i++) {
        int ia = i - (nd - a->ndim), ib = i - (nd - b->ndim);
        int64_t da = ia >= 0 ? a->shape[ia] : 1, db = ib >= 0 ? b->shape[ib] : 1;
        if (da != db && da != 1 && db != 1)
            return false;
        shape[i] = da == 1 ? db : da;
    }
    *ndim = nd;
    return true;
}

void ag_broadcast_strides(const ag_tensor *t, int ndim, const int64_t *shape, int64_t *strides)
{
    int64_t own[AG_MAX_DIMS];
    ag_strides(t->ndim, t->shape, own);
    for (int i = 0; i < ndim; i++) {
        int j = i - (ndim - t->ndim);
        strides[i] = (j < 0 || (t->shape[j] == 1 && shape[i] != 1)) ? 0 : own[j];
    }
}

/* Offset of row r (all dims but the last) under strides st. */
static inline int64_t row_offset(int64_t r, int ndim, const int64_t *shape, const int64_t *st)
{
    int64_t off = 0;
    for (int d = ndim - 2; d >= 0; d--) {
        off += (r % shape[d]) * st[d];
        r /= shape[d];
    }
    return off;
}

/* sum of src[lo, hi) for ag_parallel_sum */
static double sum_range(int64_t lo, int64_t hi, void *src)
{
    const float *x = src;
    double s = 0;
    for (int64_t i = lo; i < hi; i++)
        s += x[i];
    return s;
}

void ag_accum_reduce(float *dst, const ag_tensor *t, const float *src, const ag_tensor *out,
                     float scale, bool overwrite)
{
    int64_t n = out->numel;
    if (t->numel == n) {
        if (overwrite) {
            AG_PARALLEL(n, ,
            for (int64_t i = 0; i < n; i++)
                dst[i] = scale * src[i];
            );
        } else {
            AG_PARALLEL(n, ,
            for (int64_t i = 0; i < n; i++)
                dst[i] += scale * src[i];
            );
        }
        return;
    }
    if (overwrite) /* the reductions below add up: start them from zero */
        memset(dst, 0, (size_t)t->numel * sizeof *dst);
    if (t->numel == 1) {
        double s = ag_parallel_sum(n, n, sum_range, (void *)src);
        dst[0] += scale * (float)s;
        return;
    }
    /* t is out with the last dim kept as 1 (a mean's grad): row sums, split by rows */
    int64_t L = out->ndim ? out->shape[out->ndim - 1] : 1;
    bool per_row = t->ndim == out->ndim && t->numel * L == n && t->shape[t->ndim - 1] == 1;
    for (int i = 0; per_row && i < t->ndim - 1; i++)
        per_row = t->shape[i] == out->shape[i];
    if (per_row) {
        AG_PARALLEL(n, ,
        for (int64_t r = 0; r < t->numel; r++) {
            dst[r] += scale * ag_sumf(src + r * L, L);
        }
        );
        return;
    }
    /* t matches out's trailing numel elements (a bias): column sums, split by columns */
    int64_t m = t->numel;
    bool suffix = n % m == 0;
    for (int i = 0; suffix && i < t->ndim; i++) {
        int j = out->ndim - t->ndim + i;
        suffix = j >= 0 && t->shape[i] == out->shape[j];
    }
    if (suffix) {
        int64_t rows = n / m;
        AG_PARALLEL(m >= 64 ? n : 0, ,
        for (int64_t c0 = 0; c0 < m; c0 += 64) {
            int64_t c1 = c0 + 64 < m ? c0 + 64 : m;
            float acc[64] = {0};
            for (int64_t r = 0; r < rows; r++)
                for (int64_t c = c0; c < c1; c++)
                    acc[c - c0] += src[r * m + c];
            for (int64_t c = c0; c < c1; c++)
                dst[c] += scale * acc[c - c0];
        }
        );
        return;
    }
    /* general: walk out's rows, adding into t's broadcast positions */
    int nd = out->ndim;
    int64_t st[AG_MAX_DIMS];
    ag_broadcast_strides(t, nd, out->shape, st);
    /* L == 0 only when out is empty: then there is nothing to add */
    int64_t sl = st[nd - 1], rows = L ? n / L : 0;
    for (int64_t r = 0; r < rows; r++) {
        float *d = dst + row_offset(r, nd, out->shape, st);
        const float *s = src + r * L;
        if (sl)
            for (int64_t i = 0; i < L; i++)
                d[i] += scale * s[i];
        else {
            float acc = 0;
            for (int64_t i = 0; i < L; i++)
                acc += s[i];
            d[0] += scale * acc;
        }
    }
}

void ag_sum_product(float *dst, bool per_row, const float *g, const float *x, int64_t rows,
                    int64_t L, bool overwrite)
{
    if (per_row) {
        AG_PARALLEL(rows * L, ,
        for (int64_t r = 0; r < rows; r++) {
            float acc = ag_dot(g + r * L, x + r * L, L);
            dst[r] = (overwrite ? 0.0f : dst[r]) + acc;
        }
        );
        return;
    }
    /* column sums, split by blocks of 64 columns so threads never share a dst element */
    AG_PARALLEL(L >= 64 ? rows * L : 0, ,
    for (int64_t c0 = 0; c0 < L; c0 += 64) {
        int64_t c1 = c0 + 64 < L ? c0 + 64 : L;
        float acc[64] = {0};
        for (int64_t r = 0; r < rows; r++)
            for (int64_t c = c0; c < c1; c++)
                acc[c - c0] += g[r * L + c] * x[r * L + c];
        for (int64_t c = c0; c < c1; c++)
            dst[c] = (overwrite ? 0.0f : dst[c]) + acc[c - c0];
    }
    );
}
