/* conv.h - what the convolution and pooling ops (ops_conv.c, ops_pool.c)
 * share with the tests that hold their GEMM path to the direct loops: the
 * geometry of one call, which is also the ops' saved attributes. */
#ifndef AG_CONV_H
#define AG_CONV_H

#include "internal.h"

/* One 2-d convolution or pooling; the 1-d ops are the case H = kH = 1,
 * sh = dh = 1, ph = 0. Input (N, C, H, W), output (N, M, OH, OW), conv
 * weight (M, C / groups, kH, kW). Pools have M = groups = C, dh = dw = 1. */
typedef struct {
    int64_t N, C, H, W;
    int64_t M, kH, kW;
    int64_t OH, OW;
    int64_t sh, sw, ph, pw, dh, dw;
    int64_t groups;
} ag_conv_geom;

/* Output size of one spatial dim, as PyTorch: floor((in + 2 pad - dil (k - 1) - 1) / stride) + 1;
 * <= 0 when the dilated kernel is larger than the padded input. */
static inline int64_t ag_conv_out_size(int64_t in, int64_t k, int64_t stride, int64_t pad,
                                       int64_t dil)
{
    int64_t span = in + 2 * pad - dil * (k - 1) - 1;
    return span < 0 ? 0 : span / stride + 1;
}

/* The outputs [*lo, *hi) of one spatial dim whose input o * s + off lies in [0, n):
 * for a kernel tap at offset off = tap * dilation - padding, the outputs that
 * meet the input rather than padding. */
static inline void ag_conv_valid_range(int64_t off, int64_t s, int64_t n, int64_t out, int64_t *lo,
                                       int64_t *hi)
{
    int64_t l = off >= 0 ? 0 : (-off + s - 1) / s;
    int64_t h = n - off <= 0 ? 0 : (n - off + s - 1) / s;
    h = h < out ? h : out;
    *lo = l < h ? l : h;
    *hi = h;
}

/* "3" for one spatial dim (b), "(3, 2)" for two (a, b): sizes in error messages */
static inline const char *ag_conv_dims_str(char *buf, size_t n, int nd, int64_t a, int64_t b)
{
    if (nd == 1)
        snprintf(buf, n, "%lld", (long long)b);
    else
        snprintf(buf, n, "(%lld, %lld)", (long long)a, (long long)b);
    return buf;
}

/* The convolution written as its direct loops, accumulated in double: the
 * reference ops_conv.c's im2col + GEMM path is tested against.
 * y (N, M, OH, OW) = conv(x (N, C, H, W), w (M, C / groups, kH, kW)) + b (M), b may be NULL. */
void ag_conv_direct(const ag_conv_geom *g, const float *x, const float *w, const float *b,
                    float *y);
/* Its backward for output grad gy (N, M, OH, OW): gx (N, C, H, W), gw (like w) and gb (M)
 * each += their share; any of the three may be NULL. */
void ag_conv_direct_backward(const ag_conv_geom *g, const float *x, const float *w,
                             const float *gy, float *gx, float *gw, float *gb);

#endif
