/*
 * optim.c - the OpenCL optim_step entry: one fused in-place step by kernels/optim.cl, one
 * work-item per parameter element, choosing the kernel as cpu/optim.c chooses its loop (the
 * float32 SGD and Adam fast paths compute in float there, so they do here too).
 */
#include "opencl.h"

static const char *optim_k[] = OCL_NAMES(optim);

/* param, grad, state[k]: [n] contiguous (any offset), one float dtype; state[k] NULL where
 * the kind and options leave slot k unused */
lunar_status ocl_optim_step(lunar_optim_kind kind, lunar_tensor *param, const lunar_tensor *grad,
                            lunar_tensor *const *state, const lunar_optim_hyper *h) {
    if (param->dtype != LUNAR_F32 && param->dtype != LUNAR_F64)
        return lunar_fail(LUNAR_ERR_DTYPE, "optim_step: opencl: no kernel for %s",
                          lunar_dtype_name(param->dtype));
    cl_long n = lunar_tensor_numel(param);
    cl_mem p = OCL_MEM(param), g = OCL_MEM(grad), s[3];
    cl_long po = param->offset, go = grad->offset, so[3];
    for (int k = 0; k < 3; k++) { /* unused slots get p, which the kernels never touch */
        s[k] = state[k] ? OCL_MEM(state[k]) : p;
        so[k] = state[k] ? state[k]->offset : 0;
    }
    int dev = ocl_dev(param);
    bool f32 = param->dtype == LUNAR_F32;
    if (f32 && !h->maximize && kind == LUNAR_OPTIM_SGD) {
        cl_int use_buf = h->momentum != 0, first = h->c1 != 0, nesterov = h->nesterov;
        cl_float lr = (float)h->lr, wd = (float)h->weight_decay, mom = (float)h->momentum;
        cl_float damp = 1 - (float)h->dampening;
        ocl_karg args[] = {A(p),  A(po), A(g),  A(go),   A(s[0]),  A(so[0]), A(use_buf),
                           A(n),  A(lr), A(wd), A(mom),  A(damp),  A(first), A(nesterov)};
        return ocl_launch(dev, "optim_sgd_f32", n, 14, args);
    }
    if (f32 && !h->maximize && kind == LUNAR_OPTIM_ADAM && !h->amsgrad) {
        cl_float lr = (float)h->lr, wd = (float)h->weight_decay, eps = (float)h->eps;
        cl_float b1 = (float)h->beta1, b2 = (float)h->beta2, c1 = (float)h->c1,
                 c2 = (float)h->c2;
        cl_int decoupled = h->decoupled;
        ocl_karg args[] = {A(p),  A(po), A(g),  A(go), A(s[0]), A(so[0]), A(s[1]), A(so[1]),
                           A(n),  A(lr), A(wd), A(eps), A(b1),  A(b2),    A(c1),   A(c2),
                           A(decoupled)};
        return ocl_launch(dev, "optim_adam_f32", n, 17, args);
    }
    cl_int ckind = kind, flags = (h->maximize ? 1 : 0) | (h->decoupled ? 2 : 0) |
                                 (h->nesterov ? 4 : 0) | (h->centered ? 8 : 0) |
                                 (h->amsgrad ? 16 : 0);
    const double hv[10] = {h->lr,       h->weight_decay, h->eps, h->beta1, h->beta2,
                           h->momentum, h->dampening,    h->c1,  h->c2,    h->c3};
    ocl_scalar sc[10];
    ocl_karg args[24] = {A(ckind), A(flags), A(p),    A(po),    A(g),    A(go),
                         A(s[0]),  A(so[0]), A(s[1]), A(so[1]), A(s[2]), A(so[2]), A(n)};
    for (int k = 0; k < 10; k++) args[13 + k] = ocl_acc_arg(&sc[k], param, hv[k]);
    return ocl_launch(dev, optim_k[param->dtype], n, 23, args);
}
