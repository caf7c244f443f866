/*
 * blas.c - batched matrix products on OpenBLAS.
 */
#include "cpu.h"

#ifdef _OPENMP
#include <omp.h>
#endif

#include <cblas.h>
#include <string.h>

/* The BLAS view of the last two dims of t: transposed or not, and the leading dimension. */
static bool blas_layout(const lunar_tensor *t, CBLAS_TRANSPOSE *trans, int64_t *ld) {
    int64_t rows = t->shape[1], cols = t->shape[2];
    int64_t rs = t->strides[1], cs = t->strides[2];
    if (rows == 0 || cols == 0) { /* nothing is read or written: an empty [M, 0] has rs 0 */
        *trans = CblasNoTrans;
        *ld = cols > 1 ? cols : 1;
        return true;
    }
    if ((cs == 1 || cols == 1) && (rs >= (cols > 1 ? cols : 1) || rows == 1)) {
        *trans = CblasNoTrans;
        *ld = rows == 1 ? (cols > 1 ? cols : 1) : rs;
        return true;
    }
    if ((rs == 1 || rows == 1) && (cs >= (rows > 1 ? rows : 1) || cols == 1)) {
        *trans = CblasTrans;
        *ld = cols == 1 ? (rows > 1 ? rows : 1) : cs;
        return true;
    }
    return false;
}

/* y [N] = alpha * w [N, K] (rows ldw apart) @ x [K] (contiguous) + beta * y, for the rows
 * [r0, r1). OpenBLAS's sgemv was as fast on one thread, but its threaded path (taken at
 * 2 threads from ~10^4 elements of w) and any idle parallel region cost microseconds here.
 * Each row is summed in one fixed order: two vectors of partial sums over k in steps of two
 * vectors, added, their lanes summed pairwise, then the tail of k in order. Four rows at a time
 * share the loads of x. beta 0 ignores y, NaNs included, as BLAS does. Vectors are GCC's generic
 * ones: 32 bytes, so the AVX2 clone keeps each in one register. */
typedef float gemv_vf __attribute__((vector_size(32), aligned(4), may_alias));
typedef double gemv_vd __attribute__((vector_size(32), aligned(8), may_alias));
#define GEMV_ROWS 4
#define GEMV_KERNEL(name, T, V)                                                                    \
    static inline T name##_sum(const V *a, const V *b, const T *w, const T *x, int64_t k0,         \
                               int64_t K) {                                                        \
        enum { L = sizeof(V) / sizeof(T) };                                                        \
        T l[L];                                                                                    \
        V s = *a + *b;                                                                             \
        memcpy(l, &s, sizeof l);                                                                   \
        for (int h = L / 2; h > 0; h /= 2)                                                         \
            for (int j = 0; j < h; j++)                                                            \
                l[j] += l[j + h];                                                                  \
        for (int64_t k = k0; k < K; k++)                                                           \
            l[0] += w[k] * x[k];                                                                   \
        return l[0];                                                                               \
    }                                                                                              \
    static CPU_CLONES void name(int64_t r0, int64_t r1, int64_t K, const T *w, int64_t ldw,        \
                                const T *x, T alpha, T beta, T *y) {                               \
        enum { L = sizeof(V) / sizeof(T) };                                                        \
        int64_t kv = K - K % (2 * L);                                                              \
        for (int64_t r = r0; r < r1; r += GEMV_ROWS) {                                             \
            int nr = r1 - r < GEMV_ROWS ? (int)(r1 - r) : GEMV_ROWS;                               \
            const T *w0 = w + r * ldw, *w1 = nr > 1 ? w0 + ldw : w0;                               \
            const T *w2 = nr > 2 ? w0 + 2 * ldw : w0, *w3 = nr > 3 ? w0 + 3 * ldw : w0;            \
            V a0 = {0}, b0 = {0}, a1 = {0}, b1 = {0}, a2 = {0}, b2 = {0}, a3 = {0}, b3 = {0};      \
            for (int64_t k = 0; k < kv; k += 2 * L) {                                              \
                V xa = *(const V *)(x + k), xb = *(const V *)(x + k + L);                          \
                a0 += *(const V *)(w0 + k) * xa;                                                   \
                b0 += *(const V *)(w0 + k + L) * xb;                                               \
                a1 += *(const V *)(w1 + k) * xa;                                                   \
                b1 += *(const V *)(w1 + k + L) * xb;                                               \
                a2 += *(const V *)(w2 + k) * xa;                                                   \
                b2 += *(const V *)(w2 + k + L) * xb;                                               \
                a3 += *(const V *)(w3 + k) * xa;                                                   \
                b3 += *(const V *)(w3 + k + L) * xb;                                               \
            }                                                                                      \
            T v[GEMV_ROWS] = {                                                                     \
                name##_sum(&a0, &b0, w0, x, kv, K), name##_sum(&a1, &b1, w1, x, kv, K),            \
                name##_sum(&a2, &b2, w2, x, kv, K), name##_sum(&a3, &b3, w3, x, kv, K)};           \
            for (int i = 0; i < nr; i++)                                                           \
                y[r + i] = beta == 0 ? alpha * v[i] : alpha * v[i] + beta * y[r + i];              \
        }                                                                                          \
    }
/* cppcheck confuses the two pointer arguments of the _sum helpers across the expansions */
// cppcheck-suppress ctunullpointer
GEMV_KERNEL(gemv_rows_f32, float, gemv_vf)
// cppcheck-suppress ctunullpointer
GEMV_KERNEL(gemv_rows_f64, double, gemv_vd)
#undef GEMV_KERNEL

/* A gemv over at least GEMV_SPLIT weights runs in GEMV_PARTS row blocks on this thread and
 * the assist thread (assist.c). An OpenMP team did not pay here: on this 2-core machine its
 * start and join cost ~3 us, so 784x256 float32 took 8.2-8.5 us on two threads against 7.7 us
 * on one; two threads spinning on one flag see each other in ~0.1 us. Row blocks are
 * multiples of GEMV_ROWS, and each row is summed the same way whichever thread takes it. */
#define GEMV_SPLIT (64 * 1024)
#define GEMV_PARTS 2

typedef struct gemv_job {
    lunar_dtype dt;
    int64_t N, K, ldw;
    const char *w, *x;
    double alpha, beta;
    char *y;
} gemv_job;

static void gemv_part(void *arg, int part, int nparts) {
    const gemv_job *j = arg;
    int64_t r0, r1;
    cpu_part_range(j->N, GEMV_ROWS, part, nparts, &r0, &r1);
    if (r0 >= r1) return;
    if (j->dt == LUNAR_F32)
        gemv_rows_f32(r0, r1, j->K, (const float *)j->w, j->ldw, (const float *)j->x,
                      (float)j->alpha, (float)j->beta, (float *)j->y);
    else
        gemv_rows_f64(r0, r1, j->K, (const double *)j->w, j->ldw, (const double *)j->x, j->alpha,
                      j->beta, (double *)j->y);
}

static void gemv(lunar_dtype dt, int64_t N, int64_t K, const char *w, int64_t ldw, const char *x,
                 double alpha, double beta, char *y) {
    gemv_job j = {dt, N, K, ldw, w, x, alpha, beta, y};
    if (N * K >= GEMV_SPLIT && N >= GEMV_PARTS * GEMV_ROWS && cpu_assist(gemv_part, &j, GEMV_PARTS))
        return;
    gemv_part(&j, 0, 1);
}

/* One row-major GEMM as OpenBLAS takes it. */
typedef struct blas_gemm {
    lunar_dtype dt;
    CBLAS_TRANSPOSE ta, tb;
    int64_t M, N, K;
    double alpha, beta;
    const char *a, *b;
    char *c;
    int64_t lda, ldb, ldc;
} blas_gemm;

static void blas_call(const blas_gemm *g) {
    if (g->dt == LUNAR_F32)
        cblas_sgemm(CblasRowMajor, g->ta, g->tb, (int)g->M, (int)g->N, (int)g->K, (float)g->alpha,
                    (const float *)g->a, (int)g->lda, (const float *)g->b, (int)g->ldb,
                    (float)g->beta, (float *)g->c, (int)g->ldc);
    else
        cblas_dgemm(CblasRowMajor, g->ta, g->tb, (int)g->M, (int)g->N, (int)g->K, g->alpha,
                    (const double *)g->a, (int)g->lda, (const double *)g->b, (int)g->ldb, g->beta,
                    (double *)g->c, (int)g->ldc);
}

/* Mid-sized products (a training step's: 64x784x256 and the like) are split by us, one block
 * of C's rows (columns when there are few rows) per thread of our team, each an OpenBLAS
 * call that runs alone (OpenBLAS's OpenMP build stays on one thread inside a parallel
 * region). OpenBLAS's own threading syncs its threads several times per call with
 * sched_yield, a system call that costs microseconds in this VM. Large products keep
 * OpenBLAS's threading, which scales well there. */
#define SPLIT_MIN_MACS ((int64_t)1 << 20)
#define SPLIT_MAX_MACS ((int64_t)1 << 26)
#define SPLIT_ALIGN 16

/* Which way a product is split. By C's rows, so each thread writes a contiguous block of C,
 * the block the element-wise passes after it (an optimizer step, a ReLU) give that thread;
 * by C's columns when there are few rows, or when B is a weight stored [N, K] (a linear
 * layer's x W^T) larger than A: then each thread reads only its own rows of the weight,
 * the rows the optimizer step and the weight gradient (split by rows) give the same
 * thread. Split by rows, both threads read all of the weight, and the step's writes to it
 * must take each cache line back from the other core, which costs more than the step
 * itself in this VM (MLP step after a 2-thread backward: 189 us, against 35 us once the
 * lines are home). */
static bool split_by_cols(const blas_gemm *g) {
    if (g->M < 2 * SPLIT_ALIGN) return true;
    return g->tb != CblasNoTrans && g->N > g->M && g->N >= 2 * SPLIT_ALIGN;
}

static void gemm_part(const blas_gemm *g, int part, int nparts) {
    blas_gemm p = *g;
    size_t es = lunar_dtype_size(g->dt);
    bool by_cols = split_by_cols(g);
    int64_t i0, i1;
    cpu_part_range(by_cols ? g->N : g->M, SPLIT_ALIGN, part, nparts, &i0, &i1);
    if (i0 >= i1) return;
    if (by_cols) { /* C[:, i0:i1] = A B[:, i0:i1]; B stored [K, N], or [N, K] when transposed */
        p.N = i1 - i0;
        p.b += (size_t)(g->tb == CblasNoTrans ? i0 : i0 * g->ldb) * es;
        p.c += (size_t)i0 * es;
    } else { /* C[i0:i1, :] = A[i0:i1, :] B; A stored [M, K], or [K, M] when transposed */
        p.M = i1 - i0;
        p.a += (size_t)(g->ta == CblasNoTrans ? i0 * g->lda : i0) * es;
        p.c += (size_t)(i0 * g->ldc) * es;
    }
    blas_call(&p);
}

static void gemm_split(const blas_gemm *g) {
    int nth = cpu_threads();
    int64_t macs = g->M * g->N * g->K, n = split_by_cols(g) ? g->N : g->M;
    bool split = nth > 1 && macs >= SPLIT_MIN_MACS && macs < SPLIT_MAX_MACS && n >= 2 * SPLIT_ALIGN;
#ifdef _OPENMP
    split = split && !omp_in_parallel();
    if (split) {
#pragma omp parallel num_threads(nth)
        gemm_part(g, omp_get_thread_num(), omp_get_num_threads());
        return;
    }
#endif
    blas_call(g);
}

/* One product of the batch: c = alpha a b + beta c at these pointers. */
static void gemm_one(lunar_dtype dt, CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int64_t M,
                     int64_t N, int64_t K, double alpha, double beta, const lunar_tensor *a,
                     const lunar_tensor *b, const lunar_tensor *c, int64_t lda, int64_t ldb,
                     int64_t ldc, char *pa, char *pb, char *pc) {
    if (M == 1) { /* a row times a matrix: gemv packs nothing (batch-1 inference) */
        int64_t inca = ta == CblasNoTrans ? 1 : lda;
        /* B as stored: [K, N] rows (no-trans, so y = B^T a) or [N, K] rows (y = B a) */
        CBLAS_TRANSPOSE tv = tb == CblasNoTrans ? CblasTrans : CblasNoTrans;
        int rows = tb == CblasNoTrans ? (int)K : (int)N, cols = tb == CblasNoTrans ? (int)N : (int)K;
        if (tv == CblasNoTrans && inca == 1) /* y = B a, B's rows */
            gemv(dt, N, K, pb, ldb, pa, alpha, beta, pc);
        else if (dt == LUNAR_F32)
            cblas_sgemv(CblasRowMajor, tv, rows, cols, (float)alpha, (const float *)pb, (int)ldb,
                        (const float *)pa, (int)inca, (float)beta, (float *)pc, 1);
        else
            cblas_dgemv(CblasRowMajor, tv, rows, cols, alpha, (const double *)pb, (int)ldb,
                        (const double *)pa, (int)inca, beta, (double *)pc, 1);
        return;
    }
    if (dt == LUNAR_F32 &&
        cpu_sgemm_small(M, N, K, (float)alpha, (const float *)pa, a->strides[1], a->strides[2],
                        (const float *)pb, b->strides[1], b->strides[2], (float)beta, (float *)pc,
                        c->strides[1]))
        return;
    blas_gemm g = {dt, ta, tb, M, N, K, alpha, beta, pa, pb, pc, lda, ldb, ldc};
    gemm_split(&g);
}

/* A batch of small products (a convolution's, one per image) is shared out by images over
 * our team, each thread a run of consecutive images on one thread's kernels: the image
 * halves then stay with the thread that makes them in the element-wise and pooling passes
 * around (which split flat tensors the same way). One at a time, each of LeNet's products
 * was too small to split, and the second thread waited. */
#define BATCH_SPLIT_MACS ((int64_t)1 << 18)

/* c: [B, M, N] row-major; a: [B, M, K]; b: [B, K, N] */
lunar_status cpu_gemm(lunar_tensor *c, const lunar_tensor *a, const lunar_tensor *b, double alpha,
                      double beta) {
    CBLAS_TRANSPOSE ta, tb, tc;
    int64_t lda, ldb, ldc;
    if (!blas_layout(a, &ta, &lda) || !blas_layout(b, &tb, &ldb) || !blas_layout(c, &tc, &ldc) ||
        tc != CblasNoTrans)
        return lunar_fail(LUNAR_ERR_ARG, "gemm: operands need one unit stride in their last two "
                                         "dims");
    int64_t B = c->shape[0], M = c->shape[1], N = c->shape[2], K = a->shape[2];
    if (M == 0 || N == 0) return LUNAR_OK;
    size_t es = lunar_dtype_size(c->dtype);
    if (K == 0) { /* BLAS implementations differ here: scale by beta ourselves */
        for (int64_t i = 0; i < B; i++) {
            char *pc = cpu_ptr(c) + i * c->strides[0] * (int64_t)es;
            for (int64_t r = 0; r < M; r++)
                for (int64_t q = 0; q < N; q++) {
                    char *e = pc + (r * ldc + q) * (int64_t)es;
                    cpu_store(c->dtype, e, beta == 0 ? 0 : beta * cpu_load(c->dtype, e));
                }
        }
        return LUNAR_OK;
    }
    if (c->dtype != LUNAR_F32 && c->dtype != LUNAR_F64)
        return lunar_fail(LUNAR_ERR_DTYPE, "gemm: %s is not a float type",
                          lunar_dtype_name(c->dtype));
    int nth = cpu_threads();
    int64_t macs = M * N * K;
    /* distinct outputs per image (a zero batch stride would make the threads race) */
    bool par = nth > 1 && B > 1 && c->strides[0] != 0 && macs < SPLIT_MIN_MACS &&
               macs * B >= BATCH_SPLIT_MACS;
#ifdef _OPENMP
    par = par && !omp_in_parallel();
#endif
    CPU_FOR(par, nth, (int64_t i = 0; i < B; i++), {
        gemm_one(c->dtype, ta, tb, M, N, K, alpha, beta, a, b, c, lda, ldb, ldc,
                 cpu_ptr(a) + i * a->strides[0] * (int64_t)es,
                 cpu_ptr(b) + i * b->strides[0] * (int64_t)es,
                 cpu_ptr(c) + i * c->strides[0] * (int64_t)es);
    });
    return LUNAR_OK;
}
