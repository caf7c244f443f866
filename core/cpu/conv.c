/*
 * conv.c - the CPU kernels of convolution and pooling: im2col / col2im (the convolution
 * itself is a GEMM on the columns, done by the op layer) and max / average / adaptive
 * average pooling with their backward passes. Every tensor is contiguous; loops run over
 * the [n, c] planes, each plane on one thread, since planes never write to each other.
 * The typed bodies are written once as macros over T (float or double).
 */
#include "cpu.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* `for (p = 0; p < n; p++) body` across planes, by OpenMP when the whole job is worth it
 * (never around a GEMM). CPU_FOR, not an if clause: a region whose clause is false still
 * started a team, and its futex wake-up is a system call (LeNet: ~100 a step, ~5%). */
#define PLANES_FOR(work, n, ...)                                                              \
    CPU_FOR(cpu_threads() > 1 && (work) > LUNAR_GRAIN, cpu_threads(),                         \
            (int64_t p = 0; p < (n); p++), __VA_ARGS__)

static lunar_status bad_dtype(const char *op, lunar_dtype dt) {
    return lunar_fail(LUNAR_ERR_DTYPE, "%s: needs float32 or float64 (got %s)", op,
                      lunar_dtype_name(dt));
}

/* ---- im2col / col2im ----
 * Row (c, ki, kj) of a column matrix holds, for each output position (oy, ox), the input
 * value under kernel tap (ki, kj): x[c, oy sh - pt + ki dh, ox sw - pl + kj dw], or 0 in the
 * padding. col2im is its adjoint: each column entry is added back where it was read. */
/* The output columns [*lo, *hi) whose tap at offset off = k d - pad lands inside [0, n)
 * (ix = o s + off), so the inner loops need no bounds test. */
static void tap_range(int64_t off, int64_t s, int64_t n, int64_t on, int64_t *lo, int64_t *hi) {
    int64_t l = off >= 0 ? 0 : (-off + s - 1) / s;
    int64_t h = n - 1 - off < 0 ? 0 : (n - 1 - off) / s + 1;
    if (l > on) l = on;
    if (h > on) h = on;
    if (h < l) h = l;
    *lo = l, *hi = h;
}

/* The forward at column stride 1 with rows of at least 32 bytes: every column row is a
 * copy of ow elements out of the zero-padded plane (made once per plane when there is
 * padding), in 32-byte moves with the last one overlapping, so no row has a scalar tail
 * or a clipped range (conv1 of LeNet: 28-wide rows, padding 2). The moves are vector
 * assignments: GCC made a 32-byte memcpy two 16-byte moves. Falls through to the
 * general loops when the padded plane cannot be allocated. */
#define IM2COL_UNIT(T)                                                                        \
    {                                                                                         \
        const int64_t V = 32 / (int64_t)sizeof(T);                                            \
        typedef T VU __attribute__((vector_size(32), aligned(sizeof(T))));                    \
        int64_t wp = gg->w + gg->pl + gg->pr, hp = gg->h + gg->pt + gg->pb;                   \
        bool padded = wp != gg->w || hp != gg->h;                                             \
        T *buf = padded ? malloc(sizeof(T) * (size_t)(hp * wp)) : NULL;                       \
        const T *src = padded ? buf : xs;                                                     \
        if (src) {                                                                            \
            if (padded) {                                                                     \
                memset(buf, 0, sizeof(T) * (size_t)(hp * wp));                                \
                for (int64_t y = 0; y < gg->h; y++)                                           \
                    memcpy(buf + (y + gg->pt) * wp + gg->pl, xs + y * gg->w,                  \
                           sizeof(T) * (size_t)gg->w);                                        \
            }                                                                                 \
            for (int64_t ki = 0; ki < gg->kh; ki++)                                           \
                for (int64_t kj = 0; kj < gg->kw; kj++) {                                     \
                    T *row = cs + (ki * gg->kw + kj) * L;                                     \
                    for (int64_t oy = 0; oy < gg->oh; oy++) {                                 \
                        const T *sr = src + (oy * gg->sh + ki * gg->dh) * wp + kj * gg->dw;   \
                        T *r = row + oy * ow;                                                 \
                        for (int64_t i = 0; i + V <= ow; i += V)                              \
                            *(VU *)(r + i) = *(const VU *)(sr + i);                           \
                        *(VU *)(r + ow - V) = *(const VU *)(sr + ow - V);                     \
                    }                                                                         \
                }                                                                             \
            free(buf);                                                                        \
            return;                                                                           \
        }                                                                                     \
    }

/* d[0..n) += r[0..n), n at least one 32-byte vector, with no scalar tail: the last partial
 * vector is added as the vector ending at n with its leading lanes (already added by the
 * vector before it) masked to 0. Both are loaded before either is stored and the earlier is
 * stored last, so the overlap ends up with the earlier vector's sums. */
typedef float vf32 __attribute__((vector_size(32)));
typedef int32_t vi32 __attribute__((vector_size(32)));
typedef double vf64 __attribute__((vector_size(32)));
typedef int64_t vi64 __attribute__((vector_size(32)));
#define ADD_ROW(T, VT, IT, d_, r_, n_)                                                        \
    do {                                                                                      \
        T *d = (d_);                                                                          \
        const T *rr = (r_);                                                                   \
        const int64_t V = 32 / (int64_t)sizeof(T), n = (n_);                                  \
        int64_t i = 0;                                                                        \
        for (; i + 2 * V <= n; i += V) {                                                      \
            VT a, b;                                                                          \
            memcpy(&a, d + i, 32);                                                            \
            memcpy(&b, rr + i, 32);                                                           \
            a += b;                                                                           \
            memcpy(d + i, &a, 32);                                                            \
        }                                                                                     \
        VT a0, b0, a1, b1;                                                                    \
        IT lane;                                                                              \
        for (int64_t l = 0; l < V; l++) lane[l] = l;                                          \
        memcpy(&a0, d + i, 32);                                                               \
        memcpy(&b0, rr + i, 32);                                                              \
        memcpy(&a1, d + n - V, 32);                                                           \
        memcpy(&b1, rr + n - V, 32);                                                          \
        __typeof__(lane[0]) first = (__typeof__(lane[0]))(2 * V - (n - i));                   \
        b1 = (VT)((IT)b1 & (lane >= first));                                                  \
        a0 += b0;                                                                             \
        a1 += b1;                                                                             \
        memcpy(d + n - V, &a1, 32);                                                           \
        memcpy(d + i, &a0, 32);                                                               \
    } while (0)

/* One plane: xs [h, w] and its kh * kw column rows cs [kh * kw, oh * ow]. A function of its
 * own so that it gets the AVX2 clone, and with plain loops rather than memcpy/memset per
 * row (LeNet's rows are 10 to 28 elements: the calls cost more than the copies). The
 * geometry is read from a local copy: the row moves may alias anything, so through the
 * pointer every row reloaded its fields (about a tenth of conv2d's forward). */
#define IM2COL_PLANE(T, VT, IT, ADJOINT)                                                      \
    {                                                                                         \
        const lunar_conv_geom gl_ = *gin, *gg = &gl_;                                         \
        int64_t L = gg->oh * gg->ow, ow = gg->ow, sw = gg->sw;                                \
        if (!(ADJOINT) && sw == 1 && ow * (int64_t)sizeof(T) >= 32) IM2COL_UNIT(T)            \
        if (ADJOINT)                                                                          \
            for (int64_t i = 0; i < gg->h * gg->w; i++) xs[i] = 0;                            \
        if ((ADJOINT) && sw == 1 && gg->sh == 1 && gg->dh == 1 && gg->dw == 1 &&              \
            gg->pt == 0 && gg->pl == 0 && gg->pb == 0 && gg->pr == 0 &&                       \
            ow * (int64_t)sizeof(T) >= 32) {                                                  \
            /* every row in bounds: the general loop's order without its per-row tests */     \
            for (int64_t ki = 0; ki < gg->kh; ki++)                                           \
                for (int64_t kj = 0; kj < gg->kw; kj++) {                                     \
                    const T *row = cs + (ki * gg->kw + kj) * L;                               \
                    T *xr = xs + ki * gg->w + kj;                                             \
                    for (int64_t oy = 0; oy < gg->oh; oy++)                                   \
                        ADD_ROW(T, VT, IT, xr + oy * gg->w, row + oy * ow, ow);               \
                }                                                                             \
            return;                                                                           \
        }                                                                                     \
        for (int64_t ki = 0; ki < gg->kh; ki++) {                                             \
            int64_t y_lo, y_hi;                                                               \
            tap_range(ki * gg->dh - gg->pt, gg->sh, gg->h, gg->oh, &y_lo, &y_hi);             \
            for (int64_t kj = 0; kj < gg->kw; kj++) {                                         \
                int64_t xoff = kj * gg->dw - gg->pl, lo, hi;                                  \
                tap_range(xoff, sw, gg->w, ow, &lo, &hi);                                     \
                T *row = cs + (ki * gg->kw + kj) * L;                                         \
                if (!(ADJOINT)) {                                                             \
                    for (int64_t i = 0; i < y_lo * ow; i++) row[i] = 0;                       \
                    for (int64_t i = y_hi * ow; i < L; i++) row[i] = 0;                       \
                }                                                                             \
                for (int64_t oy = y_lo; oy < y_hi; oy++) {                                    \
                    T *r = row + oy * ow;                                                     \
                    T *xr = xs + (oy * gg->sh - gg->pt + ki * gg->dh) * gg->w;                \
                    if (ADJOINT) {                                                            \
                        if (sw == 1 && lo == 0 && hi == ow && ow * (int64_t)sizeof(T) >= 32)  \
                            ADD_ROW(T, VT, IT, xr + xoff, r, ow);                              \
                        else if (sw == 1)                                                     \
                            for (int64_t ox = lo; ox < hi; ox++) xr[ox + xoff] += r[ox];      \
                        else                                                                  \
                            for (int64_t ox = lo; ox < hi; ox++) xr[ox * sw + xoff] += r[ox]; \
                    } else {                                                                  \
                        for (int64_t ox = 0; ox < lo; ox++) r[ox] = 0;                        \
                        if (sw == 1)                                                          \
                            for (int64_t ox = lo; ox < hi; ox++) r[ox] = xr[ox + xoff];       \
                        else                                                                  \
                            for (int64_t ox = lo; ox < hi; ox++) r[ox] = xr[ox * sw + xoff];  \
                        for (int64_t ox = hi; ox < ow; ox++) r[ox] = 0;                       \
                    }                                                                         \
                }                                                                             \
            }                                                                                 \
        }                                                                                     \
    }

/* GCC would turn the row loops back into memcpy/memset calls */
#if defined(__GNUC__) && !defined(__clang__)
#define NO_LIBCALLS __attribute__((optimize("no-tree-loop-distribute-patterns")))
#else
#define NO_LIBCALLS
#endif

CPU_CLONES NO_LIBCALLS static void im2col_plane_f32(float *restrict cs, float *restrict xs,
                                        const lunar_conv_geom *gin)
    // cppcheck-suppress uninitvar
    IM2COL_PLANE(float, vf32, vi32, 0)
CPU_CLONES NO_LIBCALLS static void im2col_plane_f64(double *restrict cs, double *restrict xs,
                                        const lunar_conv_geom *gin)
    // cppcheck-suppress uninitvar
    IM2COL_PLANE(double, vf64, vi64, 0)
CPU_CLONES NO_LIBCALLS static void col2im_plane_f32(float *restrict cs, float *restrict xs,
                                        const lunar_conv_geom *gin)
    // cppcheck-suppress uninitvar
    IM2COL_PLANE(float, vf32, vi32, 1)
CPU_CLONES NO_LIBCALLS static void col2im_plane_f64(double *restrict cs, double *restrict xs,
                                        const lunar_conv_geom *gin)
    // cppcheck-suppress uninitvar
    IM2COL_PLANE(double, vf64, vi64, 1)

#define IM2COL_BODY(T, FN)                                                                    \
    {                                                                                         \
        int64_t planes = g->n * g->c, hw = g->h * g->w, L = g->oh * g->ow;                    \
        int64_t kk = g->kh * g->kw;                                                           \
        T *xp = (T *)cpu_ptr(x);                                                              \
        T *cp = (T *)cpu_ptr(col);                                                            \
        PLANES_FOR(planes * kk * L, planes,                                                   \
            FN(cp + p * kk * L, xp + p * hw, g););                                            \
    }

static void im2col_f32(lunar_tensor *col, const lunar_tensor *x, const lunar_conv_geom *g)
    IM2COL_BODY(float, im2col_plane_f32)
static void im2col_f64(lunar_tensor *col, const lunar_tensor *x, const lunar_conv_geom *g)
    IM2COL_BODY(double, im2col_plane_f64)
static void col2im_f32(const lunar_tensor *col, lunar_tensor *x, const lunar_conv_geom *g)
    IM2COL_BODY(float, col2im_plane_f32)
static void col2im_f64(const lunar_tensor *col, lunar_tensor *x, const lunar_conv_geom *g)
    IM2COL_BODY(double, col2im_plane_f64)

/* x [n, c, h, w] -> col [n, c * kh * kw, oh * ow] */
lunar_status cpu_im2col(lunar_tensor *col, const lunar_tensor *x, const lunar_conv_geom *g) {
    if (x->dtype == LUNAR_F32) im2col_f32(col, x, g);
    else if (x->dtype == LUNAR_F64) im2col_f64(col, x, g);
    else return bad_dtype("im2col", x->dtype);
    return LUNAR_OK;
}

/* col [n, c * kh * kw, oh * ow] -> x [n, c, h, w] */
lunar_status cpu_col2im(lunar_tensor *x, const lunar_tensor *col, const lunar_conv_geom *g) {
    if (x->dtype == LUNAR_F32) col2im_f32(col, x, g);
    else if (x->dtype == LUNAR_F64) col2im_f64(col, x, g);
    else return bad_dtype("col2im", x->dtype);
    return LUNAR_OK;
}

/* ---- max pooling ----
 * Like PyTorch: the first maximum wins, a NaN always wins (so it propagates), and the
 * index starts at the window's first in-bounds element. A window wholly in the padding
 * (dilation with ceil_mode) gives -inf and an index past the plane, which the backward
 * pass skips. */
#define MAX_STEP(v, at)                                                                       \
    do {                                                                                      \
        if ((v) > best || isnan(v)) {                                                         \
            best = (v);                                                                       \
            bi = (at);                                                                        \
        }                                                                                     \
    } while (0)

/* The window's first in-bounds row (or column) and its end, for output position o. */
static void pool_span(int64_t o, int64_t s, int64_t pad, int64_t k, int64_t d, int64_t n,
                      int64_t *lo, int64_t *hi) {
    int64_t a = o * s - pad, b = a + (k - 1) * d + 1;
    if (a < 0) a += (-a + d - 1) / d * d;
    *lo = a, *hi = b > n ? n : b;
}

/* One output row of a 2x2 window at stride 2 with no padding, wholly inside the input
 * (LeNet's pooling): r0, r1 the window's two input rows, i0 the index of r0[0] in the
 * plane, w the plane's width. The same visiting order and winner as the general loop, as
 * selects that the compiler can vectorise (random data mispredicts branches half the time). */
#define MAX_SEL(v, at)                                                                        \
    do {                                                                                      \
        bool c_ = (v) > best || (v) != (v);                                                   \
        best = c_ ? (v) : best;                                                               \
        bi = c_ ? (at) : bi;                                                                  \
    } while (0)

#define MAX_ONE(T, ox)                                                                        \
    do {                                                                                      \
        T a = r0[2 * (ox)], b = r0[2 * (ox) + 1], c = r1[2 * (ox)], d = r1[2 * (ox) + 1];    \
        int64_t at = i0 + 2 * (ox), bi = at;                                                  \
        T best = (T)-INFINITY;                                                                \
        MAX_SEL(a, at);                                                                       \
        MAX_SEL(b, at + 1);                                                                   \
        MAX_SEL(c, at + w);                                                                   \
        MAX_SEL(d, at + w + 1);                                                               \
        yr[ox] = best;                                                                        \
        ir[ox] = bi;                                                                          \
    } while (0)

/* Blocks of 8 outputs (a fixed count the compiler vectorises whole); a row of at least 8
 * ends with the block ending at n, which recomputes a few outputs with the same result
 * instead of leaving a scalar tail (LeNet's first pooling: 14-wide rows). */
#define MAX_ROW2(T)                                                                           \
    {                                                                                         \
        if (n < 8) {                                                                          \
            for (int64_t ox = 0; ox < n; ox++) MAX_ONE(T, ox);                                \
            return;                                                                           \
        }                                                                                     \
        for (int64_t o0 = 0;; o0 += 8) {                                                      \
            if (o0 > n - 8) o0 = n - 8;                                                       \
            for (int64_t k = 0; k < 8; k++) MAX_ONE(T, o0 + k);                               \
            if (o0 == n - 8) break;                                                           \
        }                                                                                     \
    }

CPU_CLONES static void max_row2_f32(const float *restrict r0, const float *restrict r1,
                                    float *restrict yr, int64_t *restrict ir, int64_t n,
                                    int64_t i0, int64_t w) MAX_ROW2(float)
CPU_CLONES static void max_row2_f64(const double *restrict r0, const double *restrict r1,
                                    double *restrict yr, int64_t *restrict ir, int64_t n,
                                    int64_t i0, int64_t w) MAX_ROW2(double)

#define MAX_POOL_2X2(T)                                                                       \
    for (int64_t oy = 0; oy < g->oh; oy++) {                                                  \
        const T *r0 = xs + 2 * oy * g->w;                                                     \
        _Generic(r0, const float *: max_row2_f32, const double *: max_row2_f64)(              \
            r0, r0 + g->w, yp + p * L + oy * g->ow, ip + p * L + oy * g->ow, g->ow,           \
            2 * oy * g->w, g->w);                                                             \
    }

#define MAX_POOL_BODY(T)                                                                      \
    {                                                                                         \
        int64_t planes = g->n * g->c, hw = g->h * g->w, L = g->oh * g->ow;                    \
        const T *xp = (const T *)cpu_ptr(x);                                                  \
        T *yp = (T *)cpu_ptr(y);                                                              \
        int64_t *ip = (int64_t *)cpu_ptr(idx);                                                \
        bool two = g->kh == 2 && g->kw == 2 && g->sh == 2 && g->sw == 2 && g->pt == 0 &&      \
                   g->pl == 0 && g->dh == 1 && g->dw == 1 && 2 * g->oh <= g->h &&             \
                   2 * g->ow <= g->w;                                                         \
        PLANES_FOR(planes * L * g->kh * g->kw, planes,                                        \
        {                                                                                     \
            const T *xs = xp + p * hw;                                                        \
            if (two) {                                                                        \
                MAX_POOL_2X2(T)                                                               \
                continue;                                                                     \
            }                                                                                 \
            for (int64_t oy = 0; oy < g->oh; oy++) {                                          \
                int64_t y0, y1;                                                               \
                pool_span(oy, g->sh, g->pt, g->kh, g->dh, g->h, &y0, &y1);                    \
                for (int64_t ox = 0; ox < g->ow; ox++) {                                      \
                    int64_t x0, x1;                                                           \
                    pool_span(ox, g->sw, g->pl, g->kw, g->dw, g->w, &x0, &x1);                \
                    T best = (T)-INFINITY;                                                    \
                    int64_t bi = y0 * g->w + x0;                                              \
                    for (int64_t iy = y0; iy < y1; iy += g->dh)                               \
                        for (int64_t ix = x0; ix < x1; ix += g->dw)                           \
                            MAX_STEP(xs[iy * g->w + ix], iy * g->w + ix);                     \
                    yp[p * L + oy * g->ow + ox] = best;                                       \
                    ip[p * L + oy * g->ow + ox] = bi;                                         \
                }                                                                             \
            }                                                                                 \
        });                                                                                   \
    }

#define MAX_POOL_BACK_BODY(T)                                                                 \
    {                                                                                         \
        int64_t planes = g->n * g->c, hw = g->h * g->w, L = g->oh * g->ow;                    \
        T *xp = (T *)cpu_ptr(gx);                                                             \
        const T *yp = (const T *)cpu_ptr(gy);                                                 \
        const int64_t *ip = (const int64_t *)cpu_ptr(idx);                                    \
        PLANES_FOR(planes * (L + hw), planes,                                                 \
        {                                                                                     \
            T *xs = xp + p * hw;                                                              \
            memset(xs, 0, sizeof(T) * (size_t)hw);                                            \
            for (int64_t i = 0; i < L; i++) {                                                 \
                int64_t j = ip[p * L + i];                                                    \
                if (j >= 0 && j < hw) xs[j] += yp[p * L + i];                                 \
            }                                                                                 \
        });                                                                                   \
    }

static void max_pool_f32(lunar_tensor *y, lunar_tensor *idx, const lunar_tensor *x,
                         const lunar_conv_geom *g) MAX_POOL_BODY(float)
static void max_pool_f64(lunar_tensor *y, lunar_tensor *idx, const lunar_tensor *x,
                         const lunar_conv_geom *g) MAX_POOL_BODY(double)
static void max_back_f32(lunar_tensor *gx, const lunar_tensor *gy, const lunar_tensor *idx,
                         const lunar_conv_geom *g) MAX_POOL_BACK_BODY(float)
static void max_back_f64(lunar_tensor *gx, const lunar_tensor *gy, const lunar_tensor *idx,
                         const lunar_conv_geom *g) MAX_POOL_BACK_BODY(double)

/* x [n, c, h, w] -> y, idx [n, c, oh, ow] */
lunar_status cpu_max_pool2d(lunar_tensor *y, lunar_tensor *idx, const lunar_tensor *x,
                            const lunar_conv_geom *g) {
    if (x->dtype == LUNAR_F32) max_pool_f32(y, idx, x, g);
    else if (x->dtype == LUNAR_F64) max_pool_f64(y, idx, x, g);
    else return bad_dtype("max_pool2d", x->dtype);
    return LUNAR_OK;
}

/* gy, idx [n, c, oh, ow] -> gx [n, c, h, w] */
lunar_status cpu_max_pool2d_backward(lunar_tensor *gx, const lunar_tensor *gy,
                                     const lunar_tensor *idx, const lunar_conv_geom *g) {
    if (gx->dtype == LUNAR_F32) max_back_f32(gx, gy, idx, g);
    else if (gx->dtype == LUNAR_F64) max_back_f64(gx, gy, idx, g);
    else return bad_dtype("max_pool2d_backward", gx->dtype);
    return LUNAR_OK;
}

/* ---- average pooling ----
 * PyTorch's divisor: with count_include_pad, the window clipped to the padded input (so a
 * ceil_mode window hanging past the padding counts less); without, the in-bounds part. */
static void avg_window(const lunar_conv_geom *g, int64_t oy, int64_t ox, int64_t *y0,
                       int64_t *y1, int64_t *x0, int64_t *x1, int64_t *div) {
    int64_t ys = oy * g->sh - g->pt, xs = ox * g->sw - g->pl;
    int64_t ye = ys + g->kh, xe = xs + g->kw;
    if (ye > g->h + g->pb) ye = g->h + g->pb;
    if (xe > g->w + g->pr) xe = g->w + g->pr;
    int64_t full = (ye - ys) * (xe - xs);
    *y0 = ys < 0 ? 0 : ys;
    *x0 = xs < 0 ? 0 : xs;
    *y1 = ye > g->h ? g->h : ye;
    *x1 = xe > g->w ? g->w : xe;
    *div = g->count_include_pad ? full : (*y1 - *y0) * (*x1 - *x0);
}

/* PyTorch's adaptive windows: [floor(i in / out), ceil((i + 1) in / out)). */
static void adaptive_window(const lunar_conv_geom *g, int64_t oy, int64_t ox, int64_t *y0,
                            int64_t *y1, int64_t *x0, int64_t *x1, int64_t *div) {
    *y0 = oy * g->h / g->oh;
    *y1 = ((oy + 1) * g->h + g->oh - 1) / g->oh;
    *x0 = ox * g->w / g->ow;
    *x1 = ((ox + 1) * g->w + g->ow - 1) / g->ow;
    *div = (*y1 - *y0) * (*x1 - *x0);
}

typedef void (*window_fn)(const lunar_conv_geom *, int64_t, int64_t, int64_t *, int64_t *,
                          int64_t *, int64_t *, int64_t *);

#define AVG_POOL_BODY(T)                                                                      \
    {                                                                                         \
        int64_t planes = g->n * g->c, hw = g->h * g->w, L = g->oh * g->ow;                    \
        const T *xp = (const T *)cpu_ptr(x);                                                  \
        T *yp = (T *)cpu_ptr(y);                                                              \
        PLANES_FOR(planes * L * g->kh * g->kw, planes,                                        \
        {                                                                                     \
            const T *xs = xp + p * hw;                                                        \
            for (int64_t oy = 0; oy < g->oh; oy++)                                            \
                for (int64_t ox = 0; ox < g->ow; ox++) {                                      \
                    int64_t y0, y1, x0, x1, div;                                              \
                    win(g, oy, ox, &y0, &y1, &x0, &x1, &div);                                 \
                    double s = 0;                                                             \
                    for (int64_t iy = y0; iy < y1; iy++)                                      \
                        for (int64_t ix = x0; ix < x1; ix++) s += xs[iy * g->w + ix];         \
                    yp[p * L + oy * g->ow + ox] = (T)(div > 0 ? s / (double)div : NAN);       \
                }                                                                             \
        });                                                                                   \
    }

#define AVG_POOL_BACK_BODY(T)                                                                 \
    {                                                                                         \
        int64_t planes = g->n * g->c, hw = g->h * g->w, L = g->oh * g->ow;                    \
        T *xp = (T *)cpu_ptr(gx);                                                             \
        const T *yp = (const T *)cpu_ptr(gy);                                                 \
        PLANES_FOR(planes * L * g->kh * g->kw, planes,                                        \
        {                                                                                     \
            T *xs = xp + p * hw;                                                              \
            memset(xs, 0, sizeof(T) * (size_t)hw);                                            \
            for (int64_t oy = 0; oy < g->oh; oy++)                                            \
                for (int64_t ox = 0; ox < g->ow; ox++) {                                      \
                    int64_t y0, y1, x0, x1, div;                                              \
                    win(g, oy, ox, &y0, &y1, &x0, &x1, &div);                                 \
                    if (div <= 0) continue;                                                   \
                    T v = (T)(yp[p * L + oy * g->ow + ox] / (double)div);                     \
                    for (int64_t iy = y0; iy < y1; iy++)                                      \
                        for (int64_t ix = x0; ix < x1; ix++) xs[iy * g->w + ix] += v;         \
                }                                                                             \
        });                                                                                   \
    }

static void avg_f32(lunar_tensor *y, const lunar_tensor *x, const lunar_conv_geom *g,
                    window_fn win) AVG_POOL_BODY(float)
static void avg_f64(lunar_tensor *y, const lunar_tensor *x, const lunar_conv_geom *g,
                    window_fn win) AVG_POOL_BODY(double)
static void avg_back_f32(lunar_tensor *gx, const lunar_tensor *gy, const lunar_conv_geom *g,
                         window_fn win) AVG_POOL_BACK_BODY(float)
static void avg_back_f64(lunar_tensor *gx, const lunar_tensor *gy, const lunar_conv_geom *g,
                         window_fn win) AVG_POOL_BACK_BODY(double)

static lunar_status avg_any(lunar_tensor *y, const lunar_tensor *x, const lunar_conv_geom *g,
                            window_fn win, const char *op) {
    if (x->dtype == LUNAR_F32) avg_f32(y, x, g, win);
    else if (x->dtype == LUNAR_F64) avg_f64(y, x, g, win);
    else return bad_dtype(op, x->dtype);
    return LUNAR_OK;
}

static lunar_status avg_back_any(lunar_tensor *gx, const lunar_tensor *gy,
                                 const lunar_conv_geom *g, window_fn win, const char *op) {
    if (gx->dtype == LUNAR_F32) avg_back_f32(gx, gy, g, win);
    else if (gx->dtype == LUNAR_F64) avg_back_f64(gx, gy, g, win);
    else return bad_dtype(op, gx->dtype);
    return LUNAR_OK;
}

/* x [n, c, h, w] -> y [n, c, oh, ow] */
lunar_status cpu_avg_pool2d(lunar_tensor *y, const lunar_tensor *x, const lunar_conv_geom *g) {
    return avg_any(y, x, g, avg_window, "avg_pool2d");
}

/* gy [n, c, oh, ow] -> gx [n, c, h, w] */
lunar_status cpu_avg_pool2d_backward(lunar_tensor *gx, const lunar_tensor *gy,
                                     const lunar_conv_geom *g) {
    return avg_back_any(gx, gy, g, avg_window, "avg_pool2d_backward");
}

/* x [n, c, h, w] -> y [n, c, oh, ow] */
lunar_status cpu_adaptive_avg_pool2d(lunar_tensor *y, const lunar_tensor *x,
                                     const lunar_conv_geom *g) {
    return avg_any(y, x, g, adaptive_window, "adaptive_avg_pool2d");
}

/* gy [n, c, oh, ow] -> gx [n, c, h, w] */
lunar_status cpu_adaptive_avg_pool2d_backward(lunar_tensor *gx, const lunar_tensor *gy,
                                              const lunar_conv_geom *g) {
    return avg_back_any(gx, gy, g, adaptive_window, "adaptive_avg_pool2d_backward");
}
