/* The CUDA backend's C interface (internal): a context (one stream, one
 * cuDNN handle), device memory, cuDNN convolutions and the backend's own
 * kernels, all over device pointers. Activations are NHWC (channels last,
 * the layout cuDNN's tensor-core kernels want) in fp32 or bf16; weights and
 * their gradients, batch-norm parameters and statistics, the optimiser and
 * the loss stay fp32 (mixed precision as PyTorch's autocast: bf16 operands,
 * fp32 sums).
 *
 * Every launcher queues work on the context's stream and returns at once;
 * launch errors come back from the call, errors inside kernels from the next
 * pasm_cuda_sync. Reductions (batch norm, pooling, the linear layer's
 * gradients) run in a fixed order: results are bit-identical run to run.
 *
 * The kernels' bodies are __host__ __device__ functions: with
 * pasm_cuda_emulate(1) every launcher runs them on the host over host
 * pointers (ctx may be NULL), so the tests check their arithmetic and
 * indexing against the CPU ops on machines without a GPU. */
#ifndef PASM_CUDA_BACKEND_H
#define PASM_CUDA_BACKEND_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "pasm/core.h"
#include "pasm/data.h"
#include "pasm/ops.h"

#ifdef __cplusplus
extern "C" {
#endif

/* PASM_OK and, in buf (may be NULL), "cuda: NAME, N GiB, compute X.Y,
 * driver A.B" when a GPU answers; PASM_ERR_UNSUPPORTED with the reason
 * otherwise. */
pasm_status pasm_cuda_probe(char *buf, size_t len);

/* A time profile by operation (PASM_CUDA_PROFILE=1, or on = 1 here): each
 * launch and copy is timed on the GPU by events recorded around it on the
 * stream and adds its time to the bucket of its name (cuDNN's convolutions
 * by direction and shape). No graphs meanwhile: an op's time also holds any
 * wait of the GPU for its launch. For finding where a step's time goes.
 * report prints "# bucket  calls  ms" lines, sorted by time, and returns the
 * total ms; reset empties the buckets. */
void pasm_cuda_profile(int on);
double pasm_cuda_profile_report(FILE *f, double steps);
void pasm_cuda_profile_reset(void);

/* Host emulation of the kernels (tests): 1 on, 0 off. */
void pasm_cuda_emulate(int on);
int pasm_cuda_emulating(void);
/* 1 while the emulation records a graph (pasm_cuda_graph_begin .. _end). */
int pasm_cuda_recording(void);
/* The element loops of batch norm and the ReLU's backward take sixteen
 * bytes an index (8 bf16 or 4 floats) where the channels and pointers allow,
 * with the same arithmetic per element as one at a time: 1 (the default),
 * or 0 (PASM_CUDA_VECTOR=0, read once; or here, for the tests). */
int pasm_cuda_vectors_on(void);
void pasm_cuda_set_vectors(int on);
/* How many element loops have run on vectors in this process (tests). */
uint64_t pasm_cuda_vector_loops(void);

/* The context: one per process, shared by every caller (reference
 * counted; each create is matched by a free). All work runs in order on its
 * one stream. */
typedef struct pasm_cuda_ctx pasm_cuda_ctx;
pasm_status pasm_cuda_ctx_create(pasm_cuda_ctx **out);
void pasm_cuda_ctx_free(pasm_cuda_ctx *ctx);
/* Waits for the stream; an error inside a kernel is reported naming what. */
pasm_status pasm_cuda_sync(pasm_cuda_ctx *ctx, const char *what);

/* Device memory, zeroed. Peak: the most bytes this process held at once
 * through pasm_cuda_alloc (the network's and the convolutions' memory). */
pasm_status pasm_cuda_alloc(void **p, size_t bytes, const char *what);
void pasm_cuda_free(void *p);
size_t pasm_cuda_bytes_now(void);
size_t pasm_cuda_bytes_peak(void);
/* Host <-> device copies on the stream; to_host waits for them. */
pasm_status pasm_cuda_to_device(pasm_cuda_ctx *ctx, void *dst, const void *src, size_t bytes);
pasm_status pasm_cuda_to_host(pasm_cuda_ctx *ctx, void *dst, const void *src, size_t bytes);
/* Device to device, queued (no wait). */
pasm_status pasm_cuda_copy(pasm_cuda_ctx *ctx, void *dst, const void *src, size_t bytes);

typedef enum { PASM_CUDA_F32 = 0, PASM_CUDA_BF16 = 1 } pasm_cuda_dtype;
size_t pasm_cuda_dtype_size(pasm_cuda_dtype t);

/* ---- convolutions (cuDNN): x (N,H,W,Cin), w (Cout,K,K,Cin), y (N,Ho,Wo,Cout),
 * all of dtype t, fp32 accumulation. s->n is the largest batch. bf16 runs on
 * tensor cores, fp32 on plain FMA (never TF32): a direction cuDNN has no
 * such kernel for runs on the backend's own direct kernels (fp32) or cuDNN's
 * default math (bf16), or a bf16 one without an algorithm within the
 * workspace given, said once on stderr. PASM_CUDA_CONV_DIRECT=1 puts
 * every direction of the plans made then on the direct kernels (a list of
 * forward, data, filter: those); PASM_CUDA_CONV_FIND=1 (or a list) ranks
 * algorithms by cuDNN's measured times (cudnnFind*) instead of its
 * heuristics; PASM_CUDA_CONV_LOG=1 prints each choice. ---- */
typedef struct pasm_cuda_conv pasm_cuda_conv;
/* The directions a plan runs (cuDNN is asked for algorithms of these only;
 * calling another is PASM_ERR_INVALID). 0 means all. */
enum { PASM_CUDA_CONV_FORWARD = 1, PASM_CUDA_CONV_DATA = 2, PASM_CUDA_CONV_FILTER = 4,
       PASM_CUDA_CONV_ALL = 7 };
pasm_status pasm_cuda_conv_create(pasm_cuda_ctx *ctx, const pasm_conv2d_shape *s,
                                  pasm_cuda_dtype t, unsigned needs, pasm_cuda_conv **out);
void pasm_cuda_conv_free(pasm_cuda_conv *c);
/* Workspace bytes the algorithms chosen for the largest batch need. */
size_t pasm_cuda_conv_workspace(const pasm_cuda_conv *c);
pasm_status pasm_cuda_conv_forward(pasm_cuda_conv *c, int n, const void *x, const void *w,
                                   void *y, void *ws, size_t ws_bytes);
/* dx = the input gradient, or with add, dx += it (one rounding to dx's
 * type after the sum, as cuDNN's beta = 1). */
pasm_status pasm_cuda_conv_backward_data(pasm_cuda_conv *c, int n, const void *dy,
                                         const void *w, void *dx, int add, void *ws,
                                         size_t ws_bytes);
pasm_status pasm_cuda_conv_backward_filter(pasm_cuda_conv *c, int n, const void *x,
                                           const void *dy, void *dw, void *ws, size_t ws_bytes);

/* ---- layouts ---- */
/* fp32 (N,C,HW) -> t (N,HW,C), and back. */
pasm_status pasm_cuda_nchw_to_nhwc(pasm_cuda_ctx *ctx, int n, int c, int hw, const float *x,
                                   void *y, pasm_cuda_dtype t);
pasm_status pasm_cuda_nhwc_to_nchw(pasm_cuda_ctx *ctx, int n, int c, int hw, const void *x,
                                   pasm_cuda_dtype t, float *y);
/* fp32 weights (K,C,RS) -> t (K,RS,C); a t gradient (K,RS,C) -> fp32 (K,C,RS). */
pasm_status pasm_cuda_pack_weight(pasm_cuda_ctx *ctx, int k, int c, int rs, const float *w,
                                  void *out, pasm_cuda_dtype t);
pasm_status pasm_cuda_unpack_weight(pasm_cuda_ctx *ctx, int k, int c, int rs, const void *dw,
                                    pasm_cuda_dtype t, float *out);
/* Several weights packed as pasm_cuda_pack_weight packs each, in one launch
 * (a network's, every training step). At most PASM_CUDA_PACK_MAX. */
enum { PASM_CUDA_PACK_MAX = 32 };
typedef struct {
    const float *w; /* (K,C,RS) fp32 */
    void *out;      /* (K,RS,C) of t */
    int k, c, rs;
} pasm_cuda_pack_job;
pasm_status pasm_cuda_pack_weights(pasm_cuda_ctx *ctx, int n, const pasm_cuda_pack_job *jobs,
                                   pasm_cuda_dtype t);

/* ---- batch normalisation over NHWC: m = N*H*W rows of c channels ----
 * Sums in double in chunks of rows, chunks added in a fixed order: the
 * statistics in one pass (shifted by each channel's first-row value), the
 * CPU's (src/ops/batchnorm.c) two-pass variance up to double rounding.
 * partial: scratch of pasm_cuda_bn_partial_doubles(m, c) doubles. */
size_t pasm_cuda_bn_partial_doubles(int64_t m, int c);
/* Training statistics: save_mean, save_invstd, the running estimates
 * (momentum, unbiased variance) and the affine map scale/shift that
 * pasm_cuda_affine applies. gamma/beta may be NULL (1 and 0). */
pasm_status pasm_cuda_bn_stats(pasm_cuda_ctx *ctx, int64_t m, int c, const void *x,
                               pasm_cuda_dtype t, float eps, float momentum, const float *gamma,
                               const float *beta, float *running_mean, float *running_var,
                               float *save_mean, float *save_invstd, float *scale, float *shift,
                               double *partial);
/* Evaluation: scale/shift from the running estimates (pasm_batchnorm_fold). */
pasm_status pasm_cuda_bn_fold(pasm_cuda_ctx *ctx, int c, float eps, const float *gamma,
                              const float *beta, const float *running_mean,
                              const float *running_var, float *scale, float *shift);
/* y = relu?(x * scale[ch] + shift[ch] + residual); shift and residual may
 * be NULL; y may equal x. */
pasm_status pasm_cuda_affine(pasm_cuda_ctx *ctx, int64_t m, int c, const void *x,
                             const float *scale, const float *shift, const void *residual,
                             int relu, void *y, pasm_cuda_dtype t);
/* Backward through the batch statistics: dgamma, dbeta (may be NULL) and
 * dx (may be NULL). relu_y (may be NULL): the output of a ReLU after the
 * BN, whose backward is taken on the way (dy counts where relu_y > 0);
 * mask_dy: dy is also left as that backward leaves it (zero where relu_y
 * is not above zero), for others that read it (a block's shortcut).
 * coef: scratch of 4*c floats. */
pasm_status pasm_cuda_bn_backward(pasm_cuda_ctx *ctx, int64_t m, int c, const void *x,
                                  void *dy, const void *relu_y, int mask_dy, pasm_cuda_dtype t,
                                  const float *gamma, const float *save_mean,
                                  const float *save_invstd, void *dx, float *dgamma, float *dbeta,
                                  double *partial, float *coef);

/* ---- elementwise over count values of dtype t ---- */
pasm_status pasm_cuda_relu_backward(pasm_cuda_ctx *ctx, int64_t count, const void *y, void *d,
                                    pasm_cuda_dtype t); /* d *= (y > 0) */

/* ---- global average pooling: x (N,HW,C) of t -> y (N,C) fp32, and back ---- */
pasm_status pasm_cuda_avgpool_forward(pasm_cuda_ctx *ctx, int n, int c, int hw, const void *x,
                                      pasm_cuda_dtype t, float *y);
pasm_status pasm_cuda_avgpool_backward(pasm_cuda_ctx *ctx, int n, int c, int hw,
                                       const float *dy, void *dx, pasm_cuda_dtype t);

/* ---- linear (fp32): x (N,In), w (Out,In), b (Out) -> y (N,Out) ---- */
pasm_status pasm_cuda_linear_forward(pasm_cuda_ctx *ctx, int n, int in, int out, const float *x,
                                     const float *w, const float *b, float *y);
/* dx, dw, db may each be NULL. */
pasm_status pasm_cuda_linear_backward(pasm_cuda_ctx *ctx, int n, int in, int out,
                                      const float *x, const float *w, const float *dy, float *dx,
                                      float *dw, float *db);

/* ---- a training step's position, in device memory ----
 * Kernels that take a step read what changes from step to step here (the
 * batch's place in the epoch, the learning rate and momentum), so that a
 * step's launches are the same every step and can be replayed as a graph. */
typedef struct {
    int32_t b;      /* the step's batch within the epoch */
    int32_t start;  /* its first position in the epoch's order: b * batch */
    float lr;       /* the schedule's learning rate and momentum for it */
    float momentum;
} pasm_cuda_step;
/* step = {b, b * batch, lrs[b], moms[b]} for b = *next, and *next = b + 1. */
pasm_status pasm_cuda_step_begin(pasm_cuda_ctx *ctx, int32_t *next, int batch, const float *lrs,
                                 const float *moms, pasm_cuda_step *step);

/* ---- SGD (pasm_sgd_step's arithmetic) over count parameters; with step
 * (device), its lr and momentum instead of the arguments ---- */
pasm_status pasm_cuda_sgd(pasm_cuda_ctx *ctx, int64_t count, float *params, const float *grads,
                          float *momentum_buffer, float lr, float weight_decay, float momentum,
                          float dampening, int nesterov, int first, const pasm_cuda_step *step);

/* ---- graphs: a stream's work captured once and replayed ----
 * begin: PASM_ERR_UNSUPPORTED when PASM_CUDA_GRAPHS=0 or when profiling.
 * end: the captured work as a graph ready to launch (an error, e.g. a call
 * that cannot be captured, leaves nothing; the captured work did not run).
 * launch: runs it on ctx's stream. The emulation records its work between
 * begin and end and runs the records at a launch, refusing (as a capture
 * does) copies, waits and allocations in between. */
typedef struct pasm_cuda_graph pasm_cuda_graph;
pasm_status pasm_cuda_graph_begin(pasm_cuda_ctx *ctx);
pasm_status pasm_cuda_graph_end(pasm_cuda_ctx *ctx, pasm_cuda_graph **out);
pasm_status pasm_cuda_graph_launch(pasm_cuda_ctx *ctx, pasm_cuda_graph *g);
void pasm_cuda_graph_free(pasm_cuda_graph *g);

/* ---- a training step's data and loss (step.cu) ---- */
/* x (n, C, S, S) fp32 and labels_out (n): sample i is image order[i] of
 * images (uint8, (N, C, S, S)) with label labels[order[i]], each pixel
 * normalised through table (C rows of 256: the host's pasm_batch_make
 * values) and augmented by plans[i] (pasm_augment_batch's result). With
 * step (device), order and plans are read from position step->start.
 * order NULL: sample i is image i; labels_out NULL: no labels (labels
 * unread). */
pasm_status pasm_cuda_batch(pasm_cuda_ctx *ctx, int n, int c, int s, const uint8_t *images,
                            const int32_t *labels, const int32_t *order,
                            const pasm_augment_plan *plans, const float *table, float *x,
                            int32_t *labels_out, const pasm_cuda_step *step);
/* The training loss of src/train/trainer.c: pasm_cross_entropy (smoothing,
 * class_weights may be NULL), mixed with pasm_distill_loss by kd_alpha when
 * teacher (its logits, (n, K)) is given. dlogits gets the gradient; *loss
 * (NaN for a label outside 0..K-1) and *correct (argmax hits) are device
 * scalars (with step, loss[step->b] and correct[step->b]). terms: scratch
 * of pasm_cuda_loss_terms_doubles(n, k). */
size_t pasm_cuda_loss_terms_doubles(int n, int k);
pasm_status pasm_cuda_train_loss(pasm_cuda_ctx *ctx, int n, int k, const float *logits,
                                 const int32_t *labels, float smoothing,
                                 const float *class_weights, const float *teacher, float kd_alpha,
                                 float kd_temp, float *dlogits, double *terms, double *loss,
                                 int32_t *correct, const pasm_cuda_step *step);

/* ---- the point attacks' batches (attack.cu) ---- */
/* One candidate of a one-pixel attack: image img with pixel (row, col) set
 * to value[0..C-1]. */
typedef struct {
    int32_t img, row, col;
    uint8_t value[4];
} pasm_cuda_pixel;
/* x (n, C, S, S) fp32: candidate j is items[j] applied to images (uint8,
 * (N, C, S, S)), every pixel normalised through table (as pasm_cuda_batch). */
pasm_status pasm_cuda_pixel_batch(pasm_cuda_ctx *ctx, int n, int c, int s, const uint8_t *images,
                                  const pasm_cuda_pixel *items, const float *table, float *x);
/* The windows of one-pixel candidates (src/cuda/net_patch.c). A tensor of
 * side h and c channels (NHWC, dtype t) is a face's clean activations
 * (clean, (F, h, h, c)), overlaid for each candidate j by its window
 * (win, (g, w, w, c)) at the origin meta[j * ms + 1 + 2 * src] (row) and
 * the next int (column); meta[j * ms] is j's face in clean. out (g, hc, hc,
 * c): candidate j's tensor from row y0 = oy * stride - pad and column x0 =
 * ox * stride - pad, (oy, ox) the origin of window dst (0, 0 when dst < 0),
 * zero outside the map. */
pasm_status pasm_cuda_patch_gather(pasm_cuda_ctx *ctx, int g, int c, int h, int w,
                                   const void *clean, const void *win, const int32_t *meta,
                                   int ms, int src, int dst, int stride, int pad, int hc,
                                   void *out, pasm_cuda_dtype t);
/* Per-channel factors (up to 3), passed by value. */
typedef struct {
    float v[3];
} pasm_cuda_scale3;
/* For each of n images, from dx (n, C, S, S) (the gradient w.r.t. the
 * normalised input): the pixel with the largest sum over channels of
 * |dx * scale[ch]| among those not marked in skip ((n, S*S), may be NULL),
 * ties to the first, -1 when every pixel is marked; values (n, C): 255
 * where dx * scale at that pixel is > 0, else 0. Each image's pixels are
 * shared by PASM_CUDA_SALIENT_LANES threads, their picks merged in a second
 * pass; scratch: pasm_cuda_salient_scratch_bytes(n). */
enum { PASM_CUDA_SALIENT_LANES = 64 };
size_t pasm_cuda_salient_scratch_bytes(int n);
pasm_status pasm_cuda_salient(pasm_cuda_ctx *ctx, int n, int c, int s, const float *dx,
                              pasm_cuda_scale3 scale, const uint8_t *skip, int32_t *pixel,
                              uint8_t *values, void *scratch);

#ifdef __cplusplus
}
#endif
#endif
