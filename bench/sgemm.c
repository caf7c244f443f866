/*
 * sgemm.c - the BLAS limit for `make bench`: times raw cblas_sgemm on 1024x1024 float32
 * matrices, the same product lunar's a:matmul(b) computes, with nothing around it.
 * Threads from OPENBLAS_NUM_THREADS. Prints "sgemm_gflops<TAB>value<TAB>GFLOP/s".
 */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

enum { N = 1024, WARMUP = 2, REPEATS = 10 };

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int cmp(const void *x, const void *y) {
    double a = *(const double *)x, b = *(const double *)y;
    return (a > b) - (a < b);
}

int main(void) {
    /* 64-byte aligned, like lunar's host storage */
    float *a = aligned_alloc(64, sizeof(float) * N * N);
    float *b = aligned_alloc(64, sizeof(float) * N * N);
    float *c = aligned_alloc(64, sizeof(float) * N * N);
    if (!a || !b || !c) return 1;
    for (int i = 0; i < N * N; i++) {
        a[i] = 0.5f;
        b[i] = 0.25f;
    }
    double ts[REPEATS];
    for (int r = -WARMUP; r < REPEATS; r++) {
        double t0 = now();
        /* c: [N, N] = a: [N, N] x b: [N, N], row-major */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, N, N, 1.0f, a, N, b, N, 0.0f,
                    c, N);
        if (r >= 0) ts[r] = now() - t0;
    }
    if (c[0] != N * 0.125f) {
        fprintf(stderr, "sgemm: wrong result %g\n", c[0]);
        return 1;
    }
    qsort(ts, REPEATS, sizeof ts[0], cmp);
    double t = (ts[REPEATS / 2 - 1] + ts[REPEATS / 2]) / 2;
    printf("threads\t%d\tthreads\n", openblas_get_num_threads());
    printf("sgemm_gflops\t%.6g\tGFLOP/s\n", 2.0 * N * N * N / t / 1e9);
    free(a);
    free(b);
    free(c);
    return 0;
}
