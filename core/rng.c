/*
 * rng.c - generators and the random constructors. A generator is just (seed, offset): the
 * numbers come from Philox 4x32-10 at counters offset, offset + 1, ... (see philox.h), so
 * any backend reproduces them, and a draw of n elements moves the offset past the blocks
 * it used, so successive draws never overlap.
 */
#include "lunar-impl.h"
#include "philox.h"

#include <math.h>
#include <stdlib.h>

/* PyTorch's default seed: a run that never seeds still repeats itself. */
#define DEFAULT_SEED 67280421310721ull
/* Integers travel to the kernels as doubles: beyond 2^53 they would round. */
#define EXACT_INT 9007199254740992.0

struct lunar_generator {
    uint64_t seed, offset;
};

static lunar_generator default_gen = {DEFAULT_SEED, 0};

/* ---- generators ---- */

lunar_generator *lunar_generator_default(void) { return &default_gen; }

lunar_generator *lunar_generator_new(uint64_t seed) {
    lunar_generator *g = malloc(sizeof *g);
    if (g) g->seed = seed, g->offset = 0;
    return g;
}

void lunar_generator_free(lunar_generator *g) {
    if (g != &default_gen) free(g);
}

void lunar_generator_seed(lunar_generator *g, uint64_t seed) {
    lunar_generator_set_state(g, seed, 0);
}

void lunar_generator_get_state(const lunar_generator *g, uint64_t *seed, uint64_t *offset) {
    if (!g) g = &default_gen;
    *seed = g->seed;
    *offset = g->offset;
}

void lunar_generator_set_state(lunar_generator *g, uint64_t seed, uint64_t offset) {
    if (!g) g = &default_gen;
    g->seed = seed;
    g->offset = offset;
}

void lunar_manual_seed(uint64_t seed) { lunar_generator_seed(&default_gen, seed); }

/* ---- drawing ---- */

/* Fills out from g's stream and moves g past the blocks it used. */
static lunar_status draw(const char *op, lunar_tensor *out, int dist, double a, double b,
                         lunar_generator *g) {
    if (!g) g = &default_gen;
    const lunar_backend *be = lunar_tensor_backend(out);
    if (!be->random)
        return lunar_fail(LUNAR_ERR_UNSUPPORTED, "%s: the %s backend has no random kernel", op,
                          be->name);
    int64_t n = lunar_tensor_numel(out);
    if (n == 0) return LUNAR_OK;
    int per = philox_per_block(dist, out->dtype == LUNAR_F64);
    LUNAR_CHECK(be->random(out, dist, g->seed, g->offset, a, b));
    g->offset += (uint64_t)((n + per - 1) / per);
    return LUNAR_OK;
}

static lunar_status need_float(const char *op, lunar_dtype dt, int ndim, const int64_t *shape) {
    if (lunar_dtype_is_float(dt)) return LUNAR_OK;
    char s[128];
    return lunar_fail(LUNAR_ERR_DTYPE, "%s: needs a float dtype (float32 or float64), got %s "
                      "for shape %s", op, lunar_dtype_name(dt),
                      lunar_shape_str(s, sizeof s, ndim, shape));
}

/* A new tensor filled by one draw (NULL like: on the CPU). */
static lunar_status fresh(const char *op, lunar_tensor **out, int ndim, const int64_t *shape,
                          lunar_dtype dt, const lunar_tensor *like, int dist, double a, double b,
                          lunar_generator *g) {
    *out = NULL;
    lunar_tensor *t;
    LUNAR_CHECK(lunar_tensor_new(&t, ndim, shape, dt, like));
    lunar_status st = draw(op, t, dist, a, b, g);
    if (st != LUNAR_OK) {
        lunar_tensor_release(t);
        return st;
    }
    *out = t;
    return LUNAR_OK;
}

static lunar_status fill_(const char *op, lunar_tensor *t, int dist, double a, double b,
                          lunar_generator *g) {
    LUNAR_CHECK(lunar_check_inplace(op, t));
    LUNAR_CHECK(draw(op, t, dist, a, b, g));
    lunar_tensor_bump_version(t);
    return LUNAR_OK;
}

lunar_status lunar_rand(lunar_tensor **out, int ndim, const int64_t *shape, lunar_dtype dt,
                        lunar_generator *g) {
    *out = NULL;
    LUNAR_CHECK(need_float("rand", dt, ndim, shape));
    return fresh("rand", out, ndim, shape, dt, NULL, LUNAR_RANDOM_UNIFORM, 0, 1, g);
}

lunar_status lunar_randn(lunar_tensor **out, int ndim, const int64_t *shape, lunar_dtype dt,
                         lunar_generator *g) {
    *out = NULL;
    LUNAR_CHECK(need_float("randn", dt, ndim, shape));
    return fresh("randn", out, ndim, shape, dt, NULL, LUNAR_RANDOM_NORMAL, 0, 1, g);
}

/* The smallest and largest values an integer dtype holds. */
static void int_range(lunar_dtype dt, double *lo, double *hi) {
    switch (dt) {
    case LUNAR_U8: *lo = 0, *hi = 255; break;
    case LUNAR_I32: *lo = -2147483648.0, *hi = 2147483647.0; break;
    default: *lo = -EXACT_INT, *hi = EXACT_INT; break; /* int64, limited by the transport */
    }
}

lunar_status lunar_randint_(lunar_tensor *t, int64_t low, int64_t high, lunar_generator *g) {
    char s[128];
    lunar_shape_str(s, sizeof s, t->ndim, t->shape);
    if (t->dtype != LUNAR_U8 && t->dtype != LUNAR_I32 && t->dtype != LUNAR_I64)
        return lunar_fail(LUNAR_ERR_DTYPE, "randint: needs an integer dtype (uint8, int32 or "
                          "int64), got %s for shape %s", lunar_dtype_name(t->dtype), s);
    if (high <= low)
        return lunar_fail(LUNAR_ERR_ARG, "randint: high (%lld) must be greater than low (%lld); "
                          "the range [low, high) excludes high", (long long)high,
                          (long long)low);
    double lo, hi;
    int_range(t->dtype, &lo, &hi);
    if ((double)low < lo || (double)high - 1 > hi || (double)high > EXACT_INT)
        return lunar_fail(LUNAR_ERR_ARG, "randint: range [%lld, %lld) does not fit %s "
                          "(values from %.0f to %.0f)", (long long)low, (long long)high,
                          lunar_dtype_name(t->dtype), lo, hi);
    return fill_("randint", t, LUNAR_RANDOM_INTEGER, (double)low, (double)high, g);
}

lunar_status lunar_randint(lunar_tensor **out, int64_t low, int64_t high, int ndim,
                           const int64_t *shape, lunar_dtype dt, lunar_generator *g) {
    *out = NULL;
    lunar_tensor *t;
    LUNAR_CHECK(lunar_tensor_new(&t, ndim, shape, dt, NULL));
    lunar_status st = lunar_randint_(t, low, high, g);
    if (st != LUNAR_OK) {
        lunar_tensor_release(t);
        return st;
    }
    *out = t;
    return LUNAR_OK;
}

/* Fisher-Yates (Knuth, TAOCP vol. 2, 3.4.2, algorithm P) on the host: step t swaps
 * position k = n - 1 - t with one drawn from [0, k] by the stream's 64-bit draw t. */
lunar_status lunar_randperm(lunar_tensor **out, int64_t n, lunar_dtype dt, lunar_generator *g) {
    *out = NULL;
    if (!g) g = &default_gen;
    if (n < 0) return lunar_fail(LUNAR_ERR_ARG, "randperm: negative size %lld", (long long)n);
    if (dt != LUNAR_I32 && dt != LUNAR_I64)
        return lunar_fail(LUNAR_ERR_DTYPE, "randperm: needs int32 or int64, got %s",
                          lunar_dtype_name(dt));
    if (dt == LUNAR_I32 && n > 2147483647)
        return lunar_fail(LUNAR_ERR_ARG, "randperm: %lld does not fit int32", (long long)n);
    lunar_tensor *t;
    LUNAR_CHECK(lunar_tensor_new(&t, 1, &n, LUNAR_I64, NULL));
    int64_t *p = lunar_tensor_data(t);
    for (int64_t i = 0; i < n; i++) p[i] = i;
    uint32_t x[4];
    for (int64_t s = 0; s + 1 < n; s++) {
        if (s % 2 == 0) philox_block(g->seed, g->offset, (uint64_t)(s / 2), x);
        int64_t k = n - 1 - s;
        int64_t j = (int64_t)philox_mulhi64(philox_u64(x, (int)(s % 2)), (uint64_t)k + 1);
        int64_t tmp = p[k];
        p[k] = p[j];
        p[j] = tmp;
    }
    if (n > 1) g->offset += (uint64_t)(n / 2); /* ceil((n - 1) / 2) draws of two */
    if (dt == LUNAR_I64) {
        *out = t;
        return LUNAR_OK;
    }
    lunar_status st = lunar_raw_cast(out, t, dt);
    lunar_tensor_release(t);
    return st;
}

/* Reads the min and max of x (non-empty, any device) as doubles. */
static lunar_status min_max(const lunar_tensor *x, double *mn, double *mx) {
    lunar_status st = LUNAR_OK;
    lunar_tensor *r[2] = {NULL, NULL}, *c[2] = {NULL, NULL};
    bool grad = lunar_set_grad_enabled(false);
    for (int k = 0; k < 2 && st == LUNAR_OK; k++) {
        st = lunar_reduce(&r[k], k ? LUNAR_OP_MAX : LUNAR_OP_MIN, (lunar_tensor *)x, 0, false, 0);
        if (st == LUNAR_OK) st = lunar_raw_cast(&c[k], r[k], LUNAR_F64);
        if (st == LUNAR_OK)
            st = c[k]->storage->backend->read(k ? mx : mn, c[k]->storage,
                                              (size_t)c[k]->offset * sizeof(double),
                                              sizeof(double));
    }
    lunar_set_grad_enabled(grad);
    for (int k = 0; k < 2; k++) lunar_tensor_release(r[k]), lunar_tensor_release(c[k]);
    return st;
}

/* Element-wise: out[i] = 1 with probability p[i]. The uniform draw is the float64 one that
 * t:bernoulli_(p) compares with the same p, so the two agree on one stream. */
lunar_status lunar_bernoulli(lunar_tensor **out, const lunar_tensor *p, lunar_generator *g) {
    *out = NULL;
    char s[128];
    lunar_shape_str(s, sizeof s, p->ndim, p->shape);
    if (!lunar_dtype_is_float(p->dtype))
        return lunar_fail(LUNAR_ERR_DTYPE, "bernoulli: the probabilities must be float32 or "
                          "float64, got %s of shape %s", lunar_dtype_name(p->dtype), s);
    if (lunar_tensor_numel(p) > 0) {
        double mn, mx;
        LUNAR_CHECK(min_max(p, &mn, &mx));
        if (!(mn >= 0 && mx <= 1))
            return lunar_fail(LUNAR_ERR_ARG, "bernoulli: probabilities must lie in [0, 1] "
                              "(got values from %g to %g in shape %s)", mn, mx, s);
    }
    lunar_tensor *u = NULL, *mask = NULL;
    lunar_status st = fresh("bernoulli", &u, p->ndim, p->shape, LUNAR_F64, p,
                            LUNAR_RANDOM_UNIFORM, 0, 1, g);
    if (st != LUNAR_OK) return st;
    bool grad = lunar_set_grad_enabled(false);
    st = lunar_binary(&mask, LUNAR_OP_LT, u, (lunar_tensor *)p);
    lunar_set_grad_enabled(grad);
    if (st == LUNAR_OK) st = lunar_raw_cast(out, mask, p->dtype);
    lunar_tensor_release(u);
    lunar_tensor_release(mask);
    return st;
}

/* ---- in place ---- */

lunar_status lunar_uniform_(lunar_tensor *t, double lo, double hi, lunar_generator *g) {
    LUNAR_CHECK(need_float("uniform_", t->dtype, t->ndim, t->shape));
    if (!(lo <= hi) || !isfinite(hi - lo))
        return lunar_fail(LUNAR_ERR_ARG, "uniform_: needs finite bounds with low <= high "
                          "(got [%g, %g))", lo, hi);
    return fill_("uniform_", t, LUNAR_RANDOM_UNIFORM, lo, hi, g);
}

lunar_status lunar_normal_(lunar_tensor *t, double mean, double std, lunar_generator *g) {
    LUNAR_CHECK(need_float("normal_", t->dtype, t->ndim, t->shape));
    if (!isfinite(mean) || !(std >= 0) || !isfinite(std))
        return lunar_fail(LUNAR_ERR_ARG, "normal_: needs a finite mean and a finite std >= 0 "
                          "(got mean %g, std %g)", mean, std);
    return fill_("normal_", t, LUNAR_RANDOM_NORMAL, mean, std, g);
}

lunar_status lunar_bernoulli_(lunar_tensor *t, double p, lunar_generator *g) {
    if (!(p >= 0 && p <= 1))
        return lunar_fail(LUNAR_ERR_ARG, "bernoulli_: probability %g is outside [0, 1]", p);
    return fill_("bernoulli_", t, LUNAR_RANDOM_BERNOULLI, p, 0, g);
}
