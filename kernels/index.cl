/*
 * index.cl - kernels that move elements by index: arg-max/min and scans along one dim,
 * gather / index_select, scatter / index_add (gather-formulated: one work-item per
 * destination element), a stable merge sort along one dim, and the non-zero count and
 * coordinates. The host code is core/opencl/index.c; semantics follow core/cpu/index.c and
 * core/cpu/reduce.c exactly.
 */

/* ---- arg-max/min: one work-item per lane ----
 * v, ix [lanes] (x's shape with 1 at dim, as strides vs, is); x [lanes] + i * xstep, i < len.
 * The first extreme wins ties; the first NaN wins over everything (v != v is false for
 * the integer types, so one body serves them all). */
#define DEF_ARG_REDUCE(N, T)                                                                  \
    __kernel void arg_reduce_##N(__global T *v, long vo, long8 vs, __global long *ix,         \
                                 long io, long8 is, __global const T *x, long xo, long8 xs,   \
                                 long xstep, long len, long n, int nd, long8 shape,           \
                                 int is_min) {                                                \
        long g = get_global_id(0);                                                            \
        if (g >= n) return;                                                                   \
        long8 c = lunar_coords(g, nd, shape);                                                 \
        __global const T *px = x + xo + lunar_dot(c, xs);                                     \
        T best = px[0];                                                                       \
        long bi = 0;                                                                          \
        if (best == best)                                                                     \
            for (long i = 1; i < len; i++) {                                                  \
                T e = px[i * xstep];                                                          \
                if (e != e) {                                                                 \
                    best = e;                                                                 \
                    bi = i;                                                                   \
                    break;                                                                    \
                }                                                                             \
                if (is_min ? e < best : e > best) {                                           \
                    best = e;                                                                 \
                    bi = i;                                                                   \
                }                                                                             \
            }                                                                                 \
        v[vo + lunar_dot(c, vs)] = best;                                                      \
        ix[io + lunar_dot(c, is)] = bi;                                                       \
    }
LUNAR_ALL_TYPES(DEF_ARG_REDUCE)

/* ---- cumulative sum / product: one work-item per lane ----
 * o, x [lanes] + i * step, i < len. Floats accumulate in acc_t, integers in long (the
 * CPU's rule), and each partial result is cast to T. */
#define SCAN_ACC_bool long
#define SCAN_ACC_u8 long
#define SCAN_ACC_i32 long
#define SCAN_ACC_i64 long
#define SCAN_ACC_f32 acc_t
#define SCAN_ACC_f64 acc_t
#define DEF_SCAN(N, T)                                                                        \
    __kernel void scan_##N(__global T *o, long oo, long8 os, long ostep,                      \
                           __global const T *x, long xo, long8 xs, long xstep, long len,      \
                           long n, int nd, long8 shape, int is_prod) {                        \
        long g = get_global_id(0);                                                            \
        if (g >= n) return;                                                                   \
        long8 c = lunar_coords(g, nd, shape);                                                 \
        __global const T *px = x + xo + lunar_dot(c, xs);                                     \
        __global T *po = o + oo + lunar_dot(c, os);                                           \
        SCAN_ACC_##N s = is_prod ? 1 : 0;                                                     \
        for (long i = 0; i < len; i++) {                                                      \
            SCAN_ACC_##N e = (SCAN_ACC_##N)px[i * xstep];                                     \
            s = is_prod ? s * e : s + e;                                                      \
            po[i * ostep] = (T)s;                                                             \
        }                                                                                     \
    }
LUNAR_ALL_TYPES(DEF_SCAN)

/* ---- gather / index_select: one work-item per output element ----
 * o, idx [shape]; x seen with stride 0 at dim (xs) plus index * xstep. A plain move, so
 * the kernels go by element size (b1/b4/b8), not dtype. An index outside [0, size) writes
 * 0 (the op layer has checked the range already). */
#define DEF_GATHER(N, T)                                                                      \
    __kernel void gather_##N(__global T *o, long oo, long8 os, __global const T *x, long xo,  \
                             long8 xs, long xstep, long size, __global const long *idx,       \
                             long io, long8 is, long n, int nd, long8 shape) {                \
        long g = get_global_id(0);                                                            \
        if (g >= n) return;                                                                   \
        long8 c = lunar_coords(g, nd, shape);                                                 \
        long j = idx[io + lunar_dot(c, is)];                                                  \
        o[oo + lunar_dot(c, os)] = j >= 0 && j < size ? x[xo + lunar_dot(c, xs) + j * xstep]  \
                                                      : (T)0;                                 \
    }
DEF_GATHER(b1, uchar)
DEF_GATHER(b4, uint)
DEF_GATHER(b8, ulong)

/* ---- scatter / index_add, gather-formulated ----
 * One work-item per destination element of the walked region (shape: the index's shape
 * with dst's size at dim, nd = the tensors' ndim so that dim keeps its place). Its sources
 * are the index elements of its lane (same coordinates outside dim) that hold its position
 * j along dim, taken in ascending order along dim: the order the CPU's row-major walk
 * meets them. Plain scatter keeps the last; accumulate adds them one by one in T, as the
 * CPU does, so results match it bit for bit.
 * dst, src, idx: strides with 0 at dim (ds, ss, is) plus a position times the step along
 * dim; m: the index's size along dim. With sorted set, skeys / sperm hold each lane's
 * index values stably sorted with their positions (lane start: dot(c, ls)), so a binary
 * search finds the sources; otherwise the lane is walked whole (small m). */
#define SCATTER_ADD_bool(a, b) ((uchar)((a) || (b)))
#define SCATTER_ADD_u8(a, b) ((uchar)((a) + (b)))
#define SCATTER_ADD_i32(a, b) ((int)((a) + (b)))
#define SCATTER_ADD_i64(a, b) ((long)((a) + (b)))
#define SCATTER_ADD_f32(a, b) ((float)((a) + (b)))
#define SCATTER_ADD_f64(a, b) ((double)((a) + (b)))
#define DEF_SCATTER(N, T)                                                                     \
    __kernel void scatter_##N(__global T *dst, long dofs, long8 ds, long dstep,               \
                              __global const T *src, long so, long8 ss, long sstep,           \
                              __global const long *idx, long io, long8 is, long istep,        \
                              long m, __global const long *skeys,                             \
                              __global const long *sperm, long8 ls, int sorted, long n,       \
                              int nd, long8 shape, int dim, int accumulate, acc_t alpha,      \
                              int use_alpha) {                                                \
        long g = get_global_id(0);                                                            \
        if (g >= n) return;                                                                   \
        lunar_dims c;                                                                         \
        c.v = lunar_coords(g, nd, shape);                                                     \
        long j = c.a[dim];                                                                    \
        __global T *pd = dst + dofs + lunar_dot(c.v, ds) + j * dstep;                         \
        __global const T *ps = src + so + lunar_dot(c.v, ss);                                 \
        T acc = *pd;                                                                          \
        int hit = 0;                                                                          \
        if (sorted) {                                                                         \
            long lb = lunar_dot(c.v, ls), lo = 0, hi = m;                                     \
            while (lo < hi) { /* the first key >= j */                                        \
                long mid = (lo + hi) / 2;                                                     \
                if (skeys[lb + mid] < j) lo = mid + 1;                                        \
                else hi = mid;                                                                \
            }                                                                                 \
            for (long t = lo; t < m && skeys[lb + t] == j; t++) {                             \
                T e = ps[sperm[lb + t] * sstep];                                              \
                if (!accumulate) acc = e;                                                     \
                else if (use_alpha) acc = SCATTER_ADD_##N(acc, (T)(alpha * (acc_t)e));        \
                else acc = SCATTER_ADD_##N(acc, e);                                           \
                hit = 1;                                                                      \
            }                                                                                 \
        } else {                                                                              \
            __global const long *pi = idx + io + lunar_dot(c.v, is);                          \
            for (long k = 0; k < m; k++) {                                                    \
                if (pi[k * istep] != j) continue;                                             \
                T e = ps[k * sstep];                                                          \
                if (!accumulate) acc = e;                                                     \
                else if (use_alpha) acc = SCATTER_ADD_##N(acc, (T)(alpha * (acc_t)e));        \
                else acc = SCATTER_ADD_##N(acc, e);                                           \
                hit = 1;                                                                      \
            }                                                                                 \
        }                                                                                     \
        if (hit) *pd = acc;                                                                   \
    }
LUNAR_ALL_TYPES(DEF_SCATTER)

/* ---- sort: a stable merge sort of lines of len elements, lines stored one after another ----
 * sort_init loads the keys from x (row-major over shape: the other dims, then dim last)
 * with their positions, one work-item per run of SORT_RUN elements of a line, and sorts each
 * run by insertion; each sort_merge pass then merges runs of w into runs of 2w, one
 * work-item per SORT_RUN outputs: a binary search along its diagonal of the merge (merge
 * path) finds how many of the outputs before its first come from the left run, then it
 * merges its SORT_RUN outputs in order. A pass costs O(len) plus O(len / SORT_RUN * log w),
 * so a line costs O(len log len). sort_store writes the result back (same geometry as init).
 * NaN sorts as the largest value; on a tie the left run goes first in both directions,
 * which is what makes the sort stable (and equal to the CPU's for any input). */
#define SORT_RUN 16 /* index.c's SORT_RUN */
#define SORT_LESS(a, b) ((a) < (b) || ((b) != (b) && (a) == (a)))
#define SORT_BEFORE(a, b) (desc ? SORT_LESS(b, a) : SORT_LESS(a, b))
#define DEF_SORT(N, T)                                                                        \
    __kernel void sort_init_##N(__global T *k, __global long *ix, __global const T *x,        \
                                long xo, long8 xs, long len, long runs, long nruns, int nd,   \
                                long8 shape, int desc) {                                      \
        long g = get_global_id(0);                                                            \
        if (g >= nruns) return;                                                               \
        long p0 = g % runs * SORT_RUN, e0 = g / runs * len + p0;                              \
        int cnt = (int)min((long)SORT_RUN, len - p0);                                         \
        T kk[SORT_RUN];                                                                       \
        long pp[SORT_RUN];                                                                    \
        for (int i = 0; i < cnt; i++) {                                                       \
            T e = x[xo + lunar_dotn(nd, lunar_coords(e0 + i, nd, shape), xs)];               \
            int j = i;                                                                        \
            for (; j > 0 && SORT_BEFORE(e, kk[j - 1]); j--) {                                 \
                kk[j] = kk[j - 1];                                                            \
                pp[j] = pp[j - 1];                                                            \
            }                                                                                 \
            kk[j] = e;                                                                        \
            pp[j] = p0 + i;                                                                   \
        }                                                                                     \
        for (int i = 0; i < cnt; i++) {                                                       \
            k[e0 + i] = kk[i];                                                                \
            ix[e0 + i] = pp[i];                                                               \
        }                                                                                     \
    }                                                                                         \
    __kernel void sort_merge_##N(__global const T *k, __global const long *ix,                \
                                 __global T *k2, __global long *ix2, long len, long w,        \
                                 long chunks, long nchunks, int desc) {                       \
        long g = get_global_id(0);                                                            \
        if (g >= nchunks) return;                                                             \
        long base = g / chunks * len, o = g % chunks * SORT_RUN;                              \
        long lo = o - o % (2 * w), mid = min(lo + w, len), hi = min(lo + 2 * w, len);        \
        long na = mid - lo, nb = hi - mid, d = o - lo, end = min(o + SORT_RUN, hi) - lo;     \
        __global const T *a = k + base + lo, *b = k + base + mid;                             \
        __global const long *pa = ix + base + lo, *pb = ix + base + mid;                      \
        long i = max(0L, d - nb), i1 = min(d, na);                                            \
        while (i < i1) { /* the first i whose a[i] is not among the first d outputs */        \
            long t = (i + i1) / 2;                                                            \
            if (SORT_BEFORE(b[d - 1 - t], a[t])) i1 = t;                                      \
            else i = t + 1;                                                                   \
        }                                                                                     \
        long j = d - i;                                                                       \
        __global T *ko = k2 + base + lo;                                                      \
        __global long *po = ix2 + base + lo;                                                  \
        for (long q = d; q < end; q++) {                                                      \
            if (j >= nb || (i < na && !SORT_BEFORE(b[j], a[i]))) {                            \
                ko[q] = a[i];                                                                 \
                po[q] = pa[i++];                                                              \
            } else {                                                                          \
                ko[q] = b[j];                                                                 \
                po[q] = pb[j++];                                                              \
            }                                                                                 \
        }                                                                                     \
    }                                                                                         \
    __kernel void sort_store_##N(__global T *v, long vo, long8 vs, __global long *vi,         \
                                 long io, long8 is, __global const T *k,                      \
                                 __global const long *ix, long n, int nd, long8 shape) {      \
        long g = get_global_id(0);                                                            \
        if (g >= n) return;                                                                   \
        long8 c = lunar_coords(g, nd, shape);                                                 \
        v[vo + lunar_dot(c, vs)] = k[g];                                                      \
        vi[io + lunar_dot(c, is)] = ix[g];                                                    \
    }
LUNAR_ALL_TYPES(DEF_SORT)

/* ---- non-zeros: x walked in row-major order in chunks of `chunk` elements ----
 * nonzero_count writes each chunk's count; the host turns them into starting rows, and
 * nonzero_fill writes the coordinates (x's own dims, not merged) of each non-zero at
 * o [row, d] (strides rs, cs). NaN counts as non-zero. */
inline long lunar_chunk_start(long g, long chunk, int nd, long8 shape, long8 xs,
                              lunar_dims *c) {
    c->v = lunar_coords(g * chunk, nd, shape);
    return lunar_dot(c->v, xs);
}
/* the next element in row-major order: coordinates c, offset off */
inline long lunar_step(long off, int nd, lunar_dims *c, long8 shape, long8 xs) {
    lunar_dims sh, st;
    sh.v = shape;
    st.v = xs;
    for (int d = nd - 1; d >= 0; d--) {
        off += st.a[d];
        if (++c->a[d] < sh.a[d]) return off;
        off -= st.a[d] * sh.a[d];
        c->a[d] = 0;
    }
    return off;
}
#define DEF_NONZERO(N, T)                                                                     \
    __kernel void nonzero_count_##N(__global long *counts, __global const T *x, long xo,      \
                                    long8 xs, long chunk, long n, int nd, long8 shape) {      \
        long g = get_global_id(0);                                                            \
        if (g * chunk >= n) return;                                                           \
        lunar_dims c;                                                                         \
        long off = xo + lunar_chunk_start(g, chunk, nd, shape, xs, &c), cnt = 0;              \
        long end = min(n, (g + 1) * chunk);                                                   \
        for (long e = g * chunk; e < end; e++) {                                              \
            cnt += x[off] != 0;                                                               \
            off = lunar_step(off, nd, &c, shape, xs);                                         \
        }                                                                                     \
        counts[g] = cnt;                                                                      \
    }                                                                                         \
    __kernel void nonzero_fill_##N(__global long *o, long oo, long rs, long cs, long rows,    \
                                   __global const long *starts, __global const T *x,          \
                                   long xo, long8 xs, long chunk, long n, int nd,             \
                                   long8 shape) {                                             \
        long g = get_global_id(0);                                                            \
        if (g * chunk >= n) return;                                                           \
        lunar_dims c;                                                                         \
        long off = xo + lunar_chunk_start(g, chunk, nd, shape, xs, &c), row = starts[g];      \
        long end = min(n, (g + 1) * chunk);                                                   \
        for (long e = g * chunk; e < end && row < rows; e++) {                                \
            if (x[off] != 0) {                                                                \
                for (int d = 0; d < nd; d++) o[oo + row * rs + d * cs] = c.a[d];              \
                row++;                                                                        \
            }                                                                                 \
            off = lunar_step(off, nd, &c, shape, xs);                                         \
        }                                                                                     \
    }
LUNAR_ALL_TYPES(DEF_NONZERO)
