/*
 * cpu.h - what the CPU backend's files share: the strided iterator and the dtype switch.
 */
#ifndef LUNAR_CPU_H
#define LUNAR_CPU_H

#include "../lunar-impl.h"

#define CPU_MAX_OPERANDS 4

/* Hot loops are compiled twice, for AVX2 and for the x86-64 baseline, and the loader picks
 * one (GCC's target_clones, an ifunc): a portable build that still uses the wide vectors. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(LUNAR_SANITIZE)
#define CPU_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define CPU_CLONES
#endif

/* Walks operands of one shape element by element. Dims are coalesced where every operand
 * is laid out as one run, so a contiguous tensor becomes a single row; strides in bytes. */
typedef struct cpu_iter {
    int ndim, nt;
    int64_t numel;
    int64_t shape[LUNAR_MAX_DIMS];
    int64_t strides[CPU_MAX_OPERANDS][LUNAR_MAX_DIMS];
    char *base[CPU_MAX_OPERANDS];
} cpu_iter;

/* Called for each run of n elements: ptrs[k] is operand k's first element there and
 * strides[k] its step in bytes. */
typedef void (*cpu_row_fn)(char **ptrs, const int64_t *strides, int64_t n, void *ctx);

/* ts[0] gives the shape; every operand must have it (broadcast views are fine). */
void cpu_iter_init(cpu_iter *it, int nt, const lunar_tensor *const *ts);
/* Runs fn over every element, split across threads when there are more than grain. */
void cpu_iter_run(const cpu_iter *it, cpu_row_fn fn, void *ctx, int64_t grain);
/* Runs the elements [begin, end) of it on the calling thread. */
void cpu_iter_range(const cpu_iter *it, int64_t begin, int64_t end, cpu_row_fn fn, void *ctx);
/* Runs fn over operands given as tensors: the usual entry point. */
void cpu_foreach(int nt, const lunar_tensor *const *ts, cpu_row_fn fn, void *ctx);

/* Pointer to a tensor's first element. */
static inline char *cpu_ptr(const lunar_tensor *t) {
    return (char *)t->storage->data + t->offset * (int64_t)lunar_dtype_size(t->dtype);
}

/* Reads element i of a run as double / writes a double into it, whatever the dtype. */
double cpu_load(lunar_dtype dt, const char *p);
void cpu_store(lunar_dtype dt, char *p, double v);

/* The number of threads our loops use (lunar_set_num_threads). */
int cpu_threads(void);

/* Runs fn(arg, part, nparts) for every part in [0, nparts) on the calling thread and one
 * helper thread that spins between jobs (assist.c): for jobs of a few microseconds, where an
 * OpenMP team costs more than it saves. Returns false, running nothing, when it cannot help
 * (one thread set, inside an OpenMP region, another job in flight): run the job alone then.
 * Parts may run on either thread in any order, so each must write its own outputs. */
typedef void (*cpu_assist_fn)(void *arg, int part, int nparts);

/* [*i0, *i1): part `part` of `nparts` of [0, n) in whole blocks of `align` (the last one may
 * end short at n); empty when there are fewer blocks than parts. */
static inline void cpu_part_range(int64_t n, int64_t align, int part, int nparts, int64_t *i0,
                                  int64_t *i1) {
    int64_t blocks = (n + align - 1) / align;
    *i0 = blocks * part / nparts * align;
    *i1 = blocks * (part + 1) / nparts * align;
    if (*i1 > n) *i1 = n;
    if (*i0 > n) *i0 = n;
}
bool cpu_assist(cpu_assist_fn fn, void *arg, int nparts);

/* The CPU backend's kernels, one group per file. */
lunar_status cpu_copy(lunar_tensor *dst, const lunar_tensor *src);
lunar_status cpu_fill(lunar_tensor *dst, double value);
lunar_status cpu_arange(lunar_tensor *out, double start, double step);
lunar_status cpu_unary(lunar_unary_op op, lunar_tensor *out, const lunar_tensor *x,
                       const double *params);
lunar_status cpu_binary(lunar_binary_op op, lunar_tensor *out, const lunar_tensor *a,
                        const lunar_tensor *b);
lunar_status cpu_where(lunar_tensor *out, const lunar_tensor *cond, const lunar_tensor *a,
                       const lunar_tensor *b);
lunar_status cpu_reduce(lunar_reduce_op op, lunar_tensor *out, const lunar_tensor *x,
                        uint32_t dims, double param);
lunar_status cpu_arg_reduce(lunar_tensor *values, lunar_tensor *indices, const lunar_tensor *x,
                            int dim, bool is_min);
lunar_status cpu_scan(lunar_tensor *out, const lunar_tensor *x, int dim, bool is_prod);
lunar_status cpu_gemm(lunar_tensor *c, const lunar_tensor *a, const lunar_tensor *b,
                      double alpha, double beta);
lunar_status cpu_random(lunar_tensor *out, int dist, uint64_t seed, uint64_t offset, double a,
                        double b);
lunar_status cpu_gather(lunar_tensor *out, const lunar_tensor *x, int dim,
                        const lunar_tensor *index);
lunar_status cpu_scatter(lunar_tensor *dst, int dim, const lunar_tensor *index,
                         const lunar_tensor *src, bool accumulate);
lunar_status cpu_index_select(lunar_tensor *out, const lunar_tensor *x, int dim,
                              const lunar_tensor *index);
lunar_status cpu_index_add(lunar_tensor *dst, int dim, const lunar_tensor *index,
                           const lunar_tensor *src, double alpha);
lunar_status cpu_sort(lunar_tensor *values, lunar_tensor *indices, const lunar_tensor *x,
                      int dim, bool descending);
lunar_status cpu_count_nonzero(int64_t *count, const lunar_tensor *x);
lunar_status cpu_nonzero(lunar_tensor *out, const lunar_tensor *x);
/* sgemm_small.c: c [M, N] (row stride ldc, unit column stride) = alpha a @ b + beta c for
 * thin float32 products, a and b given by element strides; false when it declines (no AVX2,
 * a large product, a layout it does not take), and then nothing was written */
bool cpu_sgemm_small(int64_t M, int64_t N, int64_t K, float alpha, const float *a, int64_t rsa,
                     int64_t csa, const float *b, int64_t rsb, int64_t csb, float beta,
                     float *c, int64_t ldc);
/* conv.c: im2col / col2im and pooling */
lunar_status cpu_im2col(lunar_tensor *col, const lunar_tensor *x, const lunar_conv_geom *g);
lunar_status cpu_col2im(lunar_tensor *x, const lunar_tensor *col, const lunar_conv_geom *g);
lunar_status cpu_max_pool2d(lunar_tensor *y, lunar_tensor *idx, const lunar_tensor *x,
                            const lunar_conv_geom *g);
lunar_status cpu_max_pool2d_backward(lunar_tensor *gx, const lunar_tensor *gy,
                                     const lunar_tensor *idx, const lunar_conv_geom *g);
lunar_status cpu_avg_pool2d(lunar_tensor *y, const lunar_tensor *x, const lunar_conv_geom *g);
lunar_status cpu_avg_pool2d_backward(lunar_tensor *gx, const lunar_tensor *gy,
                                     const lunar_conv_geom *g);
lunar_status cpu_adaptive_avg_pool2d(lunar_tensor *y, const lunar_tensor *x,
                                     const lunar_conv_geom *g);
lunar_status cpu_adaptive_avg_pool2d_backward(lunar_tensor *gx, const lunar_tensor *gy,
                                              const lunar_conv_geom *g);
lunar_status cpu_optim_step(lunar_optim_kind kind, lunar_tensor *param, const lunar_tensor *grad,
                            lunar_tensor *const *state, const lunar_optim_hyper *h);
/* nn.c */
lunar_status cpu_softmax(lunar_tensor *y, const lunar_tensor *x, bool log_);
lunar_status cpu_softmax_backward(lunar_tensor *gx, const lunar_tensor *g, const lunar_tensor *y,
                                  bool log_);
lunar_status cpu_cross_entropy(lunar_tensor *loss, lunar_tensor *lse, const lunar_tensor *z,
                               const lunar_tensor *t, const lunar_tensor *w, int64_t ignore,
                               double smoothing);
lunar_status cpu_cross_entropy_backward(lunar_tensor *gz, const lunar_tensor *g,
                                        const lunar_tensor *z, const lunar_tensor *lse,
                                        const lunar_tensor *t, const lunar_tensor *w,
                                        int64_t ignore, double smoothing);
lunar_status cpu_moments(lunar_tensor *mean, lunar_tensor *var, const lunar_tensor *x);
lunar_status cpu_normalize(lunar_tensor *y, const lunar_tensor *x, const lunar_tensor *mean,
                           const lunar_tensor *rstd);
lunar_status cpu_normalize_backward(lunar_tensor *gx, const lunar_tensor *g,
                                    const lunar_tensor *xh, const lunar_tensor *rstd);

/* `for header body` run by an OpenMP team of nth threads when par holds, else as a plain
 * loop. A parallel region whose if clause is false still pays libgomp's team start (about
 * 4 us measured here), more than a small tensor's whole kernel, so the loop is spelt twice
 * instead. Body may contain commas. */
#define CPU_FOR(par, nth, header, ...)                                                        \
    do {                                                                                      \
        if (par) {                                                                            \
            const int cpu_nth_ = (nth);                                                       \
            _Pragma("omp parallel for schedule(static) num_threads(cpu_nth_)")                \
            for header __VA_ARGS__                                                            \
        } else {                                                                              \
            for header __VA_ARGS__                                                            \
        }                                                                                     \
    } while (0)

#endif
