/* Helpers for the data-layer tests: writing scratch files (plain or gzip),
 * and asserting that a call failed with a message naming what it should. */
#ifndef PASM_DATA_TEST_UTIL_H
#define PASM_DATA_TEST_UTIL_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "pasm/pasm.h"
#include "util/helpers.h"

/* dir/name into a static buffer (one at a time). */
static inline const char *scratch_path(const char *dir, const char *name) {
    static char buf[4][4096];
    static int turn;
    turn = (turn + 1) % 4;
    snprintf(buf[turn], sizeof buf[turn], "%s/%s", dir, name);
    return buf[turn];
}

static inline void write_bytes(const char *path, const void *data, size_t size) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, size, f), size);
    assert_int_equal(fclose(f), 0);
}

static inline void write_text(const char *path, const char *text) {
    write_bytes(path, text, strlen(text));
}

static inline void write_gz(const char *path, const char *text) {
    gzFile g = gzopen(path, "wb");
    assert_non_null(g);
    assert_int_equal(gzwrite(g, text, (unsigned)strlen(text)), (int)strlen(text));
    assert_int_equal(gzclose(g), Z_OK);
}

/* Reads a whole file (malloc'd). */
static inline unsigned char *read_bytes(const char *path, size_t *size) {
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *data = malloc((size_t)n + 1);
    assert_non_null(data);
    assert_int_equal(fread(data, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *size = (size_t)n;
    return data;
}

/* The last error contains every one of the NULL-terminated fragments. */
#define assert_error_has(...) assert_error_has_(__FILE__, __LINE__, __VA_ARGS__, NULL)
static inline void assert_error_has_(const char *file, int line, const char *first, ...) {
    const char *msg = pasm_last_error();
    va_list ap;
    va_start(ap, first);
    for (const char *s = first; s; s = va_arg(ap, const char *))
        if (!strstr(msg, s)) {
            va_end(ap);
            print_error("error message '%s' lacks '%s'\n", msg, s);
            _fail(file, line);
        }
    va_end(ap);
    printf("  error as expected: %s\n", msg);
}

#include <jpeglib.h>

/* A baseline JPEG of interleaved grey (1) or RGB (3) pixels, via libjpeg. */
static inline void write_jpeg(const char *path, int w, int h, int channels, const uint8_t *pixels,
                              int quality) {
    struct jpeg_compress_struct c;
    struct jpeg_error_mgr err;
    c.err = jpeg_std_error(&err);
    jpeg_create_compress(&c);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    jpeg_stdio_dest(&c, f);
    c.image_width = (JDIMENSION)w;
    c.image_height = (JDIMENSION)h;
    c.input_components = channels;
    c.in_color_space = channels == 1 ? JCS_GRAYSCALE : JCS_RGB;
    jpeg_set_defaults(&c);
    jpeg_set_quality(&c, quality, TRUE);
    jpeg_start_compress(&c, TRUE);
    while (c.next_scanline < c.image_height) {
        JSAMPROW row = (JSAMPROW)(pixels + (size_t)c.next_scanline * w * channels);
        jpeg_write_scanlines(&c, &row, 1);
    }
    jpeg_finish_compress(&c);
    jpeg_destroy_compress(&c);
    fclose(f);
}

#endif
