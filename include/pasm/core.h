/* pasm core: status codes and error context, counter-based RNG, threads,
 * tensors and the arena allocator. Every other layer builds on these. */
#ifndef PASM_CORE_H
#define PASM_CORE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define PASM_VERSION "0.1.0"

/* Every public function returns a pasm_status. On failure it has set a
 * thread-local message (pasm_last_error) carrying file, line, tensor, ... */
typedef enum {
    PASM_OK = 0,
    PASM_ERR_INVALID,     /* bad argument or option value */
    PASM_ERR_IO,          /* open/read/write/rename failed */
    PASM_ERR_FORMAT,      /* malformed file contents */
    PASM_ERR_SHAPE,       /* tensor shape mismatch */
    PASM_ERR_NOMEM,       /* allocation failed */
    PASM_ERR_NUMERIC,     /* NaN or infinite value */
    PASM_ERR_INTERRUPTED, /* stopped by a signal, state saved */
    PASM_ERR_UNSUPPORTED  /* feature not available in this build/CPU */
} pasm_status;

/* Sets the thread-local error message (printf-style) and returns code. */
pasm_status pasm_errorf(pasm_status code, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Prepends "prefix: " to the current message (adds outer context), returns code. */
pasm_status pasm_error_prefix(pasm_status code, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
const char *pasm_last_error(void);
void pasm_clear_error(void);
const char *pasm_status_name(pasm_status code);

/* Notes: what the library says without failing (a GPU step that falls back
 * from a CUDA graph, a convolution cuDNN computes in its default math). By
 * default each goes to stderr as "pasm: note: TEXT"; a handler set here gets
 * the text instead (NULL restores the default). The handler is process-wide
 * and may be called from any thread, outside any lock (it may itself call
 * pasm_note); text is valid during the call only. A note already being
 * delivered may still reach the previous handler: keep its ctx alive until
 * no library call is running. pasm_note formats one and delivers it. */
typedef void (*pasm_note_handler)(const char *text, void *ctx);
void pasm_set_note_handler(pasm_note_handler handler, void *ctx);
void pasm_note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* ---- memory ---- */
/* malloc that returns NULL and sets an error naming `what` on failure.
 * Zeroed, 64-byte aligned. Free with pasm_free. */
void *pasm_alloc(size_t bytes, const char *what);
/* The same block, not zeroed and not counted (for buffers filled at once,
 * such as a file read whole). Free with pasm_free. */
void *pasm_alloc_uninit(size_t bytes, const char *what);
void pasm_free(void *p);
/* Counts of pasm_alloc calls since start (tests assert a step allocates nothing). */
uint64_t pasm_alloc_count(void);

/* ---- threads ---- */
/* 0 = all cores. Sets OpenMP and OpenBLAS thread counts. */
void pasm_set_threads(int n_threads);
int pasm_get_threads(void);

/* ---- counter-based RNG ----
 * Philox4x32-10 keyed by (seed, purpose); the counter is (a, b), e.g.
 * (epoch, sample index). The same key and counter always give the same
 * numbers, whatever the thread schedule. */
typedef struct {
    uint32_t key[2];
    uint32_t ctr[4];
    uint32_t buf[4];
    int used; /* how many of buf are consumed (4 = empty) */
} pasm_rng;

enum { /* purposes: separate streams for separate uses */
    PASM_RNG_INIT = 1,
    PASM_RNG_SHUFFLE = 2,
    PASM_RNG_AUGMENT = 3,
    PASM_RNG_SPLIT = 4,
    PASM_RNG_SYNTH = 5,
    PASM_RNG_ATTACK = 6,
    PASM_RNG_MASK = 7,
    PASM_RNG_DROP = 8
};

void pasm_rng_init(pasm_rng *r, uint64_t seed, uint32_t purpose, uint64_t a, uint64_t b);
uint32_t pasm_rng_u32(pasm_rng *r);
/* Uniform in [0, 1) with 24 bits. */
float pasm_rng_uniform(pasm_rng *r);
double pasm_rng_uniform_double(pasm_rng *r);
/* Uniform integer in [0, n), n > 0, unbiased. */
uint32_t pasm_rng_below(pasm_rng *r, uint32_t n);
/* Standard normal (Box-Muller). */
float pasm_rng_normal(pasm_rng *r);

/* ---- tensors ---- */
typedef enum { PASM_F32 = 0, PASM_I64 = 1, PASM_U8 = 2, PASM_I32 = 3 } pasm_dtype;
size_t pasm_dtype_size(pasm_dtype t);
const char *pasm_dtype_name(pasm_dtype t); /* safetensors names: F32, I64, U8, I32 */

#define PASM_MAX_DIMS 4
/* A named view: shape + pointer. The tensor does not own its data. */
typedef struct {
    char name[96];
    pasm_dtype dtype;
    int ndim;
    int64_t shape[PASM_MAX_DIMS];
    void *data;
} pasm_tensor;

int64_t pasm_tensor_numel(const pasm_tensor *t);
size_t pasm_tensor_bytes(const pasm_tensor *t);
/* "[64, 3, 3, 3]" into buf. */
const char *pasm_shape_str(const pasm_tensor *t, char *buf, size_t len);

/* ---- arena: one block, bump allocation, planned once ---- */
typedef struct {
    unsigned char *base;
    size_t size, used;
} pasm_arena;

pasm_status pasm_arena_init(pasm_arena *a, size_t bytes, const char *what);
/* 64-byte aligned; NULL (with error) when the plan was too small. */
void *pasm_arena_take(pasm_arena *a, size_t bytes);
void pasm_arena_free(pasm_arena *a);

/* ---- small helpers ---- */
double pasm_now_seconds(void); /* monotonic */

/* ---- devices ----
 * Where a network computes: the CPU, or an NVIDIA GPU through the CUDA
 * backend (src/cuda/; present in builds made where nvcc was found). The API
 * speaks host memory either way: a GPU network keeps its weights, statistics
 * and activations on the GPU and copies what the caller reads. */
typedef enum { PASM_DEVICE_CPU = 0, PASM_DEVICE_CUDA = 1 } pasm_device;
/* "cpu" / "cuda" -> *out; PASM_ERR_INVALID naming the text otherwise. */
pasm_status pasm_device_parse(const char *text, pasm_device *out);
const char *pasm_device_name(pasm_device d);
/* PASM_OK when networks can be built on d here; PASM_ERR_UNSUPPORTED with
 * the reason otherwise (a build without CUDA, no GPU, no driver). */
pasm_status pasm_device_check(pasm_device d);
/* One line about d: "cuda: NVIDIA H200, 139 GiB, compute 9.0, driver 13.0"
 * or why it is not available. */
const char *pasm_device_describe(pasm_device d, char *buf, size_t len);
/* The most bytes of d's memory that pasm's networks held at once in this
 * process (GPU memory; 0 for the CPU, whose peak the OS reports). */
size_t pasm_device_peak_bytes(pasm_device d);

#ifdef __cplusplus
}
#endif
#endif
