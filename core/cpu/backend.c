/*
 * backend.c - the CPU backend: its function table, host memory, the strided iterator and
 * the thread setting shared by our OpenMP loops and OpenBLAS.
 */
#include "cpu.h"

#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

void openblas_set_num_threads(int n);

static int n_threads = 1;

int cpu_threads(void) { return n_threads; }

void lunar_set_num_threads(int n) {
    if (n < 1) n = 1;
    n_threads = n;
#ifdef _OPENMP
    omp_set_num_threads(n);
#endif
    openblas_set_num_threads(n);
}

int lunar_get_num_threads(void) { return n_threads; }

__attribute__((constructor)) static void cpu_init_threads(void) {
#ifdef _OPENMP
    n_threads = omp_get_max_threads();
#endif
}

/* OpenBLAS's name for the kernel set it runs; weak, so another BLAS leaves it NULL. An
 * OpenBLAS built with DYNAMIC_ARCH picks the set by CPU model unless OPENBLAS_CORETYPE
 * names one. */
char *openblas_get_corename(void) __attribute__((weak));

const char *lunar_blas_core(void) {
    if (!openblas_get_corename) return NULL;
    return openblas_get_corename();
}

static void *cpu_alloc(int device, size_t nbytes) {
    (void)device;
    return lunar_host_alloc(nbytes);
}

static void cpu_free(int device, void *p, size_t nbytes) {
    (void)device;
    lunar_host_free(p, nbytes);
}

static lunar_status cpu_write(lunar_storage *dst, size_t offset, const void *src, size_t n) {
    if (n) memcpy((char *)dst->data + offset, src, n);
    return LUNAR_OK;
}

static lunar_status cpu_read(void *dst, const lunar_storage *src, size_t offset, size_t n) {
    if (n) memcpy(dst, (const char *)src->data + offset, n);
    return LUNAR_OK;
}

/* ---- the iterator ---- */

void cpu_iter_init(cpu_iter *it, int nt, const lunar_tensor *const *ts) {
    const lunar_tensor *t0 = ts[0];
    it->nt = nt;
    it->ndim = 0;
    it->numel = lunar_tensor_numel(t0);
    for (int k = 0; k < nt; k++) it->base[k] = cpu_ptr(ts[k]);
    /* keep the dims of size > 1, merging a dim into the one before it when every operand
     * steps over it as one run */
    for (int d = 0; d < t0->ndim; d++) {
        if (t0->shape[d] == 1) continue;
        int n = it->ndim;
        bool merge = n > 0;
        for (int k = 0; k < nt && merge; k++) {
            int64_t es = (int64_t)lunar_dtype_size(ts[k]->dtype);
            merge = it->strides[k][n - 1] == ts[k]->strides[d] * es * t0->shape[d];
        }
        if (merge) {
            it->shape[n - 1] *= t0->shape[d];
            for (int k = 0; k < nt; k++)
                it->strides[k][n - 1] = ts[k]->strides[d] * (int64_t)lunar_dtype_size(ts[k]->dtype);
        } else {
            it->shape[n] = t0->shape[d];
            for (int k = 0; k < nt; k++)
                it->strides[k][n] = ts[k]->strides[d] * (int64_t)lunar_dtype_size(ts[k]->dtype);
            it->ndim++;
        }
    }
    if (it->ndim == 0) { /* a scalar, or all ones: one run of one element */
        it->ndim = 1;
        it->shape[0] = 1;
        for (int k = 0; k < nt; k++) it->strides[k][0] = 0;
    }
}

/* Runs the elements [begin, end) in row-major order. */
void cpu_iter_range(const cpu_iter *it, int64_t begin, int64_t end, cpu_row_fn fn,
                       void *ctx) {
    int nd = it->ndim, last = nd - 1;
    int64_t idx[LUNAR_MAX_DIMS];
    int64_t rem = begin;
    for (int d = last; d >= 0; d--) {
        idx[d] = rem % it->shape[d];
        rem /= it->shape[d];
    }
    char *ptrs[CPU_MAX_OPERANDS];
    int64_t inner[CPU_MAX_OPERANDS];
    for (int k = 0; k < it->nt; k++) inner[k] = it->strides[k][last];
    int64_t pos = begin;
    while (pos < end) {
        for (int k = 0; k < it->nt; k++) {
            char *p = it->base[k];
            for (int d = 0; d < nd; d++) p += idx[d] * it->strides[k][d];
            ptrs[k] = p;
        }
        int64_t n = it->shape[last] - idx[last];
        if (n > end - pos) n = end - pos;
        fn(ptrs, inner, n, ctx);
        pos += n;
        idx[last] += n;
        for (int d = last; d > 0 && idx[d] == it->shape[d]; d--) {
            idx[d] = 0;
            idx[d - 1]++;
        }
    }
}

void cpu_iter_run(const cpu_iter *it, cpu_row_fn fn, void *ctx, int64_t grain) {
    int64_t n = it->numel;
    if (n == 0) return;
    int nth = n_threads;
    if (nth <= 1 || n < grain) {
        cpu_iter_range(it, 0, n, fn, ctx);
        return;
    }
    int64_t chunks = n / grain;
    if (chunks > nth) chunks = nth;
#pragma omp parallel for num_threads(chunks) schedule(static)
    for (int64_t c = 0; c < chunks; c++)
        cpu_iter_range(it, n * c / chunks, n * (c + 1) / chunks, fn, ctx);
}

void cpu_foreach(int nt, const lunar_tensor *const *ts, cpu_row_fn fn, void *ctx) {
    cpu_iter it;
    cpu_iter_init(&it, nt, ts);
    cpu_iter_run(&it, fn, ctx, LUNAR_GRAIN);
}

double cpu_load(lunar_dtype dt, const char *p) {
    switch (dt) {
    case LUNAR_BOOL: return *(const uint8_t *)p != 0;
    case LUNAR_U8: return *(const uint8_t *)p;
    case LUNAR_I32: return *(const int32_t *)p;
    case LUNAR_I64: return (double)*(const int64_t *)p;
    case LUNAR_F32: return *(const float *)p;
    case LUNAR_F64: return *(const double *)p;
    default: return 0;
    }
}

void cpu_store(lunar_dtype dt, char *p, double v) {
    switch (dt) {
    case LUNAR_BOOL: *(uint8_t *)p = v != 0; break;
    case LUNAR_U8: *(uint8_t *)p = (uint8_t)(int64_t)v; break;
    case LUNAR_I32: *(int32_t *)p = (int32_t)v; break;
    case LUNAR_I64: *(int64_t *)p = (int64_t)v; break;
    case LUNAR_F32: *(float *)p = (float)v; break;
    case LUNAR_F64: *(double *)p = v; break;
    default: break;
    }
}

const lunar_backend lunar_cpu_backend = {
    /* .name          = */ "cpu",
    /* .alloc         = */ cpu_alloc,
    /* .free          = */ cpu_free,
    /* .write         = */ cpu_write,
    /* .read          = */ cpu_read,
    /* .copy          = */ cpu_copy,
    /* .fill          = */ cpu_fill,
    /* .arange        = */ cpu_arange,
    /* .unary         = */ cpu_unary,
    /* .binary        = */ cpu_binary,
    /* .where         = */ cpu_where,
    /* .reduce        = */ cpu_reduce,
    /* .arg_reduce    = */ cpu_arg_reduce,
    /* .scan          = */ cpu_scan,
    /* .gemm          = */ cpu_gemm,
    /* .random        = */ cpu_random,
    /* .gather        = */ cpu_gather,
    /* .scatter       = */ cpu_scatter,
    /* .index_select  = */ cpu_index_select,
    /* .index_add     = */ cpu_index_add,
    /* .sort          = */ cpu_sort,
    /* .count_nonzero = */ cpu_count_nonzero,
    /* .nonzero       = */ cpu_nonzero,
    /* .im2col                       = */ cpu_im2col,
    /* .col2im                       = */ cpu_col2im,
    /* .max_pool2d                   = */ cpu_max_pool2d,
    /* .max_pool2d_backward          = */ cpu_max_pool2d_backward,
    /* .avg_pool2d                   = */ cpu_avg_pool2d,
    /* .avg_pool2d_backward          = */ cpu_avg_pool2d_backward,
    /* .adaptive_avg_pool2d          = */ cpu_adaptive_avg_pool2d,
    /* .adaptive_avg_pool2d_backward = */ cpu_adaptive_avg_pool2d_backward,
    /* .optim_step    = */ cpu_optim_step,
    /* .softmax                = */ cpu_softmax,
    /* .softmax_backward       = */ cpu_softmax_backward,
    /* .cross_entropy          = */ cpu_cross_entropy,
    /* .cross_entropy_backward = */ cpu_cross_entropy_backward,
    /* .moments                = */ cpu_moments,
    /* .normalize              = */ cpu_normalize,
    /* .normalize_backward     = */ cpu_normalize_backward,
};
