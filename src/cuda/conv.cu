/* Convolutions through cuDNN: NHWC activations and KRSC filters of fp32 or
 * bf16, fp32 accumulation. bf16 runs on tensor cores; fp32 is kept off them
 * (no TF32), so --precision fp32 on the GPU computes what the CPU computes
 * up to summation order. Algorithms come from cuDNN's heuristics, the
 * first deterministic one whose workspace fits, chosen once per batch size
 * (the largest when created, again when a smaller batch comes), direction
 * by direction (PASM_CUDA_CONV_FIND, a direction list as for
 * PASM_CUDA_CONV_DIRECT: ranked by cuDNN's measured times instead, with
 * cudnnFind*, which runs every algorithm once; it failing, the heuristics).
 * A direction cuDNN has no kernel for in the preferred math
 * runs on the backend's own direct kernels in fp32 (cuDNN's default math
 * could be TF32: 1e-3 off, seen on an H200 for the 1-channel stem's input
 * gradient) and on cuDNN's default math in bf16 (none there either within
 * the workspace: the direct kernels). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/env.h"
#include "cuda/cuda_internal.cuh"

/* Algorithms chosen for one batch size, with the math type cuDNN reported
 * for each (set on the descriptor before the call). */
typedef struct {
    int n;
    cudnnConvolutionFwdAlgo_t fwd;
    cudnnConvolutionBwdDataAlgo_t bwd_data;
    cudnnConvolutionBwdFilterAlgo_t bwd_filter;
    cudnnMathType_t fwd_math, data_math, filter_math;
    unsigned direct; /* PASM_CUDA_CONV_* directions on the backend's direct kernels */
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
    cudnnMathType_t pref_math; /* bf16: tensor cores; fp32: plain FMA */
    unsigned force_direct; /* PASM_CUDA_CONV_DIRECT: these directions on the direct kernels */
    unsigned find;         /* PASM_CUDA_CONV_FIND: these directions ranked by measured time */
    int log;               /* PASM_CUDA_CONV_LOG=1: each choice on stderr */
    unsigned told;        /* directions whose fallback was said on stderr */
    int told_nondeterministic; /* a nondeterministic pick was said on stderr */
    size_t ws_max;
    size_t emu_ws; /* PASM_CUDA_EMULATE_WORKSPACE_MB: what an emulated cuDNN call needs */
    char prof[3][64]; /* profile buckets: forward, input gradient, weight gradient, by shape */
    conv_algos cache[ALGO_CACHE]; /* [0]: the largest batch; others round-robin */
    int n_cached, next_slot;
    const conv_algos *cur;
};

/* The environment variable name as a whole number of MiB from 0 to
 * 1048576, in bytes; unset, dflt MiB (so also, said on stderr, when it is
 * something else). */
static size_t env_mib(const char *name, long long dflt) {
    long long v = dflt;
    const char *e = getenv(name);
    if (e && *e) {
        char *end;
        const long long got = strtoll(e, &end, 10);
        if (*end || got < 0 || got > (1LL << 20))
            pasm_note("%s=%s is not a whole number of MiB from 0 to 1048576: %lld MiB", name, e,
                      dflt);
        else v = got;
    }
    return (size_t)v << 20;
}

/* The most workspace a convolution may ask for when its algorithms are
 * chosen (per layer; the network keeps one workspace, the largest):
 * 256 MiB, or PASM_CUDA_WORKSPACE_MB (0 allowed: a smaller workspace may
 * mean slower algorithms), read once. */
static size_t ws_limit(void) {
    static long long bytes = -1;
    long long v = __atomic_load_n(&bytes, __ATOMIC_RELAXED);
    if (v < 0) {
        v = (long long)env_mib("PASM_CUDA_WORKSPACE_MB", 256);
        __atomic_store_n(&bytes, v, __ATOMIC_RELAXED);
    }
    return (size_t)v;
}
/* The most algorithms asked of cuDNN's ranking for one direction. */
enum { MAX_ALGOS = 16 };

#define CUDNN_TRY(call, what)                                                                    \
    do {                                                                                         \
        cudnnStatus_t e_ = (call);                                                               \
        if (e_ != CUDNN_STATUS_SUCCESS) return pasm_cudnn_error(e_, what);                       \
    } while (0)

static cudnnDataType_t cudnn_type(pasm_cuda_dtype t) {
    return t == PASM_CUDA_BF16 ? CUDNN_DATA_BFLOAT16 : CUDNN_DATA_FLOAT;
}

/* The directions a variable names: "1..." all, "0" none, else a comma-
 * separated list of forward, data (or input-gradient) and filter (or
 * weight-gradient), the names PASM_CUDA_CONV_LOG prints; a word it does not
 * know is said once on stderr. */
static unsigned env_directions(const char *name) {
    const char *v = getenv(name);
    if (!v || !*v || !strcmp(v, "0")) return 0;
    if (v[0] == '1') return PASM_CUDA_CONV_ALL;
    unsigned d = 0;
    char word[32];
    for (const char *p = v; *p;) {
        const size_t len = strcspn(p, ",");
        snprintf(word, sizeof word, "%.*s", (int)(len < sizeof word ? len : sizeof word - 1), p);
        if (!strcmp(word, "forward")) d |= PASM_CUDA_CONV_FORWARD;
        else if (!strcmp(word, "data") || !strcmp(word, "input-gradient")) d |= PASM_CUDA_CONV_DATA;
        else if (!strcmp(word, "filter") || !strcmp(word, "weight-gradient"))
            d |= PASM_CUDA_CONV_FILTER;
        else if (*word) {
            static int told;
            if (!__atomic_exchange_n(&told, 1, __ATOMIC_RELAXED))
                pasm_note("%s: \"%s\" is no direction (forward, data or input-gradient, filter "
                          "or weight-gradient): ignored",
                          name, word);
        }
        p += len;
        if (*p == ',') p++;
    }
    return d;
}

/* The first algorithm of cuDNN's ranking that ran (status), fits the
 * workspace limit, runs in the math type only (when only is not
 * CUDNN_DEFAULT_MATH) and is deterministic; with any_order, failing that,
 * the first such that is not. -1: none. */
template <typename Perf>
static int pick(const Perf *p, int found, size_t limit, cudnnMathType_t only, int any_order) {
    for (int pass = 0; pass < 1 + any_order; pass++)
        for (int i = 0; i < found; i++)
            if (p[i].status == CUDNN_STATUS_SUCCESS && p[i].memory <= limit &&
                (only == CUDNN_DEFAULT_MATH || p[i].mathType == only) &&
                (pass == 1 || p[i].determinism == CUDNN_DETERMINISTIC))
                return i;
    return -1;
}

/* The weight gradient's direct kernel: chunks of output positions, each
 * summed by one thread per weight, then the chunks added in order. */
static int direct_chunks(const pasm_conv2d_shape *s, int n) {
    const int64_t rows = (int64_t)n * s->h_out * s->w_out;
    const int64_t wsz = (int64_t)s->c_out * s->c_in * s->kernel * s->kernel;
    int64_t want = ((int64_t)1 << 19) / wsz, most = (rows + 15) / 16;
    if (want > most) want = most;
    if (want > 4096) want = 4096;
    return want < 1 ? 1 : (int)want;
}

/* Its workspace: none for one chunk (summed straight into dw). */
static size_t direct_filter_ws(const pasm_conv2d_shape *s, int n) {
    const int chunks = direct_chunks(s, n);
    if (chunks < 2) return 0;
    return (size_t)chunks * s->c_out * s->c_in * s->kernel * s->kernel * sizeof(float);
}

static const char *dir_name(unsigned dir) {
    return dir == PASM_CUDA_CONV_FORWARD ? "forward" : dir == PASM_CUDA_CONV_DATA ? "input-gradient"
                                                                                 : "weight-gradient";
}

/* PASM_CUDA_CONV_LOG=1: a direction's choice on stderr (algo -1: the
 * direct kernels; else cuDNN's algorithm and math type enums). */
static void log_choice(const pasm_cuda_conv *c, unsigned dir, int n, int algo, int math, int det,
                       size_t ws, float ms) {
    if (!c->log) return;
    const pasm_conv2d_shape *s = &c->s;
    fprintf(stderr, "conv %dx%d s%d %d->%d %dx%d %s batch %d %s: ", s->kernel, s->kernel,
            s->stride, s->c_in, s->c_out, s->h_in, s->w_in,
            c->t == PASM_CUDA_BF16 ? "bf16" : "fp32", n, dir_name(dir));
    if (algo < 0) {
        fputs("direct kernel\n", stderr);
        return;
    }
    fprintf(stderr, "cuDNN algo %d math %d%s, workspace %zu KiB", algo, math,
            det ? "" : " (nondeterministic)", ws >> 10);
    if (ms >= 0) fprintf(stderr, ", measured %.4f ms", ms);
    fputc('\n', stderr);
}

/* One direction's algorithm at batch n: the pick of cuDNN's ranking in the
 * preferred math, else (fp32) the direct kernels, marked in a->direct, or
 * (bf16) the pick in cuDNN's default math; its workspace into *need (the
 * most so far). fp32 takes only deterministic cuDNN algorithms (the direct
 * kernels are); bf16 takes a nondeterministic one where cuDNN has no other.
 * query(p, &found) asks cuDNN with the descriptor's math set. */
template <typename Perf, typename Algo, typename Query>
static pasm_status choose_dir(pasm_cuda_conv *c, unsigned dir, int n, size_t limit, Query query,
                              Algo *algo, cudnnMathType_t *math, conv_algos *a, size_t *need) {
    if (c->force_direct & dir) {
        a->direct |= dir;
        log_choice(c, dir, n, -1, 0, 0, 0, -1);
        return PASM_OK;
    }
    Perf p[MAX_ALGOS];
    int found = 0;
    const char *which = dir_name(dir);
    char what[64];
    snprintf(what, sizeof what, "choosing the %s algorithm", which);
    /* *idx: pick's choice of the ranking; measured (PASM_CUDA_CONV_FIND)
     * with nothing that fits (an allocation failed, say), the heuristics' */
    auto ranked = [&](cudnnMathType_t only, int any_order, int *idx) {
        cudnnStatus_t e = query(p, &found);
        if (e != CUDNN_STATUS_SUCCESS) return e;
        *idx = pick(p, found, limit, only, any_order);
        if (*idx >= 0 || !(c->find & dir)) return e;
        c->find &= ~dir;
        e = query(p, &found); /* failing, nothing: the fallbacks below */
        c->find |= dir;
        if (e == CUDNN_STATUS_SUCCESS) *idx = pick(p, found, limit, only, any_order);
        return CUDNN_STATUS_SUCCESS;
    };
    CUDNN_TRY(cudnnSetConvolutionMathType(c->cd, c->pref_math), "math type");
    const int f32 = c->t == PASM_CUDA_F32;
    int i = -1;
    CUDNN_TRY(ranked(f32 ? CUDNN_FMA_MATH : CUDNN_DEFAULT_MATH, !f32, &i), what);
    const pasm_conv2d_shape *s = &c->s;
    const char *tn = c->t == PASM_CUDA_BF16 ? "bf16" : "fp32";
    /* the direct kernels, which run within any workspace (choose() adds
     * the direct weight gradient's) */
    auto use_direct = [&](const char *none) {
        a->direct |= dir;
        if (!(c->told & dir))
            pasm_note("cuDNN has no %s %s kernel within %zu KiB of workspace for a %dx%d "
                      "convolution %d->%d (%s, batch %d): the backend's direct kernel runs it",
                      none, which, limit >> 10, s->kernel, s->kernel, s->c_in, s->c_out, tn, n);
        c->told |= dir;
        log_choice(c, dir, n, -1, 0, 0, 0, -1);
        return PASM_OK;
    };
    if (i < 0 && f32) return use_direct("deterministic plain-FMA");
    if (i < 0) {
        CUDNN_TRY(cudnnSetConvolutionMathType(c->cd, CUDNN_DEFAULT_MATH), "math type");
        CUDNN_TRY(ranked(CUDNN_DEFAULT_MATH, 1, &i), what);
        /* a smaller batch's choice within the workspace its larger one was
         * given (a training network's, planned per convolution) may find none */
        if (i < 0) return use_direct("bf16");
        if (!(c->told & dir))
            pasm_note("cuDNN has no tensor-core %s kernel for a %dx%d convolution %d->%d (%s, "
                      "batch %d): its default math runs it",
                      which, s->kernel, s->kernel, s->c_in, s->c_out, tn, n);
        c->told |= dir;
    }
    *algo = p[i].algo;
    *math = p[i].mathType;
    /* measured (a time): cudnnFind's ranking; it failing, the heuristics' */
    const int measured = (c->find & dir) && p[i].time > 0;
    log_choice(c, dir, n, (int)p[i].algo, (int)p[i].mathType,
               p[i].determinism == CUDNN_DETERMINISTIC, p[i].memory, measured ? p[i].time : -1);
    if (c->log && measured && i > 0 && p[0].status == CUDNN_STATUS_SUCCESS)
        fprintf(stderr, "  the fastest measured: cuDNN algo %d math %d%s, workspace %zu KiB, "
                        "%.4f ms\n",
                (int)p[0].algo, (int)p[0].mathType,
                p[0].determinism == CUDNN_DETERMINISTIC ? "" : " (nondeterministic)",
                p[0].memory >> 10, p[0].time);
    if (p[i].memory > *need) *need = p[i].memory;
    if (p[i].determinism != CUDNN_DETERMINISTIC && !c->told_nondeterministic) {
        pasm_note("cuDNN offers only nondeterministic %s algorithms for a %dx%d convolution "
                  "%d->%d (%s, batch %d): GPU runs may differ in the last bits",
                  which, s->kernel, s->kernel, s->c_in, s->c_out, tn, n);
        c->told_nondeterministic = 1;
    }
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

/* The algorithms of the directions the plan needs at batch n, within
 * limit bytes of workspace. */
static pasm_status choose(pasm_cuda_conv *c, int n, size_t limit, conv_algos *a) {
    TRY_STATUS(describe(c, n));
    cudnnHandle_t h = c->ctx->cudnn;
    size_t need = 0;
    memset(a, 0, sizeof *a);
    a->n = n;
    if (c->needs & PASM_CUDA_CONV_FORWARD)
        TRY_STATUS(choose_dir<cudnnConvolutionFwdAlgoPerf_t>(
            c, PASM_CUDA_CONV_FORWARD, n, limit,
            [&](cudnnConvolutionFwdAlgoPerf_t *p, int *found) {
                if ((c->find & PASM_CUDA_CONV_FORWARD) &&
                    cudnnFindConvolutionForwardAlgorithm(h, c->xd, c->wd, c->cd, c->yd, MAX_ALGOS,
                                                         found, p) == CUDNN_STATUS_SUCCESS)
                    return CUDNN_STATUS_SUCCESS;
                return cudnnGetConvolutionForwardAlgorithm_v7(h, c->xd, c->wd, c->cd, c->yd, MAX_ALGOS,
                                                              found, p);
            },
            &a->fwd, &a->fwd_math, a, &need));
    if (c->needs & PASM_CUDA_CONV_DATA)
        TRY_STATUS(choose_dir<cudnnConvolutionBwdDataAlgoPerf_t>(
            c, PASM_CUDA_CONV_DATA, n, limit,
            [&](cudnnConvolutionBwdDataAlgoPerf_t *p, int *found) {
                if ((c->find & PASM_CUDA_CONV_DATA) &&
                    cudnnFindConvolutionBackwardDataAlgorithm(h, c->wd, c->yd, c->cd, c->xd,
                                                              MAX_ALGOS, found,
                                                              p) == CUDNN_STATUS_SUCCESS)
                    return CUDNN_STATUS_SUCCESS;
                return cudnnGetConvolutionBackwardDataAlgorithm_v7(h, c->wd, c->yd, c->cd, c->xd,
                                                                   MAX_ALGOS, found, p);
            },
            &a->bwd_data, &a->data_math, a, &need));
    if (c->needs & PASM_CUDA_CONV_FILTER)
        TRY_STATUS(choose_dir<cudnnConvolutionBwdFilterAlgoPerf_t>(
            c, PASM_CUDA_CONV_FILTER, n, limit,
            [&](cudnnConvolutionBwdFilterAlgoPerf_t *p, int *found) {
                if ((c->find & PASM_CUDA_CONV_FILTER) &&
                    cudnnFindConvolutionBackwardFilterAlgorithm(h, c->xd, c->yd, c->cd, c->wd,
                                                                MAX_ALGOS, found,
                                                                p) == CUDNN_STATUS_SUCCESS)
                    return CUDNN_STATUS_SUCCESS;
                return cudnnGetConvolutionBackwardFilterAlgorithm_v7(h, c->xd, c->yd, c->cd, c->wd,
                                                                     MAX_ALGOS, found, p);
            },
            &a->bwd_filter, &a->filter_math, a, &need));
    if ((a->direct & PASM_CUDA_CONV_FILTER) && direct_filter_ws(&c->s, n) > need)
        need = direct_filter_ws(&c->s, n);
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
    c->pref_math = c->t == PASM_CUDA_BF16 ? CUDNN_TENSOR_OP_MATH : CUDNN_FMA_MATH;
    TRY_STATUS(set_batch(c, s->n, ws_limit()));
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

/* An emulated cuDNN call: work, after its use of the workspace (tests:
 * with PASM_CUDA_EMULATE_WORKSPACE_MB set, each needs that much and
 * scribbles over all of it, as a real algorithm may, so that a workspace
 * placed over a live tensor spoils results; refused when the caller gives
 * less); now, or recorded with a graph. */
template <typename W>
static pasm_status emu_call(const pasm_cuda_conv *c, void *ws, size_t ws_bytes, const char *what,
                            W work) {
    return pasm_cuda_emulated([=]() {
        if (!c->emu_ws) return work();
        if (!ws || ws_bytes < c->emu_ws)
            return pasm_errorf(PASM_ERR_INVALID,
                               "emulated %s: %zu bytes of workspace given, %zu needed", what,
                               ws ? ws_bytes : 0, c->emu_ws);
        memset(ws, 0xA5, c->emu_ws);
        return work();
    });
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
                                const void *dy, void *dx, int add, void *dw) {
    emu_conv e;
    pasm_status st = emu_begin(c, n, &e);
    const pasm_conv2d_shape *s = &e.s;
    if (!st) {
        emu_to_nchw(c, n, s->c_out, hw_out(s), dy, e.y);
        if (x) emu_to_nchw(c, n, s->c_in, hw_in(s), x, e.x);
        if (w) emu_to_nchw(c, s->c_out, s->c_in, rs(s), w, e.w);
        pasm_conv2d_backward(s, e.x, e.w, e.y, dx ? e.gx : NULL, dw ? e.gw : NULL, NULL, e.ws);
        if (dx && add) { /* e.x is free: dx's old values, summed in float */
            const int64_t count = (int64_t)n * s->c_in * hw_in(s);
            emu_to_nchw(c, n, s->c_in, hw_in(s), dx, e.x);
            for (int64_t i = 0; i < count; i++) e.gx[i] += e.x[i];
        }
        if (dx) emu_to_nhwc(c, n, s->c_in, hw_in(s), e.gx, dx);
        if (dw) emu_to_nhwc(c, s->c_out, s->c_in, rs(s), e.gw, dw);
    }
    emu_end(&e);
    return st;
}

/* ---- the direct kernels: one thread an output element (forward, input
 * gradient) or a weight and chunk (weight gradient), float sums, the
 * chunks added in double in a fixed order. For directions cuDNN has no
 * FMA kernel for, and the directions PASM_CUDA_CONV_DIRECT names; on the
 * emulation they run on the host. ---- */

typedef struct {
    int k, st, pad, h, w, ho, wo, ci, co;
} direct_dims;

static direct_dims dims_of(const pasm_conv2d_shape *s) {
    direct_dims d = {s->kernel, s->stride, s->pad, s->h_in, s->w_in, s->h_out, s->w_out,
                     s->c_in, s->c_out};
    return d;
}

/* Pixel q of images of h x w, as image, row and column. */
typedef struct {
    int64_t img;
    int y, x;
} pixel;

__host__ __device__ inline pixel pixel_of(int64_t q, int h, int w) {
    return pixel{q / ((int64_t)w * h), (int)(q / w % h), (int)(q % w)};
}

/* The weight gradient of output channel o at tap (kh, kw, ch), tap =
 * (kh * k + kw) * ci + ch, over output positions [q0, q1), summed in Acc. */
template <typename Acc, typename T>
__host__ __device__ inline Acc tap_sum(const direct_dims d, const T *x, const T *dy, int64_t o,
                                       int64_t tap, int64_t q0, int64_t q1) {
    const int ch = (int)(tap % d.ci), kw = (int)(tap / d.ci % d.k), kh = (int)(tap / (d.ci * d.k));
    Acc acc = 0;
    for (int64_t q = q0; q < q1; q++) {
        const pixel p = pixel_of(q, d.ho, d.wo);
        const int ih = p.y * d.st - d.pad + kh, iw = p.x * d.st - d.pad + kw;
        if (ih < 0 || ih >= d.h || iw < 0 || iw >= d.w) continue;
        acc += (Acc)to_f(dy[q * d.co + o]) * to_f(x[((p.img * d.h + ih) * d.w + iw) * d.ci + ch]);
    }
    return acc;
}

template <typename T>
static pasm_status direct_forward(pasm_cuda_conv *c, int n, const T *x, const T *w, T *y) {
    const direct_dims d = dims_of(&c->s);
    return pasm_each(
        c->ctx, (int64_t)n * d.ho * d.wo * d.co,
        [=] __host__ __device__(int64_t i) { /* i indexes y: ((img * ho + oh) * wo + ow) * co + o */
            const int o = (int)(i % d.co);
            const pixel q = pixel_of(i / d.co, d.ho, d.wo);
            float acc = 0.0f;
            for (int kh = 0; kh < d.k; kh++) {
                const int ih = q.y * d.st - d.pad + kh;
                if (ih < 0 || ih >= d.h) continue;
                for (int kw = 0; kw < d.k; kw++) {
                    const int iw = q.x * d.st - d.pad + kw;
                    if (iw < 0 || iw >= d.w) continue;
                    const T *xp = x + ((q.img * d.h + ih) * d.w + iw) * d.ci;
                    const T *wp = w + (((int64_t)o * d.k + kh) * d.k + kw) * d.ci;
                    for (int ch = 0; ch < d.ci; ch++) acc += to_f(xp[ch]) * to_f(wp[ch]);
                }
            }
            y[i] = from_f<T>(acc);
        },
        "direct convolution forward");
}

template <typename T>
static pasm_status direct_data(pasm_cuda_conv *c, int n, const T *dy, const T *w, T *dx, int add) {
    const direct_dims d = dims_of(&c->s);
    return pasm_each(
        c->ctx, (int64_t)n * d.h * d.w * d.ci,
        [=] __host__ __device__(int64_t i) { /* i indexes dx: ((img * h + ih) * w + iw) * ci + ch */
            const int ch = (int)(i % d.ci);
            const pixel p = pixel_of(i / d.ci, d.h, d.w);
            float acc = 0.0f;
            for (int kh = 0; kh < d.k; kh++) {
                const int th = p.y + d.pad - kh; /* oh * stride */
                if (th < 0 || th % d.st || th / d.st >= d.ho) continue;
                for (int kw = 0; kw < d.k; kw++) {
                    const int tw = p.x + d.pad - kw;
                    if (tw < 0 || tw % d.st || tw / d.st >= d.wo) continue;
                    const T *gp = dy + ((p.img * d.ho + th / d.st) * d.wo + tw / d.st) * d.co;
                    const T *wp = w + ((int64_t)kh * d.k + kw) * d.ci + ch;
                    const int64_t wstep = (int64_t)d.k * d.k * d.ci;
                    for (int o = 0; o < d.co; o++) acc += to_f(gp[o]) * to_f(wp[o * wstep]);
                }
            }
            dx[i] = from_f<T>(add ? to_f(dx[i]) + acc : acc);
        },
        "direct convolution input gradient");
}

template <typename T>
static pasm_status direct_filter(pasm_cuda_conv *c, int n, const T *x, const T *dy, T *dw,
                                 void *ws, size_t ws_bytes) {
    const direct_dims d = dims_of(&c->s);
    const int64_t kkc = (int64_t)d.k * d.k * d.ci, wsz = kkc * d.co;
    int chunks = direct_chunks(&c->s, n);
    if (!ws) ws_bytes = 0;
    if ((size_t)chunks * wsz * sizeof(float) > ws_bytes) chunks = (int)(ws_bytes / (wsz * sizeof(float)));
    const int64_t rows = (int64_t)n * d.ho * d.wo;
    if (chunks < 2) /* one chunk (or no room for two): each weight's sum straight into dw */
        return pasm_each(
            c->ctx, wsz,
            [=] __host__ __device__(int64_t i) { /* i indexes dw: o * kkc + tap */
                dw[i] = from_f<T>((float)tap_sum<double>(d, x, dy, i / kkc, i % kkc, 0, rows));
            },
            "direct convolution weight gradient");
    float *part = (float *)ws;
    const int64_t per = (rows + chunks - 1) / chunks;
    TRY_STATUS(pasm_each(
        c->ctx, (int64_t)chunks * wsz,
        [=] __host__ __device__(int64_t i) { /* i indexes part: (chunk * kkc + tap) * co + o */
            const int64_t r = i / d.co, chunk = r / kkc;
            const int64_t q1 = (chunk + 1) * per < rows ? (chunk + 1) * per : rows;
            part[i] = tap_sum<float>(d, x, dy, i % d.co, r % kkc, chunk * per, q1);
        },
        "direct convolution weight gradient"));
    return pasm_each(
        c->ctx, wsz,
        [=] __host__ __device__(int64_t i) { /* i indexes dw: o * kkc + tap */
            const int64_t tap = i % kkc, o = i / kkc;
            double sum = 0.0;
            for (int p = 0; p < chunks; p++) sum += part[(p * kkc + tap) * d.co + o];
            dw[i] = from_f<T>((float)sum);
        },
        "direct convolution weight-gradient sums");
}

/* Whether direction dir runs on the direct kernels at the current batch. */
static int direct(const pasm_cuda_conv *c, unsigned dir) {
    if (c->force_direct & dir) return 1;
    return !pasm_cuda_emulating() && c->cur && (c->cur->direct & dir);
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
    c->force_direct = c->needs & env_directions("PASM_CUDA_CONV_DIRECT");
    c->find = c->needs & env_directions("PASM_CUDA_CONV_FIND");
    static const char *const prof_dir[3] = {"forward", "input gradient", "weight gradient"};
    for (int d = 0; d < 3; d++) /* one bucket a direction and shape: convolutions by layer */
        snprintf(c->prof[d], sizeof c->prof[d], "cuDNN %s %dx%d s%d %d->%d %dx%d", prof_dir[d],
                 s->kernel, s->kernel, s->stride, s->c_in, s->c_out, s->h_in, s->w_in);
    c->log = pasm_env_flag("PASM_CUDA_CONV_LOG");
    if (c->force_direct & PASM_CUDA_CONV_FILTER) c->ws_max = direct_filter_ws(s, s->n);
    if (pasm_cuda_emulating()) {
        c->emu_ws = env_mib("PASM_CUDA_EMULATE_WORKSPACE_MB", 0); /* read each time: tests */
        if (c->emu_ws > c->ws_max) c->ws_max = c->emu_ws;
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
    if (direct(c, PASM_CUDA_CONV_FORWARD))
        return PASM_BY_DTYPE(c->t, direct_forward(c, n, (const float *)x, (const float *)w, (float *)y),
                             direct_forward(c, n, (const bf16 *)x, (const bf16 *)w, (bf16 *)y));
    if (pasm_cuda_emulating())
        return emu_call(c, ws, ws_bytes, "convolution forward",
                        [=]() { return emu_forward(c, n, x, w, y); });
    CUDNN_TRY(cudnnSetConvolutionMathType(c->cd, c->cur->fwd_math), "math type");
    const float one = 1.0f, zero = 0.0f;
    pasm_cuda_profile_start(c->ctx);
    CUDNN_TRY(cudnnConvolutionForward(c->ctx->cudnn, &one, c->xd, x, c->wd, w, c->cd, c->cur->fwd, ws,
                                      ws_bytes, &zero, c->yd, y),
              "convolution forward");
    pasm_cuda_profile_stop(c->ctx, c->prof[0]);
    return PASM_OK;
}

pasm_status pasm_cuda_conv_backward_data(pasm_cuda_conv *c, int n, const void *dy,
                                         const void *w, void *dx, int add, void *ws,
                                         size_t ws_bytes) {
    pasm_status st = check_batch(c, n, ws_bytes, PASM_CUDA_CONV_DATA);
    if (st) return st;
    if (direct(c, PASM_CUDA_CONV_DATA))
        return PASM_BY_DTYPE(c->t,
                             direct_data(c, n, (const float *)dy, (const float *)w, (float *)dx, add),
                             direct_data(c, n, (const bf16 *)dy, (const bf16 *)w, (bf16 *)dx, add));
    if (pasm_cuda_emulating())
        return emu_call(c, ws, ws_bytes, "convolution input gradient",
                        [=]() { return emu_backward(c, n, NULL, w, dy, dx, add, NULL); });
    CUDNN_TRY(cudnnSetConvolutionMathType(c->cd, c->cur->data_math), "math type");
    const float one = 1.0f, beta = add ? 1.0f : 0.0f;
    pasm_cuda_profile_start(c->ctx);
    CUDNN_TRY(cudnnConvolutionBackwardData(c->ctx->cudnn, &one, c->wd, w, c->yd, dy, c->cd,
                                           c->cur->bwd_data, ws, ws_bytes, &beta, c->xd, dx),
              "convolution input gradient");
    pasm_cuda_profile_stop(c->ctx, c->prof[1]);
    return PASM_OK;
}

pasm_status pasm_cuda_conv_backward_filter(pasm_cuda_conv *c, int n, const void *x,
                                           const void *dy, void *dw, void *ws, size_t ws_bytes) {
    pasm_status st = check_batch(c, n, ws_bytes, PASM_CUDA_CONV_FILTER);
    if (st) return st;
    if (direct(c, PASM_CUDA_CONV_FILTER))
        return PASM_BY_DTYPE(c->t, direct_filter(c, n, (const float *)x, (const float *)dy,
                                                 (float *)dw, ws, ws_bytes),
                             direct_filter(c, n, (const bf16 *)x, (const bf16 *)dy, (bf16 *)dw,
                                           ws, ws_bytes));
    if (pasm_cuda_emulating())
        return emu_call(c, ws, ws_bytes, "convolution weight gradient",
                        [=]() { return emu_backward(c, n, x, NULL, dy, NULL, 0, dw); });
    CUDNN_TRY(cudnnSetConvolutionMathType(c->cd, c->cur->filter_math), "math type");
    const float one = 1.0f, zero = 0.0f;
    pasm_cuda_profile_start(c->ctx);
    CUDNN_TRY(cudnnConvolutionBackwardFilter(c->ctx->cudnn, &one, c->xd, x, c->yd, dy, c->cd,
                                             c->cur->bwd_filter, ws, ws_bytes, &zero, c->wd, dw),
              "convolution weight gradient");
    pasm_cuda_profile_stop(c->ctx, c->prof[2]);
    return PASM_OK;
}
