/* The FER2013 CSV loader: a header naming emotion, pixels and Usage columns
 * (any order; Kaggle's train.csv/test.csv without Usage or emotion too), one
 * face a line as k*k space-separated integers. Rows are parsed by hand (no
 * strtol, no per-row allocation) straight into one growing buffer of native
 * grey faces, which are resized to the requested size at the end. Every
 * problem is reported as file:line with what is wrong. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/data_internal.h"

#define MAX_COLUMNS 64
#define DEFAULT_SIZE 48

typedef struct {
    const char *name;
    unsigned want;                 /* PASM_SPLIT_* bits asked for */
    const ferplus_labels *ferplus; /* or NULL */
    int n_cols, col_emotion, col_pixels, col_usage;
    size_t n_pixels; /* per face; 0 until the first row */
    int side;
    uint8_t *native; /* n faces of n_pixels bytes */
    int32_t *labels, *rows;
    size_t cap; /* faces the three arrays hold */
    int n;
    uint8_t *scratch; /* pixels of rows that are not kept */
    size_t scratch_cap;
    long data_rows;
    csv_field fields[MAX_COLUMNS + 1];
} csv_state;

static pasm_status parse_header(csv_state *s, const char *line, size_t len, long line_no) {
    if (len >= 3 && memcmp(line, "\xEF\xBB\xBF", 3) == 0) line += 3, len -= 3; /* UTF-8 BOM */
    int nf = csv_split(line, len, s->fields, MAX_COLUMNS);
    if (nf < 0)
        return pasm_errorf(PASM_ERR_FORMAT, "%s:%ld: malformed quoting in the header", s->name,
                           line_no);
    if (nf > MAX_COLUMNS)
        return pasm_errorf(PASM_ERR_FORMAT, "%s:%ld: header has more than %d columns", s->name,
                           line_no, MAX_COLUMNS);
    s->n_cols = nf;
    s->col_emotion = s->col_pixels = s->col_usage = -1;
    for (int i = 0; i < nf; i++) {
        int *col = csv_field_is(&s->fields[i], "emotion")  ? &s->col_emotion
                   : csv_field_is(&s->fields[i], "pixels") ? &s->col_pixels
                   : csv_field_is(&s->fields[i], "usage")  ? &s->col_usage
                                                           : NULL;
        if (!col) continue;
        if (*col >= 0)
            return pasm_errorf(PASM_ERR_FORMAT, "%s:%ld: column '%.*s' appears twice in the header",
                               s->name, line_no, (int)s->fields[i].len, s->fields[i].ptr);
        *col = i;
    }
    if (s->col_pixels < 0)
        return pasm_errorf(PASM_ERR_FORMAT,
                           "%s:%ld: header has no 'pixels' column (a FER2013 CSV starts with a "
                           "header such as emotion,pixels,Usage)",
                           s->name, line_no);
    return PASM_OK;
}

/* Names the first of our columns a short row lacks. */
static const char *missing_column(const csv_state *s, int have) {
    const char *name = NULL;
    int best = INT_MAX;
    if (s->col_emotion >= have && s->col_emotion < best) best = s->col_emotion, name = "emotion";
    if (s->col_pixels >= have && s->col_pixels < best) best = s->col_pixels, name = "pixels";
    if (s->col_usage >= have && s->col_usage < best) best = s->col_usage, name = "Usage";
    return name ? name : "(unnamed)";
}

static pasm_status bad_pixel(const csv_state *s, long line_no, size_t index, const char *tok,
                             const char *end) {
    const char *stop = tok;
    while (stop < end && *stop != ' ' && *stop != '\t' && stop - tok < 24)
        stop++;
    csv_field f = {tok, (size_t)(stop - tok)};
    char shown[32];
    return pasm_errorf(PASM_ERR_FORMAT, "%s:%ld: pixel %zu: '%s' is not an integer 0..255", s->name,
                       line_no, index + 1, csv_field_show(&f, shown, sizeof shown));
}

/* Value of a token of len (1..3) digits at p, where 4 bytes may be read: the
 * digits are right-aligned in a word, then combined pairwise (SWAR). */
static inline unsigned token_value(const unsigned char *p, size_t len) {
    uint32_t w;
    memcpy(&w, p, 4);
    uint32_t d = ((w ^ 0x30303030u) << (8 * (4 - len))) & 0x0F0F0F0Fu;
    d = d * 10 + (d >> 8);
    return (d & 0xFF) * 100 + ((d >> 16) & 0xFF);
}

/* The same value, one digit at a time, reading only the len digits. */
static inline unsigned digits_value(const unsigned char *p, size_t len) {
    unsigned v = 0;
    for (size_t k = 0; k < len; k++) v = v * 10 + (unsigned)(p[k] - '0');
    return v;
}

#if defined(__SSE2__)
#include <emmintrin.h>

/* Bits of the 16 bytes at p: spaces in *space, anything but digits and spaces returned. */
static inline unsigned block_masks(const unsigned char *p, unsigned *space) {
    __m128i v = _mm_loadu_si128((const __m128i *)p);
    __m128i is_space = _mm_cmpeq_epi8(v, _mm_set1_epi8(' '));
    __m128i is_digit = _mm_and_si128(_mm_cmpgt_epi8(v, _mm_set1_epi8('0' - 1)),
                                     _mm_cmplt_epi8(v, _mm_set1_epi8('9' + 1)));
    *space = (unsigned)_mm_movemask_epi8(is_space);
    return ~(unsigned)_mm_movemask_epi8(_mm_or_si128(is_space, is_digit)) & 0xFFFF;
}
#else
static inline unsigned block_masks(const unsigned char *p, unsigned *space) {
    unsigned other = 0;
    *space = 0;
    for (int i = 0; i < 16; i++) {
        *space |= (unsigned)(p[i] == ' ') << i;
        other |= (unsigned)(p[i] != ' ' && (p[i] < '0' || p[i] > '9')) << i;
    }
    return other;
}
#endif

/* The fast path for well-formed pixels (digits and single spaces, 1..3
 * digits a value): separators are found 64 bytes at a time as a bit mask,
 * so finding the next token never waits for the previous value. Returns 0
 * when the field needs the careful parser (tabs, errors, leading zeros,
 * values over 255), which then reports exactly what is wrong. */
static int parse_pixels_fast(const csv_field *f, uint8_t *out, size_t cap, size_t *count) {
    const unsigned char *p = (const unsigned char *)f->ptr;
    size_t len = f->len, start = 0, n = 0, base = 0;
    for (; base + 64 <= len; base += 64) {
        uint64_t space = 0, other = 0;
        for (int k = 0; k < 4; k++) {
            unsigned sp;
            other |= (uint64_t)block_masks(p + base + 16 * k, &sp) << (16 * k);
            space |= (uint64_t)sp << (16 * k);
        }
        if (other) return 0;
        for (; space; space &= space - 1) {
            size_t sep = base + (size_t)__builtin_ctzll(space), tok = sep - start;
            if (tok - 1 > 2) { /* not 1..3 digits: double space, leading space or long number */
                if (tok != 0) return 0;
                start = sep + 1;
                continue;
            }
            /* token_value reads 4 bytes: never past the field's end, which
             * may be the end of the buffer (a file without a final newline) */
            unsigned v = start + 4 <= len ? token_value(p + start, tok) : digits_value(p + start, tok);
            if (v > 255 || n >= cap) return 0;
            out[n++] = (uint8_t)v;
            start = sep + 1;
        }
    }
    /* The tail, under 64 bytes, byte by byte. */
    for (size_t i = base > start ? base : start; i <= len; i++) {
        if (i < len && p[i] >= '0' && p[i] <= '9') continue;
        if (i < len && p[i] != ' ') return 0;
        size_t tok = i - start;
        if (tok > 0) {
            if (tok > 3 || n >= cap) return 0;
            unsigned v = digits_value(p + start, tok);
            if (v > 255) return 0;
            out[n++] = (uint8_t)v;
        }
        start = i + 1;
    }
    *count = n;
    return 1;
}

/* Parses space-separated integers 0..255 into out (storing at most cap) and
 * returns how many there were in *count, with the fast path first. */
static pasm_status parse_pixels(const csv_state *s, long line_no, const csv_field *f, uint8_t *out,
                                size_t cap, size_t *count) {
    if (parse_pixels_fast(f, out, cap, count)) return PASM_OK;
    const unsigned char *p = (const unsigned char *)f->ptr, *end = p + f->len;
    size_t n = 0;
    while (p < end) {
        if (*p == ' ' || *p == '\t') {
            p++;
            continue;
        }
        const unsigned char *tok = p;
        unsigned v = (unsigned)*p - '0', d;
        if (v > 9) return bad_pixel(s, line_no, n, (const char *)tok, (const char *)end);
        for (p++; p < end && (d = (unsigned)*p - '0') <= 9; p++) {
            v = v * 10 + d;
            if (v > 255) return bad_pixel(s, line_no, n, (const char *)tok, (const char *)end);
        }
        if (p < end && *p != ' ' && *p != '\t')
            return bad_pixel(s, line_no, n, (const char *)tok, (const char *)end);
        if (n < cap) out[n] = (uint8_t)v;
        n++;
    }
    *count = n;
    return PASM_OK;
}

static pasm_status parse_label(const csv_state *s, long line_no, const csv_field *f, int *label) {
    if (f->len == 1 && f->ptr[0] >= '0' && f->ptr[0] <= '6') {
        *label = f->ptr[0] - '0';
        return PASM_OK;
    }
    char shown[32];
    return pasm_errorf(PASM_ERR_FORMAT, "%s:%ld: emotion '%s' is not a class index 0..6", s->name,
                       line_no, csv_field_show(f, shown, sizeof shown));
}

static pasm_status parse_usage(const csv_state *s, long line_no, const csv_field *f,
                               unsigned *usage) {
    *usage = csv_field_is(f, "Training")      ? PASM_SPLIT_TRAINING
             : csv_field_is(f, "PublicTest")  ? PASM_SPLIT_PUBLIC_TEST
             : csv_field_is(f, "PrivateTest") ? PASM_SPLIT_PRIVATE_TEST
                                              : 0;
    if (*usage) return PASM_OK;
    char shown[32];
    return pasm_errorf(PASM_ERR_FORMAT,
                       "%s:%ld: Usage '%s' is not Training, PublicTest or PrivateTest", s->name,
                       line_no, csv_field_show(f, shown, sizeof shown));
}

static const char *usage_name(unsigned usage) {
    return usage == PASM_SPLIT_TRAINING      ? "Training"
           : usage == PASM_SPLIT_PUBLIC_TEST ? "PublicTest"
                                             : "PrivateTest";
}

static pasm_status grow(csv_state *s, long line_no) {
    if (s->n == INT_MAX - 1)
        return pasm_errorf(PASM_ERR_FORMAT, "%s:%ld: more than %d faces", s->name, line_no,
                           INT_MAX - 1);
    size_t cap = s->cap ? s->cap * 2 : 1024;
    if (cap > (size_t)INT_MAX) cap = (size_t)INT_MAX;
    uint8_t *native = realloc(s->native, cap * s->n_pixels);
    if (native) s->native = native;
    int32_t *labels = native ? realloc(s->labels, cap * sizeof *labels) : NULL;
    if (labels) s->labels = labels;
    int32_t *rows = labels ? realloc(s->rows, cap * sizeof *rows) : NULL;
    if (rows) s->rows = rows;
    if (!rows)
        return pasm_errorf(PASM_ERR_NOMEM, "%s:%ld: out of memory for %zu faces", s->name, line_no,
                           cap);
    s->cap = cap;
    return PASM_OK;
}

/* Where this row's pixels go: the next face slot when kept, else scratch. */
static pasm_status pixel_target(csv_state *s, const csv_field *f, long line_no, int keep,
                                uint8_t **dst, size_t *cap) {
    if (keep && s->n_pixels) {
        if ((size_t)s->n == s->cap) {
            pasm_status st = grow(s, line_no);
            if (st != PASM_OK) return st;
        }
        *dst = s->native + (size_t)s->n * s->n_pixels;
        *cap = s->n_pixels;
        return PASM_OK;
    }
    /* A field of len bytes holds at most len/2 + 1 numbers. */
    size_t need = s->n_pixels ? s->n_pixels : f->len / 2 + 1;
    if (need > s->scratch_cap) {
        uint8_t *bigger = realloc(s->scratch, need);
        if (!bigger) return pasm_errorf(PASM_ERR_NOMEM, "%s:%ld: out of memory", s->name, line_no);
        s->scratch = bigger;
        s->scratch_cap = need;
    }
    *dst = s->scratch;
    *cap = need;
    return PASM_OK;
}

static int isqrt_exact(size_t k) {
    size_t r = 0;
    while ((r + 1) * (r + 1) <= k)
        r++;
    return r * r == k ? (int)r : -1;
}

/* The first row fixes the face size; later rows must match it. */
static pasm_status check_count(csv_state *s, long line_no, size_t count) {
    if (s->n_pixels == 0) {
        int side = isqrt_exact(count);
        if (side < 1 || side > 4096)
            return pasm_errorf(PASM_ERR_FORMAT,
                               "%s:%ld: %zu pixels do not make a square face (48x48 is 2304)",
                               s->name, line_no, count);
        s->side = side;
        s->n_pixels = count;
        return PASM_OK;
    }
    if (count == s->n_pixels) return PASM_OK;
    return pasm_errorf(PASM_ERR_FORMAT,
                       "%s:%ld: expected %zu pixels (%dx%d as on the first row), found %zu",
                       s->name, line_no, s->n_pixels, s->side, s->side, count);
}

/* Usage of this row: its own column, FER+'s, or 0 (every split). */
static pasm_status row_usage(csv_state *s, long line_no, long row, unsigned *usage) {
    *usage = 0;
    if (s->col_usage >= 0) {
        pasm_status st = parse_usage(s, line_no, &s->fields[s->col_usage], usage);
        if (st != PASM_OK) return st;
    }
    const ferplus_labels *fp = s->ferplus;
    if (fp && fp->has_usage && row < fp->n_rows) {
        if (*usage && *usage != fp->usage[row])
            return pasm_errorf(
                PASM_ERR_FORMAT,
                "%s:%ld: Usage %s disagrees with the FER+ file's %s for data row %ld", s->name,
                line_no, usage_name(*usage), usage_name(fp->usage[row]), row + 1);
        *usage = fp->usage[row];
    }
    return PASM_OK;
}

static pasm_status parse_row(csv_state *s, const char *line, size_t len, long line_no) {
    int nf = csv_split(line, len, s->fields, s->n_cols);
    if (nf < 0) return pasm_errorf(PASM_ERR_FORMAT, "%s:%ld: malformed quoting", s->name, line_no);
    if (nf > s->n_cols)
        return pasm_errorf(PASM_ERR_FORMAT, "%s:%ld: more columns than the header's %d", s->name,
                           line_no, s->n_cols);
    if (nf < s->n_cols)
        return pasm_errorf(PASM_ERR_FORMAT, "%s:%ld: missing column '%s' (%d of %d columns)",
                           s->name, line_no, missing_column(s, nf), nf, s->n_cols);
    long row = s->data_rows++;
    unsigned usage;
    pasm_status st = row_usage(s, line_no, row, &usage);
    int label = -1;
    if (st == PASM_OK && s->col_emotion >= 0)
        st = parse_label(s, line_no, &s->fields[s->col_emotion], &label);
    if (st != PASM_OK) return st;
    if (s->ferplus) label = row < s->ferplus->n_rows ? s->ferplus->label[row] : -1;
    int keep = (usage == 0 || (usage & s->want)) && !(s->ferplus && label < 0);
    uint8_t *dst = NULL;
    size_t cap = 0, count = 0;
    const csv_field *px = &s->fields[s->col_pixels];
    st = pixel_target(s, px, line_no, keep, &dst, &cap);
    if (st == PASM_OK) st = parse_pixels(s, line_no, px, dst, cap, &count);
    if (st == PASM_OK) st = check_count(s, line_no, count);
    if (st != PASM_OK || !keep) return st;
    if (dst == s->scratch) { /* the first kept row: its size is known only now */
        if ((size_t)s->n == s->cap && (st = grow(s, line_no)) != PASM_OK) return st;
        memcpy(s->native + (size_t)s->n * s->n_pixels, s->scratch, s->n_pixels);
    }
    s->labels[s->n] = label;
    s->rows[s->n] = (int32_t)(row < INT32_MAX ? row : INT32_MAX);
    s->n++;
    return PASM_OK;
}

static pasm_status check_spec(const pasm_load_spec *spec) {
    if (spec->input_size < 0 || spec->input_size > 4096)
        return pasm_errorf(PASM_ERR_INVALID, "input size %d outside 1..4096", spec->input_size);
    if (spec->channels != 0 && spec->channels != 1 && spec->channels != 3)
        return pasm_errorf(PASM_ERR_INVALID, "channels %d: need 1 or 3", spec->channels);
    return PASM_OK;
}

/* Moves the parsed faces into out, resized and converted as spec asks. */
static pasm_status finish(csv_state *s, const pasm_load_spec *spec, pasm_dataset *out) {
    const char *split = spec->split && *spec->split ? spec->split : "all";
    if (s->n == 0)
        return pasm_errorf(PASM_ERR_FORMAT,
                           "%s: no faces in split '%s' (%ld data rows in the file)", s->name, split,
                           s->data_rows);
    int size = spec->input_size ? spec->input_size : DEFAULT_SIZE;
    int channels = spec->channels ? spec->channels : 1;
    memset(out, 0, sizeof *out);
    out->n = s->n;
    out->size = size;
    out->channels = channels;
    out->labels = s->labels;
    out->rows = s->rows;
    s->labels = s->rows = NULL;
    pasm_status st = PASM_OK;
    if (size == s->side && channels == 1) {
        out->images = s->native;
        s->native = NULL;
    } else {
        out->images = malloc((size_t)s->n * channels * size * size);
        st = out->images
                 ? data_resize_grey_images(s->native, s->n, s->side, out)
                 : pasm_errorf(PASM_ERR_NOMEM, "%s: out of memory for %d faces", s->name, s->n);
    }
    out->labelled = s->ferplus || s->col_emotion >= 0;
    if (st == PASM_OK && out->labelled)
        st = pasm_dataset_set_classes(out, s->ferplus ? pasm_ferplus_classes : pasm_fer2013_classes,
                                      s->ferplus ? 8 : 7);
    out->source = data_sprintf("%s (%s)", s->name, split);
    if (st == PASM_OK && !out->source) st = pasm_errorf(PASM_ERR_NOMEM, "out of memory");
    if (st != PASM_OK) pasm_dataset_free(out);
    return st;
}

static pasm_status read_lines(csv_state *s, line_reader *r) {
    const char *line;
    size_t len;
    int got, header_seen = 0;
    pasm_status st = PASM_OK;
    while ((got = line_reader_next(r, &line, &len)) == 1) {
        if (len == 0) continue; /* blank lines, e.g. a trailing one */
        st = header_seen ? parse_row(s, line, len, r->line_no)
                         : parse_header(s, line, len, r->line_no);
        header_seen = 1;
        if (st != PASM_OK) {
            if (r->unterminated) {
                char msg[1024];
                snprintf(msg, sizeof msg, "%s", pasm_last_error());
                pasm_errorf(st, "%s (the file ends in the middle of this row)", msg);
            }
            return st;
        }
    }
    if (got < 0) return r->error;
    if (!header_seen) return pasm_errorf(PASM_ERR_FORMAT, "%s: empty file", s->name);
    if (s->ferplus && s->data_rows != s->ferplus->n_rows)
        return pasm_errorf(
            PASM_ERR_FORMAT,
            "%s has %ld data rows but the FER+ labels have %ld: they must match row for row",
            s->name, s->data_rows, s->ferplus->n_rows);
    return PASM_OK;
}

static pasm_status parse_stream(line_reader *r, const pasm_load_spec *spec, pasm_dataset *out) {
    csv_state s;
    memset(&s, 0, sizeof s);
    ferplus_labels fp;
    memset(&fp, 0, sizeof fp);
    s.name = r->name;
    pasm_status st = check_spec(spec);
    if (st == PASM_OK) st = pasm_split_parse(spec->split, &s.want);
    if (st == PASM_OK && spec->labels) {
        st = ferplus_read(spec->labels, &fp);
        s.ferplus = &fp;
    }
    if (st == PASM_OK) st = read_lines(&s, r);
    if (st == PASM_OK) st = finish(&s, spec, out);
    free(s.native);
    free(s.labels);
    free(s.rows);
    free(s.scratch);
    ferplus_free(&fp);
    return st;
}

pasm_status pasm_fer_csv_parse(const char *source, const void *data, size_t size,
                               const pasm_load_spec *spec, pasm_dataset *out) {
    line_reader r;
    memset(out, 0, sizeof *out);
    pasm_status st = line_reader_open_memory(&r, source ? source : "(memory)", data, size);
    if (st != PASM_OK) return st;
    st = parse_stream(&r, spec, out);
    line_reader_close(&r);
    return st;
}

pasm_status fer_csv_load_file(const pasm_load_spec *spec, pasm_dataset *out) {
    line_reader r;
    memset(out, 0, sizeof *out);
    pasm_status st = line_reader_open_file(&r, spec->path);
    if (st != PASM_OK) return st;
    st = parse_stream(&r, spec, out);
    line_reader_close(&r);
    return st;
}
