/* pasm ops: plain forward and backward functions over NCHW float32.
 *
 * Conventions (all ops):
 * - Backward functions OVERWRITE their output gradients (dx, dweight, dbias);
 *   a caller that needs a sum (residual branches) adds explicitly.
 * - Any gradient pointer may be NULL when it is not wanted (e.g. dx of the
 *   first layer when the input gradient is not needed).
 * - Reductions run in a fixed order for a given thread count, so results are
 *   bit-identical run to run.
 * - Ops never allocate: scratch memory comes from a workspace whose size the
 *   matching *_workspace_size function gives.
 */
#ifndef PASM_OPS_H
#define PASM_OPS_H

#include "pasm/core.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- 2-D convolution (no groups, no dilation) ---- */
/* How a convolution multiplies: fp32 throughout, or bf16 operands (the
 * input, weights and gradients rounded to bfloat16 as they are packed) with
 * fp32 products and sums, like PyTorch's bf16 autocast. Everything outside
 * the convolutions, and the weights themselves, stay fp32. */
typedef enum { PASM_PRECISION_FP32 = 0, PASM_PRECISION_BF16 = 1 } pasm_precision;
/* "fp32" / "bf16" -> *out; PASM_ERR_INVALID naming the text otherwise. */
pasm_status pasm_precision_parse(const char *text, pasm_precision *out);
const char *pasm_precision_name(pasm_precision p);
/* How bf16 convolutions run here: on AMX tiles (1), as AVX512-BF16 dot
 * products (2), or emulated exactly but slowly with fp32 sgemm (0). */
int pasm_precision_bf16_native(void);

typedef struct {
    int n;              /* batch */
    int c_in, h_in, w_in;
    int c_out;
    int kernel;         /* square kernel K */
    int stride, pad;    /* S, P (zero padding) */
    int h_out, w_out;   /* filled by pasm_conv2d_shape */
    pasm_precision precision; /* PASM_PRECISION_FP32 (0) unless set */
} pasm_conv2d_shape;

/* Fills h_out/w_out; PASM_ERR_SHAPE when the output would be empty. */
pasm_status pasm_conv2d_shape_init(pasm_conv2d_shape *s);
/* Bytes of scratch both forward and backward need for this shape, planned
 * for the current thread count (pasm_set_threads; the count must not grow
 * before the calls that use it). It never shrinks as s->n grows, so a
 * workspace planned for a batch serves every smaller one. */
size_t pasm_conv2d_workspace_size(const pasm_conv2d_shape *s);
/* Less, for a caller that never asks for the weight gradient: the forward
 * alone (input_grad 0), or the forward and backward with dweight NULL
 * (input_grad 1). */
size_t pasm_conv2d_workspace_size_eval(const pasm_conv2d_shape *s, int input_grad);
/* x (N,Cin,H,W), weight (Cout,Cin,K,K), bias (Cout) or NULL -> y (N,Cout,Ho,Wo). */
void pasm_conv2d_forward(const pasm_conv2d_shape *s, const float *x, const float *weight,
                         const float *bias, float *y, void *workspace);
/* What an evaluation-mode forward does right after a convolution, applied
 * as each output is stored (one pass over y instead of three): per output
 * channel co,
 *   y = relu?(conv(x, weight)[co] * scale[co] + shift[co] + residual)
 * i.e. conv -> batch norm with running statistics (scale and shift from
 * pasm_batchnorm_fold) -> residual sum -> ReLU. scale NULL means 1, shift
 * NULL 0 (a shift alone is a conv bias), residual NULL nothing to add. */
typedef struct {
    const float *scale, *shift; /* (Cout) each */
    const float *residual;      /* (N,Cout,Ho,Wo); must not overlap y */
    int relu;                   /* max(0, .) last */
} pasm_conv2d_epilogue;
/* pasm_conv2d_forward with the epilogue fused in; ep NULL: no epilogue. */
void pasm_conv2d_forward_fused(const pasm_conv2d_shape *s, const float *x, const float *weight,
                               const pasm_conv2d_epilogue *ep, float *y, void *workspace);
/* dy (N,Cout,Ho,Wo) -> dx (N,Cin,H,W), dweight (Cout,Cin,K,K), dbias (Cout). */
void pasm_conv2d_backward(const pasm_conv2d_shape *s, const float *x, const float *weight,
                          const float *dy, float *dx, float *dweight, float *dbias,
                          void *workspace);

/* ---- batch normalisation (2-D, per channel) ----
 * Training: normalise with batch statistics (biased variance), update
 * running_mean/var with momentum and the UNBIASED batch variance (PyTorch).
 * Evaluation: normalise with the running estimates.
 * save_mean / save_invstd (C) keep what backward needs. */
typedef struct {
    int n, c, h, w;
    float eps;      /* 1e-5 */
    float momentum; /* 0.1 */
} pasm_bn_shape;

void pasm_batchnorm_forward_train(const pasm_bn_shape *s, const float *x, const float *gamma,
                                  const float *beta, float *running_mean, float *running_var,
                                  float *y, float *save_mean, float *save_invstd);
/* The same with the layers that follow it fused into its output pass:
 * y = relu?(bn(x) + residual?) (residual: NULL or a tensor of y's NCHW
 * shape; relu 0: none), rounding as the separate ops (pasm_add_inplace,
 * pasm_relu_forward) do; residual must not overlap y. */
void pasm_batchnorm_forward_train_fused(const pasm_bn_shape *s, const float *x,
                                        const float *gamma, const float *beta,
                                        float *running_mean, float *running_var,
                                        const float *residual, int relu, float *y,
                                        float *save_mean, float *save_invstd);
void pasm_batchnorm_forward_eval(const pasm_bn_shape *s, const float *x, const float *gamma,
                                 const float *beta, const float *running_mean,
                                 const float *running_var, float *y);
/* Evaluation mode as a per-channel affine map y = x * scale + shift, with
 * the same numbers pasm_batchnorm_forward_eval uses: scale = gamma /
 * sqrt(running_var + eps), shift = beta - running_mean * scale (in double,
 * rounded once). s->c entries each; for pasm_conv2d_epilogue. */
void pasm_batchnorm_fold(const pasm_bn_shape *s, const float *gamma, const float *beta,
                         const float *running_mean, const float *running_var, float *scale,
                         float *shift);
/* Backward of training mode (batch statistics). */
void pasm_batchnorm_backward(const pasm_bn_shape *s, const float *x, const float *gamma,
                             const float *save_mean, const float *save_invstd, const float *dy,
                             float *dx, float *dgamma, float *dbeta);
/* Backward of evaluation mode (running statistics are constants): used by the
 * attacks, which differentiate a frozen network with respect to its input. */
void pasm_batchnorm_backward_eval(const pasm_bn_shape *s, const float *gamma,
                                  const float *running_var, const float *dy, float *dx);

/* ---- elementwise ---- */
void pasm_relu_forward(int64_t n, const float *x, float *y);  /* y may equal x */
/* dx = dy * (y > 0); y is the ReLU output; dx may equal dy. */
void pasm_relu_backward(int64_t n, const float *y, const float *dy, float *dx);
/* ReLU's backward needs only where y > 0: one bit per element, so an
 * evaluation-mode network keeps bits instead of activations for the input
 * gradient. mask has (n + 63) / 64 words; bit i % 64 of word i / 64 is y[i] > 0. */
void pasm_relu_mask(int64_t n, const float *y, uint64_t *mask);
/* dx = dy where the mask bit is set, else 0; dx may equal dy. */
void pasm_relu_backward_mask(int64_t n, const uint64_t *mask, const float *dy, float *dx);
void pasm_add_forward(int64_t n, const float *a, const float *b, float *y); /* y = a + b */
void pasm_add_inplace(int64_t n, float *y, const float *x);                 /* y += x */

/* ---- global average pooling: x (N,C,H,W) -> y (N,C) ---- */
void pasm_avgpool_forward(int n, int c, int h, int w, const float *x, float *y);
void pasm_avgpool_backward(int n, int c, int h, int w, const float *dy, float *dx);

/* ---- linear: x (N,In), weight (Out,In), bias (Out) -> y (N,Out) ---- */
void pasm_linear_forward(int n, int in, int out, const float *x, const float *weight,
                         const float *bias, float *y);
void pasm_linear_backward(int n, int in, int out, const float *x, const float *weight,
                          const float *dy, float *dx, float *dweight, float *dbias);

/* ---- losses over logits (N,K) ----
 * Cross-entropy with optional label smoothing eps (PyTorch semantics: target
 * = (1-eps)*onehot + eps/K) and optional per-class weights (NULL = none;
 * PyTorch's weighted mean: sum w_y*l / sum w_y).
 * Returns the mean loss; dlogits (N,K) = d(mean loss)/d logits, or NULL.
 * probs (N,K) receives the softmax, or NULL. */
double pasm_cross_entropy(int n, int k, const float *logits, const int32_t *labels,
                          float smoothing, const float *class_weights, float *dlogits,
                          float *probs);
/* Distillation: mean over the batch of t^2 * KL(softmax(teacher/t) || softmax(student/t)).
 * dstudent (N,K) = gradient of that mean w.r.t. student logits, or NULL. */
double pasm_distill_loss(int n, int k, const float *student, const float *teacher, float t,
                         float *dstudent);
/* Row-wise softmax, y may equal x. */
void pasm_softmax(int n, int k, const float *x, float *y);

#ifdef __cplusplus
}
#endif
#endif
