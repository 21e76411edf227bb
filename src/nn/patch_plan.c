/* The candidates' windows: see patch_plan.h. A convolution (kernel K,
 * stride s, padding P) changes output row o when input rows [a, b] change
 * and o * s - P <= b, o * s - P + K - 1 >= a; a block's output changes
 * where its conv2 or its shortcut does. */
#include <stdlib.h>
#include <string.h>

#include "nn/patch_plan.h"

static int floor_div(int a, int b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }

static int clampi(int v, int lo, int hi) { return v < lo ? lo : v > hi ? hi : v; }

/* The output rows a convolution changes when input rows [a, b] change
 * (b < a: none), clamped to the output. */
static void conv_rows(const pasm_conv2d_shape *s, int a, int b, int *lo, int *hi) {
    if (b < a) {
        *lo = 1, *hi = 0;
        return;
    }
    *lo = clampi(floor_div(a - s->kernel + s->pad + s->stride, s->stride), 0, s->h_out);
    *hi = clampi(floor_div(b + s->pad, s->stride), -1, s->h_out - 1);
    if (*hi < *lo) *lo = 1, *hi = 0;
}

static void hull(int *lo, int *hi, int lo2, int hi2) {
    if (hi2 < lo2) return;
    if (*hi < *lo) {
        *lo = lo2, *hi = hi2;
        return;
    }
    if (lo2 < *lo) *lo = lo2;
    if (hi2 > *hi) *hi = hi2;
}

static double conv_macs(const pasm_conv2d_shape *s, int side) {
    return (double)s->c_out * s->c_in * s->kernel * s->kernel * side * side;
}

/* The changed rows of every tensor for a pixel in each row r, and the
 * window sides (the largest extent over r). */
pasm_status pasm_patch_plan_make(const pasm_net *net, pasm_patch_plan *pl) {
    memset(pl, 0, sizeof *pl);
    const int S = net->cfg.input_size;
    int *lo = malloc((size_t)PASM_PATCH_TENSORS * S * sizeof(int)),
        *hi = malloc((size_t)PASM_PATCH_TENSORS * S * sizeof(int));
    if (!lo || !hi) {
        free(lo), free(hi);
        return pasm_errorf(PASM_ERR_NOMEM, "out of memory planning candidate windows");
    }
    const block *blk = net->blocks;
    for (int r = 0; r < S; r++) {
        int *L = lo + r, *H = hi + r; /* tensor i at L[i * S] */
        L[0] = H[0] = r;
        conv_rows(&net->stem_conv.shape, L[0], H[0], &L[S], &H[S]);
        for (int b = 0; b < 8; b++) {
            int in = 1 + 2 * b, mid = 2 + 2 * b, out = 3 + 2 * b;
            conv_rows(&blk[b].conv1.shape, L[in * S], H[in * S], &L[mid * S], &H[mid * S]);
            conv_rows(&blk[b].conv2.shape, L[mid * S], H[mid * S], &L[out * S], &H[out * S]);
            int slo = L[in * S], shi = H[in * S];
            if (blk[b].has_downsample) conv_rows(&blk[b].down_conv.shape, slo, shi, &slo, &shi);
            hull(&L[out * S], &H[out * S], slo, shi);
        }
    }
    /* tensor sides: input, stem, then each block's mid and output */
    int side[PASM_PATCH_TENSORS], chans[PASM_PATCH_TENSORS], win[PASM_PATCH_TENSORS];
    side[0] = S, chans[0] = net->cfg.in_channels;
    side[1] = net->stem_conv.shape.h_out, chans[1] = net->stem_conv.shape.c_out;
    for (int b = 0; b < 8; b++) {
        side[2 + 2 * b] = blk[b].conv1.shape.h_out, chans[2 + 2 * b] = blk[b].conv1.shape.c_out;
        side[3 + 2 * b] = blk[b].conv2.shape.h_out, chans[3 + 2 * b] = blk[b].conv2.shape.c_out;
    }
    for (int i = 0; i < 18; i++) {
        win[i] = 1;
        for (int r = 0; r < S; r++) {
            int e = hi[i * S + r] - lo[i * S + r] + 1;
            if (e > win[i]) win[i] = e;
        }
    }
    /* windows up to the first block whose mid is the whole map */
    pl->n_blocks = 0;
    while (pl->n_blocks < 8 && win[2 + 2 * pl->n_blocks] < side[2 + 2 * pl->n_blocks])
        pl->n_blocks++;
    pl->n_tensors = 2 + 2 * pl->n_blocks;
    pl->size = S;
    for (int i = 0; i < PASM_PATCH_TENSORS; i++) {
        pl->c[i] = chans[i], pl->h[i] = side[i], pl->win[i] = win[i];
        for (int r = 0; r < S; r++) /* in place: lo[i * S + r] is read once, here */
            lo[i * S + r] = clampi(lo[i * S + r], 0, side[i] - win[i]);
    }
    /* costs in full forwards (multiply-adds of the convolutions and fc) */
    double full = conv_macs(&net->stem_conv.shape, side[1]), clean = full;
    double cand = conv_macs(&net->stem_conv.shape, win[1]);
    for (int b = 0; b < 8; b++) {
        const block *k = &blk[b];
        int wm = b < pl->n_blocks ? win[2 + 2 * b] : side[2 + 2 * b];
        int wo = b < pl->n_blocks ? win[3 + 2 * b] : side[3 + 2 * b];
        double f = conv_macs(&k->conv1.shape, side[2 + 2 * b]) +
                   conv_macs(&k->conv2.shape, side[3 + 2 * b]) +
                   (k->has_downsample ? conv_macs(&k->down_conv.shape, side[3 + 2 * b]) : 0);
        full += f;
        if (b < pl->n_blocks) clean += f;
        cand += conv_macs(&k->conv1.shape, wm) + conv_macs(&k->conv2.shape, wo) +
                (k->has_downsample ? conv_macs(&k->down_conv.shape, wo) : 0);
    }
    full += (double)net->final_channels * net->cfg.num_classes;
    cand += (double)net->final_channels * net->cfg.num_classes;
    pl->clean_cost = clean / full;
    pl->cand_cost = cand / full;
    free(hi);
    pl->lo = lo;
    return PASM_OK;
}

void pasm_patch_plan_free(pasm_patch_plan *pl) {
    free(pl->lo);
    pl->lo = NULL;
}


pasm_patch_use pasm_patch_env(void) {
    const char *env = getenv("PASM_PATCH");
    if (env && !strcmp(env, "0")) return PASM_PATCH_OFF;
    if (env && !strcmp(env, "require")) return PASM_PATCH_REQUIRE;
    return PASM_PATCH_AUTO;
}

int pasm_patch_worth(double clean_cost, double cand_cost, int m, const int *img, uint8_t *seen) {
    int faces = 0;
    for (int j = 0; j < m; j++)
        if (!seen[img[j]]) seen[img[j]] = 1, faces++;
    for (int j = 0; j < m; j++) seen[img[j]] = 0;
    return faces * clean_cost + m * cand_cost <= 0.75 * m;
}

int pasm_patch_group(const int *img, int start, int m, int max_group, int max_faces, int *slot_of,
                     int *slot_face, int *face_of, int *faces) {
    int g = 0, f = 0;
    while (start + g < m && g < max_group) {
        const int face = img[start + g];
        if (slot_of[face] < 0) {
            if (f == max_faces) break;
            slot_of[face] = f;
            slot_face[f++] = face;
        }
        face_of[g++] = slot_of[face];
    }
    for (int s = 0; s < f; s++) slot_of[slot_face[s]] = -1;
    *faces = f;
    return g;
}
