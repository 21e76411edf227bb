/* Resampling and colour conversion. The resizer is PIL's ImagingResample
 * with its bilinear filter: a separable convolution whose support widens by
 * the shrink factor (so shrinking is antialiased, i.e. area-weighted),
 * fixed-point weights with 22 fractional bits, a horizontal pass then a
 * vertical one, each rounded and clipped to 8 bits. Matching PIL byte for
 * byte keeps pasm's inputs identical to a torchvision pipeline's. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "data/data_internal.h"

#define PRECISION_BITS (32 - 8 - 2)

static double bilinear_filter(double x) {
    if (x < 0.0) x = -x;
    return x < 1.0 ? 1.0 - x : 0.0;
}

/* Weights of one output pixel: PIL's precompute_coeffs + normalize_coeffs_8bpc. */
static void plan_pixel(resample_plan *p, int xx, double scale, double support, double *k) {
    double filterscale = scale < 1.0 ? 1.0 : scale;
    double center = (xx + 0.5) * scale, ss = 1.0 / filterscale, ww = 0.0;
    int xmin = (int)(center - support + 0.5);
    if (xmin < 0) xmin = 0;
    int xmax = (int)(center + support + 0.5);
    if (xmax > p->in_size) xmax = p->in_size;
    xmax -= xmin;
    for (int x = 0; x < xmax; x++) {
        k[x] = bilinear_filter((x + xmin - center + 0.5) * ss);
        ww += k[x];
    }
    int32_t *fixed = p->coeffs + (size_t)xx * p->ksize;
    for (int x = 0; x < p->ksize; x++) {
        double w = x < xmax ? (ww != 0.0 ? k[x] / ww : k[x]) : 0.0;
        fixed[x] =
            (int32_t)(w < 0 ? -0.5 + w * (1 << PRECISION_BITS) : 0.5 + w * (1 << PRECISION_BITS));
    }
    p->bounds[2 * xx] = xmin;
    p->bounds[2 * xx + 1] = xmax;
}

pasm_status resample_plan_init(resample_plan *p, int in_size, int out_size) {
    memset(p, 0, sizeof *p);
    if (in_size < 1 || out_size < 1)
        return pasm_errorf(PASM_ERR_INVALID, "cannot resize %d pixels to %d", in_size, out_size);
    double scale = (double)in_size / out_size;
    double support = 1.0 * (scale < 1.0 ? 1.0 : scale);
    p->in_size = in_size;
    p->out_size = out_size;
    p->ksize = (int)ceil(support) * 2 + 1;
    p->bounds = malloc((size_t)out_size * 2 * sizeof *p->bounds);
    p->coeffs = malloc((size_t)out_size * p->ksize * sizeof *p->coeffs);
    double *k = malloc((size_t)p->ksize * sizeof *k);
    if (!p->bounds || !p->coeffs || !k) {
        free(k);
        resample_plan_free(p);
        return pasm_errorf(PASM_ERR_NOMEM, "out of memory planning a %d -> %d resize", in_size,
                           out_size);
    }
    for (int xx = 0; xx < out_size; xx++)
        plan_pixel(p, xx, scale, support, k);
    free(k);
    return PASM_OK;
}

void resample_plan_free(resample_plan *p) {
    free(p->bounds);
    free(p->coeffs);
    memset(p, 0, sizeof *p);
}

static inline uint8_t clip8(int32_t v) {
    if (v >= (1 << PRECISION_BITS << 8)) return 255;
    if (v <= 0) return 0;
    return (uint8_t)(v >> PRECISION_BITS);
}

size_t resize_scratch_size(int in_w, int in_h, int out_w) {
    return (size_t)in_h * out_w;
}

static void horizontal(const uint8_t *src, int in_w, int in_h, uint8_t *dst,
                       const resample_plan *px) {
    int out_w = px->out_size;
    for (int y = 0; y < in_h; y++) {
        const uint8_t *row = src + (size_t)y * in_w;
        for (int xx = 0; xx < out_w; xx++) {
            int xmin = px->bounds[2 * xx], xmax = px->bounds[2 * xx + 1];
            const int32_t *k = px->coeffs + (size_t)xx * px->ksize;
            int32_t ss = 1 << (PRECISION_BITS - 1);
            for (int x = 0; x < xmax; x++)
                ss += row[x + xmin] * k[x];
            dst[(size_t)y * out_w + xx] = clip8(ss);
        }
    }
}

static void vertical(const uint8_t *src, int w, uint8_t *dst, const resample_plan *py) {
    for (int yy = 0; yy < py->out_size; yy++) {
        int ymin = py->bounds[2 * yy], ymax = py->bounds[2 * yy + 1];
        const int32_t *k = py->coeffs + (size_t)yy * py->ksize;
        for (int xx = 0; xx < w; xx++) {
            int32_t ss = 1 << (PRECISION_BITS - 1);
            for (int y = 0; y < ymax; y++)
                ss += src[(size_t)(y + ymin) * w + xx] * k[y];
            dst[(size_t)yy * w + xx] = clip8(ss);
        }
    }
}

void resize_plane(const uint8_t *src, int in_w, int in_h, uint8_t *dst, const resample_plan *px,
                  const resample_plan *py, uint8_t *scratch) {
    int out_w = px->out_size, out_h = py->out_size;
    /* As PIL: a pass runs only when its dimension changes. */
    int need_h = out_w != in_w, need_v = out_h != in_h;
    if (!need_h && !need_v) {
        memcpy(dst, src, (size_t)in_w * in_h);
    } else if (need_h && !need_v) {
        horizontal(src, in_w, in_h, dst, px);
    } else if (!need_h) {
        vertical(src, in_w, dst, py);
    } else {
        horizontal(src, in_w, in_h, scratch, px);
        vertical(scratch, out_w, dst, py);
    }
}

void convert_interleaved(const uint8_t *src, int src_channels, size_t n_pixels, int channels,
                         uint8_t *dst) {
    int colour = src_channels >= 3;
    for (size_t i = 0; i < n_pixels; i++) {
        const uint8_t *p = src + i * (size_t)src_channels;
        if (channels == 1) {
            /* PIL's L = R*299/1000 + G*587/1000 + B*114/1000 in its 16-bit fixed point. */
            dst[i] = colour ? (uint8_t)((p[0] * 19595 + p[1] * 38470 + p[2] * 7471 + 0x8000) >> 16)
                            : p[0];
        } else {
            dst[i] = p[0];
            dst[n_pixels + i] = colour ? p[1] : p[0];
            dst[2 * n_pixels + i] = colour ? p[2] : p[0];
        }
    }
}

pasm_status data_resize_grey_images(const uint8_t *native, int n, int side, pasm_dataset *ds) {
    int size = ds->size, channels = ds->channels;
    resample_plan plan;
    pasm_status st = resample_plan_init(&plan, side, size);
    if (st != PASM_OK) return st;
    size_t plane = (size_t)size * size, in_plane = (size_t)side * side;
    int failed = 0;
#pragma omp parallel reduction(| : failed)
    {
        uint8_t *scratch = malloc(resize_scratch_size(side, side, size) + 1);
        if (!scratch) failed = 1;
#pragma omp for schedule(static)
        for (int i = 0; i < n; i++) {
            if (!scratch) continue;
            uint8_t *out = ds->images + (size_t)i * channels * plane;
            resize_plane(native + (size_t)i * in_plane, side, side, out, &plan, &plan, scratch);
            for (int c = 1; c < channels; c++)
                memcpy(out + c * plane, out, plane);
        }
        free(scratch);
    }
    resample_plan_free(&plan);
    if (failed) return pasm_errorf(PASM_ERR_NOMEM, "out of memory resizing %d faces", n);
    return PASM_OK;
}

pasm_status pasm_image_resize(const pasm_image *img, int out_w, int out_h, uint8_t *out) {
    resample_plan px, py;
    pasm_status st = resample_plan_init(&px, img->width, out_w);
    if (st != PASM_OK) return st;
    st = resample_plan_init(&py, img->height, out_h);
    uint8_t *scratch =
        st == PASM_OK ? malloc(resize_scratch_size(img->width, img->height, out_w) + 1) : NULL;
    if (st == PASM_OK && !scratch)
        st = pasm_errorf(PASM_ERR_NOMEM, "out of memory resizing an image");
    size_t in_plane = (size_t)img->width * img->height, out_plane = (size_t)out_w * out_h;
    for (int c = 0; st == PASM_OK && c < img->channels; c++)
        resize_plane(img->pixels + c * in_plane, img->width, img->height, out + c * out_plane, &px,
                     &py, scratch);
    free(scratch);
    resample_plan_free(&px);
    resample_plan_free(&py);
    return st;
}
