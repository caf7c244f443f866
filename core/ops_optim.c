/*
 * ops_optim.c - lunar_optim_step: checks a parameter, its gradient and its state, works out
 * the per-step scalars of PyTorch 1.13's formulas (bias corrections, Adagrad's decayed lr,
 * NAdam's momentum cache), and hands one fused in-place update to the backend.
 */
#include "lunar-impl.h"

#include <math.h>

static const char *const kind_names[LUNAR_OPTIM_COUNT] = {
    "SGD", "Adagrad", "Adadelta", "RMSprop", "Adam", "Adamax", "NAdam",
};

/* Which state slots each kind reads: bit k for slot k (options may add more). */
static unsigned slots_needed(lunar_optim_kind kind, const lunar_optim_hyper *h) {
    switch (kind) {
    case LUNAR_OPTIM_SGD: return h->momentum != 0 ? 1u : 0u;
    case LUNAR_OPTIM_ADAGRAD: return 1u;
    case LUNAR_OPTIM_ADADELTA: return 3u;
    case LUNAR_OPTIM_RMSPROP:
        return 1u | (h->momentum > 0 ? 2u : 0u) | (h->centered ? 4u : 0u);
    case LUNAR_OPTIM_ADAM: return 3u | (h->amsgrad ? 4u : 0u);
    case LUNAR_OPTIM_ADAMAX: return 3u;
    case LUNAR_OPTIM_NADAM: return 3u;
    default: return 0u;
    }
}

static lunar_status check_like(const char *what, const char *kname, const lunar_tensor *t,
                               const lunar_tensor *param, bool contiguous) {
    char a[96], b[96];
    if (!lunar_shape_equal(t->ndim, t->shape, param->ndim, param->shape) ||
        t->dtype != param->dtype)
        return lunar_fail(LUNAR_ERR_SHAPE, "%s step: %s is %s %s but the parameter is %s %s",
                          kname, what, lunar_shape_str(a, sizeof a, t->ndim, t->shape),
                          lunar_dtype_name(t->dtype),
                          lunar_shape_str(b, sizeof b, param->ndim, param->shape),
                          lunar_dtype_name(param->dtype));
    LUNAR_CHECK(lunar_same_device(kname, param, t));
    if (contiguous && !lunar_tensor_is_contiguous(t))
        return lunar_fail(LUNAR_ERR_ARG, "%s step: %s must be contiguous", kname, what);
    return LUNAR_OK;
}

/* PyTorch keeps NAdam's mu_product in a float32 tensor: round as it does. */
static double f32r(double v) { return (double)(float)v; }

static lunar_status step_scalars(lunar_optim_kind kind, lunar_optim_hyper *h) {
    double t = (double)h->step;
    h->c1 = h->c2 = h->c3 = 0;
    switch (kind) {
    case LUNAR_OPTIM_SGD: h->c1 = h->step == 1; break; /* the buffer starts as the grad */
    case LUNAR_OPTIM_ADAGRAD: h->c1 = h->lr / (1 + (t - 1) * h->lr_decay); break;
    case LUNAR_OPTIM_ADAM:
        h->c1 = h->lr / (1 - pow(h->beta1, t));
        h->c2 = sqrt(1 - pow(h->beta2, t));
        break;
    case LUNAR_OPTIM_ADAMAX: h->c1 = h->lr / (1 - pow(h->beta1, t)); break;
    case LUNAR_OPTIM_NADAM: {
        double mu = h->beta1 * (1 - 0.5 * pow(0.96, t * h->momentum_decay));
        double mu_next = h->beta1 * (1 - 0.5 * pow(0.96, (t + 1) * h->momentum_decay));
        h->mu_product = f32r(h->mu_product * f32r(mu));
        /* PyTorch 1.13 multiplies mu in twice here (fixed in 2.0); we match 1.13 */
        double next = f32r(f32r(h->mu_product * f32r(mu)) * f32r(mu_next));
        h->c1 = 1 - pow(h->beta2, t);
        h->c2 = -h->lr * (1 - mu) / (1 - h->mu_product);
        h->c3 = -h->lr * mu_next / (1 - next);
        break;
    }
    default: break;
    }
    return LUNAR_OK;
}

lunar_status lunar_optim_step(lunar_optim_kind kind, lunar_tensor *param, lunar_tensor *grad,
                              lunar_tensor *const *state, lunar_optim_hyper *h) {
    if ((int)kind < 0 || kind >= LUNAR_OPTIM_COUNT)
        return lunar_fail(LUNAR_ERR_ARG, "optim_step: unknown optimizer kind %d", (int)kind);
    const char *kname = kind_names[kind];
    if (!param || !grad) return lunar_fail(LUNAR_ERR_ARG, "%s step: missing tensor", kname);
    if (!lunar_dtype_is_float(param->dtype) || param->dtype == LUNAR_BOOL)
        return lunar_fail(LUNAR_ERR_DTYPE, "%s step: parameters must be float32 or float64 "
                          "(got %s)", kname, lunar_dtype_name(param->dtype));
    if (h->step < 1)
        return lunar_fail(LUNAR_ERR_ARG, "%s step: step must be >= 1 (got %lld)", kname,
                          (long long)h->step);
    if (!lunar_tensor_is_contiguous(param))
        return lunar_fail(LUNAR_ERR_ARG, "%s step: the parameter must be contiguous", kname);
    LUNAR_CHECK(check_like("the gradient", kname, grad, param, false));
    unsigned need = slots_needed(kind, h);
    static const char *const slot_names[3] = {"state 1", "state 2", "state 3"};
    for (int k = 0; k < 3; k++) {
        if (!(need & (1u << k))) continue;
        if (!state || !state[k])
            return lunar_fail(LUNAR_ERR_ARG, "%s step: %s is missing", kname, slot_names[k]);
        LUNAR_CHECK(check_like(slot_names[k], kname, state[k], param, true));
    }
    lunar_tensor *slots[3] = {NULL, NULL, NULL};
    for (int k = 0; k < 3; k++)
        if (need & (1u << k)) slots[k] = state[k];
    const lunar_backend *be = lunar_tensor_backend(param);
    if (!be->optim_step)
        return lunar_fail(LUNAR_ERR_UNSUPPORTED, "%s step: no kernel on %s", kname, be->name);
    lunar_tensor *g = grad;
    lunar_status st = LUNAR_OK;
    if (!lunar_tensor_is_contiguous(grad)) LUNAR_CHECK(lunar_raw_contiguous(&g, grad));
    else lunar_tensor_retain(g);
    lunar_optim_hyper saved = *h;
    LUNAR_GOTO(step_scalars(kind, h));
    st = LUNAR_KERNEL(be, optim_step, kind, param, g, slots, h);
    if (st != LUNAR_OK) {
        *h = saved;
        goto done;
    }
    lunar_tensor_bump_version(param);
    for (int k = 0; k < 3; k++)
        if (slots[k]) lunar_tensor_bump_version(slots[k]);
done:
    lunar_tensor_release(g);
    return st;
}
