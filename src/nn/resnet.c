/* ResNet-18 in torchvision's structure and names, adapted to small faces:
 * a 3x3 stride-1 stem, no max-pool, four stages of two BasicBlocks with widths
 * w, 2w, 4w, 8w and strides 1, 2, 2, 2, global average pool, fc.
 *
 * The network is built twice by the same code: once in counting mode, which
 * only adds up how many floats every parameter, buffer and activation needs,
 * and once in assigning mode, which points each of them into blocks allocated
 * in between. So memory is planned once, for the largest batch, and forward
 * and backward allocate nothing (llm.c's discipline). What is planned
 * depends on the mode (net_internal.h): a training network keeps every
 * activation and gradient, an evaluation network three rotating buffers. */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <string.h>

#include "nn/net_internal.h"
#include "pasm/ops.h"
#ifdef PASM_HAVE_CUDA
#include "cuda/cuda_net.h"
#endif

/* ---- planning ---- */

typedef struct {
    pasm_net *net;
    int assign;               /* 0: count sizes, 1: point into the blocks */
    int host_only;            /* a GPU network: plan host memory only for this */
    int64_t n_param, n_buffer, n_counter;
    size_t activation_bytes;
} planner;

enum { KIND_PARAM, KIND_BUFFER, KIND_COUNTER };

/* Registers one state_dict tensor (in torchvision's order) and returns its
 * data (and gradient for parameters) in assigning mode. */
static void *reg(planner *p, const char *name, int kind, int ndim, const int64_t *shape,
                 float **grad) {
    int64_t numel = 1;
    for (int i = 0; i < ndim; i++) numel *= shape[i];
    pasm_net *net = p->net;
    void *data = NULL;
    if (p->assign) {
        pasm_tensor *t = &net->state[net->n_state];
        memset(t, 0, sizeof *t);
        snprintf(t->name, sizeof t->name, "%s", name);
        t->ndim = ndim;
        for (int i = 0; i < ndim; i++) t->shape[i] = shape[i];
        if (kind == KIND_PARAM) {
            t->dtype = PASM_F32;
            data = net->param_block + p->n_param;
            pasm_tensor *pt = &net->params[net->n_params], *gt = &net->grads[net->n_params];
            *pt = *t;
            pt->data = data;
            *gt = *t;
            gt->data = net->grad_block ? net->grad_block + p->n_param : NULL;
            if (grad) *grad = gt->data;
            net->n_params++;
        } else if (kind == KIND_BUFFER) {
            t->dtype = PASM_F32;
            data = net->buffer_block + p->n_buffer;
        } else {
            t->dtype = PASM_I64;
            data = net->counter_block + p->n_counter;
        }
        t->data = data;
        net->n_state++;
    }
    if (kind == KIND_PARAM) p->n_param += numel;
    else if (kind == KIND_BUFFER) p->n_buffer += numel;
    else p->n_counter += numel;
    return data;
}

/* bytes of the activation block, 64-byte aligned (NULL while counting).
 * A GPU network keeps its activations on the GPU (src/cuda/net.c): on the
 * host it plans only what callers read (host_take). */
static void *take(planner *p, size_t bytes) {
    if (p->net->cfg.device == PASM_DEVICE_CUDA && !p->host_only) return NULL;
    void *out = p->assign ? p->net->activation_block + p->activation_bytes : NULL;
    p->activation_bytes += (bytes + 63) / 64 * 64;
    return out;
}

static float *activation(planner *p, int64_t floats) {
    return take(p, (size_t)floats * sizeof(float));
}

/* Host memory on any device (the logits, a GPU network's class-map input). */
static float *host_take(planner *p, int64_t floats) {
    p->host_only = 1;
    float *out = activation(p, floats);
    p->host_only = 0;
    return out;
}

/* Only a training network keeps each layer's output for backward. */
static float *train_activation(planner *p, int64_t floats) {
    return p->net->mode == PASM_NET_TRAIN ? activation(p, floats) : NULL;
}

/* A ReLU bit mask over count outputs (pasm_relu_mask), EVAL_GRAD only. */
static uint64_t *relu_mask(planner *p, int64_t count) {
    if (p->net->mode != PASM_NET_EVAL_GRAD) return NULL;
    return take(p, (size_t)(count + 63) / 64 * sizeof(uint64_t));
}

static void plan_conv(planner *p, conv_layer *c, const char *name, int c_in, int size, int c_out,
                      int kernel, int stride) {
    pasm_conv2d_shape s = {.n = p->net->max_batch, .c_in = c_in, .h_in = size, .w_in = size,
                           .c_out = c_out, .kernel = kernel, .stride = stride,
                           .pad = kernel / 2,
                           .precision = (pasm_precision)p->net->cfg.precision};
    pasm_conv2d_shape_init(&s);
    c->shape = s;
    int64_t shape[4] = {c_out, c_in, kernel, kernel};
    c->weight = reg(p, name, KIND_PARAM, 4, shape, &c->dweight);
    c->out = train_activation(p, (int64_t)s.n * c_out * s.h_out * s.w_out);
    /* no weight gradients outside training: a smaller workspace */
    pasm_net_mode mode = p->net->mode;
    if (p->net->cfg.device == PASM_DEVICE_CUDA) return; /* the GPU plans its own */
    size_t ws = mode == PASM_NET_TRAIN
                    ? pasm_conv2d_workspace_size(&s)
                    : pasm_conv2d_workspace_size_eval(&s, mode == PASM_NET_EVAL_GRAD);
    if (ws > p->net->workspace_bytes) p->net->workspace_bytes = ws;
}

static void plan_bn(planner *p, bn_layer *b, const char *prefix, int c, int size) {
    char name[96];
    int64_t shape[1] = {c};
    b->shape = (pasm_bn_shape){.n = p->net->max_batch, .c = c, .h = size, .w = size,
                               .eps = 1e-5f, .momentum = 0.1f};
    snprintf(name, sizeof name, "%s.weight", prefix);
    b->gamma = reg(p, name, KIND_PARAM, 1, shape, &b->dgamma);
    snprintf(name, sizeof name, "%s.bias", prefix);
    b->beta = reg(p, name, KIND_PARAM, 1, shape, &b->dbeta);
    snprintf(name, sizeof name, "%s.running_mean", prefix);
    b->running_mean = reg(p, name, KIND_BUFFER, 1, shape, NULL);
    snprintf(name, sizeof name, "%s.running_var", prefix);
    b->running_var = reg(p, name, KIND_BUFFER, 1, shape, NULL);
    snprintf(name, sizeof name, "%s.num_batches_tracked", prefix);
    b->batches_tracked = reg(p, name, KIND_COUNTER, 0, NULL, NULL);
    b->save_mean = train_activation(p, c);
    b->save_invstd = train_activation(p, c);
    b->scale = activation(p, c);
    b->shift = activation(p, c);
    /* the evaluation modes point out into their slots (plan_eval_outputs) */
    b->out = train_activation(p, (int64_t)p->net->max_batch * c * size * size);
}

static void plan_block(planner *p, block *b, const char *prefix, int c_in, int size_in, int c_out,
                       int stride) {
    char name[96];
    snprintf(name, sizeof name, "%s.conv1.weight", prefix);
    plan_conv(p, &b->conv1, name, c_in, size_in, c_out, 3, stride);
    int size = b->conv1.shape.h_out;
    snprintf(name, sizeof name, "%s.bn1", prefix);
    plan_bn(p, &b->bn1, name, c_out, size);
    snprintf(name, sizeof name, "%s.conv2.weight", prefix);
    plan_conv(p, &b->conv2, name, c_out, size, c_out, 3, 1);
    snprintf(name, sizeof name, "%s.bn2", prefix);
    plan_bn(p, &b->bn2, name, c_out, size);
    b->has_downsample = stride != 1 || c_in != c_out;
    if (b->has_downsample) {
        snprintf(name, sizeof name, "%s.downsample.0.weight", prefix);
        plan_conv(p, &b->down_conv, name, c_in, size_in, c_out, 1, stride);
        snprintf(name, sizeof name, "%s.downsample.1", prefix);
        plan_bn(p, &b->down_bn, name, c_out, size);
    }
    b->c_out = c_out;
    b->size_out = size;
    int64_t mid = (int64_t)p->net->max_batch * c_out * size * size;
    b->mask_mid = relu_mask(p, mid);
    b->mask_out = relu_mask(p, mid);
}

static int64_t round16(int64_t floats) { return (floats + 15) / 16 * 16; }

/* Evaluation modes: layer outputs take turns in three slots. A block reads
 * its input from one slot, writes conv1's output (and the shortcut's, after
 * it, in the same slot) to the next and its own output to the one after, so
 * no output overwrites what its layer still reads. Each slot holds the
 * largest activation (the stem's), or a downsampling block's two outputs
 * when odd sizes make those larger. The last block writes to a buffer of its
 * own, which stays readable after the forward (and after an EVAL_GRAD
 * backward, which runs in the slots). */
static void plan_eval_outputs(planner *p) {
    pasm_net *net = p->net;
    const int64_t n = net->max_batch;
    int64_t slot_floats = n * net->cfg.width * net->cfg.input_size * net->cfg.input_size;
    for (int i = 0; i < 8; i++) {
        const block *b = &net->blocks[i];
        int64_t out = n * b->c_out * b->size_out * b->size_out;
        int64_t pair = b->has_downsample ? round16(out) + out : out;
        if (pair > slot_floats) slot_floats = pair;
    }
    for (int i = 0; i < 3; i++) net->slots[i] = activation(p, slot_floats);
    const block *last = &net->blocks[7];
    float *final_out = activation(p, n * last->c_out * last->size_out * last->size_out);
    if (!p->assign) return;
    net->stem_bn.out = net->slots[0];
    int in = 0;
    for (int i = 0; i < 8; i++) {
        block *b = &net->blocks[i];
        float *mid = net->slots[(in + 1) % 3];
        b->bn1.out = mid;
        if (b->has_downsample)
            b->down_bn.out = mid + round16(n * b->c_out * b->size_out * b->size_out);
        b->bn2.out = i == 7 ? final_out : net->slots[(in + 2) % 3];
        in = (in + 2) % 3;
    }
}

/* Walks the whole network in torchvision's state_dict order. */
static void plan_network(planner *p) {
    pasm_net *net = p->net;
    const pasm_net_config *cfg = &net->cfg;
    int w = cfg->width, size = cfg->input_size;
    plan_conv(p, &net->stem_conv, "conv1.weight", cfg->in_channels, size, w, 3, 1);
    plan_bn(p, &net->stem_bn, "bn1", w, size);
    net->stem_mask = relu_mask(p, (int64_t)net->max_batch * w * size * size);
    int c_in = w;
    for (int stage = 0; stage < 4; stage++) {
        int c_out = w << stage;
        for (int i = 0; i < 2; i++) {
            char prefix[32];
            snprintf(prefix, sizeof prefix, "layer%d.%d", stage + 1, i);
            block *b = &net->blocks[stage * 2 + i];
            plan_block(p, b, prefix, c_in, size, c_out, (i == 0 && stage > 0) ? 2 : 1);
            c_in = c_out;
            size = b->size_out;
        }
    }
    net->final_channels = c_in;
    net->final_size = size;
    int64_t fc_w[2] = {cfg->num_classes, c_in}, fc_b[1] = {cfg->num_classes};
    net->fc_weight = reg(p, "fc.weight", KIND_PARAM, 2, fc_w, &net->fc_dweight);
    net->fc_bias = reg(p, "fc.bias", KIND_PARAM, 1, fc_b, &net->fc_dbias);
    int64_t n = net->max_batch;
    net->pooled = activation(p, n * c_in);
    net->dpooled = net->mode != PASM_NET_EVAL ? activation(p, n * c_in) : NULL;
    net->logits = host_take(p, n * cfg->num_classes);
    if (cfg->device == PASM_DEVICE_CUDA) {
        net->gpu_features = host_take(p, n * c_in * size * size);
        return;
    }
    if (net->mode != PASM_NET_TRAIN) {
        plan_eval_outputs(p);
        return;
    }
    /* Gradient scratch: the largest activation is the stem's output. */
    int64_t largest = n * w * cfg->input_size * cfg->input_size;
    for (int i = 0; i < 4; i++) net->scratch[i] = activation(p, largest);
}

/* ---- creation ---- */

pasm_status pasm_net_config_check(const pasm_net_config *cfg) {
    if (strcmp(cfg->arch, "resnet18") != 0)
        return pasm_errorf(PASM_ERR_INVALID, "unknown architecture '%s' (known: resnet18)",
                           cfg->arch);
    if (cfg->width != 16 && cfg->width != 32 && cfg->width != 64)
        return pasm_errorf(PASM_ERR_INVALID, "width %d is not one of 16, 32, 64", cfg->width);
    if (cfg->in_channels != 1 && cfg->in_channels != 3)
        return pasm_errorf(PASM_ERR_INVALID, "input channels %d: must be 1 or 3",
                           cfg->in_channels);
    if (cfg->num_classes < 2 || cfg->num_classes > 100000)
        return pasm_errorf(PASM_ERR_INVALID, "number of classes %d: must be 2 or more",
                           cfg->num_classes);
    if (cfg->input_size < 32 || cfg->input_size > 1024)
        return pasm_errorf(PASM_ERR_INVALID, "input size %d: must be between 32 and 1024",
                           cfg->input_size);
    if (cfg->precision != PASM_PRECISION_FP32 && cfg->precision != PASM_PRECISION_BF16)
        return pasm_errorf(PASM_ERR_INVALID, "precision %d: must be fp32 (0) or bf16 (1)",
                           cfg->precision);
    if (cfg->device != PASM_DEVICE_CPU && cfg->device != PASM_DEVICE_CUDA)
        return pasm_errorf(PASM_ERR_INVALID, "device %d: must be cpu (0) or cuda (1)",
                           cfg->device);
    return PASM_OK;
}

const char *pasm_net_mode_name(pasm_net_mode mode) {
    switch (mode) {
    case PASM_NET_TRAIN: return "train";
    case PASM_NET_EVAL: return "eval";
    case PASM_NET_EVAL_GRAD: return "eval-grad";
    }
    return "unknown";
}

pasm_status pasm_net_create(pasm_net **out, const pasm_net_config *cfg, int max_batch) {
    return pasm_net_create_mode(out, cfg, max_batch, PASM_NET_TRAIN);
}

static pasm_status check_request(const pasm_net_config *cfg, int max_batch, pasm_net_mode mode) {
    pasm_status st = pasm_net_config_check(cfg);
    if (st) return st;
    if (max_batch < 1)
        return pasm_errorf(PASM_ERR_INVALID, "batch size %d: must be at least 1", max_batch);
    if (mode != PASM_NET_TRAIN && mode != PASM_NET_EVAL && mode != PASM_NET_EVAL_GRAD)
        return pasm_errorf(PASM_ERR_INVALID, "network mode %d: must be PASM_NET_TRAIN, "
                                             "PASM_NET_EVAL or PASM_NET_EVAL_GRAD",
                           (int)mode);
    return PASM_OK;
}

/* A network with its sizes counted and nothing else allocated. */
static pasm_net *counted(const pasm_net_config *cfg, int max_batch, pasm_net_mode mode,
                         planner *count) {
    pasm_net *net = pasm_alloc(sizeof *net, "network");
    if (!net) return NULL;
    net->cfg = *cfg;
    net->mode = mode;
    net->max_batch = max_batch;
    *count = (planner){.net = net, .assign = 0};
    plan_network(count);
    net->n_param_floats = count->n_param;
    net->buffer_floats = count->n_buffer;
    net->n_counters = count->n_counter;
    net->activation_bytes = count->activation_bytes;
    return net;
}

pasm_status pasm_net_planned_bytes(const pasm_net_config *cfg, int max_batch, pasm_net_mode mode,
                                   size_t *bytes) {
    *bytes = 0;
    pasm_status st = check_request(cfg, max_batch, mode);
    if (st) return st;
    planner count;
    pasm_net *net = counted(cfg, max_batch, mode, &count);
    if (!net) return PASM_ERR_NOMEM;
    *bytes = pasm_net_memory_bytes(net);
    pasm_free(net);
    return PASM_OK;
}

pasm_status pasm_net_create_mode(pasm_net **out, const pasm_net_config *cfg, int max_batch,
                                 pasm_net_mode mode) {
    *out = NULL;
    pasm_status st = check_request(cfg, max_batch, mode);
    if (st) return st;
    if ((st = pasm_device_check((pasm_device)cfg->device))) return st;
    planner count;
    pasm_net *net = counted(cfg, max_batch, mode, &count);
    if (!net) return PASM_ERR_NOMEM;
    const int has_grads = mode == PASM_NET_TRAIN;
    net->param_block = pasm_alloc((size_t)count.n_param * sizeof(float), "parameters");
    if (has_grads)
        net->grad_block = pasm_alloc((size_t)count.n_param * sizeof(float), "gradients");
    net->buffer_block = pasm_alloc((size_t)count.n_buffer * sizeof(float), "BN statistics");
    net->counter_block = pasm_alloc((size_t)count.n_counter * sizeof(int64_t), "BN counters");
    net->activation_block = pasm_alloc(count.activation_bytes, "activations");
    net->workspace = pasm_alloc(net->workspace_bytes, "convolution workspace");
    if (!net->param_block || (has_grads && !net->grad_block) || !net->buffer_block ||
        !net->counter_block || !net->activation_block || !net->workspace) {
        pasm_net_free(net);
        return pasm_error_prefix(PASM_ERR_NOMEM, "building resnet18 width %d for batch %d%s",
                                 cfg->width, max_batch,
                                 mode == PASM_NET_TRAIN  ? ""
                                 : mode == PASM_NET_EVAL ? " (evaluation)"
                                                         : " (evaluation with input gradients)");
    }
    planner assign = {.net = net, .assign = 1};
    net->workspace_bytes = 0;
    plan_network(&assign);
    /* Evaluation-safe defaults until init or a checkpoint: running var 1. */
    for (int i = 0; i < net->n_state; i++) {
        const char *name = net->state[i].name;
        size_t len = strlen(name);
        if (len > 12 && strcmp(name + len - 12, ".running_var") == 0) {
            float *v = net->state[i].data;
            for (int64_t j = 0; j < net->state[i].shape[0]; j++) v[j] = 1.0f;
        }
    }
#ifdef PASM_HAVE_CUDA
    if (cfg->device == PASM_DEVICE_CUDA) {
        if ((st = pasm_cuda_net_create(net))) {
            pasm_net_free(net);
            return st;
        }
        net->host_newer = 1; /* sent before the first forward */
    }
#endif
    *out = net;
    return PASM_OK;
}

void pasm_net_free(pasm_net *net) {
    if (!net) return;
#ifdef PASM_HAVE_CUDA
    pasm_cuda_net_free(net);
#endif
    pasm_free(net->param_block);
    pasm_free(net->grad_block);
    pasm_free(net->buffer_block);
    pasm_free(net->counter_block);
    pasm_free(net->activation_block);
    pasm_free(net->workspace);
    pasm_free(net);
}

const pasm_net_config *pasm_net_get_config(const pasm_net *net) { return &net->cfg; }
int pasm_net_max_batch(const pasm_net *net) { return net->max_batch; }
pasm_net_mode pasm_net_get_mode(const pasm_net *net) { return net->mode; }

size_t pasm_net_memory_bytes(const pasm_net *net) {
    /* weights, and their gradients when training */
    const size_t param_copies = net->mode == PASM_NET_TRAIN ? 2 : 1;
    size_t gpu = 0;
#ifdef PASM_HAVE_CUDA
    gpu = pasm_cuda_net_bytes(net);
#endif
    return (size_t)net->n_param_floats * param_copies * sizeof(float) +
           (size_t)net->buffer_floats * sizeof(float) + (size_t)net->n_counters * 8 +
           net->activation_bytes + net->workspace_bytes + gpu;
}

int pasm_net_n_state(const pasm_net *net) { return net->n_state; }
pasm_tensor *pasm_net_state(pasm_net *net, int i) {
    pasm_net_host_view(net, 0);
    return (i >= 0 && i < net->n_state) ? &net->state[i] : NULL;
}
int pasm_net_n_params(const pasm_net *net) { return net->n_params; }
pasm_tensor *pasm_net_param(pasm_net *net, int i) {
    pasm_net_host_view(net, 0);
    return (i >= 0 && i < net->n_params) ? &net->params[i] : NULL;
}
pasm_tensor *pasm_net_grad(pasm_net *net, int i) {
    pasm_net_host_view(net, 1);
    return (i >= 0 && i < net->n_params) ? &net->grads[i] : NULL;
}

pasm_tensor *pasm_net_find(pasm_net *net, const char *name) {
    pasm_net_host_view(net, 0);
    for (int i = 0; i < net->n_state; i++)
        if (strcmp(net->state[i].name, name) == 0) return &net->state[i];
    return NULL;
}

float *pasm_net_param_block(pasm_net *net, int64_t *count) {
    if (count) *count = net->n_param_floats;
    pasm_net_host_view(net, 0);
    return net->param_block;
}

float *pasm_net_grad_block(pasm_net *net, int64_t *count) {
    if (count) *count = net->n_param_floats;
    pasm_net_host_view(net, 1);
    return net->grad_block;
}

pasm_status pasm_net_copy_state(pasm_net *dst, pasm_net *src) {
    const pasm_net_config *a = &dst->cfg, *b = &src->cfg;
    if (strcmp(a->arch, b->arch) || a->width != b->width || a->in_channels != b->in_channels ||
        a->num_classes != b->num_classes)
        return pasm_errorf(PASM_ERR_SHAPE, "cannot copy weights between different networks "
                                           "(width %d/%d, classes %d/%d)",
                           a->width, b->width, a->num_classes, b->num_classes);
    pasm_net_host_view(src, 0);
    pasm_net_host_view(dst, 0);
    memcpy(dst->param_block, src->param_block, (size_t)src->n_param_floats * sizeof(float));
    memcpy(dst->buffer_block, src->buffer_block, (size_t)src->buffer_floats * sizeof(float));
    memcpy(dst->counter_block, src->counter_block, (size_t)src->n_counters * sizeof(int64_t));
    return PASM_OK;
}

/* ---- initialisation (torchvision's) ---- */

void pasm_net_init(pasm_net *net, uint64_t seed) {
    pasm_net_host_view(net, 0);
    for (int i = 0; i < net->n_state; i++) {
        pasm_tensor *t = &net->state[i];
        pasm_rng rng;
        pasm_rng_init(&rng, seed, PASM_RNG_INIT, (uint64_t)i, 0);
        int64_t n = pasm_tensor_numel(t);
        const char *name = t->name;
        size_t len = strlen(name);
        int is = 0;
#define ENDS(s) (len >= strlen(s) && strcmp(name + len - strlen(s), s) == 0)
        if (t->dtype == PASM_I64) {
            memset(t->data, 0, (size_t)n * sizeof(int64_t));
            continue;
        }
        float *d = t->data;
        if (t->ndim == 4) { /* conv: kaiming normal, fan_out, relu gain */
            double fan_out = (double)t->shape[0] * t->shape[2] * t->shape[3];
            float std = (float)sqrt(2.0 / fan_out);
            for (int64_t j = 0; j < n; j++) d[j] = std * pasm_rng_normal(&rng);
        } else if (strncmp(name, "fc.", 3) == 0) { /* nn.Linear default */
            double fan_in = (double)net->final_channels;
            float bound = (float)(1.0 / sqrt(fan_in));
            for (int64_t j = 0; j < n; j++) d[j] = bound * (2.0f * pasm_rng_uniform(&rng) - 1.0f);
        } else {
            is = ENDS(".weight") || ENDS(".running_var");
            for (int64_t j = 0; j < n; j++) d[j] = is ? 1.0f : 0.0f;
        }
#undef ENDS
    }
}
