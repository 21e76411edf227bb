/* pasm method: Point Adversarial Self Mining's own parts (pasm-method.md) —
 * the point attacks (grad, iter, de) against a frozen scorer, the square
 * masks and their fills, the mined-points file (CSV + JSON sidecar, written
 * incrementally so a killed mining resumes) and a small SHA-256 for naming
 * the teacher a file was mined with.
 *
 * The attacks see the model only through pasm_scorer: probabilities of uint8
 * images and the gradient of the cross-entropy w.r.t. the pixels (0..255
 * units). pasm_scorer_net wraps a network in evaluation mode with its
 * normalisation; tests plug in hand-made differentiable scorers. */
#ifndef PASM_PASM_METHOD_H
#define PASM_PASM_METHOD_H

#include <stdint.h>

#include "pasm/core.h"
#include "pasm/data.h"
#include "pasm/nn.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- the scorer the attacks query ---- */
typedef struct {
    int channels, size, n_classes;
    int max_batch; /* the most images one call takes */
    /* probs (n, n_classes): softmax of the model on images (n, C, S, S). */
    pasm_status (*probs)(void *ctx, const uint8_t *images, int n, float *probs);
    /* probs as above, and dpixels (n, C, S, S) = d CE(model(x_i), labels[i]) /
     * d pixel, in per-0..255-unit of the pixel. NULL for a scorer without
     * gradients (only de runs on it). */
    pasm_status (*grad)(void *ctx, const uint8_t *images, const int32_t *labels, int n,
                        float *probs, float *dpixels);
    /* probs as above, and maps (n, S, S): the Grad-CAM of class labels[i]
     * at the input's resolution — ReLU, then bilinear upsampling as
     * torch's F.interpolate(mode="bilinear", align_corners=False); an image
     * whose map has no positive value gets the upsampled map without the
     * ReLU (its argmax is then still the most class-like place). NULL when
     * the scorer has no such maps (the `cam` position needs them). */
    pasm_status (*cam)(void *ctx, const uint8_t *images, const int32_t *labels, int n,
                       float *probs, float *maps);
    void *ctx;
    /* (added after ctx, so that the earlier members keep their places) */
    /* Optional (NULL: the attacks do this on the host from grad): probs as
     * grad, and for each image its most salient pixel — the largest sum
     * over channels of |dpixels|, among the pixels not marked in skip
     * ((n, S*S), may be NULL), ties to the first in row-major order; -1 when
     * every pixel is marked — in pixel[i] = row * S + col, and in values
     * (n, C) the values that move it the way the loss rises: 255 where the
     * gradient is positive, else 0. A GPU scorer picks the pixel where the
     * gradient is, and sends back only the pick. */
    pasm_status (*salient)(void *ctx, const uint8_t *images, const int32_t *labels,
                           const uint8_t *skip, int n, float *probs, int *pixel,
                           uint8_t *values);
    /* Optional, together (NULL: the attacks assemble candidates on the
     * host): bind makes images (n, C, S, S) the ones that changed's items
     * refer to (NULL, 0 lets them go; the caller keeps them unchanged while
     * bound); changed gives probs (m, n_classes), m <= max_batch, of item j
     * = image img[j] with pixel (row[j], col[j]) set to values[j * C ..].
     * A GPU scorer keeps the bound images on the GPU; when bind fails
     * (no room there), the attacks assemble the candidates on the host. */
    pasm_status (*bind)(void *ctx, const uint8_t *images, int n);
    pasm_status (*changed)(void *ctx, int m, const int *img, const int *row, const int *col,
                           const uint8_t *values, float *probs);
} pasm_scorer;

/* A scorer over net in evaluation mode (its max batch), normalising with
 * mean/std (0..1 units, one per channel) inside. Allocates its buffers
 * once; free with pasm_scorer_net_free. The network's mode decides what the
 * scorer offers: PASM_NET_EVAL_GRAD (or PASM_NET_TRAIN, which plans far more
 * memory) gives probabilities and gradients, for every attack;
 * PASM_NET_EVAL gives probabilities only (grad is NULL), enough for de. */
pasm_status pasm_scorer_net(pasm_scorer *s, pasm_net *net, const float *mean, const float *std);
void pasm_scorer_net_free(pasm_scorer *s);
/* The one-pixel candidates of changed's items, assembled whole: out
 * (m, C, S, S) item j = image img[j] of images (n, C, S, S) with pixel
 * (row[j], col[j]) set to values[j * C ..]. What the attacks send to probs
 * when the scorer has no bind/changed, and what a scorer's changed may do
 * when it has nothing faster. PASM_ERR_INVALID, naming the item, for an
 * image or pixel outside (out then holds the items before it). */
pasm_status pasm_candidates_assemble(int channels, int size, const uint8_t *images, int n,
                                     int m, const int *img, const int *row, const int *col,
                                     const uint8_t *values, uint8_t *out);

/* ---- attacks ---- */
/* de, grad and iter are the point attacks; random and cam place the point
 * without attacking, for the controls: random uniformly (per image, seeded),
 * cam at the peak of the teacher's Grad-CAM for the true class. For both,
 * fooled and p_true_after are read after setting the point to 0 and to 255,
 * whichever lowers the true-class probability more (2 more forwards). */
typedef enum {
    PASM_ATTACK_DE = 0,
    PASM_ATTACK_GRAD = 1,
    PASM_ATTACK_ITER = 2,
    PASM_ATTACK_RANDOM = 3,
    PASM_ATTACK_CAM = 4
} pasm_attack_kind;

typedef struct {
    pasm_attack_kind kind; /* de */
    int de_pop;            /* 32 (>= 4) */
    int de_gens;           /* 8 */
    float de_f;            /* 0.5 */
    int de_early_stop;     /* 1 */
    int iter_max;          /* 8 */
    int attack_batch;      /* 1024: images per forward pass (at most the scorer's max) */
    uint64_t seed;         /* 0 */
} pasm_attack_options;

void pasm_attack_defaults(pasm_attack_options *o);
pasm_status pasm_attack_parse(const char *name, pasm_attack_kind *kind);
const char *pasm_attack_name(pasm_attack_kind kind);

/* One image's result. queries counts the images the scorer evaluated for
 * it, the clean one included (a gradient counts as one). */
typedef struct {
    int row, col;
    int fooled; /* prediction differs from the label after the change */
    float p_true_before, p_true_after;
    int64_t queries;
} pasm_point;

/* Attacks n images (n, C, S, S) with labels; image_index[i] is image i's
 * index in its dataset (it keys the random streams, so a result does not
 * depend on how the images are chunked). Results into points[0..n-1]. */
pasm_status pasm_attack_images(const pasm_scorer *s, const pasm_attack_options *o,
                               const uint8_t *images, const int32_t *labels,
                               const int64_t *image_index, int n, pasm_point *points);

/* ---- masks ---- */
typedef enum { PASM_FILL_MEAN = 0, PASM_FILL_ZERO = 1, PASM_FILL_NOISE = 2 } pasm_fill_kind;

typedef struct {
    pasm_fill_kind kind;
    uint8_t mean[3]; /* per channel, for PASM_FILL_MEAN */
    uint64_t seed;   /* for PASM_FILL_NOISE: pasm_rng(seed, PASM_RNG_MASK, image index, 0) */
} pasm_fill;

pasm_status pasm_fill_parse(const char *name, pasm_fill_kind *kind);
const char *pasm_fill_name(pasm_fill_kind kind);
/* The square of side `side` centred on (row, col) — rows row - side/2 ..
 * row - side/2 + side - 1 — clipped to the size x size image: [r0, r1) x
 * [c0, c1), possibly empty when the centre lies far outside. */
void pasm_square_bounds(int size, int side, int row, int col, int *r0, int *r1, int *c0,
                        int *c1);
/* Sets that square of image (C, S, S) to the fill. Noise draws channel,
 * row, column in that order over the clipped square. */
void pasm_mask_apply(uint8_t *image, int channels, int size, int row, int col, int side,
                     const pasm_fill *fill, uint64_t image_index);

/* ---- mined points: CSV + JSON sidecar ----
 * The CSV's header is index,label,row,col,fooled,p_true_before,p_true_after,
 * queries; one row per image in index order. The sidecar (path with .csv
 * replaced by .json, or .json appended) holds `settings` (a JSON object:
 * attack options, side, data, teacher sha256, count) and `complete`. */
void pasm_mined_sidecar_path(const char *csv_path, char *buf, size_t len);

typedef struct {
    int n;         /* rows */
    int32_t *index, *label, *row, *col, *fooled;
    float *p_before, *p_after;
    int64_t *queries;
} pasm_mined;

void pasm_mined_free(pasm_mined *m);
/* Reads the rows of a mined CSV. A last line without its newline (a killed
 * writer) is ignored; *valid_bytes (may be NULL) gets the length of the
 * complete lines. A missing file is an empty table when allow_missing. */
pasm_status pasm_mined_read(const char *csv_path, int allow_missing, pasm_mined *m,
                            long *valid_bytes);

/* An incremental writer: opens (or, resuming, continues) the CSV. */
typedef struct pasm_mined_writer pasm_mined_writer;
/* settings_json: the settings object as text. When the sidecar exists with
 * the same settings, the CSV is continued after its last complete row
 * (*done gets how many rows exist); with other settings it is an error
 * naming the file, unless overwrite. */
pasm_status pasm_mined_writer_open(pasm_mined_writer **w, const char *csv_path,
                                   const char *settings_json, int overwrite, int *done);
/* Appends rows and makes them durable (fflush + fsync) before returning. */
pasm_status pasm_mined_writer_append(pasm_mined_writer *w, const int64_t *index,
                                     const int32_t *labels, const pasm_point *points, int n);
/* Marks the sidecar complete and closes; pasm_mined_writer_close alone
 * closes without marking. */
pasm_status pasm_mined_writer_finish(pasm_mined_writer *w);
void pasm_mined_writer_close(pasm_mined_writer *w);
/* The sidecar's settings (malloc'd JSON text) and complete flag. */
pasm_status pasm_mined_sidecar_read(const char *csv_path, char **settings_json, int *complete);

/* ---- reports: gallery and synthetic-face region hits ---- */

/* Writes one RGB PNG: a grid of up to max_faces faces of ds (evenly spaced
 * through it, 8 per row, drawn twice their size below 64 pixels) with the
 * mined square of side `side` outlined, green where the teacher was fooled
 * and red where not; below it one heat map per class (label order, left to
 * right): the class's mean face in grey under a red-to-yellow map of how
 * many of its points fall on each pixel (3x3 box-smoothed). */
pasm_status pasm_gallery_write(const char *path, const pasm_dataset *ds, const pasm_mined *m,
                               int side, int max_faces);

/* On a `pasm synth` folder (root holding regions.csv) whose images ds was
 * loaded from: the share of mined points inside an expression region box of
 * their face, and the share a uniformly random point would get (the boxes'
 * area in the image, averaged over the faces). Faces are matched by path;
 * *matched counts faces found in regions.csv. A root without regions.csv
 * gives *matched = 0 and PASM_OK. */
pasm_status pasm_region_hits(const char *root, const pasm_dataset *ds, const pasm_mined *m,
                             double *share_points, double *share_random, int *matched);

/* ---- SHA-256 ---- */
void pasm_sha256(const void *data, size_t size, uint8_t digest[32]);
/* Lowercase hex digest of a file into hex[65]. */
pasm_status pasm_sha256_file(const char *path, char hex[65]);

#ifdef __cplusplus
}
#endif
#endif
