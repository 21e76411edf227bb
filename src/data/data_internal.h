/* Internals shared by the data layer's files: the chunked line reader
 * (plain, gzip or memory), PIL-style resampling plans, channel conversion
 * and dataset growth helpers. Not part of the public API. */
#ifndef PASM_DATA_INTERNAL_H
#define PASM_DATA_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include <zlib.h>

#include "pasm/data.h"

/* ---- line reader ----
 * Yields lines (without '\n' or a trailing '\r') from a file or a buffer,
 * gzip-compressed or not, reading large chunks; a line stays valid until the
 * next call. Lines may not exceed LINE_READER_MAX_LINE bytes. */
#define LINE_READER_MAX_LINE ((size_t)64 << 20)

typedef struct {
    const char *name; /* for messages */
    int fd;           /* -1 for memory sources */
    const unsigned char *mem;
    size_t mem_size, mem_pos;
    int gz; /* inflate the source */
    z_stream zs;
    int zs_ready;
    unsigned char *zin; /* compressed input chunk (file sources) */
    size_t zin_cap;
    int src_done;              /* no more bytes to come */
    int input_done;            /* gzip: compressed input exhausted */
    int gz_done;               /* gzip: all members inflated (the inflating side's flag) */
    int member_ended;          /* gzip: at the end of a member */
    int borrowed;              /* buf is the caller's memory (plain memory source) */
    struct inflate_pipe *pipe; /* gzip files: inflating runs on its own thread */
    char *buf;                 /* decoded text; lines live in [begin, end) */
    size_t cap, begin, end, scan;
    long line_no;     /* 1-based number of the line last returned */
    int unterminated; /* the last line returned had no '\n' */
    pasm_status error;
} line_reader;

pasm_status line_reader_open_file(line_reader *r, const char *path);
pasm_status line_reader_open_memory(line_reader *r, const char *name, const void *data,
                                    size_t size);
/* 1 with a line, 0 at the end, -1 on error (r->error holds the status, the
 * message names the file). */
int line_reader_next(line_reader *r, const char **line, size_t *len);
void line_reader_close(line_reader *r);

/* ---- CSV fields ---- */
typedef struct {
    const char *ptr;
    size_t len;
} csv_field;
/* Splits one line into at most max fields (RFC 4180 quotes: a quoted field's
 * "" is a literal quote and is left doubled in ptr/len). Returns the field
 * count, or -1 for an unterminated quote or text after a closing quote. A
 * line with more than max fields returns max + 1. */
int csv_split(const char *line, size_t len, csv_field *fields, int max);
/* Field equal to word, ignoring case and surrounding spaces. */
int csv_field_is(const csv_field *f, const char *word);
/* Copies a field for messages, shortened to fit (out has cap bytes). */
const char *csv_field_show(const csv_field *f, char *out, size_t cap);

/* The PASM_SPLIT_* bits one split name (len bytes, any case) means: Training
 * or train, PublicTest or val or validation, PrivateTest or test, all; 0 for
 * an unknown name. */
unsigned split_token_mask(const char *name, size_t len);

/* ---- FER+ labels ---- */
typedef struct {
    long n_rows;
    int8_t *label;  /* per row: 0..7, or -1 dropped */
    uint8_t *usage; /* per row: PASM_SPLIT_* bit, 0 when the file has no Usage */
    int has_usage;
} ferplus_labels;
pasm_status ferplus_read(const char *path, ferplus_labels *out);
pasm_status ferplus_parse(line_reader *r, ferplus_labels *out);
void ferplus_free(ferplus_labels *f);

/* ---- resampling (PIL's ImagingResample with the bilinear filter) ---- */
typedef struct {
    int in_size, out_size, ksize;
    int *bounds;     /* out_size pairs (first, count) */
    int32_t *coeffs; /* out_size * ksize fixed-point weights */
} resample_plan;

pasm_status resample_plan_init(resample_plan *p, int in_size, int out_size);
void resample_plan_free(resample_plan *p);
/* Bytes of scratch resize_plane needs. */
size_t resize_scratch_size(int in_w, int in_h, int out_w);
/* One 8-bit plane in_w x in_h -> out_w x out_h (plans for x and y). */
void resize_plane(const uint8_t *src, int in_w, int in_h, uint8_t *dst, const resample_plan *px,
                  const resample_plan *py, uint8_t *scratch);

/* Interleaved 1..4 channel pixels to planar grey (PIL L) or RGB; alpha dropped. */
void convert_interleaved(const uint8_t *src, int src_channels, size_t n_pixels, int channels,
                         uint8_t *dst);

/* ---- dataset helpers ---- */
char *data_strdup(const char *s);
char *data_sprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Resizes n native grey side x side images into ds (already allocated at
 * ds->size, ds->channels), in parallel. */
pasm_status data_resize_grey_images(const uint8_t *native, int n, int side, pasm_dataset *ds);

/* Loaders behind pasm_dataset_load. */
pasm_status fer_csv_load_file(const pasm_load_spec *spec, pasm_dataset *out);
pasm_status folder_load(const pasm_load_spec *spec, pasm_dataset *out);
pasm_status single_image_load(const pasm_load_spec *spec, pasm_dataset *out);

#endif
