/* Shared by the backend's .cu files: the context, error helpers, the
 * element-loop launcher (device grid or host emulation) and fp32/bf16
 * loads and stores. */
#ifndef PASM_CUDA_INTERNAL_CUH
#define PASM_CUDA_INTERNAL_CUH

#include <functional>

#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <cudnn.h>

#include "cuda/cuda_backend.h"

/* The oldest GPUs this build's machine code runs on (sm_90 + its PTX). */
#ifndef PASM_CUDA_MIN_MAJOR
#define PASM_CUDA_MIN_MAJOR 9
#endif

struct pasm_cuda_ctx {
    cudaStream_t stream;
    cudnnHandle_t cudnn;
};

pasm_status pasm_cuda_error(cudaError_t e, const char *what);
pasm_status pasm_cudnn_error(int e, const char *what);
/* cudaGetLastError after a launch, as a status naming what. */
pasm_status pasm_cuda_launched(const char *what);
#define TRY_STATUS(x)                                                                            \
    do {                                                                                         \
        pasm_status st_ = (x);                                                                   \
        if (st_) return st_;                                                                     \
    } while (0)
/* Profiling (pasm_cuda_profile): an event on ctx's stream before a launch,
 * and after it another, the pair's time going to the bucket what (read
 * back later, runtime.cu); no-ops when not profiling. */
void pasm_cuda_profile_start(pasm_cuda_ctx *ctx);
void pasm_cuda_profile_stop(pasm_cuda_ctx *ctx, const char *what);

typedef __nv_bfloat16 bf16;

__host__ __device__ inline float to_f(float v) { return v; }
__host__ __device__ inline float to_f(bf16 v) { return __bfloat162float(v); }
template <typename T> __host__ __device__ inline T from_f(float v);
template <> __host__ __device__ inline float from_f<float>(float v) { return v; }
template <> __host__ __device__ inline bf16 from_f<bf16>(float v) { return __float2bfloat16_rn(v); }

template <typename F> __global__ void pasm_k_each(int64_t n, F f) {
    const int64_t stride = (int64_t)gridDim.x * blockDim.x;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) f(i);
}

/* Graphs on the emulation: between pasm_cuda_graph_begin and _end the
 * emulated work is recorded (with the arguments it has then, as a captured
 * kernel keeps its parameters) instead of run, and a launch runs the
 * records in order; what a real capture refuses (copies, waits,
 * allocations) fails the recording. */
int pasm_cuda_recording(void);
void pasm_cuda_record(std::function<pasm_status()> work);
/* PASM_ERR_UNSUPPORTED naming what, and the recording spoiled. */
pasm_status pasm_cuda_unrecordable(const char *what);

/* Emulated work (a pasm_status()): run now, or recorded while the
 * emulation records a graph. */
template <typename W> pasm_status pasm_cuda_emulated(W work) {
    if (!pasm_cuda_recording()) return work();
    pasm_cuda_record(work);
    return PASM_OK;
}

/* f(i) for i in [0, n): a grid on ctx's stream, or a host loop when
 * emulating. f is a __host__ __device__ lambda. */
template <typename F>
pasm_status pasm_each(pasm_cuda_ctx *ctx, int64_t n, F f, const char *what) {
    if (n <= 0) return PASM_OK;
    if (pasm_cuda_emulating()) { /* every i writes its own outputs */
        return pasm_cuda_emulated([=]() {
#pragma omp parallel for schedule(static) if (n >= 4096)
            for (int64_t i = 0; i < n; i++) f(i);
            return PASM_OK;
        });
    }
    const int threads = 256;
    int64_t blocks = (n + threads - 1) / threads;
    if (blocks > 132 * 64) blocks = 132 * 64;
    pasm_cuda_profile_start(ctx);
    pasm_k_each<<<(unsigned)blocks, threads, 0, ctx->stream>>>(n, f);
    pasm_status st = pasm_cuda_launched(what);
    pasm_cuda_profile_stop(ctx, what);
    return st;
}

/* #pragma unroll for the device pass only (the host compiler warns). */
#if defined(__CUDA_ARCH__)
#define PASM_UNROLL _Pragma("unroll")
#else
#define PASM_UNROLL
#endif

/* Sixteen bytes of T (8 bf16 or 4 floats), loaded and stored at once by
 * the element loops that take a vector an index. */
template <typename T> struct alignas(16) pasm_v16 {
    T e[16 / sizeof(T)];
};
/* Counts a loop that runs on vectors (pasm_cuda_vector_loops). */
void pasm_cuda_count_vector_loop(void);
/* p 16-byte aligned, or NULL. */
__host__ __device__ inline bool pasm_aligned16(const void *p) {
    return ((unsigned long long)(size_t)p & 15u) == 0;
}

/* i % c for an element index: in 32 bits when every index of the loop fits
 * (narrow), a 64-bit division being many times the cost of an element's
 * load. */
struct pasm_mod {
    int64_t c;
    bool narrow;
    pasm_mod(int64_t c_, int64_t n) : c(c_), narrow(n <= 0xFFFFFFFFLL && c_ <= 0xFFFFFFFFLL) {}
    __host__ __device__ int64_t operator()(int64_t i) const {
        return narrow ? (int64_t)((uint32_t)i % (uint32_t)c) : i % c;
    }
};

/* Runs body<float> or body<bf16> by t. */
#define PASM_BY_DTYPE(t, call_float, call_bf16) ((t) == PASM_CUDA_BF16 ? (call_bf16) : (call_float))

#endif
