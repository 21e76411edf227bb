/* SGD with momentum, dampening, Nesterov and weight decay, exactly as
 * torch.optim.SGD: d = g + wd*p; buf = d on the first step, else
 * buf = momentum*buf + (1-dampening)*d; d = d + momentum*buf (Nesterov) or
 * buf; p -= lr*d. Runs over the network's flat parameter block. */
#include "pasm/train.h"

pasm_status pasm_sgd_init(pasm_sgd *sgd, const pasm_sgd_options *opt, int64_t count) {
    sgd->opt = *opt;
    sgd->count = count;
    sgd->steps = 0;
    sgd->momentum_buffer = NULL;
    sgd->momentum_on_device = 0;
    if (opt->nesterov && (opt->momentum <= 0 || opt->dampening != 0))
        return pasm_errorf(PASM_ERR_INVALID, "Nesterov momentum needs momentum > 0 and zero "
                                             "dampening");
    if (opt->momentum > 0) {
        sgd->momentum_buffer = pasm_alloc((size_t)count * sizeof(float), "momentum buffer");
        if (!sgd->momentum_buffer) return PASM_ERR_NOMEM;
    }
    return PASM_OK;
}

void pasm_sgd_free(pasm_sgd *sgd) {
    pasm_free(sgd->momentum_buffer);
    sgd->momentum_buffer = NULL;
}

void pasm_sgd_step(pasm_sgd *sgd, float *params, const float *grads, float lr) {
    const float wd = sgd->opt.weight_decay, mom = sgd->opt.momentum;
    const float damp = 1.0f - sgd->opt.dampening;
    const int nesterov = sgd->opt.nesterov, first = sgd->steps == 0;
    float *buf = sgd->momentum_buffer;
    const int64_t n = sgd->count;
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++) {
        float d = grads[i] + wd * params[i];
        if (buf) {
            buf[i] = first ? d : mom * buf[i] + damp * d;
            d = nesterov ? d + mom * buf[i] : buf[i];
        }
        params[i] -= lr * d;
    }
    sgd->steps++;
}

pasm_status pasm_sgd_step_net(pasm_sgd *sgd, pasm_net *net, float lr) {
    if (pasm_net_get_config(net)->device == PASM_DEVICE_CPU) {
        pasm_sgd_step(sgd, pasm_net_param_block(net, NULL), pasm_net_grad_block(net, NULL), lr);
        return PASM_OK;
    }
    const pasm_sgd_options *o = &sgd->opt;
    pasm_status st = pasm_net_sgd_step_device(net, lr, o->weight_decay, o->momentum, o->dampening,
                                              o->nesterov, sgd->steps == 0, sgd->momentum_buffer,
                                              &sgd->momentum_on_device);
    if (!st) sgd->steps++;
    return st;
}

pasm_status pasm_sgd_sync(pasm_sgd *sgd, pasm_net *net) {
    if (!sgd->momentum_on_device) return PASM_OK;
    return pasm_net_momentum_to_host(net, sgd->momentum_buffer);
}
