/* Square masks (pasm-method.md): a square of side s centred on the mined
 * point, clipped at the border (it shrinks, it never shifts), set to the
 * training mean, black, or uniform noise seeded per image. */
#include <string.h>
#include <strings.h>

#include "pasm/pasm_method.h"

pasm_status pasm_fill_parse(const char *name, pasm_fill_kind *kind) {
    if (!strcasecmp(name, "mean")) *kind = PASM_FILL_MEAN;
    else if (!strcasecmp(name, "zero")) *kind = PASM_FILL_ZERO;
    else if (!strcasecmp(name, "noise")) *kind = PASM_FILL_NOISE;
    else return pasm_errorf(PASM_ERR_INVALID, "unknown --fill '%s' (known: mean, zero, noise)", name);
    return PASM_OK;
}

const char *pasm_fill_name(pasm_fill_kind kind) {
    return kind == PASM_FILL_ZERO ? "zero" : kind == PASM_FILL_NOISE ? "noise" : "mean";
}

static int clampi(int v, int lo, int hi) { return v < lo ? lo : v > hi ? hi : v; }

void pasm_square_bounds(int size, int side, int row, int col, int *r0, int *r1, int *c0,
                        int *c1) {
    int top = row - side / 2, left = col - side / 2;
    *r0 = clampi(top, 0, size);
    *r1 = clampi(top + side, 0, size);
    *c0 = clampi(left, 0, size);
    *c1 = clampi(left + side, 0, size);
    if (*r1 < *r0) *r1 = *r0;
    if (*c1 < *c0) *c1 = *c0;
}

void pasm_mask_apply(uint8_t *image, int channels, int size, int row, int col, int side,
                     const pasm_fill *fill, uint64_t image_index) {
    int r0, r1, c0, c1;
    pasm_square_bounds(size, side, row, col, &r0, &r1, &c0, &c1);
    pasm_rng rng;
    if (fill->kind == PASM_FILL_NOISE)
        pasm_rng_init(&rng, fill->seed, PASM_RNG_MASK, image_index, 0);
    for (int ch = 0; ch < channels; ch++) {
        uint8_t value = fill->kind == PASM_FILL_MEAN ? fill->mean[ch] : 0;
        uint8_t *plane = image + (size_t)ch * size * size;
        for (int r = r0; r < r1; r++)
            for (int c = c0; c < c1; c++)
                plane[r * size + c] =
                    fill->kind == PASM_FILL_NOISE ? (uint8_t)pasm_rng_below(&rng, 256) : value;
    }
}
