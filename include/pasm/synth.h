/* pasm synthetic faces: grey faces drawn procedurally, whose expression
 * evidence lives only in five known regions (mouth, brows, eyes), so the
 * points PASM's attacks pick can be checked against ground truth. Also the
 * small PNG writer the generator uses. (To be folded into the data layer's
 * header.) */
#ifndef PASM_SYNTH_H
#define PASM_SYNTH_H

#include <stdint.h>

#include "pasm/core.h"

#ifdef __cplusplus
extern "C" {
#endif

/* FER2013's seven classes in its order. */
enum {
    PASM_SYNTH_ANGRY = 0,
    PASM_SYNTH_DISGUST,
    PASM_SYNTH_FEAR,
    PASM_SYNTH_HAPPY,
    PASM_SYNTH_SAD,
    PASM_SYNTH_SURPRISE,
    PASM_SYNTH_NEUTRAL,
    PASM_SYNTH_N_CLASSES
};

/* The regions that carry expression evidence. Left and right are the
 * image's (left = smaller x), not the subject's. */
enum {
    PASM_SYNTH_MOUTH = 0,
    PASM_SYNTH_LEFT_BROW,
    PASM_SYNTH_RIGHT_BROW,
    PASM_SYNTH_LEFT_EYE,
    PASM_SYNTH_RIGHT_EYE,
    PASM_SYNTH_N_REGIONS
};

#define PASM_SYNTH_MIN_SIZE 32
#define PASM_SYNTH_MAX_SIZE 1024
#define PASM_SYNTH_MAX_COUNT 10000000

/* "angry" ... "neutral" (lowercase: the folder names); NULL when out of range. */
const char *pasm_synth_class_name(int cls);
/* "mouth", "left_brow", "right_brow", "left_eye", "right_eye"; NULL when out of range. */
const char *pasm_synth_region_name(int region);

typedef struct {
    int count;                /* faces in all splits together (default 2100) */
    int size;                 /* image side in pixels, >= 32 (default 48) */
    uint64_t seed;            /* default 1 */
    float ambiguous_fraction; /* faces whose expression blends two classes (default 0.12) */
    float glasses_fraction;   /* faces wearing glasses (default 0.2) */
    float hand_fraction;      /* faces partly covered by a hand (default 0.1) */
} pasm_synth_options;

void pasm_synth_options_default(pasm_synth_options *o);

/* A pixel box, inclusive-exclusive: x0 <= x < x1, y0 <= y < y1, inside the
 * image. Empty (all zero) when the feature fell wholly outside the image. */
typedef struct {
    int x0, y0, x1, y1;
} pasm_synth_box;

/* Where one face's expression evidence was drawn, and what else it holds. */
typedef struct {
    pasm_synth_box box[PASM_SYNTH_N_REGIONS]; /* indexed by PASM_SYNTH_MOUTH... */
    int blend_class;    /* the second class of an ambiguous face, -1 when none */
    float blend_weight; /* that class's weight in the blend (< 0.5), 0 when none */
    int glasses;        /* 1 when the face wears glasses (2: dark sunglasses) */
    int hand;           /* 1 when a hand covers part of the face */
} pasm_synth_regions;

/* Draws face `index` of the set keyed by `seed` with expression class `cls`
 * into pixels (size x size grey bytes, row-major) and, when regions is not
 * NULL, fills its boxes. Deterministic for (seed, index, cls, size). Identity
 * (head, hair, skin, pose, light, noise, occluders) comes from one RNG stream
 * keyed by (seed, index), the expression from another: two classes of the
 * same (seed, index) differ only inside the union of their five boxes. Uses
 * the default fractions of pasm_synth_options. */
pasm_status pasm_synth_face(uint64_t seed, uint64_t index, int cls, int size, uint8_t *pixels,
                            pasm_synth_regions *regions);
/* The same with every option (count is ignored). */
pasm_status pasm_synth_face_opts(const pasm_synth_options *o, uint64_t index, int cls,
                                 uint8_t *pixels, pasm_synth_regions *regions);

/* Which split and class face `index` of a set of `count` gets: the first 70%
 * (rounded) are train, the next 15% val, the rest test; within a split the
 * classes cycle 0..6 so they are balanced as far as divisible. split: 0 train,
 * 1 val, 2 test. */
pasm_status pasm_synth_assign(int count, int index, int *split, int *cls);
/* "train", "val", "test"; NULL when out of range. */
const char *pasm_synth_split_name(int split);

typedef struct {
    int count[3];                           /* faces per split */
    int per_class[3][PASM_SYNTH_N_CLASSES]; /* faces per split and class */
    int ambiguous, glasses, hands;          /* faces with each */
    double seconds;                         /* wall time of the whole write */
} pasm_synth_stats;

/* Writes out_dir/{train,val,test}/<class>/NNNNNN.png (NNNNNN = the face's
 * index, zero-padded to 6 digits), out_dir/regions.csv and out_dir/faces.csv
 * (formats in docs/formats.md). out_dir is created when missing and must be
 * empty when it exists, so a set never mixes with an older one. stats may be
 * NULL. */
pasm_status pasm_synth_write(const char *out_dir, const pasm_synth_options *o,
                             pasm_synth_stats *stats);

/* Writes an 8-bit PNG: channels 1 (grey), 2 (grey + alpha), 3 (RGB) or 4
 * (RGBA), pixels row-major and interleaved. A partial file is removed on
 * failure. */
pasm_status pasm_png_write(const char *path, int w, int h, int channels, const uint8_t *pixels);

#ifdef __cplusplus
}
#endif
#endif
