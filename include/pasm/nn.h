/* pasm nn: the network description (layers with named parameters) and the
 * ResNet-18 builder. A network plans every parameter, gradient, activation
 * and workspace buffer for its largest batch when it is built; forward and
 * backward allocate nothing. Tensor names are torchvision's state_dict keys. */
#ifndef PASM_NN_H
#define PASM_NN_H

#include "pasm/core.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    char arch[32];   /* "resnet18" */
    int width;       /* base width w: 16, 32 or 64 */
    int in_channels; /* 1 or 3 */
    int num_classes; /* >= 2 */
    int input_size;  /* >= 32, square inputs */
} pasm_net_config;

typedef struct pasm_net pasm_net;

/* Checks a config, with a message naming the bad field. */
pasm_status pasm_net_config_check(const pasm_net_config *cfg);
/* Builds the network with memory for batches of up to max_batch images.
 * Weights are zero until pasm_net_init or a checkpoint load. */
pasm_status pasm_net_create(pasm_net **out, const pasm_net_config *cfg, int max_batch);
void pasm_net_free(pasm_net *net);
const pasm_net_config *pasm_net_get_config(const pasm_net *net);
int pasm_net_max_batch(const pasm_net *net);
/* Bytes of everything the network planned (params, grads, activations, workspace). */
size_t pasm_net_memory_bytes(const pasm_net *net);

/* torchvision's initialisation: conv kaiming_normal_(fan_out, relu), BN weight
 * 1 bias 0, fc uniform(+-1/sqrt(in)) for weight and bias. Seeded. */
void pasm_net_init(pasm_net *net, uint64_t seed);

/* The state_dict: every tensor in torchvision's order (parameters and
 * buffers: running_mean, running_var, num_batches_tracked as I64). */
int pasm_net_n_state(const pasm_net *net);
pasm_tensor *pasm_net_state(pasm_net *net, int i);
pasm_tensor *pasm_net_find(pasm_net *net, const char *name);

/* Trainable parameters and their gradients, in state_dict order, each a view
 * into one contiguous block (so an optimiser can run over the flat block). */
int pasm_net_n_params(const pasm_net *net);
pasm_tensor *pasm_net_param(pasm_net *net, int i);
pasm_tensor *pasm_net_grad(pasm_net *net, int i);
float *pasm_net_param_block(pasm_net *net, int64_t *count);
float *pasm_net_grad_block(pasm_net *net, int64_t *count);

/* Forward over x (n, C, S, S) normalised float input, n <= max_batch.
 * train != 0: batch statistics, running statistics updated. Activations are
 * kept for backward; x itself is not copied, so it must stay unchanged until
 * pasm_net_backward. Returns a pointer to the logits (n, num_classes), valid
 * until the next forward. */
pasm_status pasm_net_forward(pasm_net *net, const float *x, int n, int train,
                             const float **logits);
/* Backward from dlogits (n, num_classes) of the last forward.
 * After a training forward: fills every parameter gradient (overwriting) and,
 * when dx is not NULL, the input gradient (n, C, S, S).
 * After an evaluation forward (a frozen network, as the attacks use it): BN
 * statistics are constants, parameter gradients are NOT computed (they are
 * left as they were) and only dx is filled. */
pasm_status pasm_net_backward(pasm_net *net, const float *dlogits, float *dx);

/* Grad-CAM of the last forward (Selvaraju et al.) at the last block's
 * resolution, before its ReLU: maps (n, size, size) with size =
 * *map_size, map_i = sum_k alpha_k A_k where A is the last block's output
 * (the global average pool's input) of image i and alpha_k = d logit_c /
 * d mean(A_k) / (size * size) = fc.weight[c, k] / (size * size) for class
 * classes[i] — exact for this architecture, whose head is pool + linear.
 * The map sums to logit_c - fc.bias[c]. n is the last forward's batch. */
pasm_status pasm_net_class_map(const pasm_net *net, const int32_t *classes, float *maps,
                               int *map_size);
int pasm_net_class_map_size(const pasm_net *net);

/* Copies all state tensors from src to dst (same config). */
pasm_status pasm_net_copy_state(pasm_net *dst, const pasm_net *src);

#ifdef __cplusplus
}
#endif
#endif
