/* pasm nn: the network description (layers with named parameters) and the
 * ResNet-18 builder. A network plans every parameter, gradient, activation
 * and workspace buffer for its largest batch when it is built, for what it
 * will be used for (its mode); forward and backward allocate nothing. Tensor
 * names are torchvision's state_dict keys. */
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
    /* How the convolutions multiply (pasm/ops.h): fp32 (0, the default) or
     * bf16. A compute choice, not part of the model: checkpoints do not
     * store it and configs that differ only in it describe the same model. */
    int precision;
    /* Where it computes (pasm_device, pasm/core.h): the CPU (0, the default)
     * or the GPU. Like precision, a compute choice, not part of the model.
     * A GPU network keeps its state on the GPU; everything here still takes
     * and returns host memory, and the accessors below copy what they hand
     * out (so read and write through them, not through pointers kept from
     * before a forward or an optimiser step). */
    int device;
} pasm_net_config;

typedef struct pasm_net pasm_net;

/* What a network is built for; it decides what memory is planned.
 * PASM_NET_TRAIN: training and everything else: parameter gradients, every
 *   activation training's backward needs, backward buffers.
 * PASM_NET_EVAL: evaluation forwards only (inference, evaluation, the de
 *   attack, a distillation teacher). Layer outputs take turns in three
 *   buffers, there are no gradients; a training forward and any backward
 *   fail with PASM_ERR_INVALID.
 * PASM_NET_EVAL_GRAD: evaluation forwards and the input gradient of the
 *   frozen network (the grad and iter attacks): as EVAL, plus one bit per
 *   ReLU output for the backward, which runs in the forward's buffers. No
 *   parameter gradients; a training forward fails with PASM_ERR_INVALID.
 * Every mode holds the full state_dict, so checkpoints, pasm_net_init and
 * pasm_net_copy_state work across modes. The logits of an evaluation
 * forward do not depend on the mode. */
typedef enum { PASM_NET_TRAIN = 0, PASM_NET_EVAL = 1, PASM_NET_EVAL_GRAD = 2 } pasm_net_mode;

/* Checks a config, with a message naming the bad field. */
pasm_status pasm_net_config_check(const pasm_net_config *cfg);
/* Builds the network with memory for batches of up to max_batch images, in
 * PASM_NET_TRAIN mode. Weights are zero until pasm_net_init or a checkpoint
 * load. */
pasm_status pasm_net_create(pasm_net **out, const pasm_net_config *cfg, int max_batch);
/* The same in the given mode (PASM_ERR_INVALID for an unknown one). */
pasm_status pasm_net_create_mode(pasm_net **out, const pasm_net_config *cfg, int max_batch,
                                 pasm_net_mode mode);
void pasm_net_free(pasm_net *net);
const pasm_net_config *pasm_net_get_config(const pasm_net *net);
int pasm_net_max_batch(const pasm_net *net);
pasm_net_mode pasm_net_get_mode(const pasm_net *net);
/* "train", "eval" or "eval-grad". */
const char *pasm_net_mode_name(pasm_net_mode mode);
/* Bytes of everything the network planned for its mode (params, grads,
 * activations, masks, workspace), on the host and, for a GPU network, on
 * the GPU. */
size_t pasm_net_memory_bytes(const pasm_net *net);
/* What pasm_net_memory_bytes would say of a network built with these
 * arguments, without building it (to check a plan fits before allocating). */
pasm_status pasm_net_planned_bytes(const pasm_net_config *cfg, int max_batch, pasm_net_mode mode,
                                   size_t *bytes);

/* torchvision's initialisation: conv kaiming_normal_(fan_out, relu), BN weight
 * 1 bias 0, fc uniform(+-1/sqrt(in)) for weight and bias. Seeded. */
void pasm_net_init(pasm_net *net, uint64_t seed);

/* The state_dict: every tensor in torchvision's order (parameters and
 * buffers: running_mean, running_var, num_batches_tracked as I64). */
int pasm_net_n_state(const pasm_net *net);
pasm_tensor *pasm_net_state(pasm_net *net, int i);
pasm_tensor *pasm_net_find(pasm_net *net, const char *name);

/* Trainable parameters and their gradients, in state_dict order, each a view
 * into one contiguous block (so an optimiser can run over the flat block).
 * Only a PASM_NET_TRAIN network has gradients: in the evaluation modes
 * pasm_net_grad's tensors have data NULL and pasm_net_grad_block is NULL. */
int pasm_net_n_params(const pasm_net *net);
pasm_tensor *pasm_net_param(pasm_net *net, int i);
pasm_tensor *pasm_net_grad(pasm_net *net, int i);
float *pasm_net_param_block(pasm_net *net, int64_t *count);
float *pasm_net_grad_block(pasm_net *net, int64_t *count);

/* Forward over x (n, C, S, S) normalised float input, n <= max_batch.
 * train != 0: batch statistics, running statistics updated (PASM_NET_TRAIN
 * only). Activations are kept for backward; x itself is not copied, so it
 * must stay unchanged until pasm_net_backward. train == 0: running
 * statistics, with batch norm, the residual sums and ReLUs fused into the
 * convolutions (from the current weights and statistics at every call, so
 * writes through pasm_net_state / pasm_net_param need no notice). Returns a
 * pointer to the logits (n, num_classes), valid until the next forward. */
pasm_status pasm_net_forward(pasm_net *net, const float *x, int n, int train,
                             const float **logits);
/* Backward from dlogits (n, num_classes) of the last forward.
 * After a training forward: fills every parameter gradient (overwriting) and,
 * when dx is not NULL, the input gradient (n, C, S, S).
 * After an evaluation forward (a frozen network, as the attacks use it): BN
 * statistics are constants, parameter gradients are NOT computed (they are
 * left as they were) and only dx is filled. PASM_NET_EVAL networks have no
 * backward (PASM_ERR_INVALID). */
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

/* One-pixel candidates of bound faces, evaluated without the whole forward
 * (src/nn/patch.c): a candidate differs from its face in one pixel, and
 * until a layer's receptive field covers the whole map, only a window
 * around that pixel differs from the face's own activations. Those are
 * computed once per face, each candidate's layers only on its window; from
 * the first layer whose window is the whole map on, the candidates run as
 * usual. Logits agree with pasm_net_forward's to float rounding (not bit
 * for bit: the windows sum in another order). Runs on the network's
 * evaluation forward (any mode) and uses its activation buffers, so it
 * replaces the last forward (a backward after it fails).
 *
 * pasm_net_patch_create: *out NULL (and PASM_OK) where windows do not
 * apply: a GPU or bf16 network, or a map the first stage already covers.
 * budget_bytes bounds its buffers (faces and candidates per group).
 * pasm_net_patch_cost: the multiply-adds of one candidate, and of one
 * face's clean activations (clean_cost, may be NULL), as fractions of a
 * whole forward's.
 * pasm_net_patch_bind: the faces x (n, C, S, S), normalised as for
 * pasm_net_forward, that candidates refer to; kept by pointer (unchanged
 * until the next bind); NULL, 0 lets them go.
 * pasm_net_patch_forward: logits (m, num_classes) of candidate j = face
 * img[j] with pixel (row[j], col[j]) set to values[j * C ..] (normalised),
 * any m, in any order (consecutive candidates of one face share its clean
 * activations). */
typedef struct pasm_net_patch pasm_net_patch;
pasm_status pasm_net_patch_create(pasm_net *net, size_t budget_bytes, pasm_net_patch **out);
double pasm_net_patch_cost(const pasm_net_patch *p, double *clean_cost);
pasm_status pasm_net_patch_bind(pasm_net_patch *p, const float *x, int n);
pasm_status pasm_net_patch_forward(pasm_net_patch *p, int m, const int *img, const int *row,
                                   const int *col, const float *values, float *logits);
void pasm_net_patch_free(pasm_net_patch *p);

/* Copies all state tensors from src to dst (same config; any modes and
 * devices). */
pasm_status pasm_net_copy_state(pasm_net *dst, pasm_net *src);

/* One SGD step (pasm_sgd_step's arithmetic) on a GPU network's parameters,
 * where they live; for optimisers (src/train/sgd.c). host_momentum is the
 * optimiser's buffer (NULL without momentum): *momentum_on_device says
 * whether the device holds it (0: upload it first, as after a resume).
 * PASM_ERR_INVALID for a CPU network. */
pasm_status pasm_net_sgd_step_device(pasm_net *net, float lr, float weight_decay, float momentum,
                                     float dampening, int nesterov, int first,
                                     float *host_momentum, int *momentum_on_device);
/* Copies a GPU optimiser's momentum into host_momentum (before saving it). */
pasm_status pasm_net_momentum_to_host(pasm_net *net, float *host_momentum);

#ifdef __cplusplus
}
#endif
#endif
