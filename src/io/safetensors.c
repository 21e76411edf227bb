/* safetensors reading and writing. A file is a little-endian u64 header
 * length N, N bytes of JSON naming each tensor's dtype, shape and byte range
 * in the data block that follows, and optional string metadata. Parsing
 * trusts nothing: every length, number, range and type is checked before it
 * is used, so no input, however malformed, reads out of bounds. Tensors keep
 * their header order; their data points into the file buffer (tensors the
 * file left misaligned for their dtype are copied to an aligned tail). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

#include "pasm/io.h"

/* The safetensors reference implementation refuses headers above 100 MB. */
#define MAX_HEADER_BYTES 100000000ull
/* cJSON numbers are doubles: integers above 2^53 are not exact. */
#define MAX_EXACT_INTEGER 9007199254740992.0

typedef struct {
    uint64_t begin, end;
} byte_range;

/* ---------------------------------------------------------------- parsing */

/* A JSON number that is an exact non-negative integer. */
static int json_to_u64(const cJSON *v, uint64_t *out) {
    if (!cJSON_IsNumber(v)) return 0;
    double d = v->valuedouble;
    if (!(d >= 0.0 && d <= MAX_EXACT_INTEGER)) return 0; /* also rejects NaN */
    uint64_t u = (uint64_t)d;
    if ((double)u != d) return 0;
    *out = u;
    return 1;
}

static int dtype_from_name(const char *name, pasm_dtype *out) {
    static const pasm_dtype known[] = {PASM_F32, PASM_I64, PASM_U8, PASM_I32};
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++) {
        if (strcmp(name, pasm_dtype_name(known[i])) == 0) {
            *out = known[i];
            return 1;
        }
    }
    return 0;
}

/* Fills t->ndim and t->shape; *numel gets the element count, checked
 * against overflow (every count above 2^53 is refused). */
static pasm_status parse_shape(const char *src, const char *name, const cJSON *shape,
                               pasm_tensor *t, uint64_t *numel) {
    if (!cJSON_IsArray(shape))
        return pasm_errorf(PASM_ERR_FORMAT, "%s: tensor '%s': \"shape\" is missing or not an array",
                           src, name);
    int ndim = cJSON_GetArraySize(shape);
    if (ndim > PASM_MAX_DIMS)
        return pasm_errorf(PASM_ERR_FORMAT,
                           "%s: tensor '%s': shape has %d dimensions; at most %d are supported", src,
                           name, ndim, PASM_MAX_DIMS);
    uint64_t count = 1;
    int zero = 0, i = 0;
    const cJSON *dim;
    cJSON_ArrayForEach(dim, shape) {
        uint64_t d;
        if (!json_to_u64(dim, &d))
            return pasm_errorf(PASM_ERR_FORMAT,
                               "%s: tensor '%s': shape entry %d is not a non-negative integer", src,
                               name, i);
        t->shape[i++] = (int64_t)d;
        if (d == 0) zero = 1;
        else if (count > (uint64_t)MAX_EXACT_INTEGER / d) count = UINT64_MAX;
        else count *= d;
    }
    t->ndim = ndim;
    if (zero) count = 0;
    if (count == UINT64_MAX)
        return pasm_errorf(PASM_ERR_FORMAT, "%s: tensor '%s': shape has too many elements", src,
                           name);
    *numel = count;
    return PASM_OK;
}

static pasm_status parse_offsets(const char *src, const char *name, const cJSON *offsets,
                                 byte_range *r) {
    if (!cJSON_IsArray(offsets) || cJSON_GetArraySize(offsets) != 2 ||
        !json_to_u64(cJSON_GetArrayItem(offsets, 0), &r->begin) ||
        !json_to_u64(cJSON_GetArrayItem(offsets, 1), &r->end))
        return pasm_errorf(PASM_ERR_FORMAT,
                           "%s: tensor '%s': \"data_offsets\" must be [begin, end], two "
                           "non-negative integers",
                           src, name);
    if (r->begin > r->end)
        return pasm_errorf(PASM_ERR_FORMAT,
                           "%s: tensor '%s': data_offsets [%llu, %llu] end before they begin", src,
                           name, (unsigned long long)r->begin, (unsigned long long)r->end);
    return PASM_OK;
}

/* One header entry: {"dtype": .., "shape": [..], "data_offsets": [b, e]}. */
static pasm_status parse_tensor(const char *src, const cJSON *entry, size_t data_size,
                                pasm_tensor *t, byte_range *r) {
    const char *name = entry->string;
    if (strlen(name) >= sizeof t->name)
        return pasm_errorf(PASM_ERR_FORMAT, "%s: tensor name '%.60s...' is longer than %zu bytes",
                           src, name, sizeof t->name - 1);
    strcpy(t->name, name);
    if (!cJSON_IsObject(entry))
        return pasm_errorf(PASM_ERR_FORMAT, "%s: tensor '%s': header entry is not an object", src,
                           name);
    const cJSON *dtype = cJSON_GetObjectItemCaseSensitive(entry, "dtype");
    if (!cJSON_IsString(dtype))
        return pasm_errorf(PASM_ERR_FORMAT, "%s: tensor '%s': \"dtype\" is missing or not a string",
                           src, name);
    if (!dtype_from_name(dtype->valuestring, &t->dtype))
        return pasm_errorf(PASM_ERR_UNSUPPORTED,
                           "%s: tensor '%s': dtype %.32s is not supported (pasm reads F32, I64, "
                           "U8 and I32)",
                           src, name, dtype->valuestring);
    uint64_t numel = 0;
    pasm_status st = parse_shape(src, name, cJSON_GetObjectItemCaseSensitive(entry, "shape"), t,
                                 &numel);
    if (st != PASM_OK) return st;
    st = parse_offsets(src, name, cJSON_GetObjectItemCaseSensitive(entry, "data_offsets"), r);
    if (st != PASM_OK) return st;
    if (r->end > data_size)
        return pasm_errorf(PASM_ERR_FORMAT,
                           "%s: tensor '%s': data_offsets [%llu, %llu] outside the data block of "
                           "%zu bytes",
                           src, name, (unsigned long long)r->begin, (unsigned long long)r->end,
                           data_size);
    /* numel <= 2^53 and the range <= data_size, so compare by division. */
    uint64_t span = r->end - r->begin, elem = pasm_dtype_size(t->dtype);
    if (span % elem != 0 || span / elem != numel) {
        char shape_buf[128];
        return pasm_errorf(PASM_ERR_FORMAT,
                           "%s: tensor '%s': shape %s of %s needs %llu elements but data_offsets "
                           "[%llu, %llu] hold %llu bytes",
                           src, name, pasm_shape_str(t, shape_buf, sizeof shape_buf),
                           dtype->valuestring, (unsigned long long)numel,
                           (unsigned long long)r->begin, (unsigned long long)r->end,
                           (unsigned long long)span);
    }
    return PASM_OK;
}

static int by_string(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sorting finds repeated keys in n log n, whatever the header's size. */
static pasm_status check_unique_keys(const char *src, const pasm_safetensors *out) {
    if (out->n_meta < 2) return PASM_OK;
    char **sorted = malloc((size_t)out->n_meta * sizeof *sorted);
    if (!sorted) return pasm_errorf(PASM_ERR_NOMEM, "%s: out of memory", src);
    memcpy(sorted, out->meta_keys, (size_t)out->n_meta * sizeof *sorted);
    qsort(sorted, (size_t)out->n_meta, sizeof *sorted, by_string);
    pasm_status st = PASM_OK;
    for (int i = 1; i < out->n_meta && st == PASM_OK; i++)
        if (strcmp(sorted[i - 1], sorted[i]) == 0)
            st = pasm_errorf(PASM_ERR_FORMAT, "%s: __metadata__ key '%.80s' appears twice", src,
                             sorted[i]);
    free(sorted);
    return st;
}

static pasm_status parse_metadata(const char *src, const cJSON *meta, pasm_safetensors *out) {
    if (!cJSON_IsObject(meta))
        return pasm_errorf(PASM_ERR_FORMAT, "%s: __metadata__ is not an object", src);
    int n = cJSON_GetArraySize(meta);
    out->meta_keys = calloc((size_t)n + 1, sizeof(char *));
    out->meta_values = calloc((size_t)n + 1, sizeof(char *));
    if (!out->meta_keys || !out->meta_values)
        return pasm_errorf(PASM_ERR_NOMEM, "%s: out of memory for metadata", src);
    const cJSON *item;
    cJSON_ArrayForEach(item, meta) {
        if (!cJSON_IsString(item))
            return pasm_errorf(PASM_ERR_FORMAT, "%s: __metadata__ value for '%.80s' is not a string",
                               src, item->string);
        int i = out->n_meta++;
        out->meta_keys[i] = strdup(item->string);
        out->meta_values[i] = strdup(item->valuestring);
        if (!out->meta_keys[i] || !out->meta_values[i])
            return pasm_errorf(PASM_ERR_NOMEM, "%s: out of memory for metadata", src);
    }
    return check_unique_keys(src, out);
}

/* qsort helpers: order tensor indices by name, or by byte range. */
static _Thread_local const pasm_tensor *tl_tensors;
static _Thread_local const byte_range *tl_ranges;

static int by_name(const void *a, const void *b) {
    return strcmp(tl_tensors[*(const int *)a].name, tl_tensors[*(const int *)b].name);
}

static int by_range(const void *a, const void *b) {
    const byte_range *x = &tl_ranges[*(const int *)a], *y = &tl_ranges[*(const int *)b];
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return 0;
}

/* Names must be unique and byte ranges disjoint (empty ranges never clash). */
static pasm_status check_unique_disjoint(const char *src, const pasm_safetensors *st,
                                         const byte_range *ranges) {
    int n = st->n_tensors;
    if (n < 2) return PASM_OK;
    int *order = malloc((size_t)n * sizeof *order);
    if (!order) return pasm_errorf(PASM_ERR_NOMEM, "%s: out of memory", src);
    pasm_status status = PASM_OK;
    for (int i = 0; i < n; i++) order[i] = i;
    tl_tensors = st->tensors;
    qsort(order, (size_t)n, sizeof *order, by_name);
    for (int i = 1; i < n && status == PASM_OK; i++)
        if (strcmp(st->tensors[order[i - 1]].name, st->tensors[order[i]].name) == 0)
            status = pasm_errorf(PASM_ERR_FORMAT, "%s: tensor '%s' appears twice in the header",
                                 src, st->tensors[order[i]].name);
    tl_ranges = ranges;
    if (status == PASM_OK) qsort(order, (size_t)n, sizeof *order, by_range);
    /* Walk in begin order, remembering the non-empty range reaching furthest. */
    int last = -1;
    for (int i = 0; i < n && status == PASM_OK; i++) {
        const byte_range *r = &ranges[order[i]];
        if (r->begin == r->end) continue;
        if (last >= 0 && ranges[last].end > r->begin)
            status = pasm_errorf(PASM_ERR_FORMAT,
                                 "%s: tensors '%s' [%llu, %llu] and '%s' [%llu, %llu] overlap", src,
                                 st->tensors[last].name, (unsigned long long)ranges[last].begin,
                                 (unsigned long long)ranges[last].end, st->tensors[order[i]].name,
                                 (unsigned long long)r->begin, (unsigned long long)r->end);
        if (last < 0 || r->end > ranges[last].end) last = order[i];
    }
    free(order);
    return status;
}

/* Points each tensor at its bytes. A tensor whose address is misaligned for
 * its dtype (a file that put an odd-sized U8 tensor before an F32 one) is
 * copied to an aligned tail appended to the buffer, so callers may read
 * t->data as float* or int64_t*. */
static pasm_status place_data(const char *src, pasm_safetensors *st, size_t data_start,
                              const byte_range *ranges) {
    size_t extra = 0;
    for (int i = 0; i < st->n_tensors; i++) {
        uintptr_t at = (uintptr_t)(st->buffer + data_start + ranges[i].begin);
        if (at % pasm_dtype_size(st->tensors[i].dtype) != 0)
            extra += (size_t)(ranges[i].end - ranges[i].begin) + 8;
    }
    if (extra > 0) {
        unsigned char *grown = realloc(st->buffer, st->size + extra + 8);
        if (!grown) return pasm_errorf(PASM_ERR_NOMEM, "%s: out of memory aligning tensors", src);
        st->buffer = grown;
    }
    unsigned char *tail = st->buffer + st->size;
    for (int i = 0; i < st->n_tensors; i++) {
        pasm_tensor *t = &st->tensors[i];
        unsigned char *at = st->buffer + data_start + ranges[i].begin;
        if ((uintptr_t)at % pasm_dtype_size(t->dtype) != 0) {
            tail += (8 - (uintptr_t)tail % 8) % 8;
            size_t bytes = (size_t)(ranges[i].end - ranges[i].begin);
            memcpy(tail, at, bytes);
            at = tail;
            tail += bytes;
        }
        t->data = at;
    }
    return PASM_OK;
}

/* Reads the 8-byte length and the JSON header; *data_start is where the
 * data block begins. */
static pasm_status parse_header_json(const char *src, const unsigned char *buffer, size_t size,
                                     cJSON **root, size_t *data_start) {
    if (size < 8)
        return pasm_errorf(PASM_ERR_FORMAT,
                           "%s: file of %zu bytes is too short for a safetensors header (8-byte "
                           "length first)",
                           src, size);
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = (n << 8) | buffer[i];
    if (n > MAX_HEADER_BYTES)
        return pasm_errorf(PASM_ERR_FORMAT,
                           "%s: header length %llu exceeds the limit of %llu bytes (not a "
                           "safetensors file?)",
                           src, (unsigned long long)n, MAX_HEADER_BYTES);
    if (n > size - 8)
        return pasm_errorf(PASM_ERR_FORMAT,
                           "%s: header length %llu runs past the end of the file (%zu bytes)", src,
                           (unsigned long long)n, size);
    /* A NUL-terminated copy: cJSON then cannot run past the header even if
     * its length handling has a bug. */
    char *text = malloc((size_t)n + 1);
    if (!text) return pasm_errorf(PASM_ERR_NOMEM, "%s: out of memory for the header", src);
    memcpy(text, buffer + 8, (size_t)n);
    text[n] = 0;
    const char *end = NULL;
    *root = cJSON_ParseWithLengthOpts(text, (size_t)n, &end, 0);
    pasm_status st = PASM_OK;
    if (!*root) {
        st = pasm_errorf(PASM_ERR_FORMAT, "%s: header is not valid JSON (error near byte %lld of %llu)",
                         src, end ? (long long)(end - text) : -1LL, (unsigned long long)n);
    } else {
        /* Only padding (whitespace) may follow the JSON value. */
        for (const char *p = end; p && p < text + n; p++)
            if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r') {
                st = pasm_errorf(PASM_ERR_FORMAT,
                                 "%s: header has trailing bytes after its JSON at byte %lld", src,
                                 (long long)(p - text));
                break;
            }
        if (st == PASM_OK && !cJSON_IsObject(*root))
            st = pasm_errorf(PASM_ERR_FORMAT, "%s: header is not a JSON object", src);
    }
    free(text);
    *data_start = 8 + (size_t)n;
    return st;
}

static pasm_status parse_entries(const char *src, const cJSON *root, size_t data_size,
                                 pasm_safetensors *out, byte_range **ranges) {
    int count = cJSON_GetArraySize(root);
    out->tensors = calloc((size_t)count + 1, sizeof *out->tensors);
    *ranges = calloc((size_t)count + 1, sizeof **ranges);
    if (!out->tensors || !*ranges)
        return pasm_errorf(PASM_ERR_NOMEM, "%s: out of memory for %d tensors", src, count);
    int seen_meta = 0;
    const cJSON *entry;
    cJSON_ArrayForEach(entry, root) {
        pasm_status st;
        if (!entry->string)
            return pasm_errorf(PASM_ERR_FORMAT, "%s: header entry without a name", src);
        if (strcmp(entry->string, "__metadata__") == 0) {
            if (seen_meta++)
                return pasm_errorf(PASM_ERR_FORMAT, "%s: __metadata__ appears twice", src);
            st = parse_metadata(src, entry, out);
        } else {
            int i = out->n_tensors++;
            st = parse_tensor(src, entry, data_size, &out->tensors[i], &(*ranges)[i]);
        }
        if (st != PASM_OK) return st;
    }
    return PASM_OK;
}

pasm_status pasm_safetensors_parse(const char *source, unsigned char *buffer, size_t size,
                                   pasm_safetensors *out) {
    memset(out, 0, sizeof *out);
    const char *src = source ? source : "safetensors";
    out->buffer = buffer;
    out->size = size;
    out->source = strdup(src);
    cJSON *root = NULL;
    byte_range *ranges = NULL;
    size_t data_start = 0;
    pasm_status st = PASM_OK;
    if (!out->source) st = pasm_errorf(PASM_ERR_NOMEM, "%s: out of memory", src);
    else if (!buffer) st = pasm_errorf(PASM_ERR_INVALID, "%s: no data", src);
    if (st == PASM_OK) st = parse_header_json(src, buffer, size, &root, &data_start);
    if (st == PASM_OK) st = parse_entries(src, root, size - data_start, out, &ranges);
    if (st == PASM_OK) st = check_unique_disjoint(src, out, ranges);
    if (st == PASM_OK) st = place_data(src, out, data_start, ranges);
    cJSON_Delete(root);
    free(ranges);
    if (st != PASM_OK) pasm_safetensors_free(out);
    return st;
}

pasm_status pasm_safetensors_read(const char *path, pasm_safetensors *out) {
    memset(out, 0, sizeof *out);
    unsigned char *data;
    size_t size;
    pasm_status st = pasm_read_file(path, &data, &size);
    if (st != PASM_OK) return st;
    return pasm_safetensors_parse(path, data, size, out);
}

void pasm_safetensors_free(pasm_safetensors *st) {
    if (!st) return;
    for (int i = 0; i < st->n_meta; i++) {
        free(st->meta_keys[i]);
        free(st->meta_values[i]);
    }
    free(st->meta_keys);
    free(st->meta_values);
    free(st->tensors);
    free(st->buffer);
    free(st->source);
    memset(st, 0, sizeof *st);
}

const pasm_tensor *pasm_safetensors_find(const pasm_safetensors *st, const char *name) {
    for (int i = 0; i < st->n_tensors; i++)
        if (strcmp(st->tensors[i].name, name) == 0) return &st->tensors[i];
    return NULL;
}

const char *pasm_safetensors_meta(const pasm_safetensors *st, const char *key) {
    for (int i = 0; i < st->n_meta; i++)
        if (strcmp(st->meta_keys[i], key) == 0) return st->meta_values[i];
    return NULL;
}

/* ---------------------------------------------------------------- writing */

/* A growing string; `failed` latches an allocation failure. */
typedef struct {
    char *text;
    size_t len, cap;
    int failed;
} text_buf;

static void put_bytes(text_buf *b, const char *s, size_t n) {
    if (b->failed) return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n + 1) cap *= 2;
        char *grown = realloc(b->text, cap);
        if (!grown) {
            b->failed = 1;
            return;
        }
        b->text = grown;
        b->cap = cap;
    }
    memcpy(b->text + b->len, s, n);
    b->len += n;
    b->text[b->len] = 0;
}

static void put(text_buf *b, const char *s) { put_bytes(b, s, strlen(s)); }

static void put_u64(text_buf *b, uint64_t v) {
    char digits[24];
    snprintf(digits, sizeof digits, "%llu", (unsigned long long)v);
    put(b, digits);
}

/* A JSON string literal; bytes >= 0x80 pass through (UTF-8). */
static void put_json_string(text_buf *b, const char *s) {
    put(b, "\"");
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        char esc[8];
        if (*p == '"' || *p == '\\') {
            esc[0] = '\\';
            esc[1] = (char)*p;
            put_bytes(b, esc, 2);
        } else if (*p < 0x20) {
            snprintf(esc, sizeof esc, "\\u%04x", *p);
            put(b, esc);
        } else {
            put_bytes(b, (const char *)p, 1);
        }
    }
    put(b, "\"");
}

/* Checks one tensor to write; *bytes gets its size. */
static pasm_status check_write_tensor(const char *path, const pasm_tensor *t, size_t *bytes) {
    if (strnlen(t->name, sizeof t->name) == sizeof t->name || !t->name[0])
        return pasm_errorf(PASM_ERR_INVALID, "%s: a tensor has an empty or unterminated name",
                           path);
    if (strcmp(t->name, "__metadata__") == 0)
        return pasm_errorf(PASM_ERR_INVALID, "%s: a tensor cannot be named __metadata__", path);
    if (pasm_dtype_size(t->dtype) == 0 || t->ndim < 0 || t->ndim > PASM_MAX_DIMS)
        return pasm_errorf(PASM_ERR_INVALID, "%s: tensor '%s': bad dtype or ndim %d", path,
                           t->name, t->ndim);
    uint64_t numel = 1;
    for (int i = 0; i < t->ndim; i++) {
        if (t->shape[i] < 0 || (t->shape[i] > 0 && numel > (1ull << 50) / (uint64_t)t->shape[i]))
            return pasm_errorf(PASM_ERR_INVALID, "%s: tensor '%s': bad shape", path, t->name);
        numel *= (uint64_t)t->shape[i];
    }
    *bytes = (size_t)numel * pasm_dtype_size(t->dtype);
    if (*bytes > 0 && !t->data)
        return pasm_errorf(PASM_ERR_INVALID, "%s: tensor '%s' has no data", path, t->name);
    return PASM_OK;
}

static void put_tensor_entry(text_buf *b, const pasm_tensor *t, uint64_t begin, uint64_t end) {
    put_json_string(b, t->name);
    put(b, ":{\"dtype\":\"");
    put(b, pasm_dtype_name(t->dtype));
    put(b, "\",\"shape\":[");
    for (int d = 0; d < t->ndim; d++) {
        if (d) put(b, ",");
        put_u64(b, (uint64_t)t->shape[d]);
    }
    put(b, "],\"data_offsets\":[");
    put_u64(b, begin);
    put(b, ",");
    put_u64(b, end);
    put(b, "]}");
}

/* The JSON header, padded with spaces to a multiple of 8 so the data block
 * starts 8-byte aligned. Tensors are laid out back to back in the given
 * order, as the reference implementation requires (it refuses gaps). */
static pasm_status build_header(const char *path, const pasm_tensor *tensors, int n_tensors,
                                const char *const *keys, const char *const *values, int n_meta,
                                text_buf *b, size_t *data_bytes) {
    put(b, "{");
    if (n_meta > 0) {
        put(b, "\"__metadata__\":{");
        for (int i = 0; i < n_meta; i++) {
            if (!keys[i] || !values[i])
                return pasm_errorf(PASM_ERR_INVALID, "%s: metadata entry %d is NULL", path, i);
            if (i) put(b, ",");
            put_json_string(b, keys[i]);
            put(b, ":");
            put_json_string(b, values[i]);
        }
        put(b, "}");
    }
    uint64_t offset = 0;
    for (int i = 0; i < n_tensors; i++) {
        size_t bytes = 0;
        pasm_status st = check_write_tensor(path, &tensors[i], &bytes);
        if (st != PASM_OK) return st;
        for (int j = 0; j < i; j++)
            if (strcmp(tensors[j].name, tensors[i].name) == 0)
                return pasm_errorf(PASM_ERR_INVALID, "%s: tensor '%s' given twice", path,
                                   tensors[i].name);
        if (n_meta > 0 || i > 0) put(b, ",");
        put_tensor_entry(b, &tensors[i], offset, offset + bytes);
        offset += bytes;
    }
    put(b, "}");
    while (b->len % 8 != 0) put(b, " ");
    if (b->failed) return pasm_errorf(PASM_ERR_NOMEM, "%s: out of memory for the header", path);
    *data_bytes = (size_t)offset;
    return PASM_OK;
}

pasm_status pasm_safetensors_write(const char *path, const pasm_tensor *tensors, int n_tensors,
                                   const char *const *meta_keys, const char *const *meta_values,
                                   int n_meta) {
    if (!path) return pasm_errorf(PASM_ERR_INVALID, "safetensors write: no path");
    if (n_tensors < 0 || n_meta < 0 || (n_tensors > 0 && !tensors) ||
        (n_meta > 0 && (!meta_keys || !meta_values)))
        return pasm_errorf(PASM_ERR_INVALID, "%s: bad tensor or metadata list", path);
    text_buf header = {0};
    size_t data_bytes = 0;
    /* the file's parts: the length, the header, then each tensor's bytes
     * straight from the tensor (no copy of the whole file) */
    const void **part = malloc((size_t)(n_tensors + 2) * sizeof *part);
    size_t *bytes = malloc((size_t)(n_tensors + 2) * sizeof *bytes);
    pasm_status st = part && bytes ? build_header(path, tensors, n_tensors, meta_keys,
                                                  meta_values, n_meta, &header, &data_bytes)
                                   : pasm_errorf(PASM_ERR_NOMEM, "%s: out of memory", path);
    if (st != PASM_OK) goto done;
    unsigned char len[8];
    for (int i = 0; i < 8; i++) len[i] = (unsigned char)((uint64_t)header.len >> (8 * i));
    part[0] = len, bytes[0] = 8;
    part[1] = header.text, bytes[1] = header.len;
    for (int i = 0; i < n_tensors; i++) {
        part[i + 2] = tensors[i].data;
        bytes[i + 2] = pasm_tensor_bytes(&tensors[i]);
    }
    st = pasm_write_file_atomic_parts(path, n_tensors + 2, part, bytes);
done:
    free(header.text);
    free(part);
    free(bytes);
    return st;
}
