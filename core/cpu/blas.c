/*
 * blas.c - batched matrix products on OpenBLAS.
 */
#include "cpu.h"

#include <cblas.h>

/* The BLAS view of the last two dims of t: transposed or not, and the leading dimension. */
static bool blas_layout(const lunar_tensor *t, CBLAS_TRANSPOSE *trans, int64_t *ld) {
    int64_t rows = t->shape[1], cols = t->shape[2];
    int64_t rs = t->strides[1], cs = t->strides[2];
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

/* c: [B, M, N] row-major; a: [B, M, K]; b: [B, K, N] */
lunar_status cpu_gemm(lunar_tensor *c, const lunar_tensor *a, const lunar_tensor *b,
                      double alpha, double beta) {
    CBLAS_TRANSPOSE ta, tb, tc;
    int64_t lda, ldb, ldc;
    if (!blas_layout(a, &ta, &lda) || !blas_layout(b, &tb, &ldb) ||
        !blas_layout(c, &tc, &ldc) || tc != CblasNoTrans)
        return lunar_fail(LUNAR_ERR_ARG, "gemm: operands need one unit stride in their last two "
                                         "dims");
    int64_t B = c->shape[0], M = c->shape[1], N = c->shape[2], K = a->shape[2];
    if (M == 0 || N == 0) return LUNAR_OK;
    size_t es = lunar_dtype_size(c->dtype);
    for (int64_t i = 0; i < B; i++) {
        char *pa = cpu_ptr(a) + i * a->strides[0] * (int64_t)es;
        char *pb = cpu_ptr(b) + i * b->strides[0] * (int64_t)es;
        char *pc = cpu_ptr(c) + i * c->strides[0] * (int64_t)es;
        if (K == 0) { /* BLAS implementations differ here: scale by beta ourselves */
            for (int64_t r = 0; r < M; r++)
                for (int64_t q = 0; q < N; q++) {
                    char *e = pc + (r * ldc + q) * (int64_t)es;
                    cpu_store(c->dtype, e, beta == 0 ? 0 : beta * cpu_load(c->dtype, e));
                }
            continue;
        }
        if (M == 1) { /* a row times a matrix: gemv packs nothing (batch-1 inference) */
            int64_t inca = ta == CblasNoTrans ? 1 : lda;
            /* B as stored: [K, N] rows (no-trans, so y = B^T a) or [N, K] rows (y = B a) */
            CBLAS_TRANSPOSE tv = tb == CblasNoTrans ? CblasTrans : CblasNoTrans;
            int rows = tb == CblasNoTrans ? (int)K : (int)N, cols = tb == CblasNoTrans ? (int)N : (int)K;
            if (c->dtype == LUNAR_F32)
                cblas_sgemv(CblasRowMajor, tv, rows, cols, (float)alpha, (const float *)pb, (int)ldb,
                            (const float *)pa, (int)inca, (float)beta, (float *)pc, 1);
            else if (c->dtype == LUNAR_F64)
                cblas_dgemv(CblasRowMajor, tv, rows, cols, alpha, (const double *)pb, (int)ldb,
                            (const double *)pa, (int)inca, beta, (double *)pc, 1);
            else
                return lunar_fail(LUNAR_ERR_DTYPE, "gemm: %s is not a float type",
                                  lunar_dtype_name(c->dtype));
            continue;
        }
        if (c->dtype == LUNAR_F32 &&
            cpu_sgemm_small(M, N, K, (float)alpha, (const float *)pa, a->strides[1],
                            a->strides[2], (const float *)pb, b->strides[1], b->strides[2],
                            (float)beta, (float *)pc, c->strides[1]))
            continue;
        if (c->dtype == LUNAR_F32)
            cblas_sgemm(CblasRowMajor, ta, tb, (int)M, (int)N, (int)K, (float)alpha,
                        (const float *)pa, (int)lda, (const float *)pb, (int)ldb, (float)beta,
                        (float *)pc, (int)ldc);
        else if (c->dtype == LUNAR_F64)
            cblas_dgemm(CblasRowMajor, ta, tb, (int)M, (int)N, (int)K, alpha,
                        (const double *)pa, (int)lda, (const double *)pb, (int)ldb, beta,
                        (double *)pc, (int)ldc);
        else
            return lunar_fail(LUNAR_ERR_DTYPE, "gemm: %s is not a float type",
                              lunar_dtype_name(c->dtype));
    }
    return LUNAR_OK;
}
