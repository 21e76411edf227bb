/* Convolutions through cuDNN: NHWC activations and KRSC filters of fp32 or
 * bf16, fp32 accumulation. bf16 runs on tensor cores; fp32 is kept off them
 * (no TF32), so --precision fp32 on the GPU computes what the CPU computes
 * up to summation order. Algorithms come from cuDNN's heuristics, the
 * first deterministic one whose workspace fits, chosen once per batch size
 * (the largest when created, again when a smaller batch comes). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda/cuda_internal.cuh"

/* Algorithms chosen for one batch size, with the math type cuDNN reported
 * for each (set on the descriptor before the call). */
typedef struct {
    int n;
    cudnnConvolutionFwdAlgo_t fwd;
    cudnnConvolutionBwdDataAlgo_t bwd_data;
    cudnnConvolutionBwdFilterAlgo_t bwd_filter;
    cudnnMathType_t fwd_math, data_math, filter_math;
} conv_algos;

enum { ALGO_CACHE = 4 };

struct pasm_cuda_conv {
    pasm_cuda_ctx *ctx;
    pasm_conv2d_shape s;
    pasm_cuda_dtype t;
    unsigned needs; /* PASM_CUDA_CONV_* directions this plan runs */
    cudnnTensorDescriptor_t xd, yd;
    cudnnFilterDescriptor_t wd;
    cudnnConvolutionDescriptor_t cd;
    int desc_n;           /* the batch xd and yd describe (0: none yet) */
    cudnnMathType_t query_math; /* the descriptor's math type when asking cuDNN */
    int nondeterministic; /* some algorithm chosen is (cuDNN offered no other) */
    int default_math;     /* no kernel in the preferred math: cuDNN's default (fp32: maybe TF32) */
    size_t ws_max;
    conv_algos cache[ALGO_CACHE]; /* [0]: the largest batch; others round-robin */
    int n_cached, next_slot;
    const conv_algos *cur;
};

/* The most workspace a convolution may ask for when its algorithms are
 * chosen (per layer; the network keeps one workspace, the largest). */
static const size_t WS_LIMIT = (size_t)256 << 20;

#define CUDNN_TRY(call, what)                                                                    \
    do {                                                                                         \
        cudnnStatus_t e_ = (call);                                                               \
        if (e_ != CUDNN_STATUS_SUCCESS) return pasm_cudnn_error(e_, what);                       \
    } while (0)

static cudnnDataType_t cudnn_type(pasm_cuda_dtype t) {
    return t == PASM_CUDA_BF16 ? CUDNN_DATA_BFLOAT16 : CUDNN_DATA_FLOAT;
}

/* The first algorithm of cuDNN's ranking that ran (status), fits the
 * workspace limit and, on the first pass, is deterministic; a second pass
 * takes any that fits (and marks the plan nondeterministic). -1: none. */
template <typename Perf>
static int pick(const Perf *p, int found, size_t limit, int *nondeterministic) {
    for (int pass = 0; pass < 2; pass++)
        for (int i = 0; i < found; i++)
            if (p[i].status == CUDNN_STATUS_SUCCESS && p[i].memory <= limit &&
                (pass == 1 || p[i].determinism == CUDNN_DETERMINISTIC)) {
                if (pass == 1) *nondeterministic = 1;
                return i;
            }
    return -1;
}

static pasm_status no_algorithm(const pasm_cuda_conv *c, const char *which, int n) {
    const pasm_conv2d_shape *s = &c->s;
    return pasm_errorf(PASM_ERR_UNSUPPORTED, "cuDNN offers no %s algorithm for a %dx%d stride-%d "
                                             "convolution %d->%d channels at %dx%d, batch %d, %s "
                                             "NHWC, within %zu MiB of workspace",
                       which, s->kernel, s->kernel, s->stride, s->c_in, s->c_out, s->h_in,
                       s->w_in, n, c->t == PASM_CUDA_BF16 ? "bf16" : "fp32", (size_t)(WS_LIMIT >> 20));
}

/* The pick of cuDNN's ranking p for one direction: its algorithm and math
 * type into *algo and *math, its workspace into *need (the most so far);
 * none: the error naming which. */
template <typename Perf, typename Algo>
static pasm_status take(pasm_cuda_conv *c, const Perf *p, int found, size_t limit,
                        const char *which, int n, Algo *algo, cudnnMathType_t *math,
                        size_t *need) {
    const int i = pick(p, found, limit, &c->nondeterministic);
    if (i < 0) return no_algorithm(c, which, n);
    *algo = p[i].algo;
    *math = p[i].mathType;
    if (p[i].memory > *need) *need = p[i].memory;
    return PASM_OK;
}

/* xd and yd for batch n. */
static pasm_status describe(pasm_cuda_conv *c, int n) {
    if (c->desc_n == n) return PASM_OK;
    c->desc_n = 0; /* until both are set */
    const pasm_conv2d_shape *s = &c->s;
    const cudnnDataType_t dt = cudnn_type(c->t);
    CUDNN_TRY(cudnnSetTensor4dDescriptor(c->xd, CUDNN_TENSOR_NHWC, dt, n, s->c_in, s->h_in, s->w_in),
              "input descriptor");
    CUDNN_TRY(cudnnSetTensor4dDescriptor(c->yd, CUDNN_TENSOR_NHWC, dt, n, s->c_out, s->h_out,
                                         s->w_out),
              "output descriptor");
    c->desc_n = n;
    return PASM_OK;
}

/* Asks cuDNN for the algorithms of the directions the plan needs at batch
 * n, within limit bytes of workspace. */
static pasm_status choose(pasm_cuda_conv *c, int n, size_t limit, conv_algos *a) {
    TRY_STATUS(describe(c, n));
    CUDNN_TRY(cudnnSetConvolutionMathType(c->cd, c->query_math), "math type");
    cudnnHandle_t h = c->ctx->cudnn;
    enum { MAX_ALGOS = 16 };
    int found = 0;
    size_t need = 0;
    memset(a, 0, sizeof *a);
    a->n = n;
    if (c->needs & PASM_CUDA_CONV_FORWARD) {
        cudnnConvolutionFwdAlgoPerf_t p[MAX_ALGOS];
        CUDNN_TRY(cudnnGetConvolutionForwardAlgorithm_v7(h, c->xd, c->wd, c->cd, c->yd, MAX_ALGOS,
                                                         &found, p),
                  "choosing the forward algorithm");
        TRY_STATUS(take(c, p, found, limit, "forward", n, &a->fwd, &a->fwd_math, &need));
    }
    if (c->needs & PASM_CUDA_CONV_DATA) {
        cudnnConvolutionBwdDataAlgoPerf_t p[MAX_ALGOS];
        CUDNN_TRY(cudnnGetConvolutionBackwardDataAlgorithm_v7(h, c->wd, c->yd, c->cd, c->xd,
                                                              MAX_ALGOS, &found, p),
                  "choosing the input-gradient algorithm");
        TRY_STATUS(take(c, p, found, limit, "input-gradient", n, &a->bwd_data, &a->data_math,
                        &need));
    }
    if (c->needs & PASM_CUDA_CONV_FILTER) {
        cudnnConvolutionBwdFilterAlgoPerf_t p[MAX_ALGOS];
        CUDNN_TRY(cudnnGetConvolutionBackwardFilterAlgorithm_v7(h, c->xd, c->yd, c->cd, c->wd,
                                                                MAX_ALGOS, &found, p),
                  "choosing the weight-gradient algorithm");
        TRY_STATUS(take(c, p, found, limit, "weight-gradient", n, &a->bwd_filter,
                        &a->filter_math, &need));
    }
    if (need > c->ws_max) c->ws_max = need;
    return PASM_OK;
}

/* The plan's descriptors and algorithms for batch n: from the cache, or
 * chosen within the workspace there is (ws_bytes). */
static pasm_status set_batch(pasm_cuda_conv *c, int n, size_t ws_bytes) {
    if (c->cur && c->cur->n == n && c->desc_n == n) return PASM_OK;
    c->cur = NULL;
    TRY_STATUS(describe(c, n));
    for (int i = 0; i < c->n_cached; i++)
        if (c->cache[i].n == n) {
            c->cur = &c->cache[i];
            return PASM_OK;
        }
    conv_algos a;
    TRY_STATUS(choose(c, n, ws_bytes, &a));
    int slot;
    if (c->n_cached < ALGO_CACHE) slot = c->n_cached++;
    else { /* keep [0], the largest batch's */
        slot = 1 + c->next_slot;
        c->next_slot = (c->next_slot + 1) % (ALGO_CACHE - 1);
    }
    c->cache[slot] = a;
    c->cur = &c->cache[slot];
    return PASM_OK;
}

static pasm_status conv_init(pasm_cuda_conv *c) {
    const pasm_conv2d_shape *s = &c->s;
    CUDNN_TRY(cudnnCreateTensorDescriptor(&c->xd), "descriptor");
    CUDNN_TRY(cudnnCreateTensorDescriptor(&c->yd), "descriptor");
    CUDNN_TRY(cudnnCreateFilterDescriptor(&c->wd), "descriptor");
    CUDNN_TRY(cudnnCreateConvolutionDescriptor(&c->cd), "descriptor");
    CUDNN_TRY(cudnnSetFilter4dDescriptor(c->wd, cudnn_type(c->t), CUDNN_TENSOR_NHWC, s->c_out,
                                         s->c_in, s->kernel, s->kernel),
              "filter descriptor");
    CUDNN_TRY(cudnnSetConvolution2dDescriptor(c->cd, s->pad, s->pad, s->stride, s->stride, 1, 1,
                                              CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT),
              "convolution descriptor");
    /* bf16 on tensor cores; fp32 off them (no TF32) */
    c->query_math = c->t == PASM_CUDA_BF16 ? CUDNN_TENSOR_OP_MATH : CUDNN_FMA_MATH;
    pasm_status st = set_batch(c, s->n, WS_LIMIT);
    if (st) {
        /* no such kernel for this shape (the 1-channel stem, say): cuDNN's
         * default math, which for fp32 may use TF32 on tensor cores */
        char first[512];
        snprintf(first, sizeof first, "%s", pasm_last_error());
        c->query_math = CUDNN_DEFAULT_MATH;
        c->default_math = 1;
        c->n_cached = 0;
        if ((st = set_batch(c, s->n, WS_LIMIT)))
            return pasm_errorf(st, "%s (and with cuDNN's default math: %s)", first,
                               pasm_last_error());
        pasm_note("a %dx%d convolution %d->%d (%s) uses cuDNN's default math (%s)", s->kernel,
                  s->kernel, s->c_in, s->c_out, c->t == PASM_CUDA_BF16 ? "bf16" : "fp32", first);
    }
    if (c->nondeterministic)
        pasm_note("cuDNN offers only nondeterministic algorithms for a %dx%d convolution "
                  "%d->%d: GPU runs may differ in the last bits",
                  s->kernel, s->kernel, s->c_in, s->c_out);
    return PASM_OK;
}

/* ---- emulation (PASM_CUDA_EMULATE): the CPU's convolution between the
 * backend's layouts, every operand as the GPU would hold it (a bf16
 * operand is already rounded). Allocates per call: for tests only. ---- */

typedef struct {
    pasm_conv2d_shape s;
    float *x, *w, *y, *gx, *gw;
    void *ws;
} emu_conv;

static pasm_status emu_begin(const pasm_cuda_conv *c, int n, emu_conv *e) {
    memset(e, 0, sizeof *e);
    e->s = c->s;
    e->s.n = n;
    e->s.precision = PASM_PRECISION_FP32;
    const pasm_conv2d_shape *s = &e->s;
    size_t xs = (size_t)n * s->c_in * s->h_in * s->w_in, ys = (size_t)n * s->c_out * s->h_out * s->w_out;
    size_t wsz = (size_t)s->c_out * s->c_in * s->kernel * s->kernel;
    e->x = (float *)calloc(xs, 4);
    e->gx = (float *)calloc(xs, 4);
    e->y = (float *)calloc(ys, 4);
    e->w = (float *)calloc(wsz, 4);
    e->gw = (float *)calloc(wsz, 4);
    e->ws = malloc(pasm_conv2d_workspace_size(s) + 64);
    if (!e->x || !e->gx || !e->y || !e->w || !e->gw || !e->ws)
        return pasm_errorf(PASM_ERR_NOMEM, "out of memory emulating a convolution");
    return PASM_OK;
}

static void emu_end(emu_conv *e) {
    free(e->x), free(e->gx), free(e->y), free(e->w), free(e->gw), free(e->ws);
}

/* The emulation's layout changes, between the backend's NHWC (or KRSC)
 * operands and the CPU convolution's NCHW (KCRS): plain host loops, not the
 * kernels' element lambdas, which the host calls through a wrapper one
 * element at a time (they were half of an emulated training step). The
 * values are the kernels' (a bf16 operand widened exactly, a result rounded
 * to nearest even). */
template <typename T>
static void host_to_nchw(int n, int c, int hw, const T *x, float *y) {
#pragma omp parallel for schedule(static) if ((int64_t)n * c * hw >= 65536)
    for (int img = 0; img < n; img++)
        for (int p = 0; p < hw; p++) {
            const T *src = x + ((int64_t)img * hw + p) * c;
            float *dst = y + (int64_t)img * c * hw + p;
            for (int ch = 0; ch < c; ch++) dst[(int64_t)ch * hw] = to_f(src[ch]);
        }
}

template <typename T>
static void host_to_nhwc(int n, int c, int hw, const float *x, T *y) {
#pragma omp parallel for schedule(static) if ((int64_t)n * c * hw >= 65536)
    for (int img = 0; img < n; img++)
        for (int p = 0; p < hw; p++) {
            const float *src = x + (int64_t)img * c * hw + p;
            T *dst = y + ((int64_t)img * hw + p) * c;
            for (int ch = 0; ch < c; ch++) dst[ch] = from_f<T>(src[(int64_t)ch * hw]);
        }
}

static void emu_to_nchw(const pasm_cuda_conv *c, int n, int ch, int hw, const void *x, float *y) {
    PASM_BY_DTYPE(c->t, host_to_nchw(n, ch, hw, (const float *)x, y),
                  host_to_nchw(n, ch, hw, (const bf16 *)x, y));
}

static void emu_to_nhwc(const pasm_cuda_conv *c, int n, int ch, int hw, const float *x, void *y) {
    PASM_BY_DTYPE(c->t, host_to_nhwc(n, ch, hw, x, (float *)y),
                  host_to_nhwc(n, ch, hw, x, (bf16 *)y));
}

static int hw_in(const pasm_conv2d_shape *s) { return s->h_in * s->w_in; }
static int hw_out(const pasm_conv2d_shape *s) { return s->h_out * s->w_out; }
static int rs(const pasm_conv2d_shape *s) { return s->kernel * s->kernel; }

static pasm_status emu_forward(pasm_cuda_conv *c, int n, const void *x, const void *w, void *y) {
    emu_conv e;
    pasm_status st = emu_begin(c, n, &e);
    const pasm_conv2d_shape *s = &e.s;
    if (!st) {
        emu_to_nchw(c, n, s->c_in, hw_in(s), x, e.x);
        emu_to_nchw(c, s->c_out, s->c_in, rs(s), w, e.w); /* KRSC -> KCRS */
        pasm_conv2d_forward(s, e.x, e.w, NULL, e.y, e.ws);
        emu_to_nhwc(c, n, s->c_out, hw_out(s), e.y, y);
    }
    emu_end(&e);
    return st;
}

static pasm_status emu_backward(pasm_cuda_conv *c, int n, const void *x, const void *w,
                                const void *dy, void *dx, void *dw) {
    emu_conv e;
    pasm_status st = emu_begin(c, n, &e);
    const pasm_conv2d_shape *s = &e.s;
    if (!st) {
        emu_to_nchw(c, n, s->c_out, hw_out(s), dy, e.y);
        if (x) emu_to_nchw(c, n, s->c_in, hw_in(s), x, e.x);
        if (w) emu_to_nchw(c, s->c_out, s->c_in, rs(s), w, e.w);
        pasm_conv2d_backward(s, e.x, e.w, e.y, dx ? e.gx : NULL, dw ? e.gw : NULL, NULL, e.ws);
        if (dx) emu_to_nhwc(c, n, s->c_in, hw_in(s), e.gx, dx);
        if (dw) emu_to_nhwc(c, s->c_out, s->c_in, rs(s), e.gw, dw);
    }
    emu_end(&e);
    return st;
}

pasm_status pasm_cuda_conv_create(pasm_cuda_ctx *ctx, const pasm_conv2d_shape *s,
                                  pasm_cuda_dtype t, unsigned needs, pasm_cuda_conv **out) {
    *out = NULL;
    pasm_cuda_conv *c = (pasm_cuda_conv *)calloc(1, sizeof *c);
    if (!c) return pasm_errorf(PASM_ERR_NOMEM, "out of memory for a convolution plan");
    c->ctx = ctx;
    c->s = *s;
    c->t = t;
    c->needs = needs ? needs : (unsigned)PASM_CUDA_CONV_ALL;
    if (pasm_cuda_emulating()) {
        *out = c;
        return PASM_OK;
    }
    pasm_status st = conv_init(c);
    if (st) {
        pasm_cuda_conv_free(c);
        return st;
    }
    *out = c;
    return PASM_OK;
}

void pasm_cuda_conv_free(pasm_cuda_conv *c) {
    if (!c) return;
    if (c->xd) cudnnDestroyTensorDescriptor(c->xd);
    if (c->yd) cudnnDestroyTensorDescriptor(c->yd);
    if (c->wd) cudnnDestroyFilterDescriptor(c->wd);
    if (c->cd) cudnnDestroyConvolutionDescriptor(c->cd);
    free(c);
}

size_t pasm_cuda_conv_workspace(const pasm_cuda_conv *c) { return c->ws_max; }

int pasm_cuda_conv_default_math(const pasm_cuda_conv *c) { return c->default_math; }

static pasm_status check_batch(pasm_cuda_conv *c, int n, size_t ws_bytes, unsigned dir) {
    if (n < 1 || n > c->s.n)
        return pasm_errorf(PASM_ERR_INVALID, "GPU convolution: batch %d outside 1..%d", n, c->s.n);
    if (!(c->needs & dir))
        return pasm_errorf(PASM_ERR_INVALID, "GPU convolution: a direction its plan was not "
                                             "made for (a network built for evaluation?)");
    if (pasm_cuda_emulating()) return PASM_OK;
    return set_batch(c, n, ws_bytes);
}

pasm_status pasm_cuda_conv_forward(pasm_cuda_conv *c, int n, const void *x, const void *w,
                                   void *y, void *ws, size_t ws_bytes) {
    pasm_status st = check_batch(c, n, ws_bytes, PASM_CUDA_CONV_FORWARD);
    if (st) return st;
    if (pasm_cuda_emulating()) {
        if (!pasm_cuda_recording()) return emu_forward(c, n, x, w, y);
        pasm_cuda_record([=]() { return emu_forward(c, n, x, w, y); });
        return PASM_OK;
    }
    CUDNN_TRY(cudnnSetConvolutionMathType(c->cd, c->cur->fwd_math), "math type");
    const float one = 1.0f, zero = 0.0f;
    const double t0 = pasm_cuda_profile_start();
    CUDNN_TRY(cudnnConvolutionForward(c->ctx->cudnn, &one, c->xd, x, c->wd, w, c->cd, c->cur->fwd, ws,
                                      ws_bytes, &zero, c->yd, y),
              "convolution forward");
    pasm_cuda_profile_stop(c->ctx, "cuDNN forward", t0);
    return PASM_OK;
}

pasm_status pasm_cuda_conv_backward_data(pasm_cuda_conv *c, int n, const void *dy,
                                         const void *w, void *dx, void *ws, size_t ws_bytes) {
    pasm_status st = check_batch(c, n, ws_bytes, PASM_CUDA_CONV_DATA);
    if (st) return st;
    if (pasm_cuda_emulating()) {
        if (!pasm_cuda_recording()) return emu_backward(c, n, NULL, w, dy, dx, NULL);
        pasm_cuda_record([=]() { return emu_backward(c, n, NULL, w, dy, dx, NULL); });
        return PASM_OK;
    }
    CUDNN_TRY(cudnnSetConvolutionMathType(c->cd, c->cur->data_math), "math type");
    const float one = 1.0f, zero = 0.0f;
    const double t0 = pasm_cuda_profile_start();
    CUDNN_TRY(cudnnConvolutionBackwardData(c->ctx->cudnn, &one, c->wd, w, c->yd, dy, c->cd,
                                           c->cur->bwd_data, ws, ws_bytes, &zero, c->xd, dx),
              "convolution input gradient");
    pasm_cuda_profile_stop(c->ctx, "cuDNN input gradient", t0);
    return PASM_OK;
}

pasm_status pasm_cuda_conv_backward_filter(pasm_cuda_conv *c, int n, const void *x,
                                           const void *dy, void *dw, void *ws, size_t ws_bytes) {
    pasm_status st = check_batch(c, n, ws_bytes, PASM_CUDA_CONV_FILTER);
    if (st) return st;
    if (pasm_cuda_emulating()) {
        if (!pasm_cuda_recording()) return emu_backward(c, n, x, NULL, dy, NULL, dw);
        pasm_cuda_record([=]() { return emu_backward(c, n, x, NULL, dy, NULL, dw); });
        return PASM_OK;
    }
    CUDNN_TRY(cudnnSetConvolutionMathType(c->cd, c->cur->filter_math), "math type");
    const float one = 1.0f, zero = 0.0f;
    const double t0 = pasm_cuda_profile_start();
    CUDNN_TRY(cudnnConvolutionBackwardFilter(c->ctx->cudnn, &one, c->xd, x, c->yd, dy, c->cd,
                                             c->cur->bwd_filter, ws, ws_bytes, &zero, c->wd, dw),
              "convolution weight gradient");
    pasm_cuda_profile_stop(c->ctx, "cuDNN weight gradient", t0);
    return PASM_OK;
}
