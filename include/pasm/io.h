/* pasm io: safetensors read/write, pasm checkpoints (model + metadata),
 * atomic file writes. Reading validates everything and never reads out of
 * bounds, whatever the input. */
#ifndef PASM_IO_H
#define PASM_IO_H

#include "pasm/core.h"
#include "pasm/nn.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- atomic writes ----
 * Writes to "<path>.tmp.<pid>" in the same folder, fsyncs, renames over path,
 * fsyncs the folder. On any failure the old file at path is untouched. */
pasm_status pasm_write_file_atomic(const char *path, const void *data, size_t size);
/* The same for a file made of n parts written one after the other (part i:
 * size[i] bytes at data[i]), so a caller need not copy them into one buffer. */
pasm_status pasm_write_file_atomic_parts(const char *path, int n, const void *const *data,
                                         const size_t *size);
/* Reads a whole file into a malloc'd buffer (caller frees with free()). */
pasm_status pasm_read_file(const char *path, unsigned char **data, size_t *size);

/* ---- safetensors ----
 * Format: u64 little-endian header length N, N bytes of JSON header
 * {"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, ...,
 *  "__metadata__": {"key": "string value", ...}}, then the data block. */
typedef struct {
    char *source;          /* path or label used in messages */
    unsigned char *buffer; /* the whole file (owned) */
    size_t size;
    int n_tensors;
    pasm_tensor *tensors;  /* data points into buffer; dtype F32, I64, U8 or I32 */
    int n_meta;
    char **meta_keys, **meta_values;
} pasm_safetensors;

/* Parses and validates: header length inside the file, valid JSON object,
 * known dtypes, shape x dtype size == byte range, offsets inside the data
 * block, ranges non-overlapping, string metadata. Messages name the source and
 * the tensor. parse takes ownership of buffer (malloc'd) on success and failure. */
pasm_status pasm_safetensors_parse(const char *source, unsigned char *buffer, size_t size,
                                   pasm_safetensors *out);
pasm_status pasm_safetensors_read(const char *path, pasm_safetensors *out);
void pasm_safetensors_free(pasm_safetensors *st);
const pasm_tensor *pasm_safetensors_find(const pasm_safetensors *st, const char *name);
/* NULL when absent. */
const char *pasm_safetensors_meta(const pasm_safetensors *st, const char *key);

/* Writes tensors (in the given order; data 8-byte aligned) and string
 * metadata atomically. meta_keys/meta_values may be NULL when n_meta is 0. */
pasm_status pasm_safetensors_write(const char *path, const pasm_tensor *tensors, int n_tensors,
                                   const char *const *meta_keys, const char *const *meta_values,
                                   int n_meta);

/* ---- pasm checkpoints ---- */
typedef struct {
    pasm_net_config net;
    int n_classes;
    char **class_names; /* n_classes names, owned */
    int n_norm;         /* channels with mean/std known (0 = unknown) */
    float norm_mean[3], norm_std[3]; /* in 0..1 pixel units */
    int epoch;
    uint64_t seed;
    int round;
    char created_by[64];
    char *args_json; /* owned, may be NULL */
} pasm_model_meta;

void pasm_model_meta_free(pasm_model_meta *m);
/* Deep copy. */
pasm_status pasm_model_meta_copy(pasm_model_meta *dst, const pasm_model_meta *src);
/* Sets class names from a comma-separated list. */
pasm_status pasm_model_meta_set_classes(pasm_model_meta *m, const char *comma_list);
/* Default class names for k classes: FER2013's for 7, FER+'s for 8, else class0.. */
pasm_status pasm_model_meta_default_classes(pasm_model_meta *m, int k);

/* What to assume for files (PyTorch's) without metadata. */
typedef struct {
    int input_size;        /* 0 = 48 */
    const char *classes;   /* comma list or NULL */
    const char *norm;      /* "MEAN,STD" (per channel: "m1,m2,m3,s1,s2,s3") or NULL */
    int precision;         /* the built network's pasm_net_config.precision (0 = fp32) */
    int device;            /* ... and its pasm_net_config.device (0 = the CPU) */
} pasm_load_options;

/* Writes the network's state_dict and meta (design.md's keys) atomically. */
pasm_status pasm_checkpoint_save(const char *path, pasm_net *net, const pasm_model_meta *meta);
/* The same from a network's state tensors (pasm_net_state's, in order) and
 * its configuration: a copy taken earlier, say. */
pasm_status pasm_checkpoint_save_tensors(const char *path, const pasm_net_config *cfg,
                                         const pasm_tensor *tensors, int n,
                                         const pasm_model_meta *meta);
/* Loads a checkpoint: validates the file, infers/validates the architecture,
 * builds a network for max_batch images and fills it. Every tensor must be
 * present with the right shape and dtype; metadata must agree with the tensors. */
pasm_status pasm_checkpoint_load(const char *path, const pasm_load_options *opts,
                                 int max_batch, pasm_net **net, pasm_model_meta *meta);
/* The same with the network built in the given mode (pasm_net_create_mode):
 * PASM_NET_EVAL for inference, PASM_NET_EVAL_GRAD for input gradients;
 * pasm_checkpoint_load builds PASM_NET_TRAIN. */
pasm_status pasm_checkpoint_load_mode(const char *path, const pasm_load_options *opts,
                                      int max_batch, pasm_net_mode mode, pasm_net **net,
                                      pasm_model_meta *meta);

#ifdef __cplusplus
}
#endif
#endif
