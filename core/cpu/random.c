/*
 * random.c - the CPU backend's random kernel: fills a tensor from the Philox stream under
 * the contract of philox.h, one block of 4 or 2 elements at a time, blocks split across
 * threads (each element depends on its index only, so the split cannot change a value).
 */
#include "cpu.h"
#include "philox.h"

#include <math.h>

#define TWO_PI 6.283185307179586

typedef struct {
    int dist, per;
    bool is_double;
    uint64_t seed, offset;
    double a, b;
} random_ctx;

/* The per (2 or 4) values of block j, as doubles; integers and booleans are exact. */
static void block_values(const random_ctx *c, uint64_t j, double v[4]) {
    uint32_t x[4];
    philox_block(c->seed, c->offset, j, x);
    switch (c->dist) {
    case LUNAR_RANDOM_UNIFORM:
        for (int k = 0; k < c->per; k++) {
            double u = c->is_double ? philox_unit53(philox_u64(x, k)) : philox_unit24(x[k]);
            v[k] = c->a + (c->b - c->a) * u;
        }
        break;
    case LUNAR_RANDOM_NORMAL:
        /* Box-Muller (Box and Muller, 1958) on pairs of draws; u1 in (0, 1] keeps the log
         * finite */
        if (c->is_double) {
            double u1 = (double)((philox_u64(x, 0) >> 11) + 1) * 0x1p-53;
            double u2 = philox_unit53(philox_u64(x, 1));
            double r = sqrt(-2.0 * log(u1));
            v[0] = c->a + c->b * r * cos(TWO_PI * u2);
            v[1] = c->a + c->b * r * sin(TWO_PI * u2);
        } else {
            for (int k = 0; k < 4; k += 2) {
                double u1 = ((double)x[k] + 1.0) * 0x1p-32, u2 = (double)x[k + 1] * 0x1p-32;
                double r = sqrt(-2.0 * log(u1));
                v[k] = c->a + c->b * r * cos(TWO_PI * u2);
                v[k + 1] = c->a + c->b * r * sin(TWO_PI * u2);
            }
        }
        break;
    case LUNAR_RANDOM_INTEGER: {
        /* the op layer keeps a and b within +-2^53, so they and the results are exact */
        int64_t lo = (int64_t)c->a;
        uint64_t range = (uint64_t)((int64_t)c->b - lo);
        for (int k = 0; k < 2; k++)
            v[k] = (double)(lo + (int64_t)philox_mulhi64(philox_u64(x, k), range));
        break;
    }
    case LUNAR_RANDOM_BERNOULLI:
        for (int k = 0; k < 2; k++) v[k] = philox_unit53(philox_u64(x, k)) < c->a;
        break;
    default: break;
    }
}

/* Uniform draws rounded to the output type may land on b: move them just below it. */
static float below_f32(float v, double a, double b, int dist) {
    float fb = (float)b;
    if (dist == LUNAR_RANDOM_UNIFORM && v >= fb && a < b) {
        v = nextafterf(fb, -INFINITY);
        if (v < (float)a) v = (float)a;
    }
    return v;
}

static double below_f64(double v, double a, double b, int dist) {
    if (dist == LUNAR_RANDOM_UNIFORM && v >= b && a < b) v = nextafter(b, -INFINITY);
    return v;
}

/* Fills o (of type T) block by block; CONV turns v[k] into a T. */
#define FILL_LOOP(T, CONV)                                                                    \
    do {                                                                                      \
        T *o = (T *)cpu_ptr(out);                                                             \
        CPU_FOR(nth > 1, nth, (int64_t j = 0; j < nb; j++), {                                 \
            double v[4];                                                                      \
            block_values(&c, (uint64_t)j, v);                                                 \
            int64_t i0 = j * c.per, m = n - i0 < c.per ? n - i0 : c.per;                      \
            for (int64_t k = 0; k < m; k++) o[i0 + k] = CONV;                                 \
        });                                                                                   \
    } while (0)

/* out: any shape and dtype; element i (row-major) gets the stream's element i. */
lunar_status cpu_random(lunar_tensor *out, int dist, uint64_t seed, uint64_t offset, double a,
                        double b) {
    if (dist < LUNAR_RANDOM_UNIFORM || dist > LUNAR_RANDOM_BERNOULLI)
        return lunar_fail(LUNAR_ERR_ARG, "random: unknown distribution %d", dist);
    if (!lunar_tensor_is_contiguous(out)) {
        /* draw in row-major order into a contiguous buffer, then scatter it into the view */
        lunar_tensor *tmp;
        LUNAR_CHECK(lunar_tensor_new(&tmp, out->ndim, out->shape, out->dtype, out));
        lunar_status st = cpu_random(tmp, dist, seed, offset, a, b);
        if (st == LUNAR_OK) st = cpu_copy(out, tmp);
        lunar_tensor_release(tmp);
        return st;
    }
    random_ctx c = {dist, 0, out->dtype == LUNAR_F64, seed, offset, a, b};
    c.per = philox_per_block(dist, c.is_double);
    int64_t n = lunar_tensor_numel(out), nb = (n + c.per - 1) / c.per;
    int nth = n >= LUNAR_GRAIN ? cpu_threads() : 1;
    switch (out->dtype) {
    case LUNAR_BOOL: FILL_LOOP(uint8_t, (uint8_t)(v[k] != 0)); break;
    case LUNAR_U8: FILL_LOOP(uint8_t, (uint8_t)v[k]); break;
    case LUNAR_I32: FILL_LOOP(int32_t, (int32_t)v[k]); break;
    case LUNAR_I64: FILL_LOOP(int64_t, (int64_t)v[k]); break;
    case LUNAR_F32: FILL_LOOP(float, below_f32((float)v[k], a, b, dist)); break;
    case LUNAR_F64: FILL_LOOP(double, below_f64(v[k], a, b, dist)); break;
    default: return lunar_fail(LUNAR_ERR_DTYPE, "random: unknown dtype");
    }
    return LUNAR_OK;
}
