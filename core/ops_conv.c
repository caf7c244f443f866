/*
 * ops_conv.c - convolution (conv2d, conv1d, conv_transpose2d) and pooling (max, average,
 * Lp, adaptive average) with their backward rules.
 *
 * A convolution is im2col + one GEMM per group (a 1x1, stride-1, unpadded one is the GEMM
 * alone). Three raw products serve both convolutions, since conv_transpose2d's forward is
 * conv2d's input gradient and its input gradient is conv2d's forward:
 *   conv_fwd:     y [N, Co, L]   = W_g [Co/G, K_g] @ col(x)_g [K_g, L]      per image, group
 *   conv_bwd_in:  gx = col2im(W_g^T [K_g, Co/G] @ gy_g [Co/G, L])
 *   conv_bwd_w:   gW_g += gy_g [Co/G, L] @ col(x)_g^T [L, K_g]              summed over images
 * with K_g = C_in / G * kH * kW and L = oH * oW. Columns are made for a chunk of images at a
 * time so that their memory stays bounded.
 */
#include "lunar-impl.h"

#include <math.h>
#include <string.h>

/* Elements of column buffer per chunk of images (256 MiB of float32). */
#define COL_LIMIT ((int64_t)1 << 26)
/* On the CPU a chunk of at most this many elements (256 KiB of float32), so that the
 * columns are still in L2 when the GEMM reads them; making them again for the weight
 * gradient costs less than writing the whole batch's columns out to memory and reading them
 * back (LeNet: 9 MB a step, 2.5% of the step faster this way). */
#define CPU_COL_LIMIT ((int64_t)1 << 16)
/* With several threads, chunks of up to this many elements (16 MiB of float32): the threads
 * share each chunk's images out in halves, as the element-wise and pooling passes around
 * the convolution share the batch, so each thread finds its images in its own cache. With
 * 256 KiB chunks the halves of every chunk crossed between the cores (LeNet at 2 threads:
 * ~100 parallel regions a step, and slower than one thread). */
#define CPU_COL_LIMIT_THREADS ((int64_t)1 << 22)
/* Elsewhere the forward keeps its columns for the weight gradient (instead of the backward
 * making them again) when they are at most this many elements (64 MiB of float32) and one
 * chunk. */
#define KEEP_LIMIT ((int64_t)1 << 24)

static lunar_status oom(const char *op) {
    return lunar_fail(LUNAR_ERR_MEMORY, "%s: out of memory", op);
}

/* A 3-d alias [B, R, C] of base's storage at base->offset + off, for the backend's GEMM. */
static lunar_tensor *mat3(const lunar_tensor *base, int64_t off, int64_t B, int64_t R,
                          int64_t C, int64_t bs, int64_t rs, int64_t cs) {
    int64_t shape[3] = {B, R, C}, strides[3] = {bs, rs, cs};
    return lunar_tensor_alias(base, 3, shape, strides, base->offset + off);
}

/* c = a @ b + beta c on the aliases, which it releases. */
static lunar_status gemm3(lunar_tensor *c, lunar_tensor *a, lunar_tensor *b, double beta) {
    lunar_status st = c && a && b ? LUNAR_KERNEL(lunar_tensor_backend(c), gemm, c, a, b, 1, beta)
                                  : oom("conv");
    lunar_tensor_release(a);
    lunar_tensor_release(b);
    lunar_tensor_release(c);
    return st;
}

static bool pointwise(const lunar_conv_geom *g) {
    return g->kh == 1 && g->kw == 1 && g->sh == 1 && g->sw == 1 && g->pt == 0 && g->pl == 0 &&
           g->pb == 0 && g->pr == 0;
}

/* Images per chunk of columns. */
static int64_t chunk_of(const lunar_conv_geom *g, const lunar_tensor *x) {
    int64_t per = g->c * g->kh * g->kw * g->oh * g->ow;
    int64_t lim = COL_LIMIT;
    if (lunar_tensor_backend(x) == &lunar_cpu_backend)
        lim = lunar_get_num_threads() > 1 ? CPU_COL_LIMIT_THREADS : CPU_COL_LIMIT;
    int64_t nb = per > 0 ? lim / per : g->n;
    return nb < 1 ? 1 : nb > g->n ? g->n : nb;
}

/* The columns of images [n0, n0 + m) of x: *col (owned) and *off, its first element. A
 * pointwise convolution's columns are x itself. */
static lunar_status columns(lunar_tensor **col, int64_t *off, lunar_tensor *x,
                            const lunar_conv_geom *g, int64_t n0, int64_t m) {
    int64_t L = g->oh * g->ow;
    if (pointwise(g)) {
        lunar_tensor_retain(*col = x);
        *off = n0 * g->c * L;
        return LUNAR_OK;
    }
    int64_t shape[3] = {m, g->c * g->kh * g->kw, L};
    LUNAR_CHECK(lunar_tensor_new(col, 3, shape, x->dtype, x));
    *off = 0;
    lunar_conv_geom gm = *g;
    gm.n = m;
    lunar_tensor *xm = mat3(x, n0 * g->c * g->h * g->w, m, g->c, g->h * g->w,
                            g->c * g->h * g->w, g->h * g->w, 1);
    lunar_status st =
        xm ? LUNAR_KERNEL(lunar_tensor_backend(x), im2col, *col, xm, &gm) : oom("conv");
    lunar_tensor_release(xm);
    if (st != LUNAR_OK) {
        lunar_tensor_release(*col);
        *col = NULL;
    }
    return st;
}

/* y [N, Co, oh, ow] (= bias or anything when beta = 0) += conv of x [N, C, h, w] with
 * w [Co, C / G, kh, kw]; all contiguous. With keep, the columns of the whole batch (made in
 * one chunk, not x itself) go to *keep (owned) instead of being dropped; else *keep = NULL. */
static lunar_status conv_fwd(lunar_tensor *y, lunar_tensor *x, lunar_tensor *w,
                             const lunar_conv_geom *g, int64_t G, double beta,
                             lunar_tensor **keep) {
    int64_t Co = w->shape[0], Cog = Co / G, Kg = g->c / G * g->kh * g->kw;
    int64_t K = g->c * g->kh * g->kw, L = g->oh * g->ow;
    int64_t nb = pointwise(g) ? g->n : chunk_of(g, x);
    if (keep) *keep = NULL;
    for (int64_t n0 = 0; n0 < g->n; n0 += nb) {
        int64_t m = g->n - n0 < nb ? g->n - n0 : nb, off;
        lunar_tensor *col;
        LUNAR_CHECK(columns(&col, &off, x, g, n0, m));
        lunar_status st = LUNAR_OK;
        for (int64_t gi = 0; gi < G && st == LUNAR_OK; gi++)
            st = gemm3(mat3(y, (n0 * Co + gi * Cog) * L, m, Cog, L, Co * L, L, 1),
                       mat3(w, gi * Cog * Kg, m, Cog, Kg, 0, Kg, 1),
                       mat3(col, off + gi * Kg * L, m, Kg, L, K * L, L, 1), beta);
        if (keep && st == LUNAR_OK && m == g->n && col != x) *keep = col;
        else lunar_tensor_release(col);
        LUNAR_CHECK(st);
    }
    return LUNAR_OK;
}

/* gx [N, C, h, w] = the adjoint of conv_fwd applied to gy [N, Co, oh, ow]. */
static lunar_status conv_bwd_in(lunar_tensor *gx, lunar_tensor *gy, lunar_tensor *w,
                                const lunar_conv_geom *g, int64_t G) {
    int64_t Co = w->shape[0], Cog = Co / G, Kg = g->c / G * g->kh * g->kw;
    int64_t K = g->c * g->kh * g->kw, L = g->oh * g->ow;
    if (pointwise(g)) { /* the columns are gx itself */
        for (int64_t gi = 0; gi < G; gi++)
            LUNAR_CHECK(gemm3(mat3(gx, gi * Kg * L, g->n, Kg, L, K * L, L, 1),
                              mat3(w, gi * Cog * Kg, g->n, Kg, Cog, 0, 1, Kg),
                              mat3(gy, gi * Cog * L, g->n, Cog, L, Co * L, L, 1), 0));
        return LUNAR_OK;
    }
    int64_t nb = chunk_of(g, gx);
    for (int64_t n0 = 0; n0 < g->n; n0 += nb) {
        int64_t m = g->n - n0 < nb ? g->n - n0 : nb;
        int64_t shape[3] = {m, K, L};
        lunar_tensor *col, *xm = NULL;
        LUNAR_CHECK(lunar_tensor_new(&col, 3, shape, gx->dtype, gx));
        lunar_status st = LUNAR_OK;
        for (int64_t gi = 0; gi < G && st == LUNAR_OK; gi++)
            st = gemm3(mat3(col, gi * Kg * L, m, Kg, L, K * L, L, 1),
                       mat3(w, gi * Cog * Kg, m, Kg, Cog, 0, 1, Kg),
                       mat3(gy, (n0 * Co + gi * Cog) * L, m, Cog, L, Co * L, L, 1), 0);
        if (st == LUNAR_OK) {
            lunar_conv_geom gm = *g;
            gm.n = m;
            xm = mat3(gx, n0 * g->c * g->h * g->w, m, g->c, g->h * g->w, g->c * g->h * g->w,
                      g->h * g->w, 1);
            st = xm ? LUNAR_KERNEL(lunar_tensor_backend(gx), col2im, xm, col, &gm) : oom("conv");
        }
        lunar_tensor_release(xm);
        lunar_tensor_release(col);
        LUNAR_CHECK(st);
    }
    return LUNAR_OK;
}

/* Partial weight gradients of a chunk's images at most this many elements. */
#define PARTIAL_LIMIT ((int64_t)1 << 22)

/* Whether a chunk of m images makes its weight gradient as one batched GEMM of per-image
 * partials (per elements each) and a sum over them, instead of m accumulating GEMMs: on
 * OpenCL one call instead of m; on a CPU with threads, the images shared out over them (the
 * accumulating GEMMs are a chain, one thread's work). One CPU thread keeps the chain: it
 * writes no partials. */
static bool batched_partials(const lunar_backend *be, int64_t m, int64_t per) {
    if (m < 2 || m * per > PARTIAL_LIMIT) return false;
    return be != &lunar_cpu_backend || lunar_get_num_threads() > 1;
}

/* t [G, Kg, Cog] += sum over images [n0, n0 + m) of col_i,g @ gy_i,g^T, by partials. */
static lunar_status partials_into(lunar_tensor *t, lunar_tensor *col, int64_t off,
                                  lunar_tensor *gy, const lunar_conv_geom *g, int64_t G,
                                  int64_t n0, int64_t m) {
    int64_t Co = gy->shape[1], Cog = Co / G, Kg = t->shape[1];
    int64_t K = g->c * g->kh * g->kw, L = g->oh * g->ow, per = G * Kg * Cog;
    const lunar_backend *be = lunar_tensor_backend(t);
    int64_t pshape[2] = {m, per}, sshape[2] = {1, per}, sstr[2] = {per, 1};
    lunar_tensor *p = NULL, *sum = NULL, *t2 = NULL;
    lunar_status st = lunar_tensor_new(&p, 2, pshape, t->dtype, t);
    for (int64_t gi = 0; gi < G && st == LUNAR_OK; gi++)
        st = gemm3(mat3(p, gi * Kg * Cog, m, Kg, Cog, per, Cog, 1),
                   mat3(col, off + gi * Kg * L, m, Kg, L, K * L, L, 1),
                   mat3(gy, (n0 * Co + gi * Cog) * L, m, L, Cog, Co * L, 1, L), 0);
    if (st == LUNAR_OK) st = lunar_tensor_new(&sum, 2, sshape, t->dtype, t);
    if (st == LUNAR_OK) st = LUNAR_KERNEL(be, reduce, LUNAR_OP_SUM, sum, p, 1u, 0);
    if (st == LUNAR_OK) {
        t2 = lunar_tensor_alias(t, 2, sshape, sstr, t->offset);
        st = t2 ? LUNAR_KERNEL(be, binary, LUNAR_OP_ADD, t2, t2, sum) : oom("conv");
    }
    lunar_tensor_release(p);
    lunar_tensor_release(sum);
    lunar_tensor_release(t2);
    return st;
}

/* gw [Co, C / G, kh, kw] = sum over images of gy_g @ col(x)_g^T. One GEMM per image and
 * group, accumulating with beta = 1, so no [N, ...] partial sums are kept. kept: the
 * forward's columns of the whole batch, or NULL to make them here. The products are made
 * transposed, t_g [Kg, Co/G] += col_g @ gy_g^T, then copied into gw: OpenBLAS runs that
 * orientation faster for few output channels (LeNet's second conv: 0.8x the time). */
static lunar_status conv_bwd_w(lunar_tensor *gw, lunar_tensor *x, lunar_tensor *gy,
                               const lunar_conv_geom *g, int64_t G, lunar_tensor *kept) {
    int64_t Co = gw->shape[0], Cog = Co / G, Kg = g->c / G * g->kh * g->kw;
    int64_t K = g->c * g->kh * g->kw, L = g->oh * g->ow;
    const lunar_backend *be = lunar_tensor_backend(gw);
    int64_t tshape[3] = {G, Kg, Cog};
    lunar_tensor *t;
    LUNAR_CHECK(lunar_tensor_new(&t, 3, tshape, gw->dtype, gw));
    lunar_status st = LUNAR_KERNEL(be, fill, t, 0);
    int64_t nb = pointwise(g) || kept ? g->n : chunk_of(g, x);
    for (int64_t n0 = 0; n0 < g->n && st == LUNAR_OK; n0 += nb) {
        int64_t m = g->n - n0 < nb ? g->n - n0 : nb, off = 0;
        lunar_tensor *col = kept;
        if (kept) lunar_tensor_retain(kept);
        else st = columns(&col, &off, x, g, n0, m);
        if (st == LUNAR_OK && batched_partials(be, m, G * Kg * Cog))
            st = partials_into(t, col, off, gy, g, G, n0, m);
        else
            for (int64_t i = 0; i < m && st == LUNAR_OK; i++)
                for (int64_t gi = 0; gi < G && st == LUNAR_OK; gi++)
                    st = gemm3(mat3(t, gi * Kg * Cog, 1, Kg, Cog, 0, Cog, 1),
                               mat3(col, off + i * K * L + gi * Kg * L, 1, Kg, L, 0, L, 1),
                               mat3(gy, ((n0 + i) * Co + gi * Cog) * L, 1, L, Cog, 0, 1, L), 1);
        lunar_tensor_release(col);
    }
    if (st == LUNAR_OK) { /* gw as [G, Co/G, Kg] <- t transposed */
        lunar_tensor *dst = mat3(gw, 0, G, Cog, Kg, Cog * Kg, Kg, 1);
        lunar_tensor *src = mat3(t, 0, G, Cog, Kg, Kg * Cog, 1, Cog);
        st = dst && src ? LUNAR_KERNEL(be, copy, dst, src) : oom("conv");
        lunar_tensor_release(dst);
        lunar_tensor_release(src);
    }
    lunar_tensor_release(t);
    return st;
}

/* ---- shared checks and the geometry in a node ---- */

static lunar_status check_float(const char *op, lunar_tensor *x, lunar_tensor *w,
                                lunar_tensor *b) {
    LUNAR_CHECK(w ? lunar_same_device(op, x, w) : LUNAR_OK);
    LUNAR_CHECK(b ? lunar_same_device(op, x, b) : LUNAR_OK);
    if (!lunar_dtype_is_float(x->dtype) || (w && w->dtype != x->dtype) ||
        (b && b->dtype != x->dtype))
        return lunar_fail(
            LUNAR_ERR_DTYPE, "%s: needs float tensors of one dtype (input %s%s%s%s%s)", op,
            lunar_dtype_name(x->dtype), w ? ", weight " : "", w ? lunar_dtype_name(w->dtype) : "",
            b ? ", bias " : "", b ? lunar_dtype_name(b->dtype) : "");
    return LUNAR_OK;
}

static void geom_save(lunar_node *n, const lunar_conv_geom *g) {
    int64_t v[16] = {g->n, g->c, g->h, g->w, g->kh, g->kw, g->sh, g->sw,
                     g->pt, g->pl, g->pb, g->pr, g->dh, g->dw, g->oh, g->ow};
    memcpy(n->i, v, sizeof v);
    n->f[3] = g->count_include_pad;
}

static lunar_conv_geom geom_load(const lunar_node *n) {
    const int64_t *v = n->i;
    lunar_conv_geom g = {v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8], v[9], v[10],
                         v[11], v[12], v[13], v[14], v[15], n->f[3] != 0};
    return g;
}

/* A contiguous form of t owned by the caller (t itself, retained, when it already is). */
static lunar_status contig(lunar_tensor **out, lunar_tensor *t) {
    return lunar_raw_contiguous(out, t);
}

/* out [N, C, oh, ow] += bias [C] broadcast (raw, no autograd). */
static lunar_status add_bias(lunar_tensor *out, lunar_tensor *bias) {
    int64_t s[4] = {1, bias->shape[0], 1, 1}, t[4] = {0, bias->strides[0], 0, 0};
    lunar_tensor *b4 = lunar_tensor_alias(bias, 4, s, t, bias->offset), *bv = NULL;
    if (b4) bv = lunar_broadcast_view(b4, 4, out->shape);
    lunar_status st =
        bv ? LUNAR_KERNEL(lunar_tensor_backend(out), binary, LUNAR_OP_ADD, out, out, bv)
           : oom("conv");
    lunar_tensor_release(b4);
    lunar_tensor_release(bv);
    return st;
}

/* Runs a 4-d op on a 3-d (unbatched) input as a batch of one. */
static lunar_status unbatched_in(const char *op, lunar_tensor **x4, lunar_tensor *x,
                                 const char *want) {
    char sx[128];
    if (x->ndim == 4) {
        lunar_tensor_retain(*x4 = x);
        return LUNAR_OK;
    }
    if (x->ndim == 3) return lunar_unsqueeze(x4, x, 0);
    return lunar_fail(LUNAR_ERR_SHAPE, "%s: expects a 3-d or 4-d input %s (got %s)", op, want,
                      lunar_shape_str(sx, sizeof sx, x->ndim, x->shape));
}

/* Drops the batch dim again when the input had none; consumes *out on failure. */
static lunar_status unbatched_out(lunar_status st, lunar_tensor **out, bool unb) {
    if (st != LUNAR_OK || !unb) return st;
    lunar_tensor *r = NULL;
    st = lunar_squeeze(&r, *out, 0);
    lunar_tensor_release(*out);
    *out = r;
    return st;
}

/* ---- conv2d ---- */

static lunar_status conv2d_backward(lunar_node *n, lunar_tensor *g, lunar_tensor **gi) {
    lunar_conv_geom geo = geom_load(n);
    int64_t G = (int64_t)n->f[0];
    lunar_tensor *xs, *ws, *x = NULL, *w = NULL, *gc = NULL;
    lunar_status st;
    LUNAR_CHECK(lunar_node_saved(n, 0, &xs));
    LUNAR_CHECK(lunar_node_saved(n, 1, &ws));
    LUNAR_GOTO(contig(&x, xs));
    LUNAR_GOTO(contig(&w, ws));
    LUNAR_GOTO(contig(&gc, g));
    if (lunar_node_needs(n, 0)) {
        LUNAR_GOTO(lunar_tensor_new(&gi[0], 4, x->shape, x->dtype, x));
        LUNAR_GOTO(conv_bwd_in(gi[0], gc, w, &geo, G));
    }
    if (lunar_node_needs(n, 1)) {
        lunar_tensor *kept = NULL;
        if (n->saved[2]) LUNAR_GOTO(lunar_node_saved(n, 2, &kept));
        LUNAR_GOTO(lunar_tensor_new(&gi[1], 4, w->shape, w->dtype, w));
        LUNAR_GOTO(conv_bwd_w(gi[1], x, gc, &geo, G, kept));
    }
    if (lunar_node_needs(n, 2))
        LUNAR_GOTO(lunar_reduce(&gi[2], LUNAR_OP_SUM, g, 1u | 4u | 8u, false, 0));
done:
    lunar_tensor_release(x);
    lunar_tensor_release(w);
    lunar_tensor_release(gc);
    return st;
}

static lunar_status check_kernel_fits(const char *op, const lunar_tensor *x, int64_t eh,
                                      int64_t ew, int64_t ph, int64_t pw) {
    char sx[128];
    if (eh > x->shape[2] + ph || ew > x->shape[3] + pw)
        return lunar_fail(LUNAR_ERR_SHAPE, "%s: kernel %lldx%lld (with dilation) is larger than "
                                           "the padded input %lldx%lld (input %s)",
                          op, (long long)eh, (long long)ew, (long long)(x->shape[2] + ph),
                          (long long)(x->shape[3] + pw),
                          lunar_shape_str(sx, sizeof sx, x->ndim, x->shape));
    return LUNAR_OK;
}

static lunar_status check_pos(const char *op, const char *what, const int64_t *v, int64_t min) {
    if (v[0] < min || v[1] < min)
        return lunar_fail(LUNAR_ERR_ARG, "%s: %s must be >= %lld (got %lld, %lld)", op, what,
                          (long long)min, (long long)v[0], (long long)v[1]);
    return LUNAR_OK;
}

/* x [N, C, H, W] (4-d), weight [Co, C / G, kH, kW] */
static lunar_status conv2d4(const char *op, lunar_tensor **out, lunar_tensor *x,
                            lunar_tensor *w, lunar_tensor *b, const lunar_conv_params *p) {
    char sx[128], sw[128];
    int64_t G = p->groups;
    LUNAR_CHECK(check_pos(op, "stride", p->stride, 1));
    LUNAR_CHECK(check_pos(op, "dilation", p->dilation, 1));
    LUNAR_CHECK(check_pos(op, "padding", p->padding, 0));
    if (G < 1)
        return lunar_fail(LUNAR_ERR_ARG, "%s: groups must be >= 1 (got %lld)", op, (long long)G);
    int64_t C = x->shape[1], Co = w->shape[0];
    if (C % G != 0 || Co % G != 0)
        return lunar_fail(LUNAR_ERR_SHAPE, "%s: groups %lld must divide both the input channels "
                                           "%lld and the output channels %lld",
                          op, (long long)G, (long long)C, (long long)Co);
    if (w->shape[1] * G != C)
        return lunar_fail(LUNAR_ERR_SHAPE, "%s: input %s has %lld channels but weight %s expects "
                                           "%lld (groups %lld)",
                          op, lunar_shape_str(sx, sizeof sx, 4, x->shape), (long long)C,
                          lunar_shape_str(sw, sizeof sw, 4, w->shape),
                          (long long)(w->shape[1] * G), (long long)G);
    if (b && (b->ndim != 1 || b->shape[0] != Co))
        return lunar_fail(LUNAR_ERR_SHAPE, "%s: bias %s does not fit %lld output channels", op,
                          lunar_shape_str(sx, sizeof sx, b->ndim, b->shape), (long long)Co);
    lunar_conv_geom g = {0};
    g.n = x->shape[0], g.c = C, g.h = x->shape[2], g.w = x->shape[3];
    g.kh = w->shape[2], g.kw = w->shape[3];
    g.sh = p->stride[0], g.sw = p->stride[1], g.dh = p->dilation[0], g.dw = p->dilation[1];
    int64_t eh = (g.kh - 1) * g.dh + 1, ew = (g.kw - 1) * g.dw + 1;
    if (p->same) {
        if (g.sh != 1 || g.sw != 1)
            return lunar_fail(LUNAR_ERR_ARG, "%s: padding \"same\" needs stride 1 (got %lld, "
                                             "%lld)", op, (long long)g.sh, (long long)g.sw);
        g.pt = (eh - 1) / 2, g.pb = eh - 1 - g.pt, g.pl = (ew - 1) / 2, g.pr = ew - 1 - g.pl;
    } else {
        g.pt = g.pb = p->padding[0], g.pl = g.pr = p->padding[1];
    }
    LUNAR_CHECK(check_kernel_fits(op, x, eh, ew, g.pt + g.pb, g.pl + g.pr));
    g.oh = (g.h + g.pt + g.pb - eh) / g.sh + 1;
    g.ow = (g.w + g.pl + g.pr - ew) / g.sw + 1;
    lunar_tensor *xc = NULL, *wc = NULL, *kept = NULL;
    int64_t oshape[4] = {g.n, Co, g.oh, g.ow};
    /* the weight gradient will need these columns: keep them when they are small */
    bool keep = lunar_grad_enabled() && w->requires_grad && !pointwise(&g) &&
                lunar_tensor_backend(x) != &lunar_cpu_backend &&
                g.c * g.kh * g.kw * g.oh * g.ow * g.n <= KEEP_LIMIT;
    lunar_status st;
    LUNAR_GOTO(contig(&xc, x));
    LUNAR_GOTO(contig(&wc, w));
    LUNAR_GOTO(lunar_tensor_new(out, 4, oshape, x->dtype, x));
    LUNAR_GOTO(conv_fwd(*out, xc, wc, &g, G, 0, keep ? &kept : NULL));
    if (b) LUNAR_GOTO(add_bias(*out, b));
    lunar_tensor *in[3] = {x, w, b};
    lunar_node *n = lunar_node_begin(op, conv2d_backward, 3, in);
    if (n) {
        geom_save(n, &g);
        n->f[0] = (double)G;
        lunar_node_save(n, 0, x);
        lunar_node_save(n, 1, w);
        if (kept) lunar_node_save(n, 2, kept);
        lunar_node_finish(n, *out);
    }
done:
    lunar_tensor_release(xc);
    lunar_tensor_release(wc);
    lunar_tensor_release(kept);
    if (st != LUNAR_OK) {
        lunar_tensor_release(*out);
        *out = NULL;
    }
    return st;
}

lunar_status lunar_conv2d(lunar_tensor **out, lunar_tensor *x, lunar_tensor *weight,
                          lunar_tensor *bias, const lunar_conv_params *p) {
    *out = NULL;
    char sw[128];
    LUNAR_CHECK(check_float("conv2d", x, weight, bias));
    if (weight->ndim != 4)
        return lunar_fail(LUNAR_ERR_SHAPE, "conv2d: expects a 4-d weight [C_out, C_in / groups, "
                                           "kH, kW] (got %s)",
                          lunar_shape_str(sw, sizeof sw, weight->ndim, weight->shape));
    lunar_tensor *x4;
    LUNAR_CHECK(unbatched_in("conv2d", &x4, x, "[N, C, H, W]"));
    lunar_status st = conv2d4("conv2d", out, x4, weight, bias, p);
    lunar_tensor_release(x4);
    return unbatched_out(st, out, x->ndim == 3);
}

/* [N, C, L] as [N, C, 1, L] (and the weight likewise), then conv2d. */
lunar_status lunar_conv1d(lunar_tensor **out, lunar_tensor *x, lunar_tensor *weight,
                          lunar_tensor *bias, const lunar_conv_params *p) {
    *out = NULL;
    char sx[128], sw[128];
    LUNAR_CHECK(check_float("conv1d", x, weight, bias));
    if ((x->ndim != 2 && x->ndim != 3) || weight->ndim != 3)
        return lunar_fail(LUNAR_ERR_SHAPE, "conv1d: expects input [N, C, L] or [C, L] and weight "
                                           "[C_out, C_in / groups, k] (got %s and %s)",
                          lunar_shape_str(sx, sizeof sx, x->ndim, x->shape),
                          lunar_shape_str(sw, sizeof sw, weight->ndim, weight->shape));
    lunar_conv_params q = *p;
    q.stride[1] = p->stride[0], q.padding[1] = p->padding[0], q.dilation[1] = p->dilation[0];
    q.stride[0] = q.dilation[0] = 1, q.padding[0] = 0;
    lunar_tensor *x4 = NULL, *w4 = NULL, *x3 = NULL, *y = NULL;
    lunar_status st;
    LUNAR_GOTO(lunar_unsqueeze(&x3, x, x->ndim - 1));
    LUNAR_GOTO(unbatched_in("conv1d", &x4, x3, "[N, C, L]"));
    LUNAR_GOTO(lunar_unsqueeze(&w4, weight, 2));
    LUNAR_GOTO(conv2d4("conv1d", &y, x4, w4, bias, &q));
    LUNAR_GOTO(lunar_squeeze(out, y, 2));
    st = unbatched_out(st, out, x->ndim == 2);
done:
    lunar_tensor_release(x3);
    lunar_tensor_release(x4);
    lunar_tensor_release(w4);
    lunar_tensor_release(y);
    return st;
}

/* ---- conv_transpose2d: the adjoint of conv2d in x ---- */

static lunar_status conv_t_backward(lunar_node *n, lunar_tensor *g, lunar_tensor **gi) {
    lunar_conv_geom geo = geom_load(n);
    int64_t G = (int64_t)n->f[0];
    lunar_tensor *xs, *ws, *x = NULL, *w = NULL, *gc = NULL;
    lunar_status st;
    LUNAR_CHECK(lunar_node_saved(n, 0, &xs));
    LUNAR_CHECK(lunar_node_saved(n, 1, &ws));
    LUNAR_GOTO(contig(&x, xs));
    LUNAR_GOTO(contig(&w, ws));
    LUNAR_GOTO(contig(&gc, g));
    if (lunar_node_needs(n, 0)) { /* the forward conv of g */
        LUNAR_GOTO(lunar_tensor_new(&gi[0], 4, x->shape, x->dtype, x));
        LUNAR_GOTO(conv_fwd(gi[0], gc, w, &geo, G, 0, NULL));
    }
    if (lunar_node_needs(n, 1)) { /* g plays the conv's input, x its output gradient */
        LUNAR_GOTO(lunar_tensor_new(&gi[1], 4, w->shape, w->dtype, w));
        LUNAR_GOTO(conv_bwd_w(gi[1], gc, x, &geo, G, NULL));
    }
    if (lunar_node_needs(n, 2))
        LUNAR_GOTO(lunar_reduce(&gi[2], LUNAR_OP_SUM, g, 1u | 4u | 8u, false, 0));
done:
    lunar_tensor_release(x);
    lunar_tensor_release(w);
    lunar_tensor_release(gc);
    return st;
}

/* x [N, Ci, H, W], weight [Ci, Co / G, kH, kW] -> [N, Co, Ho, Wo] with
 * Ho = (H - 1) sH - 2 pH + dH (kH - 1) + opH + 1 */
static lunar_status conv_t4(lunar_tensor **out, lunar_tensor *x, lunar_tensor *w,
                            lunar_tensor *b, const lunar_conv_params *p) {
    const char *op = "conv_transpose2d";
    char sx[128], sw[128];
    int64_t G = p->groups;
    LUNAR_CHECK(check_pos(op, "stride", p->stride, 1));
    LUNAR_CHECK(check_pos(op, "dilation", p->dilation, 1));
    LUNAR_CHECK(check_pos(op, "padding", p->padding, 0));
    LUNAR_CHECK(check_pos(op, "output_padding", p->output_padding, 0));
    if (p->same) return lunar_fail(LUNAR_ERR_ARG, "%s: padding \"same\" is not supported", op);
    if (G < 1)
        return lunar_fail(LUNAR_ERR_ARG, "%s: groups must be >= 1 (got %lld)", op, (long long)G);
    for (int d = 0; d < 2; d++)
        if (p->output_padding[d] >= p->stride[d] && p->output_padding[d] >= p->dilation[d])
            return lunar_fail(LUNAR_ERR_ARG, "%s: output_padding %lld must be smaller than the "
                                             "stride %lld or the dilation %lld",
                              op, (long long)p->output_padding[d], (long long)p->stride[d],
                              (long long)p->dilation[d]);
    int64_t Ci = x->shape[1], Co = w->shape[1] * G;
    if (Ci % G != 0)
        return lunar_fail(LUNAR_ERR_SHAPE, "%s: groups %lld must divide the input channels %lld",
                          op, (long long)G, (long long)Ci);
    if (w->shape[0] != Ci)
        return lunar_fail(LUNAR_ERR_SHAPE, "%s: input %s has %lld channels but weight %s expects "
                                           "%lld",
                          op, lunar_shape_str(sx, sizeof sx, 4, x->shape), (long long)Ci,
                          lunar_shape_str(sw, sizeof sw, 4, w->shape), (long long)w->shape[0]);
    if (b && (b->ndim != 1 || b->shape[0] != Co))
        return lunar_fail(LUNAR_ERR_SHAPE, "%s: bias %s does not fit %lld output channels", op,
                          lunar_shape_str(sx, sizeof sx, b->ndim, b->shape), (long long)Co);
    /* the geometry of the conv2d that maps the output back to x */
    lunar_conv_geom g = {0};
    g.n = x->shape[0], g.c = Co, g.kh = w->shape[2], g.kw = w->shape[3];
    g.sh = p->stride[0], g.sw = p->stride[1], g.dh = p->dilation[0], g.dw = p->dilation[1];
    g.pt = g.pb = p->padding[0], g.pl = g.pr = p->padding[1];
    g.oh = x->shape[2], g.ow = x->shape[3];
    g.h = (g.oh - 1) * g.sh - 2 * g.pt + g.dh * (g.kh - 1) + p->output_padding[0] + 1;
    g.w = (g.ow - 1) * g.sw - 2 * g.pl + g.dw * (g.kw - 1) + p->output_padding[1] + 1;
    if (g.h < 1 || g.w < 1)
        return lunar_fail(LUNAR_ERR_SHAPE, "%s: input %s gives an empty output (%lldx%lld)", op,
                          lunar_shape_str(sx, sizeof sx, 4, x->shape), (long long)g.h,
                          (long long)g.w);
    lunar_tensor *xc = NULL, *wc = NULL;
    int64_t oshape[4] = {g.n, Co, g.h, g.w};
    lunar_status st;
    LUNAR_GOTO(contig(&xc, x));
    LUNAR_GOTO(contig(&wc, w));
    LUNAR_GOTO(lunar_tensor_new(out, 4, oshape, x->dtype, x));
    LUNAR_GOTO(conv_bwd_in(*out, xc, wc, &g, G));
    if (b) LUNAR_GOTO(add_bias(*out, b));
    lunar_tensor *in[3] = {x, w, b};
    lunar_node *n = lunar_node_begin(op, conv_t_backward, 3, in);
    if (n) {
        geom_save(n, &g);
        n->f[0] = (double)G;
        lunar_node_save(n, 0, x);
        lunar_node_save(n, 1, w);
        lunar_node_finish(n, *out);
    }
done:
    lunar_tensor_release(xc);
    lunar_tensor_release(wc);
    if (st != LUNAR_OK) {
        lunar_tensor_release(*out);
        *out = NULL;
    }
    return st;
}

lunar_status lunar_conv_transpose2d(lunar_tensor **out, lunar_tensor *x, lunar_tensor *weight,
                                    lunar_tensor *bias, const lunar_conv_params *p) {
    *out = NULL;
    char sw[128];
    LUNAR_CHECK(check_float("conv_transpose2d", x, weight, bias));
    if (weight->ndim != 4)
        return lunar_fail(LUNAR_ERR_SHAPE, "conv_transpose2d: expects a 4-d weight [C_in, C_out "
                                           "/ groups, kH, kW] (got %s)",
                          lunar_shape_str(sw, sizeof sw, weight->ndim, weight->shape));
    lunar_tensor *x4;
    LUNAR_CHECK(unbatched_in("conv_transpose2d", &x4, x, "[N, C, H, W]"));
    lunar_status st = conv_t4(out, x4, weight, bias, p);
    lunar_tensor_release(x4);
    return unbatched_out(st, out, x->ndim == 3);
}

/* ---- pooling ---- */

/* PyTorch's pooling_output_shape: a ceil_mode window must start inside the input or the
 * left padding. */
static int64_t pool_out(int64_t in, int64_t k, int64_t pad, int64_t s, int64_t d, bool ceil) {
    int64_t span = in + 2 * pad - d * (k - 1) - 1 + (ceil ? s - 1 : 0);
    int64_t o = (span < 0 ? -((-span + s - 1) / s) : span / s) + 1;
    if (ceil && (o - 1) * s >= in + pad) o--;
    return o;
}

/* The geometry of a pooling of the 4-d x; checks what PyTorch checks. */
static lunar_status pool_geom(const char *op, lunar_conv_geom *g, const lunar_tensor *x,
                              const lunar_pool_params *p) {
    char sx[128];
    LUNAR_CHECK(check_pos(op, "kernel size", p->kernel, 1));
    LUNAR_CHECK(check_pos(op, "stride", p->stride, 0));
    LUNAR_CHECK(check_pos(op, "padding", p->padding, 0));
    LUNAR_CHECK(check_pos(op, "dilation", p->dilation, 1));
    memset(g, 0, sizeof *g);
    g->n = x->shape[0], g->c = x->shape[1], g->h = x->shape[2], g->w = x->shape[3];
    g->kh = p->kernel[0], g->kw = p->kernel[1];
    g->sh = p->stride[0] ? p->stride[0] : g->kh, g->sw = p->stride[1] ? p->stride[1] : g->kw;
    g->pt = g->pb = p->padding[0], g->pl = g->pr = p->padding[1];
    g->dh = p->dilation[0], g->dw = p->dilation[1];
    g->count_include_pad = p->count_include_pad;
    if (g->pt > g->kh / 2 || g->pl > g->kw / 2)
        return lunar_fail(LUNAR_ERR_ARG, "%s: padding %lld, %lld must be at most half the kernel "
                                         "size %lldx%lld", op, (long long)g->pt, (long long)g->pl,
                          (long long)g->kh, (long long)g->kw);
    g->oh = pool_out(g->h, g->kh, g->pt, g->sh, g->dh, p->ceil_mode);
    g->ow = pool_out(g->w, g->kw, g->pl, g->sw, g->dw, p->ceil_mode);
    if (g->oh < 1 || g->ow < 1)
        return lunar_fail(LUNAR_ERR_SHAPE, "%s: kernel %lldx%lld (dilation %lld, %lld) is larger "
                                           "than the padded input %s (output %lldx%lld)",
                          op, (long long)g->kh, (long long)g->kw, (long long)g->dh,
                          (long long)g->dw, lunar_shape_str(sx, sizeof sx, 4, x->shape),
                          (long long)g->oh, (long long)g->ow);
    return LUNAR_OK;
}

static lunar_status max_pool_backward(lunar_node *n, lunar_tensor *g, lunar_tensor **gi) {
    lunar_conv_geom geo = geom_load(n);
    lunar_tensor *idx, *gc = NULL;
    lunar_status st;
    LUNAR_CHECK(lunar_node_saved(n, 0, &idx));
    LUNAR_GOTO(contig(&gc, g));
    int64_t shape[4] = {geo.n, geo.c, geo.h, geo.w};
    LUNAR_GOTO(lunar_tensor_new(&gi[0], 4, shape, g->dtype, g));
    st = LUNAR_KERNEL(lunar_tensor_backend(g), max_pool2d_backward, gi[0], gc, idx, &geo);
done:
    lunar_tensor_release(gc);
    return st;
}

static lunar_status max_pool4(const char *op, lunar_tensor **out, lunar_tensor **indices,
                              lunar_tensor *x, const lunar_pool_params *p) {
    lunar_conv_geom g;
    LUNAR_CHECK(pool_geom(op, &g, x, p));
    int64_t shape[4] = {g.n, g.c, g.oh, g.ow};
    lunar_tensor *xc = NULL, *idx = NULL;
    lunar_status st;
    LUNAR_GOTO(contig(&xc, x));
    LUNAR_GOTO(lunar_tensor_new(out, 4, shape, x->dtype, x));
    LUNAR_GOTO(lunar_tensor_new(&idx, 4, shape, LUNAR_I64, x));
    LUNAR_GOTO(LUNAR_KERNEL(lunar_tensor_backend(x), max_pool2d, *out, idx, xc, &g));
    lunar_node *n = lunar_node_begin(op, max_pool_backward, 1, &x);
    if (n) {
        geom_save(n, &g);
        lunar_node_save(n, 0, idx);
        lunar_node_finish(n, *out);
    }
    if (indices) lunar_tensor_retain(*indices = idx);
done:
    lunar_tensor_release(xc);
    lunar_tensor_release(idx);
    if (st != LUNAR_OK) {
        lunar_tensor_release(*out);
        *out = NULL;
    }
    return st;
}

/* avg_pool2d (adaptive false) and adaptive_avg_pool2d share their node. */
static lunar_status avg_pool_backward(lunar_node *n, lunar_tensor *g, lunar_tensor **gi) {
    lunar_conv_geom geo = geom_load(n);
    const lunar_backend *be = lunar_tensor_backend(g);
    lunar_tensor *gc = NULL;
    lunar_status st;
    LUNAR_GOTO(contig(&gc, g));
    int64_t shape[4] = {geo.n, geo.c, geo.h, geo.w};
    LUNAR_GOTO(lunar_tensor_new(&gi[0], 4, shape, g->dtype, g));
    st = n->f[1] ? LUNAR_KERNEL(be, adaptive_avg_pool2d_backward, gi[0], gc, &geo)
                 : LUNAR_KERNEL(be, avg_pool2d_backward, gi[0], gc, &geo);
done:
    lunar_tensor_release(gc);
    return st;
}

static lunar_status avg_pool4(const char *op, lunar_tensor **out, lunar_tensor *x,
                              const lunar_conv_geom *g, bool adaptive) {
    int64_t shape[4] = {g->n, g->c, g->oh, g->ow};
    const lunar_backend *be = lunar_tensor_backend(x);
    lunar_tensor *xc = NULL;
    lunar_status st;
    LUNAR_GOTO(contig(&xc, x));
    LUNAR_GOTO(lunar_tensor_new(out, 4, shape, x->dtype, x));
    LUNAR_GOTO(adaptive ? LUNAR_KERNEL(be, adaptive_avg_pool2d, *out, xc, g)
                        : LUNAR_KERNEL(be, avg_pool2d, *out, xc, g));
    lunar_node *n = lunar_node_begin(op, avg_pool_backward, 1, &x);
    if (n) {
        geom_save(n, g);
        n->f[1] = adaptive;
        lunar_node_finish(n, *out);
    }
done:
    lunar_tensor_release(xc);
    if (st != LUNAR_OK) {
        lunar_tensor_release(*out);
        *out = NULL;
    }
    return st;
}

lunar_status lunar_max_pool2d(lunar_tensor **out, lunar_tensor **indices, lunar_tensor *x,
                              const lunar_pool_params *p) {
    *out = NULL;
    if (indices) *indices = NULL;
    LUNAR_CHECK(check_float("max_pool2d", x, NULL, NULL));
    lunar_tensor *x4, *i4 = NULL;
    LUNAR_CHECK(unbatched_in("max_pool2d", &x4, x, "[N, C, H, W]"));
    lunar_status st = max_pool4("max_pool2d", out, indices ? &i4 : NULL, x4, p);
    lunar_tensor_release(x4);
    st = unbatched_out(st, out, x->ndim == 3);
    if (indices) st = unbatched_out(st, &i4, x->ndim == 3);
    if (st == LUNAR_OK && indices) *indices = i4;
    else lunar_tensor_release(i4);
    return st;
}

lunar_status lunar_avg_pool2d(lunar_tensor **out, lunar_tensor *x, const lunar_pool_params *p) {
    *out = NULL;
    LUNAR_CHECK(check_float("avg_pool2d", x, NULL, NULL));
    if (p->dilation[0] != 1 || p->dilation[1] != 1)
        return lunar_fail(LUNAR_ERR_ARG, "avg_pool2d: takes no dilation");
    lunar_tensor *x4;
    lunar_conv_geom g;
    LUNAR_CHECK(unbatched_in("avg_pool2d", &x4, x, "[N, C, H, W]"));
    lunar_status st = pool_geom("avg_pool2d", &g, x4, p);
    int64_t d = p->divisor_override;
    if (st == LUNAR_OK && d) {
        /* Every window then divides by kH kW: the padded extent is widened past the last
         * window (oh / ow are already fixed), so no ceil_mode window is clipped, and the
         * result is rescaled by kH kW / d, which autograd carries into the gradient. */
        g.count_include_pad = true;
        int64_t bh = (g.oh - 1) * g.sh - g.pt + g.kh - g.h;
        int64_t bw = (g.ow - 1) * g.sw - g.pl + g.kw - g.w;
        if (g.pb < bh) g.pb = bh;
        if (g.pr < bw) g.pr = bw;
        lunar_tensor *a = NULL;
        st = avg_pool4("avg_pool2d", &a, x4, &g, false);
        if (st == LUNAR_OK)
            st =
                lunar_binary_scalar(out, LUNAR_OP_MUL, a, (double)(g.kh * g.kw) / (double)d, false);
        lunar_tensor_release(a);
    } else if (st == LUNAR_OK) {
        st = avg_pool4("avg_pool2d", out, x4, &g, false);
    }
    lunar_tensor_release(x4);
    return unbatched_out(st, out, x->ndim == 3);
}

lunar_status lunar_adaptive_avg_pool2d(lunar_tensor **out, lunar_tensor *x, int64_t oh,
                                       int64_t ow) {
    *out = NULL;
    LUNAR_CHECK(check_float("adaptive_avg_pool2d", x, NULL, NULL));
    if (oh < 1 || ow < 1)
        return lunar_fail(LUNAR_ERR_ARG, "adaptive_avg_pool2d: output size must be positive "
                                         "(got %lldx%lld)", (long long)oh, (long long)ow);
    lunar_tensor *x4;
    LUNAR_CHECK(unbatched_in("adaptive_avg_pool2d", &x4, x, "[N, C, H, W]"));
    lunar_conv_geom g = {0};
    g.n = x4->shape[0], g.c = x4->shape[1], g.h = x4->shape[2], g.w = x4->shape[3];
    g.oh = oh, g.ow = ow;
    /* the widest window, for the kernels' work estimate */
    g.kh = (g.h + oh - 1) / oh + 1, g.kw = (g.w + ow - 1) / ow + 1;
    lunar_status st = avg_pool4("adaptive_avg_pool2d", out, x4, &g, true);
    lunar_tensor_release(x4);
    return unbatched_out(st, out, x->ndim == 3);
}

/* PyTorch's lp_pool2d: sign(a) relu(|a|) kH kW then ^(1 / p), a = avg_pool2d(x^p); the
 * sign/relu pair keeps the gradient at 0 finite-free where a window sums to 0. */
lunar_status lunar_lp_pool2d(lunar_tensor **out, lunar_tensor *x, double norm,
                             const lunar_pool_params *p) {
    *out = NULL;
    if (!(norm > 0))
        return lunar_fail(LUNAR_ERR_ARG, "lp_pool2d: norm_type must be positive (got %g)", norm);
    lunar_pool_params q = *p;
    q.padding[0] = q.padding[1] = 0;
    q.count_include_pad = true;
    q.divisor_override = 0;
    lunar_tensor *t[6] = {NULL};
    lunar_status st;
    LUNAR_GOTO(lunar_binary_scalar(&t[0], LUNAR_OP_POW, x, norm, false));
    LUNAR_GOTO(lunar_avg_pool2d(&t[1], t[0], &q));
    LUNAR_GOTO(lunar_unary(&t[2], LUNAR_OP_SIGN, t[1], NULL));
    LUNAR_GOTO(lunar_unary(&t[3], LUNAR_OP_ABS, t[1], NULL));
    LUNAR_GOTO(lunar_unary(&t[4], LUNAR_OP_RELU, t[3], NULL));
    LUNAR_GOTO(lunar_binary(&t[5], LUNAR_OP_MUL, t[2], t[4]));
    lunar_tensor_release(t[0]);
    t[0] = NULL;
    LUNAR_GOTO(lunar_binary_scalar(&t[0], LUNAR_OP_MUL, t[5], (double)(p->kernel[0] * p->kernel[1]),
                                   false));
    LUNAR_GOTO(lunar_binary_scalar(out, LUNAR_OP_POW, t[0], 1.0 / norm, false));
done:
    for (int i = 0; i < 6; i++) lunar_tensor_release(t[i]);
    return st;
}

/* ---- 1-d pooling: [N, C, L] as [N, C, 1, L] ---- */

static lunar_status pool1d_in(const char *op, lunar_tensor **x3, lunar_tensor *x,
                              const lunar_pool_params *p, lunar_pool_params *q) {
    char sx[128];
    if (x->ndim != 2 && x->ndim != 3)
        return lunar_fail(LUNAR_ERR_SHAPE, "%s: expects a 2-d or 3-d input [N, C, L] (got %s)", op,
                          lunar_shape_str(sx, sizeof sx, x->ndim, x->shape));
    *q = *p;
    q->kernel[1] = p->kernel[0], q->stride[1] = p->stride[0], q->padding[1] = p->padding[0];
    q->dilation[1] = p->dilation[0];
    q->kernel[0] = q->dilation[0] = 1, q->stride[0] = 1, q->padding[0] = 0;
    return lunar_unsqueeze(x3, x, x->ndim - 1);
}

static lunar_status pool1d_out(lunar_status st, lunar_tensor **t, int dim) {
    if (st != LUNAR_OK || !*t) return st;
    lunar_tensor *r = NULL;
    st = lunar_squeeze(&r, *t, dim);
    lunar_tensor_release(*t);
    *t = r;
    return st;
}

lunar_status lunar_max_pool1d(lunar_tensor **out, lunar_tensor **indices, lunar_tensor *x,
                              const lunar_pool_params *p) {
    *out = NULL;
    if (indices) *indices = NULL;
    lunar_pool_params q;
    lunar_tensor *x3;
    LUNAR_CHECK(pool1d_in("max_pool1d", &x3, x, p, &q));
    lunar_status st = lunar_max_pool2d(out, indices, x3, &q);
    lunar_tensor_release(x3);
    st = pool1d_out(st, out, x->ndim - 1);
    if (indices) st = pool1d_out(st, indices, x->ndim - 1);
    if (st != LUNAR_OK) {
        lunar_tensor_release(*out);
        *out = NULL;
        if (indices) {
            lunar_tensor_release(*indices);
            *indices = NULL;
        }
    }
    return st;
}

lunar_status lunar_avg_pool1d(lunar_tensor **out, lunar_tensor *x, const lunar_pool_params *p) {
    *out = NULL;
    lunar_pool_params q;
    lunar_tensor *x3;
    if (p->divisor_override)
        return lunar_fail(LUNAR_ERR_ARG, "avg_pool1d: takes no divisor_override (as PyTorch's)");
    LUNAR_CHECK(pool1d_in("avg_pool1d", &x3, x, p, &q));
    lunar_status st = lunar_avg_pool2d(out, x3, &q);
    lunar_tensor_release(x3);
    return pool1d_out(st, out, x->ndim - 1);
}
