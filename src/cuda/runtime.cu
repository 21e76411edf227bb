/* The CUDA backend's runtime: whether a GPU answers, the context (one
 * stream, one cuDNN handle), device memory with a byte count, copies. The
 * runtime is linked statically, so a CUDA build starts on machines without
 * a GPU or driver and says so only when a GPU is asked for. */
#include <cuda_runtime.h>
#include <cudnn.h>
#include <functional>
#include <mutex>
#include <new>
#include <vector>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/env.h"
#include "cuda/cuda_internal.cuh"

static int g_emulate;
void pasm_cuda_emulate(int on) { g_emulate = on != 0; }
int pasm_cuda_emulating(void) { return g_emulate; }

/* the emulation's graph being recorded (pasm_cuda_graph_begin), if any */
typedef std::vector<std::function<pasm_status()>> emu_record;
static emu_record *g_recording;
static int g_record_spoiled;
int pasm_cuda_recording(void) { return g_recording != NULL; }
void pasm_cuda_record(std::function<pasm_status()> work) { g_recording->push_back(std::move(work)); }
pasm_status pasm_cuda_unrecordable(const char *what) {
    g_record_spoiled = 1;
    return pasm_errorf(PASM_ERR_UNSUPPORTED, "%s cannot be captured in a graph", what);
}

/* PASM_CUDA_EMULATE=1: the whole backend on the host (a "GPU" whose memory
 * is host memory, whose kernels run their bodies in loops and whose
 * convolutions are the CPU's), so that everything above the kernels runs
 * and is tested where no GPU is. Once seen, it stays on for the process. */
static int emulate_from_env(void) {
    if (pasm_env_flag("PASM_CUDA_EMULATE")) g_emulate = 1;
    return g_emulate;
}

pasm_status pasm_cuda_error(cudaError_t e, const char *what) {
    return pasm_errorf(PASM_ERR_UNSUPPORTED, "CUDA: %s: %s (%s)", what, cudaGetErrorString(e),
                       cudaGetErrorName(e));
}

pasm_status pasm_cudnn_error(int e, const char *what) {
    return pasm_errorf(PASM_ERR_UNSUPPORTED, "cuDNN: %s: %s", what,
                       cudnnGetErrorString((cudnnStatus_t)e));
}

pasm_status pasm_cuda_probe(char *buf, size_t len) {
    if (emulate_from_env()) {
        if (buf && len)
            snprintf(buf, len, "cuda: emulated on the host (PASM_CUDA_EMULATE=1; for tests, slow)");
        return PASM_OK;
    }
    int count = 0;
    cudaError_t e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess) {
        cudaGetLastError();
        const char *why = e == cudaErrorNoDevice ? "no NVIDIA GPU on this machine"
                          : e == cudaErrorInsufficientDriver
                              ? "no NVIDIA driver on this machine, or one older than this build's "
                                "CUDA runtime"
                              : "the GPU did not answer";
        return pasm_errorf(PASM_ERR_UNSUPPORTED, "--device cuda: %s (CUDA: %s)", why,
                           cudaGetErrorString(e));
    }
    if (count < 1)
        return pasm_errorf(PASM_ERR_UNSUPPORTED, "--device cuda: no GPU found");
    cudaDeviceProp p;
    if ((e = cudaGetDeviceProperties(&p, 0)) != cudaSuccess)
        return pasm_cuda_error(e, "reading the GPU's properties");
    if (p.major < PASM_CUDA_MIN_MAJOR)
        return pasm_errorf(PASM_ERR_UNSUPPORTED, "--device cuda: %s has compute capability %d.%d; "
                                                 "this build's kernels need %d.0 or newer "
                                                 "(rebuild with CUDA_ARCH for your GPU)",
                           p.name, p.major, p.minor, PASM_CUDA_MIN_MAJOR);
    int driver = 0;
    cudaDriverGetVersion(&driver);
    if (buf && len)
        snprintf(buf, len, "cuda: %s, %.0f GiB, compute %d.%d, driver %d.%d, cuDNN %zu", p.name,
                 (double)p.totalGlobalMem / (1024.0 * 1024 * 1024), p.major, p.minor,
                 driver / 1000, driver % 1000 / 10, cudnnGetVersion());
    return PASM_OK;
}

/* One context for the process, shared by every network (reference
 * counted): all GPU work runs in order on its one stream, so a teacher's
 * logits, a batch assembled on the GPU and a student's loss need no events
 * between them. With no network left it is kept for the next (a cuDNN
 * handle costs time to make, and pasm run makes and frees a dozen networks
 * one after another), and let go at exit, or when the emulation is switched
 * since it was made. */
static std::mutex g_ctx_lock;
static pasm_cuda_ctx *g_ctx;
static int g_ctx_refs, g_ctx_emulated, g_ctx_at_exit;

static pasm_status ctx_make(pasm_cuda_ctx **out) {
    pasm_cuda_ctx *ctx = (pasm_cuda_ctx *)calloc(1, sizeof *ctx);
    if (!ctx) return pasm_errorf(PASM_ERR_NOMEM, "out of memory for the CUDA context");
    if (g_emulate) {
        *out = ctx;
        return PASM_OK;
    }
    cudaError_t e = cudaStreamCreateWithFlags(&ctx->stream, cudaStreamNonBlocking);
    if (e != cudaSuccess) {
        free(ctx);
        return pasm_cuda_error(e, "creating a stream");
    }
    cudnnStatus_t ce = cudnnCreate(&ctx->cudnn);
    if (ce != CUDNN_STATUS_SUCCESS) {
        cudaStreamDestroy(ctx->stream);
        free(ctx);
        return pasm_cudnn_error(ce, "creating a handle");
    }
    cudnnSetStream(ctx->cudnn, ctx->stream);
    *out = ctx;
    return PASM_OK;
}

static void ctx_destroy(pasm_cuda_ctx *ctx) {
    if (ctx->stream) {
        cudaStreamSynchronize(ctx->stream);
        cudnnDestroy(ctx->cudnn);
        cudaStreamDestroy(ctx->stream);
    }
    free(ctx);
}

/* At exit: the kept context, unless a network still holds it. Registered
 * after the CUDA runtime's own teardown (the probe started it), so it runs
 * before it. */
static void ctx_at_exit(void) {
    std::lock_guard<std::mutex> lock(g_ctx_lock);
    if (g_ctx && g_ctx_refs == 0) {
        ctx_destroy(g_ctx);
        g_ctx = NULL;
    }
}

pasm_status pasm_cuda_ctx_create(pasm_cuda_ctx **out) {
    *out = NULL;
    pasm_status st = pasm_cuda_probe(NULL, 0);
    if (st) return st;
    std::lock_guard<std::mutex> lock(g_ctx_lock);
    if (g_ctx && g_ctx_refs == 0 && g_ctx_emulated != g_emulate) { /* made in the other mode */
        ctx_destroy(g_ctx);
        g_ctx = NULL;
    }
    if (!g_ctx) {
        if ((st = ctx_make(&g_ctx))) return st;
        g_ctx_emulated = g_emulate;
        if (!g_ctx_at_exit) g_ctx_at_exit = atexit(ctx_at_exit) == 0;
    }
    g_ctx_refs++;
    *out = g_ctx;
    return PASM_OK;
}

void pasm_cuda_ctx_free(pasm_cuda_ctx *ctx) {
    if (!ctx) return;
    std::lock_guard<std::mutex> lock(g_ctx_lock);
    if (ctx != g_ctx || --g_ctx_refs > 0) return;
    /* no network holds it: kept for the next one, its stream's work
     * finished as before */
    if (ctx->stream) cudaStreamSynchronize(ctx->stream);
    if (!g_ctx_at_exit) { /* no exit hook: let it go now */
        g_ctx = NULL;
        ctx_destroy(ctx);
    }
}

pasm_status pasm_cuda_sync(pasm_cuda_ctx *ctx, const char *what) {
    if (g_recording) return pasm_cuda_unrecordable("waiting for the GPU");
    if (g_emulate || !ctx) return PASM_OK;
    cudaError_t e = cudaStreamSynchronize(ctx->stream);
    if (e == cudaSuccess) e = cudaGetLastError();
    return e == cudaSuccess ? PASM_OK : pasm_cuda_error(e, what);
}

/* ---- profile: up to 128 named buckets (names copied: a convolution's
 * name its plan made may be gone by the report) ---- */
struct profile_bucket {
    char what[64];
    long calls;
    double seconds;
};
static int g_profile = -1; /* -1: not yet read from the environment */
static profile_bucket g_buckets[128];
static int g_n_buckets;

static int profiling(void) {
    if (g_profile < 0) {
        g_profile = pasm_env_flag("PASM_CUDA_PROFILE");
    }
    return g_profile && !g_emulate;
}

void pasm_cuda_profile(int on) { g_profile = on != 0; }
static void profile_flush(void);
void pasm_cuda_profile_reset(void) {
    profile_flush();
    g_n_buckets = 0;
}

/* Each profiled op is timed on the GPU by a pair of events recorded around
 * it on the stream (no wait for it: the host keeps queueing, so an op's time
 * is its own plus any wait of the GPU for its launch); the pairs are read
 * back in batches, when PROFILE_PENDING are waiting and at the report. */
enum { PROFILE_PENDING = 1024 };
struct profile_pending {
    cudaEvent_t a, b;
    int bucket;
};
static std::vector<profile_pending> g_pending;
static std::vector<cudaEvent_t> g_event_pool;

static cudaEvent_t pool_event(void) {
    cudaEvent_t e = NULL;
    if (!g_event_pool.empty()) {
        e = g_event_pool.back();
        g_event_pool.pop_back();
    } else if (cudaEventCreate(&e) != cudaSuccess) {
        e = NULL;
        cudaGetLastError(); /* the profile's failure, not the next launch's */
    }
    return e;
}

/* The pending pairs' times into their buckets, the events back to the pool.
 * Waiting for the last pair is waiting for all: every context shares one
 * stream. */
static void profile_flush(void) {
    if (g_pending.empty()) return;
    cudaEventSynchronize(g_pending.back().b);
    for (const profile_pending &p : g_pending) {
        float ms = 0.0f;
        if (cudaEventElapsedTime(&ms, p.a, p.b) == cudaSuccess) {
            g_buckets[p.bucket].calls++;
            g_buckets[p.bucket].seconds += 1e-3 * ms;
        } else {
            cudaGetLastError();
        }
        g_event_pool.push_back(p.a);
        g_event_pool.push_back(p.b);
    }
    g_pending.clear();
}

/* The start event, recorded by start and taken by stop (profiled ops do not
 * nest); NULL: none recorded (not profiling, or recording failed). */
static cudaEvent_t g_started = NULL;

void pasm_cuda_profile_start(pasm_cuda_ctx *ctx) {
    if (!profiling() || !ctx) return;
    cudaEvent_t e = pool_event();
    if (!e || cudaEventRecord(e, ctx->stream) != cudaSuccess) {
        if (e) g_event_pool.push_back(e);
        cudaGetLastError(); /* not the launch's error */
        return;
    }
    if (g_started) g_event_pool.push_back(g_started); /* a start never stopped */
    g_started = e;
}

void pasm_cuda_profile_stop(pasm_cuda_ctx *ctx, const char *what) {
    if (!profiling() || !ctx || !g_started) return;
    cudaEvent_t a = g_started, b = pool_event();
    g_started = NULL;
    if (!b || cudaEventRecord(b, ctx->stream) != cudaSuccess) {
        g_event_pool.push_back(a);
        if (b) g_event_pool.push_back(b);
        cudaGetLastError();
        return;
    }
    int i = 0;
    while (i < g_n_buckets && strncmp(g_buckets[i].what, what, sizeof g_buckets[i].what - 1)) i++;
    if (i == g_n_buckets) {
        if (g_n_buckets == (int)(sizeof g_buckets / sizeof *g_buckets)) {
            g_event_pool.push_back(a), g_event_pool.push_back(b);
            return;
        }
        profile_bucket &nb = g_buckets[g_n_buckets++];
        snprintf(nb.what, sizeof nb.what, "%s", what);
        nb.calls = 0;
        nb.seconds = 0.0;
    }
    g_pending.push_back(profile_pending{a, b, i});
    if (g_pending.size() >= PROFILE_PENDING) profile_flush();
}

double pasm_cuda_profile_report(FILE *f, double steps) {
    profile_flush();
    if (steps <= 0) steps = 1;
    profile_bucket b[128];
    int n = g_n_buckets;
    memcpy(b, g_buckets, sizeof(profile_bucket) * (size_t)n);
    for (int i = 1; i < n; i++) /* by time, largest first */
        for (int j = i; j > 0 && b[j].seconds > b[j - 1].seconds; j--) {
            profile_bucket t = b[j];
            b[j] = b[j - 1];
            b[j - 1] = t;
        }
    double total = 0;
    for (int i = 0; i < n; i++) total += b[i].seconds;
    fprintf(f, "# %-44s %9s %11s %6s\n", "operation (per step)", "launches", "ms", "share");
    for (int i = 0; i < n; i++)
        fprintf(f, "# %-44s %9.1f %11.3f %5.1f%%\n", b[i].what, b[i].calls / steps,
                1e3 * b[i].seconds / steps, total > 0 ? 100.0 * b[i].seconds / total : 0.0);
    fprintf(f, "# %-44s %9s %11.3f\n", "total (each op timed on the GPU, launch by launch)", "",
            1e3 * total / steps);
    return 1e3 * total / steps;
}

pasm_status pasm_cuda_launched(const char *what) {
    cudaError_t e = cudaGetLastError();
    return e == cudaSuccess ? PASM_OK : pasm_cuda_error(e, what);
}

/* ---- memory: every live allocation and its size, for the byte counts ---- */
static std::mutex g_mem_lock;
static size_t g_bytes_now, g_bytes_peak;
struct live_alloc {
    void *p;
    size_t bytes;
};
static live_alloc *g_live;
static size_t g_n_live, g_cap_live;
static pasm_status track(void *p, size_t bytes);

pasm_status pasm_cuda_alloc(void **p, size_t bytes, const char *what) {
    *p = NULL;
    if (g_recording) return pasm_cuda_unrecordable("allocating GPU memory");
    if (bytes == 0) bytes = 256;
    if (g_emulate) {
        if (!(*p = calloc(1, bytes)))
            return pasm_errorf(PASM_ERR_NOMEM, "out of memory allocating %.1f MiB for %s",
                               (double)bytes / 1048576.0, what ? what : "a buffer");
    } else {
        cudaError_t e = cudaMalloc(p, bytes);
        if (e != cudaSuccess) {
            cudaGetLastError();
            *p = NULL;
            return pasm_errorf(PASM_ERR_NOMEM, "out of GPU memory allocating %.1f MiB for %s (%s)",
                               (double)bytes / 1048576.0, what ? what : "a buffer",
                               cudaGetErrorString(e));
        }
        /* cleared before any stream uses it: the contexts' streams do not
         * wait for the legacy stream a plain cudaMemset runs on */
        if ((e = cudaMemset(*p, 0, bytes)) != cudaSuccess ||
            (e = cudaDeviceSynchronize()) != cudaSuccess) {
            cudaFree(*p);
            *p = NULL;
            return pasm_cuda_error(e, what ? what : "clearing a buffer");
        }
    }
    pasm_status st = track(*p, bytes);
    static int log = -1;
    if (log < 0) log = pasm_env_flag("PASM_CUDA_ALLOC_LOG");
    if (log && !st)
        fprintf(stderr, "pasm: GPU memory: %10.3f MiB for %s (%.1f MiB held)\n",
                (double)bytes / 1048576.0, what ? what : "a buffer",
                (double)pasm_cuda_bytes_now() / 1048576.0);
    if (st) {
        if (g_emulate) free(*p);
        else cudaFree(*p);
        *p = NULL;
    }
    return st;
}

static pasm_status track(void *p, size_t bytes) {
    std::lock_guard<std::mutex> lock(g_mem_lock);
    if (g_n_live == g_cap_live) {
        size_t cap = g_cap_live ? 2 * g_cap_live : 256;
        live_alloc *grown = (live_alloc *)realloc(g_live, cap * sizeof *grown);
        if (!grown) return pasm_errorf(PASM_ERR_NOMEM, "out of memory tracking GPU buffers");
        g_live = grown;
        g_cap_live = cap;
    }
    g_live[g_n_live++] = live_alloc{p, bytes};
    g_bytes_now += bytes;
    if (g_bytes_now > g_bytes_peak) g_bytes_peak = g_bytes_now;
    return PASM_OK;
}

void pasm_cuda_free(void *p) {
    if (!p) return;
    if (g_emulate) free(p);
    else cudaFree(p);
    std::lock_guard<std::mutex> lock(g_mem_lock);
    for (size_t i = 0; i < g_n_live; i++)
        if (g_live[i].p == p) {
            g_bytes_now -= g_live[i].bytes;
            g_live[i] = g_live[--g_n_live];
            break;
        }
}

size_t pasm_cuda_bytes_now(void) {
    std::lock_guard<std::mutex> lock(g_mem_lock);
    return g_bytes_now;
}

size_t pasm_cuda_bytes_peak(void) {
    std::lock_guard<std::mutex> lock(g_mem_lock);
    return g_bytes_peak;
}

pasm_status pasm_cuda_to_device(pasm_cuda_ctx *ctx, void *dst, const void *src, size_t bytes) {
    if (!bytes) return PASM_OK;
    if (g_recording) return pasm_cuda_unrecordable("a copy from host memory");
    if (g_emulate) {
        memcpy(dst, src, bytes);
        return PASM_OK;
    }
    pasm_cuda_profile_start(ctx);
    cudaError_t e = cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, ctx->stream);
    pasm_cuda_profile_stop(ctx, "copy to the GPU");
    return e == cudaSuccess ? PASM_OK : pasm_cuda_error(e, "copying to the GPU");
}

pasm_status pasm_cuda_to_host(pasm_cuda_ctx *ctx, void *dst, const void *src, size_t bytes) {
    if (!bytes) return PASM_OK;
    if (g_recording) return pasm_cuda_unrecordable("a copy to host memory");
    if (g_emulate) {
        memcpy(dst, src, bytes);
        return PASM_OK;
    }
    pasm_cuda_profile_start(ctx);
    cudaError_t e = cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, ctx->stream);
    if (e != cudaSuccess) return pasm_cuda_error(e, "copying from the GPU");
    pasm_status st = pasm_cuda_sync(ctx, "copying from the GPU");
    pasm_cuda_profile_stop(ctx, "copy from the GPU");
    return st;
}

pasm_status pasm_cuda_copy(pasm_cuda_ctx *ctx, void *dst, const void *src, size_t bytes) {
    if (!bytes) return PASM_OK;
    if (g_emulate)
        return pasm_cuda_emulated([=]() {
            memcpy(dst, src, bytes);
            return PASM_OK;
        });
    pasm_cuda_profile_start(ctx);
    cudaError_t e = cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, ctx->stream);
    pasm_cuda_profile_stop(ctx, "copy on the GPU");
    return e == cudaSuccess ? PASM_OK : pasm_cuda_error(e, "copying on the GPU");
}

size_t pasm_cuda_dtype_size(pasm_cuda_dtype t) { return t == PASM_CUDA_BF16 ? 2 : 4; }

static int g_vectors = -1; /* -1: PASM_CUDA_VECTOR not read yet */

int pasm_cuda_vectors_on(void) { return pasm_env_on("PASM_CUDA_VECTOR", &g_vectors); }

void pasm_cuda_set_vectors(int on) { __atomic_store_n(&g_vectors, on ? 1 : 0, __ATOMIC_RELAXED); }

static uint64_t g_vector_loops;
void pasm_cuda_count_vector_loop(void) { __atomic_add_fetch(&g_vector_loops, 1, __ATOMIC_RELAXED); }
uint64_t pasm_cuda_vector_loops(void) { return __atomic_load_n(&g_vector_loops, __ATOMIC_RELAXED); }

/* ---- graphs ---- */
struct pasm_cuda_graph {
    cudaGraph_t graph;
    cudaGraphExec_t exec;
    emu_record *emu; /* the emulation's recorded work */
};

static int graphs_off(void) {
    const char *e = getenv("PASM_CUDA_GRAPHS");
    return e && e[0] == '0';
}

pasm_status pasm_cuda_graph_begin(pasm_cuda_ctx *ctx) {
    if (graphs_off()) return pasm_errorf(PASM_ERR_UNSUPPORTED, "graphs off (PASM_CUDA_GRAPHS=0)");
    if (profiling()) return pasm_errorf(PASM_ERR_UNSUPPORTED, "no graphs while profiling");
    if (g_recording) return pasm_errorf(PASM_ERR_INVALID, "a graph capture is already running");
    if (g_emulate) {
        g_recording = new (std::nothrow) emu_record;
        g_record_spoiled = 0;
        return g_recording ? PASM_OK
                           : pasm_errorf(PASM_ERR_NOMEM, "out of memory for a graph");
    }
    if (!ctx || !ctx->stream) return pasm_errorf(PASM_ERR_INVALID, "a graph without a context");
    cudaError_t e = cudaStreamBeginCapture(ctx->stream, cudaStreamCaptureModeThreadLocal);
    return e == cudaSuccess ? PASM_OK : pasm_cuda_error(e, "starting a graph capture");
}

pasm_status pasm_cuda_graph_end(pasm_cuda_ctx *ctx, pasm_cuda_graph **out) {
    *out = NULL;
    if (g_emulate) {
        emu_record *rec = g_recording;
        g_recording = NULL;
        if (!rec) return pasm_errorf(PASM_ERR_INVALID, "no graph capture is running");
        pasm_cuda_graph *g = g_record_spoiled ? NULL : (pasm_cuda_graph *)calloc(1, sizeof *g);
        if (!g) {
            delete rec;
            return g_record_spoiled
                       ? pasm_errorf(PASM_ERR_UNSUPPORTED, "capturing a step as a graph: the "
                                                           "capture was invalidated")
                       : pasm_errorf(PASM_ERR_NOMEM, "out of memory for a graph");
        }
        g->emu = rec;
        *out = g;
        return PASM_OK;
    }
    cudaGraph_t graph = NULL;
    cudaError_t e = cudaStreamEndCapture(ctx->stream, &graph);
    if (e != cudaSuccess || !graph) {
        cudaGetLastError();
        if (graph) cudaGraphDestroy(graph);
        return pasm_cuda_error(e != cudaSuccess ? e : cudaErrorStreamCaptureInvalidated,
                               "capturing a step as a graph");
    }
    cudaGraphExec_t exec = NULL;
    e = cudaGraphInstantiate(&exec, graph, 0);
    if (e != cudaSuccess) {
        cudaGetLastError();
        cudaGraphDestroy(graph);
        return pasm_cuda_error(e, "instantiating a step's graph");
    }
    pasm_cuda_graph *g = (pasm_cuda_graph *)calloc(1, sizeof *g);
    if (!g) {
        cudaGraphExecDestroy(exec);
        cudaGraphDestroy(graph);
        return pasm_errorf(PASM_ERR_NOMEM, "out of memory for a graph");
    }
    g->graph = graph;
    g->exec = exec;
    *out = g;
    return PASM_OK;
}

pasm_status pasm_cuda_graph_launch(pasm_cuda_ctx *ctx, pasm_cuda_graph *g) {
    if (g->emu) {
        for (auto &work : *g->emu) TRY_STATUS(work());
        return PASM_OK;
    }
    cudaError_t e = cudaGraphLaunch(g->exec, ctx->stream);
    return e == cudaSuccess ? PASM_OK : pasm_cuda_error(e, "launching a step's graph");
}

void pasm_cuda_graph_free(pasm_cuda_graph *g) {
    if (!g) return;
    if (g->emu) delete g->emu;
    else {
        cudaGraphExecDestroy(g->exec);
        cudaGraphDestroy(g->graph);
    }
    free(g);
}
