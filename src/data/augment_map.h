/* Where an augmented pixel comes from, shared by the CPU's augmentation
 * (src/data/augment.c) and the GPU's batch assembly (src/cuda/step.cu): the
 * same index arithmetic on both sides. */
#ifndef PASM_AUGMENT_MAP_H
#define PASM_AUGMENT_MAP_H

#include "core/hostdev.h"
#include "pasm/data.h"

/* torch.nn.functional.pad's reflect: -1 -> 1, S -> S - 2 (pad < S). */
PASM_HD static inline int pasm_augment_reflect(int i, int S) {
    if (i < 0) return -i;
    if (i >= S) return 2 * (S - 1) - i;
    return i;
}

/* Output pixel (y, x) of an S x S plane under plan p: 0 when erased, else
 * 1 with the source pixel in (*sy, *sx) (crop, then flip). */
PASM_HD static inline int pasm_augment_source(const pasm_augment_plan *p, int S, int y, int x,
                                              int *sy, int *sx) {
    if (y >= p->top && y < p->top + p->h && x >= p->left && x < p->left + p->w) return 0;
    *sy = pasm_augment_reflect(y + p->dy, S);
    *sx = pasm_augment_reflect((p->flip ? S - 1 - x : x) + p->dx, S);
    return 1;
}

#endif
