/*
 * index.c - the OpenCL index family (kernels/index.cl): arg-max/min and scans along one
 * dim, gather and index_select, scatter and index_add, sort, count_nonzero and nonzero.
 *
 * Scatter and index_add never use atomics: each destination element gathers its sources in
 * the CPU's order (see index.cl), finding them by a walk of its lane when lanes are short
 * and by a binary search in the lane's stably sorted index when they are long. The op layer
 * checks index ranges on the host before calling in; the kernels still skip (gather: write
 * 0 for) an index out of range rather than touch memory outside a tensor.
 */
#include "opencl.h"

#include <stdlib.h>
#include <string.h>

static const char *arg_reduce_k[] = OCL_NAMES(arg_reduce), *scan_k[] = OCL_NAMES(scan),
                  *scatter_k[] = OCL_NAMES(scatter), *sort_init_k[] = OCL_NAMES(sort_init),
                  *sort_merge_k[] = OCL_NAMES(sort_merge), *sort_store_k[] = OCL_NAMES(sort_store),
                  *nz_count_k[] = OCL_NAMES(nonzero_count), *nz_fill_k[] = OCL_NAMES(nonzero_fill);

/* Lanes longer than this are searched through a sorted copy of the index in scatter. */
#define SCATTER_WALK_MAX 16
/* Elements per run that sort_init sorts alone, and outputs per work-item of a merge pass
 * (index.cl's SORT_RUN). */
#define SORT_RUN 16
/* Elements one work-item of the non-zero kernels walks. */
#define NZ_CHUNK 4096

/* A long8 of a tensor's first nd values (the rest 0), for unmerged geometry. */
static cl_long8 long8_of(int nd, const int64_t *v) {
    cl_long8 r;
    for (int d = 0; d < 8; d++)
        r.s[d] = d < nd ? v[d] : 0;
    return r;
}

/* t with size 1 at dim: the lanes of a walk along dim. */
static lunar_tensor lane_view(const lunar_tensor *t, int dim) {
    lunar_tensor v = *t;
    v.shape[dim] = 1;
    return v;
}

/* ---- arg-max/min and scans ---- */

/* values, indices: x's shape with 1 at dim; x: [..., len, ...] (len >= 1) */
lunar_status ocl_arg_reduce(lunar_tensor *values, lunar_tensor *indices, const lunar_tensor *x,
                            int dim, bool is_min) {
    int64_t len = x->shape[dim];
    if (len == 0) return lunar_fail(LUNAR_ERR_SHAPE, "opencl: arg_reduce over an empty dim");
    lunar_tensor xv = lane_view(x, dim);
    const lunar_tensor *ts[3] = {values, indices, &xv};
    ocl_geom g;
    ocl_geom_init(&g, 3, ts);
    cl_mem v = OCL_MEM(values), ix = OCL_MEM(indices), xm = OCL_MEM(x);
    cl_long vo = values->offset, io = indices->offset, xo = x->offset, xstep = x->strides[dim],
            cl_len = len, n = g.n;
    cl_int nd = g.nd, mn = is_min;
    ocl_karg args[] = {
        A(v),  A(vo),           A(g.strides[0]), A(ix),     A(io), A(g.strides[1]), A(xm),
        A(xo), A(g.strides[2]), A(xstep),        A(cl_len), A(n),  A(nd),           A(g.shape),
        A(mn)};
    return ocl_launch(ocl_dev(x), arg_reduce_k[x->dtype], g.n, 15, args);
}

/* out, x: same shape and dtype, any strides; cumulative sum or product along dim */
lunar_status ocl_scan(lunar_tensor *out, const lunar_tensor *x, int dim, bool is_prod) {
    int64_t len = x->shape[dim];
    if (len == 0 || lunar_tensor_numel(x) == 0) return LUNAR_OK;
    lunar_tensor ov = lane_view(out, dim), xv = lane_view(x, dim);
    const lunar_tensor *ts[2] = {&ov, &xv};
    ocl_geom g;
    ocl_geom_init(&g, 2, ts);
    cl_mem o = OCL_MEM(out), xm = OCL_MEM(x);
    cl_long oo = out->offset, ostep = out->strides[dim], xo = x->offset, xstep = x->strides[dim],
            cl_len = len, n = g.n;
    cl_int nd = g.nd, prod = is_prod;
    ocl_karg args[] = {A(o),  A(oo),           A(g.strides[0]), A(ostep),  A(xm),
                       A(xo), A(g.strides[1]), A(xstep),        A(cl_len), A(n),
                       A(nd), A(g.shape),      A(prod)};
    return ocl_launch(ocl_dev(x), scan_k[x->dtype], g.n, 13, args);
}

/* ---- gather / index_select ---- */

/* out [shape] = x [.., index [..], ..] with index seen through idx (out's shape) */
static lunar_status gather_run(lunar_tensor *out, const lunar_tensor *x, int dim,
                               const lunar_tensor *idx) {
    if (lunar_tensor_numel(out) == 0) return LUNAR_OK;
    lunar_tensor xv = *x; /* out's shape, stride 0 at dim: the index adds the step */
    xv.ndim = out->ndim;
    for (int d = 0; d < out->ndim; d++) {
        xv.shape[d] = out->shape[d];
        xv.strides[d] = d == dim ? 0 : x->strides[d];
    }
    const lunar_tensor *ts[3] = {out, &xv, idx};
    ocl_geom g;
    ocl_geom_init(&g, 3, ts);
    cl_mem o = OCL_MEM(out), xm = OCL_MEM(x), im = OCL_MEM(idx);
    cl_long oo = out->offset, xo = x->offset, xstep = x->strides[dim], size = x->shape[dim],
            io = idx->offset, n = g.n;
    cl_int nd = g.nd;
    ocl_karg args[] = {
        A(o),    A(oo), A(g.strides[0]), A(xm),           A(xo), A(g.strides[1]), A(xstep),
        A(size), A(im), A(io),           A(g.strides[2]), A(n),  A(nd),           A(g.shape)};
    size_t es = lunar_dtype_size(x->dtype);
    const char *name = es == 1 ? "gather_b1" : es == 4 ? "gather_b4" : "gather_b8";
    return ocl_launch(ocl_dev(out), name, g.n, 14, args);
}

/* A 1-D index [k] as a view of `shape` that runs along dim (stride 0 elsewhere). */
static lunar_tensor index_view(const lunar_tensor *index, int ndim, const int64_t *shape, int dim) {
    lunar_tensor v = *index;
    v.ndim = ndim;
    for (int d = 0; d < ndim; d++) {
        v.shape[d] = shape[d];
        v.strides[d] = d == dim ? index->strides[0] : 0;
    }
    return v;
}

/* out: index's shape; x: same ndim, sizes >= index's outside dim */
lunar_status ocl_gather(lunar_tensor *out, const lunar_tensor *x, int dim,
                        const lunar_tensor *index) {
    return gather_run(out, x, dim, index);
}

/* x: [..., n, ...], index: [k] -> out: [..., k, ...] */
lunar_status ocl_index_select(lunar_tensor *out, const lunar_tensor *x, int dim,
                              const lunar_tensor *index) {
    lunar_tensor iv = index_view(index, out->ndim, out->shape, dim);
    return gather_run(out, x, dim, &iv);
}

/* ---- sort ---- */

/* x's shape and strides with dim moved last, so that row-major order over them walks one
 * line after another. */
static lunar_tensor dim_last(const lunar_tensor *t, int dim) {
    lunar_tensor v = *t;
    int k = 0;
    for (int d = 0; d < t->ndim; d++) {
        if (d == dim) continue;
        v.shape[k] = t->shape[d];
        v.strides[k++] = t->strides[d];
    }
    v.shape[k] = t->shape[dim];
    v.strides[k] = t->strides[dim];
    return v;
}

/* Sorts every line of x along dim into fresh contiguous *keys (x's dtype) and *pos (int64,
 * positions along dim), lines one after another in row-major order of the other dims. */
static lunar_status sort_lines(const lunar_tensor *x, int dim, bool descending, lunar_tensor **keys,
                               lunar_tensor **pos) {
    int64_t numel = lunar_tensor_numel(x), len = x->ndim ? x->shape[dim] : 1;
    lunar_tensor *k[2] = {NULL, NULL}, *p[2] = {NULL, NULL};
    *keys = *pos = NULL;
    lunar_status st;
    LUNAR_GOTO(lunar_tensor_new(&k[0], 1, &numel, x->dtype, x));
    LUNAR_GOTO(lunar_tensor_new(&p[0], 1, &numel, LUNAR_I64, x));
    lunar_tensor xl = x->ndim ? dim_last(x, dim) : *x;
    const lunar_tensor *ts[1] = {&xl};
    ocl_geom g;
    ocl_geom_init(&g, 1, ts);
    /* runs of SORT_RUN sorted by sort_init, then merged by one work-item per SORT_RUN
     * outputs (index.cl) */
    cl_mem km = OCL_MEM(k[0]), pm = OCL_MEM(p[0]), xm = OCL_MEM(x);
    cl_long xo = x->offset, cl_len = len, runs = (len + SORT_RUN - 1) / SORT_RUN,
            nruns = numel / len * runs;
    cl_int nd = g.nd, desc = descending;
    ocl_karg init[] = {A(km),   A(pm),    A(xm), A(xo),      A(g.strides[0]), A(cl_len),
                       A(runs), A(nruns), A(nd), A(g.shape), A(desc)};
    LUNAR_GOTO(ocl_launch(ocl_dev(x), sort_init_k[x->dtype], nruns, 11, init));
    int cur = 0;
    if (len > SORT_RUN) {
        LUNAR_GOTO(lunar_tensor_new(&k[1], 1, &numel, x->dtype, x));
        LUNAR_GOTO(lunar_tensor_new(&p[1], 1, &numel, LUNAR_I64, x));
        for (cl_long w = SORT_RUN; w < len; w *= 2, cur ^= 1) {
            cl_mem k0 = OCL_MEM(k[cur]), p0 = OCL_MEM(p[cur]), k1 = OCL_MEM(k[cur ^ 1]),
                   p1 = OCL_MEM(p[cur ^ 1]);
            ocl_karg merge[] = {A(k0), A(p0),   A(k1),    A(p1),  A(cl_len),
                                A(w),  A(runs), A(nruns), A(desc)};
            LUNAR_GOTO(ocl_launch(ocl_dev(x), sort_merge_k[x->dtype], nruns, 9, merge));
        }
    }
    *keys = k[cur];
    *pos = p[cur];
    k[cur] = p[cur] = NULL;
done:
    for (int i = 0; i < 2; i++) {
        lunar_tensor_release(k[i]);
        lunar_tensor_release(p[i]);
    }
    return st;
}

/* x: [..., n, ...] -> values (x's dtype), indices (int64, 0-based): x's shape, any strides */
lunar_status ocl_sort(lunar_tensor *values, lunar_tensor *indices, const lunar_tensor *x, int dim,
                      bool descending) {
    int64_t numel = lunar_tensor_numel(x);
    if (numel == 0) return LUNAR_OK;
    lunar_tensor *k, *p;
    LUNAR_CHECK(sort_lines(x, dim, descending, &k, &p));
    lunar_tensor vl = values->ndim ? dim_last(values, dim) : *values,
                 il = indices->ndim ? dim_last(indices, dim) : *indices;
    const lunar_tensor *ts[2] = {&vl, &il};
    ocl_geom g;
    ocl_geom_init(&g, 2, ts);
    cl_mem vm = OCL_MEM(values), im = OCL_MEM(indices), km = OCL_MEM(k), pm = OCL_MEM(p);
    cl_long vo = values->offset, io = indices->offset, n = numel;
    cl_int nd = g.nd;
    ocl_karg args[] = {A(vm), A(vo), A(g.strides[0]), A(im),     A(io), A(g.strides[1]), A(km),
                       A(pm), A(n),  A(nd),           A(g.shape)};
    lunar_status st = ocl_launch(ocl_dev(x), sort_store_k[x->dtype], n, 11, args);
    lunar_tensor_release(k);
    lunar_tensor_release(p);
    return st;
}

/* ---- scatter / index_add ---- */

/* The shared body. region: the destination elements walked (the index's shape with dst's
 * size at dim); dst, src and idx come with region's ndim, their strides used outside dim
 * and their step along it. sortable: the index tensor whose lines (along sort_dim) hold
 * each lane's indices, and lane_strides where a region lane starts in its sorted lines. */
static lunar_status scatter_run(lunar_tensor *dst, int dim, const lunar_tensor *idx,
                                const lunar_tensor *src, int64_t m, const lunar_tensor *sortable,
                                int sort_dim, const int64_t *lane_strides, bool accumulate,
                                double alpha) {
    int nd = dst->ndim;
    int64_t region[LUNAR_MAX_DIMS], zero[LUNAR_MAX_DIMS], ds[LUNAR_MAX_DIMS], ss[LUNAR_MAX_DIMS],
        is[LUNAR_MAX_DIMS], ls[LUNAR_MAX_DIMS];
    for (int d = 0; d < nd; d++) {
        region[d] = d == dim ? dst->shape[dim] : idx->shape[d];
        zero[d] = 0;
        ds[d] = d == dim ? 0 : dst->strides[d];
        ss[d] = d == dim ? 0 : src->strides[d];
        is[d] = d == dim ? 0 : idx->strides[d];
        ls[d] = d == dim ? 0 : lane_strides[d];
    }
    int64_t n = lunar_shape_numel(nd, region);
    if (n == 0 || m == 0) return LUNAR_OK;
    lunar_tensor *keys = NULL, *pos = NULL;
    bool sorted = m > SCATTER_WALK_MAX;
    if (sorted) LUNAR_CHECK(sort_lines(sortable, sort_dim, false, &keys, &pos));
    cl_mem dm = OCL_MEM(dst), sm = OCL_MEM(src), im = OCL_MEM(idx),
           km = sorted ? OCL_MEM(keys) : im, pm = sorted ? OCL_MEM(pos) : im;
    cl_long dofs = dst->offset, dstep = dst->strides[dim], so = src->offset,
            sstep = src->strides[dim], io = idx->offset, istep = idx->strides[dim], cm = m, cn = n;
    cl_long8 dsv = long8_of(nd, ds), ssv = long8_of(nd, ss), isv = long8_of(nd, is),
             lsv = long8_of(nd, sorted ? ls : zero), shape = long8_of(nd, region);
    cl_int srt = sorted, cnd = nd, cdim = dim, acc = accumulate,
           use_alpha = accumulate && alpha != 1 && dst->dtype != LUNAR_BOOL;
    ocl_scalar al;
    ocl_karg al_arg = ocl_acc_arg(&al, dst, alpha);
    ocl_karg args[] = {A(dm),  A(dofs), A(dsv), A(dstep), A(sm),   A(so),  A(ssv), A(sstep),
                       A(im),  A(io),   A(isv), A(istep), A(cm),   A(km),  A(pm),  A(lsv),
                       A(srt), A(cn),   A(cnd), A(shape), A(cdim), A(acc), al_arg, A(use_alpha)};
    lunar_status st = ocl_launch(ocl_dev(dst), scatter_k[dst->dtype], n, 24, args);
    lunar_tensor_release(keys);
    lunar_tensor_release(pos);
    return st;
}

/* dst: [...]; index: same ndim, sizes <= dst's outside dim; src: sizes >= index's */
lunar_status ocl_scatter(lunar_tensor *dst, int dim, const lunar_tensor *index,
                         const lunar_tensor *src, bool accumulate) {
    if (lunar_tensor_numel(index) == 0) return LUNAR_OK;
    int nd = index->ndim;
    /* sort_lines lays lines out in row-major order of the other dims */
    int64_t lane[LUNAR_MAX_DIMS], step = index->shape[dim];
    for (int d = nd - 1; d >= 0; d--) {
        if (d == dim) continue;
        lane[d] = step;
        step *= index->shape[d];
    }
    lane[dim] = 0;
    return scatter_run(dst, dim, index, src, index->shape[dim], index, dim, lane, accumulate, 1);
}

/* dst: [..., n, ...]; index: [k]; src: [..., k, ...] */
lunar_status ocl_index_add(lunar_tensor *dst, int dim, const lunar_tensor *index,
                           const lunar_tensor *src, double alpha) {
    lunar_tensor iv = index_view(index, src->ndim, src->shape, dim);
    int64_t lane[LUNAR_MAX_DIMS] = {0}; /* one line: the index itself */
    return scatter_run(dst, dim, &iv, src, index->shape[0], index, 0, lane, true, alpha);
}

/* ---- non-zeros ---- */

/* Per-chunk non-zero counts of x (row-major, NZ_CHUNK elements a chunk) into a fresh int64
 * tensor on x's device, and read back into *host (malloc'd, *chunks entries). */
static lunar_status nz_counts(const lunar_tensor *x, lunar_tensor **counts, int64_t **host,
                              int64_t *chunks) {
    int64_t n = lunar_tensor_numel(x);
    *chunks = (n + NZ_CHUNK - 1) / NZ_CHUNK;
    *counts = NULL;
    *host = NULL;
    lunar_status st;
    LUNAR_GOTO(lunar_tensor_new(counts, 1, chunks, LUNAR_I64, x));
    cl_mem cm = OCL_MEM(*counts), xm = OCL_MEM(x);
    cl_long xo = x->offset, chunk = NZ_CHUNK, cn = n;
    cl_long8 xs = long8_of(x->ndim, x->strides), shape = long8_of(x->ndim, x->shape);
    cl_int nd = x->ndim;
    ocl_karg args[] = {A(cm), A(xm), A(xo), A(xs), A(chunk), A(cn), A(nd), A(shape)};
    LUNAR_GOTO(ocl_launch(ocl_dev(x), nz_count_k[x->dtype], *chunks, 8, args));
    *host = malloc((size_t)*chunks * sizeof(int64_t));
    if (!*host) LUNAR_GOTO(lunar_fail(LUNAR_ERR_MEMORY, "nonzero: out of memory"));
    LUNAR_GOTO(ocl_read(*host, (*counts)->storage, 0, (size_t)*chunks * sizeof(int64_t)));
done:
    if (st != LUNAR_OK) {
        lunar_tensor_release(*counts);
        free(*host);
        *counts = NULL;
        *host = NULL;
    }
    return st;
}

/* x: any shape -> *count */
lunar_status ocl_count_nonzero(int64_t *count, const lunar_tensor *x) {
    *count = 0;
    if (lunar_tensor_numel(x) == 0) return LUNAR_OK;
    lunar_tensor *c;
    int64_t *h, chunks;
    LUNAR_CHECK(nz_counts(x, &c, &h, &chunks));
    for (int64_t i = 0; i < chunks; i++)
        *count += h[i];
    lunar_tensor_release(c);
    free(h);
    return LUNAR_OK;
}

/* x: [d1, ..., dn] -> out: [count, n] int64, rows in row-major order of x */
lunar_status ocl_nonzero(lunar_tensor *out, const lunar_tensor *x) {
    if (lunar_tensor_numel(x) == 0) return LUNAR_OK;
    lunar_tensor *c;
    int64_t *h, chunks, total = 0, rows = out->ndim ? out->shape[0] : 0;
    LUNAR_CHECK(nz_counts(x, &c, &h, &chunks));
    for (int64_t i = 0; i < chunks; i++) { /* counts -> each chunk's first row */
        int64_t k = h[i];
        h[i] = total;
        total += k;
    }
    lunar_status st = LUNAR_OK;
    if (total > rows)
        LUNAR_GOTO(lunar_fail(LUNAR_ERR_SHAPE, "nonzero: more non-zeros than the output holds"));
    if (total == 0) goto done;
    LUNAR_GOTO(ocl_write(c->storage, 0, h, (size_t)chunks * sizeof(int64_t)));
    cl_mem om = OCL_MEM(out), cm = OCL_MEM(c), xm = OCL_MEM(x);
    cl_long oo = out->offset, rs = out->strides[0], cs = out->ndim > 1 ? out->strides[1] : 0,
            crows = rows, xo = x->offset, chunk = NZ_CHUNK, n = lunar_tensor_numel(x);
    cl_long8 xs = long8_of(x->ndim, x->strides), shape = long8_of(x->ndim, x->shape);
    cl_int nd = x->ndim;
    ocl_karg args[] = {A(om), A(oo), A(rs),    A(cs), A(crows), A(cm),   A(xm),
                       A(xo), A(xs), A(chunk), A(n),  A(nd),    A(shape)};
    LUNAR_GOTO(ocl_launch(ocl_dev(x), nz_fill_k[x->dtype], chunks, 13, args));
done:
    lunar_tensor_release(c);
    free(h);
    return st;
}
