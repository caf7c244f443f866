/*
 * sgemm_small.c - float32 products too small or too thin for OpenBLAS to pay off: a
 * convolution's per-image products (6 or 16 output channels, K = 25 or 150) spent as much
 * time in OpenBLAS's packing copies as in its kernel. These kernels read the operands where
 * they lie (no packing) and keep a block of C in AVX2 registers:
 *   rows form  C = A @ B with B's rows contiguous: C's 6 x 16 block += A[i, p] * B[p, j..]
 *   dots form  C = A @ B with A's rows and B's columns contiguous (B given transposed, as
 *              in a weight gradient): C's 3 x 4 block of dot products, vectors along K.
 * Only on x86-64 CPUs with AVX2 and FMA; cpu_sgemm_small declines otherwise.
 */
#include "cpu.h"

#include <stdlib.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

#define TGT __attribute__((target("avx2,fma")))
#define INL static inline __attribute__((always_inline)) TGT

/* The mask of the first n (1..8) lanes. */
INL __m256i lanes(int64_t n) {
    const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)n), idx);
}

/* C[r, 0..nc) = alpha acc + beta C (C unread when beta = 0), nc = 8 nv or less in the last
 * vector (mask m). */
#define ROWS_BLOCK(MR, NV, MASKED)                                                            \
    do {                                                                                      \
        __m256 acc[MR][NV];                                                                   \
        for (int r = 0; r < MR; r++)                                                          \
            for (int v = 0; v < NV; v++) acc[r][v] = _mm256_setzero_ps();                     \
        const float *ap = A + i * rsa, *bp = B + j;                                           \
        for (int64_t p = 0; p < K; p++, ap += csa, bp += rsb) {                               \
            __m256 b[NV];                                                                     \
            for (int v = 0; v < NV; v++)                                                      \
                b[v] = (MASKED) && v == NV - 1 ? _mm256_maskload_ps(bp + 8 * v, m)            \
                                               : _mm256_loadu_ps(bp + 8 * v);                 \
            for (int r = 0; r < MR; r++) {                                                    \
                __m256 a = _mm256_broadcast_ss(ap + r * rsa);                                 \
                for (int v = 0; v < NV; v++) acc[r][v] = _mm256_fmadd_ps(a, b[v], acc[r][v]); \
            }                                                                                 \
        }                                                                                     \
        for (int r = 0; r < MR; r++)                                                          \
            for (int v = 0; v < NV; v++) {                                                    \
                float *cp = C + (i + r) * ldc + j + 8 * v;                                    \
                bool mk = (MASKED) && v == NV - 1;                                            \
                __m256 s = _mm256_mul_ps(va, acc[r][v]);                                      \
                if (beta != 0) {                                                              \
                    __m256 c = mk ? _mm256_maskload_ps(cp, m) : _mm256_loadu_ps(cp);          \
                    s = _mm256_fmadd_ps(vb, c, s);                                            \
                }                                                                             \
                if (mk) _mm256_maskstore_ps(cp, m, s);                                        \
                else _mm256_storeu_ps(cp, s);                                                 \
            }                                                                                 \
    } while (0)

/* Every row block of one column block, 6 rows at a time then the rest. */
#define ROWS_COLUMN(NV, MASKED)                                                               \
    do {                                                                                      \
        int64_t i = 0;                                                                        \
        for (; i + 6 <= M; i += 6) ROWS_BLOCK(6, NV, MASKED);                                 \
        switch (M - i) {                                                                      \
        case 5: ROWS_BLOCK(5, NV, MASKED); break;                                             \
        case 4: ROWS_BLOCK(4, NV, MASKED); break;                                             \
        case 3: ROWS_BLOCK(3, NV, MASKED); break;                                             \
        case 2: ROWS_BLOCK(2, NV, MASKED); break;                                             \
        case 1: ROWS_BLOCK(1, NV, MASKED); break;                                             \
        default: break;                                                                       \
        }                                                                                     \
    } while (0)

/* C [M, N] (row stride ldc) = alpha A @ B + beta C; A element (i, p) at i rsa + p csa; B
 * element (p, j) at p rsb + j. Columns in blocks of 16 (the B block stays in L1 while
 * every row block passes over it). */
TGT static void rows_form(int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                          int64_t rsa, int64_t csa, const float *B, int64_t rsb, float beta,
                          float *C, int64_t ldc) {
    __m256 va = _mm256_set1_ps(alpha), vb = _mm256_set1_ps(beta);
    int64_t j = 0;
    __m256i m = lanes(8);
    for (; j + 16 <= N; j += 16) ROWS_COLUMN(2, false);
    int64_t rest = N - j;
    if (rest > 8) {
        m = lanes(rest - 8);
        ROWS_COLUMN(2, true);
    } else if (rest > 0) {
        m = lanes(rest);
        ROWS_COLUMN(1, true);
    }
}

/* The four sums of a[0..3]'s lanes, in order. */
INL __m128 sum4(__m256 a0, __m256 a1, __m256 a2, __m256 a3) {
    __m256 t = _mm256_hadd_ps(_mm256_hadd_ps(a0, a1), _mm256_hadd_ps(a2, a3));
    return _mm_add_ps(_mm256_castps256_ps128(t), _mm256_extractf128_ps(t, 1));
}

/* C[i..i+MR, j..j+NR) of dots: A rows (unit stride along K) against B columns (unit
 * stride along K, csb apart); the last partial vector of K by masked loads. */
#define DOTS_BLOCK(MR, NR)                                                                    \
    do {                                                                                      \
        __m256 acc[MR][4];                                                                    \
        for (int r = 0; r < MR; r++)                                                          \
            for (int q = 0; q < 4; q++) acc[r][q] = _mm256_setzero_ps();                      \
        const float *ap = A + i * rsa, *bp = B + j * csb;                                     \
        int64_t p = 0;                                                                        \
        for (; p + 8 <= K; p += 8) {                                                          \
            __m256 b[NR];                                                                     \
            for (int q = 0; q < NR; q++) b[q] = _mm256_loadu_ps(bp + q * csb + p);            \
            for (int r = 0; r < MR; r++) {                                                    \
                __m256 a = _mm256_loadu_ps(ap + r * rsa + p);                                 \
                for (int q = 0; q < NR; q++) acc[r][q] = _mm256_fmadd_ps(a, b[q], acc[r][q]); \
            }                                                                                 \
        }                                                                                     \
        if (p < K) {                                                                          \
            __m256 b[NR];                                                                     \
            for (int q = 0; q < NR; q++) b[q] = _mm256_maskload_ps(bp + q * csb + p, km);     \
            for (int r = 0; r < MR; r++) {                                                    \
                __m256 a = _mm256_maskload_ps(ap + r * rsa + p, km);                          \
                for (int q = 0; q < NR; q++) acc[r][q] = _mm256_fmadd_ps(a, b[q], acc[r][q]); \
            }                                                                                 \
        }                                                                                     \
        for (int r = 0; r < MR; r++) {                                                        \
            float s[4];                                                                       \
            _mm_storeu_ps(s, sum4(acc[r][0], acc[r][1], acc[r][2], acc[r][3]));               \
            float *cp = C + (i + r) * rsc + j * csc;                                          \
            for (int q = 0; q < NR; q++)                                                      \
                cp[q * csc] = beta != 0 ? alpha * s[q] + beta * cp[q * csc] : alpha * s[q];   \
        }                                                                                     \
    } while (0)

#define DOTS_ROWS(NR)                                                                         \
    do {                                                                                      \
        int64_t i = 0;                                                                        \
        for (; i + 3 <= M; i += 3) DOTS_BLOCK(3, NR);                                         \
        if (M - i == 2) DOTS_BLOCK(2, NR);                                                    \
        else if (M - i == 1) DOTS_BLOCK(1, NR);                                               \
    } while (0)

/* C [M, N] (element (i, j) at i rsc + j csc) = alpha A @ B + beta C; A element (i, p) at
 * i rsa + p; B element (p, j) at p + j csb. */
TGT static void dots_form(int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                          int64_t rsa, const float *B, int64_t csb, float beta, float *C,
                          int64_t rsc, int64_t csc) {
    __m256i km = lanes(K % 8 ? K % 8 : 8);
    int64_t j = 0;
    for (; j + 4 <= N; j += 4) DOTS_ROWS(4);
    switch (N - j) {
    case 3: DOTS_ROWS(3); break;
    case 2: DOTS_ROWS(2); break;
    case 1: DOTS_ROWS(1); break;
    default: break;
    }
}

static int have_avx2 = -1;

/* Large enough products split C's columns between the threads of our team. Every element of
 * C is summed the same way whatever block it falls in, so the result does not depend on the
 * thread count. A parallel region costs a few microseconds to start and join here; 2^18
 * multiply-adds take ~10 us on one core. At 2 threads LeNet's conv products ran on one thread
 * while the other waited in the team (half of a 2-thread step's samples were that wait). */
#define SPLIT_MACS ((int64_t)1 << 18)
#define SPLIT_ALIGN 16

/* One thin product in either form: C = alpha A @ B + beta C, B's column j at B + j bcs,
 * C's at C + j ccs (rows form: bcs = ccs = 1, rs/cs = A's strides, ld = B's row stride and
 * ldc; dots form: bcs = csb, ccs = csc, ld = csb unused, ldc = rsc). */
typedef struct thin_job {
    bool rows;
    int64_t M, N, K, rsa, csa, ldb, ldc, bcs, ccs;
    float alpha, beta;
    const float *A, *B;
    float *C;
} thin_job;

/* columns [j0, j1) of j */
static void thin_cols(const thin_job *j, int64_t j0, int64_t j1) {
    const float *B = j->B + j0 * j->bcs;
    float *C = j->C + j0 * j->ccs;
    if (j->rows)
        rows_form(j->M, j1 - j0, j->K, j->alpha, j->A, j->rsa, j->csa, B, j->ldb, j->beta, C,
                  j->ldc);
    else
        dots_form(j->M, j1 - j0, j->K, j->alpha, j->A, j->rsa, B, j->bcs, j->beta, C, j->ldc,
                  j->ccs);
}

static void thin_run(const thin_job *j) {
    int np = cpu_threads();
#ifdef _OPENMP
    if (np < 2 || j->M * j->N * j->K < SPLIT_MACS || j->N < 2 * SPLIT_ALIGN * np ||
        omp_in_parallel())
        np = 1;
#else
    np = 1;
#endif
    if (np == 1) {
        thin_cols(j, 0, j->N);
        return;
    }
#pragma omp parallel for num_threads(np) schedule(static, 1)
    for (int t = 0; t < np; t++) {
        int64_t j0, j1;
        cpu_part_range(j->N, SPLIT_ALIGN, t, np, &j0, &j1);
        if (j0 < j1) thin_cols(j, j0, j1);
    }
}

static void rows_split(int64_t M, int64_t N, int64_t K, float alpha, const float *A, int64_t rsa,
                       int64_t csa, const float *B, int64_t rsb, float beta, float *C,
                       int64_t ldc) {
    thin_job j = {true, M, N, K, rsa, csa, rsb, ldc, 1, 1, alpha, beta, A, B, C};
    thin_run(&j);
}

static void dots_split(int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                       int64_t rsa, const float *B, int64_t csb, float beta, float *C,
                       int64_t rsc, int64_t csc) {
    thin_job j = {false, M, N, K, rsa, 1, csb, rsc, csb, csc, alpha, beta, A, B, C};
    thin_run(&j);
}

bool cpu_sgemm_small(int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                     int64_t rsa, int64_t csa, const float *B, int64_t rsb, int64_t csb,
                     float beta, float *C, int64_t ldc) {
    if (have_avx2 < 0) {
        __builtin_cpu_init();
        have_avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    }
    /* Thin or short products only: large ones are OpenBLAS's (packing pays off there).
     * alpha = 0 also stays there: BLAS then leaves A and B unread (no NaN from them). */
    bool thin = M <= 32 || N <= 32 || K <= 32;
    if (!have_avx2 || !thin || M * N * K > ((int64_t)1 << 22) || K == 0 || alpha == 0)
        return false;
    if (csb == 1 || N == 1) {
        rows_split(M, N, K, alpha, A, rsa, csa, B, rsb, beta, C, ldc);
        return true;
    }
    if ((rsb == 1 || K == 1) && (csa == 1 || K == 1)) {
        /* A short K leaves the dots' final sums a large share: transposing a thin B (a
         * conv's gy, 16 x 100 per image) into rows costs less than that. */
        float *bt = K < 256 && N <= 32 ? malloc(sizeof(float) * (size_t)(K * N)) : NULL;
        if (bt) {
            for (int64_t j = 0; j < N; j++)
                for (int64_t p = 0; p < K; p++) bt[p * N + j] = B[p + j * csb];
            rows_split(M, N, K, alpha, A, rsa, 1, bt, N, beta, C, ldc);
            free(bt);
        } else {
            /* the smaller side in blocks of 3, the larger in blocks of 4: as C^T = B^T A^T
             * when N < M (LeNet's conv1 weight gradient: 25 x 6 as 6 x 25) */
            if (N < M) dots_split(N, M, K, alpha, B, csb, A, rsa, beta, C, 1, ldc);
            else dots_split(M, N, K, alpha, A, rsa, B, csb, beta, C, ldc, 1);
        }
        return true;
    }
    return false;
}

#else

bool cpu_sgemm_small(int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                     int64_t rsa, int64_t csa, const float *B, int64_t rsb, int64_t csb,
                     float beta, float *C, int64_t ldc) {
    return false;
}

#endif
