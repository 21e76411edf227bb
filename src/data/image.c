/* Image decoding (JPEG through libjpeg-turbo, PNG through libpng) from
 * memory into planar grey or RGB, and 8-bit PNG writing. Both libraries
 * report errors by longjmp: each setjmp lives in a small function whose
 * state sits in its caller's frame, so nothing that changes after setjmp is
 * a local of the function that called it. Neither library may print: their
 * message hooks only keep the text for our error message. */
#include <errno.h>
#include <png.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>
#include <jerror.h>

#include "data/data_internal.h"
#include "pasm/synth.h"

#define MAX_PIXELS ((size_t)1 << 26)
#define MAX_JPEG_SCANS 1000

typedef struct {
    const char *name;
    const unsigned char *data;
    size_t size, pos;
    int width, height, src_channels; /* interleaved decode */
    unsigned char *pixels;
    unsigned char **rows;
    char message[JMSG_LENGTH_MAX + 64];
} decode_state;

static pasm_status too_large(const char *name, int w, int h) {
    return pasm_errorf(PASM_ERR_FORMAT, "%s: %dx%d image is over the %zu-pixel limit", name, w, h,
                       MAX_PIXELS);
}

/* ---- JPEG ---- */

typedef struct {
    struct jpeg_error_mgr pub;
    struct jpeg_progress_mgr progress;
    jmp_buf jump;
    decode_state *state;
} jpeg_guard;

static void jpeg_fail(j_common_ptr cinfo) {
    jpeg_guard *g = (jpeg_guard *)cinfo->err;
    (*cinfo->err->format_message)(cinfo, g->state->message);
    longjmp(g->jump, 1);
}

/* Warnings are dropped, except a premature end of data: PIL refuses truncated files too. */
static void jpeg_emit(j_common_ptr cinfo, int level) {
    if (level < 0 && cinfo->err->msg_code == JWRN_JPEG_EOF) jpeg_fail(cinfo);
    if (level < 0) cinfo->err->num_warnings++;
}

static void jpeg_quiet(j_common_ptr cinfo) {
    (void)cinfo;
}

/* Progressive files with thousands of scans take forever to decode; refuse them (as TurboJPEG's
 * scan limit). */
static void jpeg_progress(j_common_ptr cinfo) {
    j_decompress_ptr d = (j_decompress_ptr)cinfo;
    if (cinfo->is_decompressor && d->input_scan_number > MAX_JPEG_SCANS) {
        jpeg_guard *g = (jpeg_guard *)cinfo->err;
        snprintf(g->state->message, sizeof g->state->message, "more than %d scans", MAX_JPEG_SCANS);
        longjmp(g->jump, 1);
    }
}

/* Returns 0 on success, 1 with st->message set, 2 when too large or unsupported (message set). */
static int jpeg_decode_guarded(decode_state *st, struct jpeg_decompress_struct *cinfo,
                               jpeg_guard *g) {
    if (setjmp(g->jump)) return 1;
    jpeg_create_decompress(cinfo);
    cinfo->progress = &g->progress;
    jpeg_mem_src(cinfo, st->data, (unsigned long)st->size);
    jpeg_read_header(cinfo, TRUE);
    if (cinfo->jpeg_color_space == JCS_CMYK || cinfo->jpeg_color_space == JCS_YCCK) {
        snprintf(st->message, sizeof st->message, "CMYK JPEG is not supported");
        return 2;
    }
    cinfo->out_color_space = cinfo->num_components == 1 ? JCS_GRAYSCALE : JCS_RGB;
    if ((size_t)cinfo->image_width * cinfo->image_height > MAX_PIXELS) return 3;
    jpeg_start_decompress(cinfo);
    st->width = (int)cinfo->output_width;
    st->height = (int)cinfo->output_height;
    st->src_channels = cinfo->output_components;
    size_t stride = (size_t)st->width * st->src_channels;
    st->pixels = malloc(stride * st->height + 1);
    if (!st->pixels) return 4;
    while (cinfo->output_scanline < cinfo->output_height) {
        JSAMPROW row = st->pixels + cinfo->output_scanline * stride;
        jpeg_read_scanlines(cinfo, &row, 1);
    }
    jpeg_finish_decompress(cinfo);
    return 0;
}

static pasm_status jpeg_decode(decode_state *st) {
    struct jpeg_decompress_struct cinfo;
    jpeg_guard g;
    memset(&cinfo, 0, sizeof cinfo);
    memset(&g, 0, sizeof g);
    cinfo.err = jpeg_std_error(&g.pub);
    g.pub.error_exit = jpeg_fail;
    g.pub.emit_message = jpeg_emit;
    g.pub.output_message = jpeg_quiet;
    g.progress.progress_monitor = jpeg_progress;
    g.state = st;
    int r = jpeg_decode_guarded(st, &cinfo, &g);
    jpeg_destroy_decompress(&cinfo);
    if (r == 0) return PASM_OK;
    if (r == 3) return too_large(st->name, (int)cinfo.image_width, (int)cinfo.image_height);
    if (r == 4) return pasm_errorf(PASM_ERR_NOMEM, "%s: out of memory decoding", st->name);
    if (r == 2) return pasm_errorf(PASM_ERR_FORMAT, "%s: %s", st->name, st->message);
    return pasm_errorf(PASM_ERR_FORMAT, "%s: corrupt or unreadable JPEG: %s", st->name,
                       st->message);
}

/* ---- PNG ---- */

static void png_fail(png_structp png, png_const_charp msg) {
    decode_state *st = png_get_error_ptr(png);
    snprintf(st->message, sizeof st->message, "%s", msg);
    png_longjmp(png, 1);
}

static void png_quiet(png_structp png, png_const_charp msg) {
    (void)png, (void)msg;
}

static void png_read_memory(png_structp png, png_bytep out, size_t n) {
    decode_state *st = png_get_io_ptr(png);
    if (n > st->size - st->pos) png_error(png, "unexpected end of data (file truncated)");
    memcpy(out, st->data + st->pos, n);
    st->pos += n;
}

/* Asks libpng for 8-bit grey, grey+alpha, RGB or RGBA (palette expanded,
 * 16-bit scaled down); convert_interleaved drops alpha as PIL's convert does. */
static void png_set_transforms(png_structp png, png_infop info) {
    int type = png_get_color_type(png, info), depth = png_get_bit_depth(png, info);
    if (type == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
    if (type == PNG_COLOR_TYPE_GRAY && depth < 8) png_set_expand_gray_1_2_4_to_8(png);
    if (depth == 16) png_set_scale_16(png);
    png_set_interlace_handling(png);
    png_read_update_info(png, info);
}

static int png_decode_guarded(decode_state *st, png_structp png, png_infop info) {
    if (setjmp(png_jmpbuf(png))) return 1;
    png_set_read_fn(png, st, png_read_memory);
    png_set_user_limits(png, 1 << 16, 1 << 16);
    png_read_info(png, info);
    png_uint_32 w = png_get_image_width(png, info), h = png_get_image_height(png, info);
    st->width = (int)w;
    st->height = (int)h;
    if ((size_t)w * h > MAX_PIXELS) return 3;
    png_set_transforms(png, info);
    st->src_channels = png_get_channels(png, info);
    size_t stride = png_get_rowbytes(png, info);
    if (stride != (size_t)w * st->src_channels || st->src_channels < 1 || st->src_channels > 4) {
        snprintf(st->message, sizeof st->message, "unexpected layout after conversion");
        return 1;
    }
    st->pixels = malloc(stride * h + 1);
    st->rows = malloc(sizeof *st->rows * h + 1);
    if (!st->pixels || !st->rows) return 4;
    for (png_uint_32 y = 0; y < h; y++)
        st->rows[y] = st->pixels + y * stride;
    png_read_image(png, st->rows);
    return 0;
}

static pasm_status png_decode(decode_state *st) {
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, st, png_fail, png_quiet);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!info) {
        png_destroy_read_struct(&png, NULL, NULL);
        return pasm_errorf(PASM_ERR_NOMEM, "%s: out of memory starting libpng", st->name);
    }
    int r = png_decode_guarded(st, png, info);
    png_destroy_read_struct(&png, &info, NULL);
    if (r == 0) return PASM_OK;
    if (r == 3) return too_large(st->name, st->width, st->height);
    if (r == 4) return pasm_errorf(PASM_ERR_NOMEM, "%s: out of memory decoding", st->name);
    return pasm_errorf(PASM_ERR_FORMAT, "%s: corrupt or unreadable PNG: %s", st->name, st->message);
}

/* ---- public decoding ---- */

pasm_status pasm_image_decode(const void *data, size_t size, const char *name, int channels,
                              pasm_image *out) {
    static const unsigned char png_magic[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    memset(out, 0, sizeof *out);
    if (!name) name = "(memory)";
    if (channels != 0 && channels != 1 && channels != 3)
        return pasm_errorf(PASM_ERR_INVALID, "%s: channels %d: need 0, 1 or 3", name, channels);
    decode_state st;
    memset(&st, 0, sizeof st);
    st.name = name;
    st.data = data;
    st.size = size;
    pasm_status s;
    if (size >= 8 && memcmp(data, png_magic, 8) == 0)
        s = png_decode(&st);
    else if (size >= 3 && memcmp(data, "\xFF\xD8\xFF", 3) == 0)
        s = jpeg_decode(&st);
    else
        s = pasm_errorf(PASM_ERR_FORMAT, "%s: not a PNG or JPEG image", name);
    if (s == PASM_OK) {
        int c = channels ? channels : (st.src_channels >= 3 ? 3 : 1);
        size_t n = (size_t)st.width * st.height;
        out->pixels = malloc(n * c + 1);
        if (out->pixels) {
            convert_interleaved(st.pixels, st.src_channels, n, c, out->pixels);
            out->width = st.width;
            out->height = st.height;
            out->channels = c;
        } else {
            s = pasm_errorf(PASM_ERR_NOMEM, "%s: out of memory", name);
        }
    }
    free(st.pixels);
    free(st.rows);
    return s;
}

pasm_status pasm_image_read(const char *path, int channels, pasm_image *out) {
    memset(out, 0, sizeof *out);
    FILE *f = fopen(path, "rb");
    if (!f) return pasm_errorf(PASM_ERR_IO, "cannot open %s: %s", path, strerror(errno));
    unsigned char *data = NULL;
    size_t size = 0, cap = 0;
    pasm_status st = PASM_OK;
    for (;;) {
        if (size == cap) {
            cap = cap ? cap * 2 : 65536;
            unsigned char *bigger = cap <= ((size_t)1 << 30) ? realloc(data, cap) : NULL;
            if (!bigger) {
                st = pasm_errorf(PASM_ERR_NOMEM, "%s: file too large to read", path);
                break;
            }
            data = bigger;
        }
        size_t got = fread(data + size, 1, cap - size, f);
        size += got;
        if (got == 0) {
            if (ferror(f))
                st = pasm_errorf(PASM_ERR_IO, "cannot read %s: %s", path, strerror(errno));
            break;
        }
    }
    fclose(f);
    if (st == PASM_OK) st = pasm_image_decode(data, size, path, channels, out);
    free(data);
    return st;
}

void pasm_image_free(pasm_image *img) {
    if (!img) return;
    free(img->pixels);
    memset(img, 0, sizeof *img);
}

/* ---- PNG writing (pasm_png_write in src/io/png_write.c does the work) ---- */

pasm_status pasm_png_write_gray(const char *path, int w, int h, const uint8_t *pixels) {
    return pasm_png_write(path, w, h, 1, pixels);
}

pasm_status pasm_png_write_rgb(const char *path, int w, int h, const uint8_t *pixels) {
    return pasm_png_write(path, w, h, 3, pixels);
}

pasm_status pasm_png_write_planar(const char *path, int channels, int w, int h,
                                  const uint8_t *pixels) {
    if (channels == 1) return pasm_png_write(path, w, h, 1, pixels);
    if (channels != 3)
        return pasm_errorf(PASM_ERR_INVALID, "%s: channels %d: need 1 or 3", path, channels);
    if (w < 1 || h < 1 || w > (1 << 16) || h > (1 << 16))
        return pasm_errorf(PASM_ERR_INVALID, "%s: cannot write a %dx%d PNG", path, w, h);
    size_t n = (size_t)w * h;
    uint8_t *rgb = malloc(n * 3);
    if (!rgb) return pasm_errorf(PASM_ERR_NOMEM, "%s: out of memory", path);
    for (size_t i = 0; i < n; i++)
        for (int c = 0; c < 3; c++)
            rgb[i * 3 + c] = pixels[c * n + i];
    pasm_status st = pasm_png_write(path, w, h, 3, rgb);
    free(rgb);
    return st;
}
