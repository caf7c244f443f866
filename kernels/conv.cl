/*
 * conv.cl - convolution's im2col / col2im and the 2-d pools with their backward passes,
 * float32 and float64. Every tensor is contiguous from its offset; a plane is one [h, w]
 * (or [oh, ow]) image of one (n, c), p = n * c + c indexes planes. The geometry travels as
 * a long16 in lunar_conv_geom's field order (see conv_geom below).
 *
 * The results match the CPU kernels (core/cpu/conv.c) bit for bit on devices with fp64:
 * where several windows add into one input element (col2im, the backward passes), one
 * work-item owns that element and gathers the contributions in the order the CPU adds
 * them, in the element type, so nothing races and no float atomics are needed.
 */

typedef struct {
    long n, c, h, w, kh, kw, sh, sw, pt, pl, pb, pr, dh, dw, oh, ow;
} conv_geom;

inline conv_geom conv_geom_of(long16 v) {
    conv_geom g;
    g.n = v.s0, g.c = v.s1, g.h = v.s2, g.w = v.s3;
    g.kh = v.s4, g.kw = v.s5, g.sh = v.s6, g.sw = v.s7;
    g.pt = v.s8, g.pl = v.s9, g.pb = v.sa, g.pr = v.sb;
    g.dh = v.sc, g.dw = v.sd, g.oh = v.se, g.ow = v.sf;
    return g;
}

/* floor(a / b) for b > 0 and any sign of a (C division truncates) */
inline long conv_floor_div(long a, long b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }

/* The output positions [*lo, *hi] (clipped to [0, o)) whose window, starting at
 * pos s - pad and spanning `span` input positions, can cover input position i. */
inline void conv_cover(long i, long pad, long s, long span, long o, long *lo, long *hi) {
    long a = conv_floor_div(i + pad - span + 1 + s - 1, s); /* ceil((i + pad - span + 1) / s) */
    long b = conv_floor_div(i + pad, s);
    *lo = a < 0 ? 0 : a;
    *hi = b > o - 1 ? o - 1 : b;
}

/* The average pool's window of output (oy, ox) and its divisor, as the CPU's avg_window
 * (count_include_pad: the window clipped to the padded input) and adaptive_window
 * (PyTorch's [floor(i in / out), ceil((i + 1) in / out))). */
inline void conv_avg_window(const conv_geom *g, int include_pad, int adaptive, long oy, long ox,
                            long *y0, long *y1, long *x0, long *x1, long *div) {
    if (adaptive) {
        *y0 = oy * g->h / g->oh;
        *y1 = ((oy + 1) * g->h + g->oh - 1) / g->oh;
        *x0 = ox * g->w / g->ow;
        *x1 = ((ox + 1) * g->w + g->ow - 1) / g->ow;
        *div = (*y1 - *y0) * (*x1 - *x0);
        return;
    }
    long ys = oy * g->sh - g->pt, xs = ox * g->sw - g->pl;
    long ye = ys + g->kh, xe = xs + g->kw;
    if (ye > g->h + g->pb) ye = g->h + g->pb;
    if (xe > g->w + g->pr) xe = g->w + g->pr;
    long full = (ye - ys) * (xe - xs);
    *y0 = ys < 0 ? 0 : ys;
    *x0 = xs < 0 ? 0 : xs;
    *y1 = ye > g->h ? g->h : ye;
    *x1 = xe > g->w ? g->w : xe;
    *div = include_pad ? full : (*y1 - *y0) * (*x1 - *x0);
}

#define DEF_CONV(N, T)                                                                        \
    /* x [n, c, h, w] -> col [n, c * kh * kw, oh * ow]: one work-item per row of ow entries \
     * (one output row oy of one tap k of one plane p), so that the index arithmetic (64-bit \
     * divisions, dearer than the copy on a CPU device) is paid once a row */                \
    __kernel void im2col_##N(__global T *col, long co, __global const T *x, long xo,         \
                             long16 gv) {                                                     \
        conv_geom g = conv_geom_of(gv);                                                       \
        long kk = g.kh * g.kw;                                                                \
        long r = get_global_id(0);                                                            \
        if (r >= g.n * g.c * kk * g.oh) return;                                               \
        long oy = r % g.oh, k = r / g.oh % kk, p = r / (g.oh * kk);                           \
        long iy = oy * g.sh - g.pt + k / g.kw * g.dh, ix0 = -g.pl + k % g.kw * g.dw;          \
        __global T *pc = col + co + r * g.ow;                                                 \
        if (iy < 0 || iy >= g.h) {                                                            \
            for (long ox = 0; ox < g.ow; ox++) pc[ox] = (T)0;                                 \
            return;                                                                           \
        }                                                                                     \
        __global const T *px = x + xo + (p * g.h + iy) * g.w;                                 \
        for (long ox = 0, ix = ix0; ox < g.ow; ox++, ix += g.sw)                              \
            pc[ox] = ix >= 0 && ix < g.w ? px[ix] : (T)0;                                     \
    }                                                                                         \
                                                                                              \
    /* col [n, c * kh * kw, oh * ow] -> x [n, c, h, w]: one work-item per x element sums    \
     * the taps that read it, kernel row then column (the CPU's order) */                     \
    __kernel void col2im_##N(__global T *x, long xo, __global const T *col, long co,         \
                             long16 gv) {                                                     \
        conv_geom g = conv_geom_of(gv);                                                       \
        long L = g.oh * g.ow, kk = g.kh * g.kw;                                               \
        long i = get_global_id(0);                                                            \
        if (i >= g.n * g.c * g.h * g.w) return;                                               \
        long ix = i % g.w, iy = i / g.w % g.h, p = i / (g.h * g.w);                           \
        __global const T *cp = col + co + p * kk * L;                                         \
        T s = 0;                                                                              \
        for (long ki = 0; ki < g.kh; ki++) {                                                  \
            long ty = iy + g.pt - ki * g.dh; /* = oy * sh when tap ki reads row iy */         \
            if (ty < 0 || ty % g.sh) continue;                                                \
            long oy = ty / g.sh;                                                              \
            if (oy >= g.oh) continue;                                                         \
            for (long kj = 0; kj < g.kw; kj++) {                                              \
                long tx = ix + g.pl - kj * g.dw;                                              \
                if (tx < 0 || tx % g.sw) continue;                                            \
                long ox = tx / g.sw;                                                          \
                if (ox >= g.ow) continue;                                                     \
                s += cp[(ki * g.kw + kj) * L + oy * g.ow + ox];                               \
            }                                                                                 \
        }                                                                                     \
        x[xo + i] = s;                                                                        \
    }                                                                                         \
                                                                                              \
    /* x [n, c, h, w] -> y, idx [n, c, oh, ow]: the first maximum wins, a NaN always wins,  \
     * idx (h * w + w in the plane) starts at the window's first in-bounds element */        \
    __kernel void max_pool2d_##N(__global T *y, long yo, __global long *idx, long io,        \
                                 __global const T *x, long xo, long16 gv) {                   \
        conv_geom g = conv_geom_of(gv);                                                       \
        long i = get_global_id(0);                                                            \
        if (i >= g.n * g.c * g.oh * g.ow) return;                                             \
        long ox = i % g.ow, oy = i / g.ow % g.oh, p = i / (g.oh * g.ow);                      \
        __global const T *xs = x + xo + p * g.h * g.w;                                        \
        long y0 = oy * g.sh - g.pt, x0 = ox * g.sw - g.pl;                                    \
        long y1 = y0 + (g.kh - 1) * g.dh + 1, x1 = x0 + (g.kw - 1) * g.dw + 1;                \
        while (y0 < 0) y0 += g.dh;                                                            \
        while (x0 < 0) x0 += g.dw;                                                            \
        if (y1 > g.h) y1 = g.h;                                                               \
        if (x1 > g.w) x1 = g.w;                                                               \
        T best = (T)(-INFINITY);                                                              \
        long bi = y0 * g.w + x0;                                                              \
        for (long iy = y0; iy < y1; iy += g.dh)                                               \
            for (long ix = x0; ix < x1; ix += g.dw) {                                         \
                T v = xs[iy * g.w + ix];                                                      \
                if (v > best || isnan(v)) {                                                   \
                    best = v;                                                                 \
                    bi = iy * g.w + ix;                                                       \
                }                                                                             \
            }                                                                                 \
        y[yo + i] = best;                                                                     \
        idx[io + i] = bi;                                                                     \
    }                                                                                         \
                                                                                              \
    /* gy, idx [n, c, oh, ow] -> gx [n, c, h, w]: one work-item per gx element sums the     \
     * outputs whose index names it, among the windows that can cover it, in output order */ \
    __kernel void max_pool2d_backward_##N(__global T *gx, long xo, __global const T *gy,     \
                                          long yo, __global const long *idx, long io,         \
                                          long16 gv) {                                        \
        conv_geom g = conv_geom_of(gv);                                                       \
        long L = g.oh * g.ow;                                                                 \
        long i = get_global_id(0);                                                            \
        if (i >= g.n * g.c * g.h * g.w) return;                                               \
        long ix = i % g.w, iy = i / g.w % g.h, p = i / (g.h * g.w), j = iy * g.w + ix;        \
        long ylo, yhi, xlo, xhi;                                                              \
        conv_cover(iy, g.pt, g.sh, (g.kh - 1) * g.dh + 1, g.oh, &ylo, &yhi);                  \
        conv_cover(ix, g.pl, g.sw, (g.kw - 1) * g.dw + 1, g.ow, &xlo, &xhi);                  \
        T s = 0;                                                                              \
        for (long oy = ylo; oy <= yhi; oy++)                                                  \
            for (long ox = xlo; ox <= xhi; ox++) {                                            \
                long o = p * L + oy * g.ow + ox;                                              \
                if (idx[io + o] == j) s += gy[yo + o];                                        \
            }                                                                                 \
        gx[xo + i] = s;                                                                       \
    }                                                                                         \
                                                                                              \
    /* x [n, c, h, w] -> y [n, c, oh, ow]: the window's sum (in acc_t) over its divisor;    \
     * adaptive: PyTorch's adaptive windows instead of the kernel's */                        \
    __kernel void avg_pool2d_##N(__global T *y, long yo, __global const T *x, long xo,       \
                                 long16 gv, int include_pad, int adaptive) {                  \
        conv_geom g = conv_geom_of(gv);                                                       \
        long i = get_global_id(0);                                                            \
        if (i >= g.n * g.c * g.oh * g.ow) return;                                             \
        long ox = i % g.ow, oy = i / g.ow % g.oh, p = i / (g.oh * g.ow);                      \
        __global const T *xs = x + xo + p * g.h * g.w;                                        \
        long y0, y1, x0, x1, div;                                                             \
        conv_avg_window(&g, include_pad, adaptive, oy, ox, &y0, &y1, &x0, &x1, &div);         \
        acc_t s = 0;                                                                          \
        for (long iy = y0; iy < y1; iy++)                                                     \
            for (long ix = x0; ix < x1; ix++) s += xs[iy * g.w + ix];                         \
        y[yo + i] = div > 0 ? (T)(s / (acc_t)div) : (T)NAN;                                   \
    }                                                                                         \
                                                                                              \
    /* gy [n, c, oh, ow] -> gx [n, c, h, w]: one work-item per gx element adds gy / divisor \
     * (rounded to T, as the CPU) of each window that covers it, in output order */          \
    __kernel void avg_pool2d_backward_##N(__global T *gx, long xo, __global const T *gy,     \
                                          long yo, long16 gv, int include_pad,                \
                                          int adaptive) {                                     \
        conv_geom g = conv_geom_of(gv);                                                       \
        long i = get_global_id(0);                                                            \
        if (i >= g.n * g.c * g.h * g.w) return;                                               \
        long ix = i % g.w, iy = i / g.w % g.h, p = i / (g.h * g.w);                           \
        __global const T *ys = gy + yo + p * g.oh * g.ow;                                     \
        long ylo, yhi, xlo, xhi;                                                              \
        if (adaptive) { /* windows [floor(o in / out), ceil((o + 1) in / out)) */             \
            ylo = iy * g.oh / g.h, yhi = ((iy + 1) * g.oh - 1) / g.h;                         \
            xlo = ix * g.ow / g.w, xhi = ((ix + 1) * g.ow - 1) / g.w;                         \
            if (yhi > g.oh - 1) yhi = g.oh - 1;                                               \
            if (xhi > g.ow - 1) xhi = g.ow - 1;                                               \
        } else {                                                                              \
            conv_cover(iy, g.pt, g.sh, g.kh, g.oh, &ylo, &yhi);                               \
            conv_cover(ix, g.pl, g.sw, g.kw, g.ow, &xlo, &xhi);                               \
        }                                                                                     \
        T s = 0;                                                                              \
        for (long oy = ylo; oy <= yhi; oy++)                                                  \
            for (long ox = xlo; ox <= xhi; ox++) {                                            \
                long y0, y1, x0, x1, div;                                                     \
                conv_avg_window(&g, include_pad, adaptive, oy, ox, &y0, &y1, &x0, &x1,        \
                                &div);                                                        \
                if (div <= 0 || iy < y0 || iy >= y1 || ix < x0 || ix >= x1) continue;         \
                s += (T)(ys[oy * g.ow + ox] / (acc_t)div);                                    \
            }                                                                                 \
        gx[xo + i] = s;                                                                       \
    }

LUNAR_FLOAT_TYPES(DEF_CONV)
