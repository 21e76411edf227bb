/* Batch assembly (uint8 faces to normalised float32 NCHW, as torchvision's
 * ToTensor + Normalize) and in-place augmentation of a normalised batch:
 * random crop with reflect padding, horizontal flip and random erasing, each
 * sample seeded by (seed, epoch, its dataset index). Working on the
 * normalised floats lets erasing write 0 (torchvision's default value on a
 * normalised tensor) and costs nothing for crop and flip, which only move
 * values. The crop and flip are one separable index map, applied row-wise
 * then column-wise through a line buffer on the stack: no allocation. */
#include <math.h>
#include <string.h>

#include "data/augment_map.h"
#include "data/data_internal.h"

#define MAX_AUGMENT_SIZE 4096

pasm_status pasm_norm_table(int channels, const float *mean, const float *std, float *table) {
    if (channels < 1 || channels > 3)
        return pasm_errorf(PASM_ERR_INVALID, "normalisation of %d channels (1 to 3)", channels);
    for (int c = 0; c < channels; c++)
        if (!(std[c] > 0.0f))
            return pasm_errorf(PASM_ERR_INVALID, "normalisation std[%d] = %g must be > 0", c,
                               std[c]);
    /* the float32 ops in torchvision's order, (p / 255 - mean) / std */
    for (int c = 0; c < channels; c++)
        for (int p = 0; p < 256; p++) table[c * 256 + p] = ((float)p / 255.0f - mean[c]) / std[c];
    return PASM_OK;
}

pasm_status pasm_batch_make(const pasm_dataset *ds, const int *idx, int n, const float *mean,
                            const float *std, float *x, int32_t *labels) {
    int C = ds->channels;
    if (C > 3) return pasm_errorf(PASM_ERR_INVALID, "%s: %d channels", ds->source, C);
    float table[3][256];
    pasm_status st = pasm_norm_table(C, mean, std, &table[0][0]);
    if (st) return st;
    for (int i = 0; i < n; i++)
        if (idx[i] < 0 || idx[i] >= ds->n)
            return pasm_errorf(PASM_ERR_INVALID, "%s: batch index %d outside 0..%d", ds->source,
                               idx[i], ds->n - 1);
    size_t plane = (size_t)ds->size * ds->size;
#pragma omp parallel for schedule(static)
    for (int i = 0; i < n; i++) {
        const uint8_t *src = ds->images + (size_t)idx[i] * C * plane;
        float *dst = x + (size_t)i * C * plane;
        for (int c = 0; c < C; c++)
            for (size_t k = 0; k < plane; k++)
                dst[c * plane + k] = table[c][src[c * plane + k]];
    }
    if (labels)
        for (int i = 0; i < n; i++)
            labels[i] = ds->labels[idx[i]];
    return PASM_OK;
}

void pasm_augment_defaults(pasm_augment_config *cfg) {
    memset(cfg, 0, sizeof *cfg);
    cfg->crop_padding = 4;
    cfg->hflip = 1;
    cfg->erase_p = 0.0f;
    cfg->erase_scale_min = 0.02f;
    cfg->erase_scale_max = 0.4f;
    cfg->erase_ratio_min = 0.3f;
    cfg->erase_ratio_max = 3.3f;
    cfg->erase_random = 0;
    cfg->erase_always_from = 0;
}

/* out[k] = in[map[k]] along every row (step 1) or column (step S) of a plane. */
static void remap_lines(float *plane, int S, const int *map, int along_rows, float *line) {
    for (int a = 0; a < S; a++) {
        float *base = along_rows ? plane + (size_t)a * S : plane + a;
        size_t step = along_rows ? 1 : (size_t)S;
        for (int k = 0; k < S; k++)
            line[k] = base[k * step];
        for (int k = 0; k < S; k++)
            base[k * step] = line[map[k]];
    }
}

/* torchvision's RandomErasing.get_params: up to 10 attempts; h == 0 when
 * none fits. */
static void erase_params(pasm_rng *r, int S, const pasm_augment_config *cfg,
                         pasm_augment_plan *p) {
    double area = (double)S * S;
    double log_lo = log(cfg->erase_ratio_min), log_hi = log(cfg->erase_ratio_max);
    for (int attempt = 0; attempt < 10; attempt++) {
        double scale = cfg->erase_scale_min +
                       (cfg->erase_scale_max - cfg->erase_scale_min) * pasm_rng_uniform(r);
        double aspect = exp(log_lo + (log_hi - log_lo) * pasm_rng_uniform(r));
        /* Python's round(): half to even, as nearbyint in the default rounding mode. */
        int h = (int)nearbyint(sqrt(area * scale * aspect));
        int w = (int)nearbyint(sqrt(area * scale / aspect));
        if (!(h < S && w < S) || h < 1 || w < 1) continue;
        p->top = (int)pasm_rng_below(r, (uint32_t)(S - h + 1));
        p->left = (int)pasm_rng_below(r, (uint32_t)(S - w + 1));
        p->h = h;
        p->w = w;
        return;
    }
}

/* The draws of one sample, in pasm_augment_batch's order; r is left where
 * erase_random's values start. */
static void draw_plan(pasm_rng *r, int S, const pasm_augment_config *cfg, int always_erase,
                      pasm_augment_plan *p) {
    memset(p, 0, sizeof *p);
    int P = cfg->crop_padding;
    p->dy = P > 0 ? (int)pasm_rng_below(r, (uint32_t)(2 * P + 1)) - P : 0;
    p->dx = P > 0 ? (int)pasm_rng_below(r, (uint32_t)(2 * P + 1)) - P : 0;
    p->flip = cfg->hflip ? pasm_rng_uniform(r) < 0.5f : 0;
    const float erase_p = always_erase ? 1.0f : cfg->erase_p;
    if (erase_p > 0 && pasm_rng_uniform(r) < erase_p) erase_params(r, S, cfg, p);
}

static void augment_one(float *img, int C, int S, const pasm_augment_config *cfg, pasm_rng *r,
                        int always_erase) {
    pasm_augment_plan p;
    draw_plan(r, S, cfg, always_erase, &p);
    int map_x[MAX_AUGMENT_SIZE], map_y[MAX_AUGMENT_SIZE];
    float line[MAX_AUGMENT_SIZE];
    if (p.dx != 0 || p.dy != 0 || p.flip) {
        for (int k = 0; k < S; k++) {
            /* Crop first, then flip: column k of the output is column S-1-k of the crop. */
            map_x[k] = pasm_augment_reflect((p.flip ? S - 1 - k : k) + p.dx, S);
            map_y[k] = pasm_augment_reflect(k + p.dy, S);
        }
        for (int c = 0; c < C; c++) {
            float *plane = img + (size_t)c * S * S;
            if (p.dx != 0 || p.flip) remap_lines(plane, S, map_x, 1, line);
            if (p.dy != 0) remap_lines(plane, S, map_y, 0, line);
        }
    }
    for (int c = 0; c < C; c++)
        for (int y = p.top; y < p.top + p.h; y++)
            for (int x = p.left; x < p.left + p.w; x++)
                img[((size_t)c * S + y) * S + x] = cfg->erase_random ? pasm_rng_normal(r) : 0.0f;
}

static pasm_status check_config(int size, const pasm_augment_config *cfg) {
    if (size < 1 || size > MAX_AUGMENT_SIZE)
        return pasm_errorf(PASM_ERR_INVALID, "augmentation of %dx%d images: size must be 1..%d",
                           size, size, MAX_AUGMENT_SIZE);
    if (cfg->crop_padding < 0 || cfg->crop_padding >= size)
        return pasm_errorf(PASM_ERR_INVALID, "crop padding %d must be in 0..%d for %dx%d images",
                           cfg->crop_padding, size - 1, size, size);
    if ((cfg->erase_p > 0 || cfg->erase_always_from > 0) &&
        !(cfg->erase_scale_min > 0 && cfg->erase_scale_min <= cfg->erase_scale_max &&
          cfg->erase_ratio_min > 0 && cfg->erase_ratio_min <= cfg->erase_ratio_max))
        return pasm_errorf(PASM_ERR_INVALID,
                           "random erasing needs 0 < scale min <= max and 0 < ratio min <= max");
    return PASM_OK;
}

pasm_status pasm_augment_plans(int n, int size, const pasm_augment_config *cfg, uint64_t seed,
                               uint64_t epoch, const int *sample_index, pasm_augment_plan *out) {
    pasm_status st = check_config(size, cfg);
    if (st) return st;
    if (cfg->erase_random)
        return pasm_errorf(PASM_ERR_UNSUPPORTED, "random erasing with noise values has no plan "
                                                 "(its values are drawn per pixel)");
#pragma omp parallel for schedule(static) if (n >= 1024)
    for (int i = 0; i < n; i++) {
        pasm_rng r;
        pasm_rng_init(&r, seed, PASM_RNG_AUGMENT, epoch, (uint64_t)(int64_t)sample_index[i]);
        draw_plan(&r, size, cfg,
                  cfg->erase_always_from > 0 && sample_index[i] >= cfg->erase_always_from,
                  &out[i]);
    }
    return PASM_OK;
}

pasm_status pasm_augment_batch(float *x, int n, int channels, int size,
                               const pasm_augment_config *cfg, uint64_t seed, uint64_t epoch,
                               const int *sample_index) {
    pasm_status st = check_config(size, cfg);
    if (st) return st;
#pragma omp parallel for schedule(static)
    for (int i = 0; i < n; i++) {
        pasm_rng r;
        pasm_rng_init(&r, seed, PASM_RNG_AUGMENT, epoch, (uint64_t)(int64_t)sample_index[i]);
        augment_one(x + (size_t)i * channels * size * size, channels, size, cfg, &r,
                    cfg->erase_always_from > 0 && sample_index[i] >= cfg->erase_always_from);
    }
    return PASM_OK;
}
