/* The GPU network's structure (src/cuda/net.c), shared with the one-pixel
 * candidates' windows on the GPU (src/cuda/net_patch.c). */
#ifndef PASM_CUDA_NET_INTERNAL_H
#define PASM_CUDA_NET_INTERNAL_H

#include "cuda/cuda_backend.h"
#include "cuda/cuda_net.h"

typedef struct {
    pasm_conv2d_shape shape;
    pasm_cuda_conv *plan;
    int64_t w_off; /* the weight's offset in the parameter block */
    void *w_packed, *out; /* out: from the training plan, else the shared conv_tmp */
    size_t ws_need;       /* the cuDNN workspace its algorithms at the largest batch need */
    /* The workspace of its forward and of its backward, ws_bytes each: a
     * training network's places in the arena, alive for those ops alone
     * (the stem's backward one also while its output is computed again),
     * ws_need; else both the network's one workspace. */
    void *ws_fwd, *ws_bwd;
    size_t ws_bytes;
} gconv;

typedef struct {
    int c;
    int64_t hw;    /* rows an image: H*W */
    int64_t m_max; /* rows (N*H*W) at the largest batch */
    int64_t gamma_off, beta_off, mean_off, var_off;
    float *save_mean, *save_invstd, *scale, *shift;
    void *out;
    int own_out; /* out is this layer's alone (input-gradient networks) */
} gbn;

/* The gradient buffers of a block's backward: of the bn2 input (a), the
 * conv2 input (b), the bn1 input (a2), the block's input (din: a block
 * with a shortcut convolution; else dout takes it) and the shortcut's BN
 * input (a3). */
typedef struct {
    void *a, *b, *a2, *din, *a3;
} gbwd;

typedef struct {
    gconv conv1, conv2, down;
    gbn bn1, bn2, down_bn;
    int has_down;
    const void *in;
    gbwd grads; /* a training network's, from its plan */
} gblock;

struct pasm_cuda_net {
    pasm_cuda_ctx *ctx;
    pasm_cuda_dtype t;
    size_t esize;
    float *param, *grad, *buffer, *momentum;
    float *x_nchw;  /* the host input, as sent */
    void *x_in;     /* ... in NHWC of t */
    void *dx_in;    /* the input gradient in NHWC of t */
    float *dx_nchw; /* ... and as the host wants it */
    gconv stem;
    gbn stem_bn;
    gblock blocks[8];
    float *pooled, *dpooled, *logits, *dlogits;
    void *scratch[3]; /* an input-gradient network's gradient flow */
    /* A training network's activations and gradients share one arena
     * (plan_training): each tensor has its place for its lifetime in the
     * step, and a backward consumes the forward's activations. NULL: no
     * plan (an evaluation or input-gradient network). */
    void *arena;
    void *d_pool, *d_stem; /* the gradients of the last block's output and the stem BN's input */
    void *stem_again;      /* the stem's output, computed again for its BN's backward */
    /* PASM_CUDA_PLAN_CHECK=1 on the emulation (tests): the plan's tensors
     * each apart, and kept poisoned outside their lifetimes (net.c) */
    struct plan_check *check;
    void *dw_packed; /* one weight gradient at a time, before unpacking */
    /* The evaluation modes keep less: every convolution writes conv_tmp
     * (its BN reads it at once); PASM_NET_EVAL's BN outputs take turns in
     * three slots (EVAL_GRAD keeps them: its backward needs the ReLUs). */
    void *conv_tmp, *slots[3];
    float *staging; /* the last block's output as fp32 NCHW, for class maps */
    void *ws; /* an evaluation network's convolution workspace (a training one's: none) */
    size_t ws_bytes;
    double *partial;
    float *coef;
    int64_t in_count; /* C*S*S */
    int last_n, last_train, have_forward;
    int consumed; /* a planned backward has run since the last forward */
    int packed; /* w_packed holds the current parameters (cleared by push and SGD) */
    size_t bytes; /* GPU memory it holds */
};

/* out = relu?(bn(x) + residual) over rows NHWC rows, in b's evaluation map
 * (running statistics), as the evaluation forward applies it. */
pasm_status pasm_cuda_net_bn_eval(pasm_cuda_net *g, gbn *b, int64_t rows, const void *x,
                                  const void *residual, int relu, void *out);
/* Every convolution's weights packed to KRSC in the compute type, unless
 * they are already (g->packed). */
pasm_status pasm_cuda_net_packed(pasm_cuda_net *g);

#endif
