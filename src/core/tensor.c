/* Tensor views: element counts, byte sizes, dtype names, shape strings. */
#include <stdio.h>

#include "pasm/core.h"

size_t pasm_dtype_size(pasm_dtype t) {
    switch (t) {
    case PASM_F32: return 4;
    case PASM_I64: return 8;
    case PASM_U8: return 1;
    case PASM_I32: return 4;
    }
    return 0;
}

const char *pasm_dtype_name(pasm_dtype t) {
    switch (t) {
    case PASM_F32: return "F32";
    case PASM_I64: return "I64";
    case PASM_U8: return "U8";
    case PASM_I32: return "I32";
    }
    return "?";
}

int64_t pasm_tensor_numel(const pasm_tensor *t) {
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= t->shape[i];
    return n;
}

size_t pasm_tensor_bytes(const pasm_tensor *t) {
    return (size_t)pasm_tensor_numel(t) * pasm_dtype_size(t->dtype);
}

const char *pasm_shape_str(const pasm_tensor *t, char *buf, size_t len) {
    size_t at = 0;
    at += (size_t)snprintf(buf + at, len - at, "[");
    for (int i = 0; i < t->ndim && at < len; i++)
        at += (size_t)snprintf(buf + at, len - at, i ? ", %lld" : "%lld", (long long)t->shape[i]);
    if (at < len) snprintf(buf + at, len - at, "]");
    return buf;
}
