/* Writing 8-bit PNG files with libpng (grey, grey + alpha, RGB, RGBA). libpng
 * reports errors by longjmp, so everything the jump can cross lives in one
 * struct that survives it, and a failed write removes its partial file. */
#include <errno.h>
#include <png.h>
#include <setjmp.h>
#include <stdio.h>
#include <string.h>

#include "pasm/synth.h"

/* libpng's error text, kept for the message after the longjmp. */
typedef struct {
    char message[256];
} png_error_context;

static void on_png_error(png_structp png, png_const_charp msg) {
    png_error_context *ctx = png_get_error_ptr(png);
    snprintf(ctx->message, sizeof ctx->message, "%s", msg);
    png_longjmp(png, 1);
}

static void on_png_warning(png_structp png, png_const_charp msg) { (void)png, (void)msg; }

static int color_type_for(int channels) {
    switch (channels) {
    case 1: return PNG_COLOR_TYPE_GRAY;
    case 2: return PNG_COLOR_TYPE_GRAY_ALPHA;
    case 3: return PNG_COLOR_TYPE_RGB;
    case 4: return PNG_COLOR_TYPE_RGB_ALPHA;
    }
    return -1;
}

/* The libpng part: returns 0 on success, -1 with ctx->message set. Kept apart
 * from the caller so no local that changes after setjmp needs volatile. */
static int write_rows(FILE *f, int w, int h, int channels, const uint8_t *pixels,
                      png_error_context *ctx) {
    png_structp png =
        png_create_write_struct(PNG_LIBPNG_VER_STRING, ctx, on_png_error, on_png_warning);
    if (!png) {
        snprintf(ctx->message, sizeof ctx->message, "cannot create libpng writer");
        return -1;
    }
    png_infop info = png_create_info_struct(png);
    if (!info || setjmp(png_jmpbuf(png))) {
        if (!info) snprintf(ctx->message, sizeof ctx->message, "cannot create libpng info");
        png_destroy_write_struct(&png, info ? &info : NULL);
        return -1;
    }
    png_init_io(png, f);
    png_set_IHDR(png, info, (png_uint_32)w, (png_uint_32)h, 8, color_type_for(channels),
                 PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    size_t stride = (size_t)w * (size_t)channels;
    for (int y = 0; y < h; y++) png_write_row(png, pixels + (size_t)y * stride);
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    return 0;
}

pasm_status pasm_png_write(const char *path, int w, int h, int channels, const uint8_t *pixels) {
    if (!path || !pixels)
        return pasm_errorf(PASM_ERR_INVALID, "pasm_png_write: %s is NULL",
                           path ? "pixels" : "path");
    if (w < 1 || h < 1 || w > 1000000 || h > 1000000)
        return pasm_errorf(PASM_ERR_INVALID, "%s: bad PNG size %dx%d", path, w, h);
    if (color_type_for(channels) < 0)
        return pasm_errorf(PASM_ERR_INVALID, "%s: PNG channels must be 1..4, got %d", path,
                           channels);
    FILE *f = fopen(path, "wb");
    if (!f) return pasm_errorf(PASM_ERR_IO, "%s: cannot create: %s", path, strerror(errno));
    png_error_context ctx = {{0}};
    int failed = write_rows(f, w, h, channels, pixels, &ctx);
    if (fclose(f) != 0 && !failed) {
        failed = 1;
        snprintf(ctx.message, sizeof ctx.message, "close failed: %s", strerror(errno));
    }
    if (failed) {
        remove(path);
        return pasm_errorf(PASM_ERR_IO, "%s: cannot write PNG: %s", path, ctx.message);
    }
    return PASM_OK;
}
