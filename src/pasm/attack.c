/* The point attacks of pasm-method.md against a frozen scorer: `grad` (the
 * most salient pixel of the cross-entropy's input gradient), `iter` (most
 * salient unchanged pixels set to an end, one by one, until the prediction
 * flips) and `de` (Su et al.'s one-pixel attack by differential evolution,
 * DE/rand/1 without crossover). Every attack works on uint8 images and
 * batches its queries: `de` gathers the candidates of all images still
 * searching into forward passes of up to attack_batch images. A scorer
 * that offers them (the GPU's) assembles the one-pixel candidates from the
 * images bound to it (bind, changed) and picks the salient pixels itself
 * (salient); the attacks' decisions are the same either way.
 *
 * Randomness (de only) comes from pasm_rng(seed, PASM_RNG_ATTACK, image
 * index, 0), one stream per image, so results do not depend on how images
 * are chunked or batched. Ties go to the first pixel in row-major order, or
 * to the lowest candidate index. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "pasm/pasm_method.h"

void pasm_attack_defaults(pasm_attack_options *o) {
    *o = (pasm_attack_options){.kind = PASM_ATTACK_DE, .de_pop = 32, .de_gens = 8, .de_f = 0.5f,
                               .de_early_stop = 1, .iter_max = 8, .attack_batch = 1024,
                               .seed = 0};
}

pasm_status pasm_attack_parse(const char *name, pasm_attack_kind *kind) {
    if (!strcasecmp(name, "de")) *kind = PASM_ATTACK_DE;
    else if (!strcasecmp(name, "grad")) *kind = PASM_ATTACK_GRAD;
    else if (!strcasecmp(name, "iter")) *kind = PASM_ATTACK_ITER;
    else if (!strcasecmp(name, "random")) *kind = PASM_ATTACK_RANDOM;
    else if (!strcasecmp(name, "cam")) *kind = PASM_ATTACK_CAM;
    else
        return pasm_errorf(PASM_ERR_INVALID,
                           "unknown --attack '%s' (known: de, grad, iter; random, cam)", name);
    return PASM_OK;
}

const char *pasm_attack_name(pasm_attack_kind kind) {
    switch (kind) {
    case PASM_ATTACK_GRAD: return "grad";
    case PASM_ATTACK_ITER: return "iter";
    case PASM_ATTACK_RANDOM: return "random";
    case PASM_ATTACK_CAM: return "cam";
    default: return "de";
    }
}

/* ---- shared working memory ---- */
typedef struct {
    const pasm_scorer *s;
    int batch;          /* images per scorer call */
    int64_t per_image;  /* C * S * S */
    uint8_t *images;    /* batch images */
    float *probs;       /* batch x K */
    float *dpixels;     /* batch x C x S x S (grad and iter without s->salient; cam: batch x S x S) */
    int *pixel;         /* batch: the most salient pixels (grad and iter) */
    uint8_t *values;    /* batch x C: their values */
    uint8_t *skip;      /* batch x S x S: pixels not to pick (iter only) */
    int bound;          /* the images attacked are bound to the scorer (s->bind) */
    int n_images;       /* how many images are attacked (changes' img indices) */
} work;

static void work_free(work *w) {
    free(w->images);
    free(w->probs);
    free(w->dpixels);
    free(w->pixel);
    free(w->values);
    free(w->skip);
}

static pasm_status work_init(work *w, const pasm_scorer *s, const pasm_attack_options *o,
                             int need_grad) {
    memset(w, 0, sizeof *w);
    w->s = s;
    w->batch = o->attack_batch < s->max_batch ? o->attack_batch : s->max_batch;
    if (w->batch < 1) return pasm_errorf(PASM_ERR_INVALID, "attack batch %d < 1", w->batch);
    w->per_image = (int64_t)s->channels * s->size * s->size;
    w->images = malloc((size_t)w->batch * w->per_image);
    w->probs = malloc((size_t)w->batch * s->n_classes * sizeof(float));
    /* grad and iter pick pixels (from dpixels unless the scorer picks);
     * cam reads maps into dpixels */
    const int pick = o->kind == PASM_ATTACK_GRAD || o->kind == PASM_ATTACK_ITER;
    const int dpix = need_grad && !(pick && s->salient);
    if (dpix) w->dpixels = malloc((size_t)w->batch * w->per_image * sizeof(float));
    const int skips = o->kind == PASM_ATTACK_ITER;
    if (pick) {
        w->pixel = malloc((size_t)w->batch * sizeof(int));
        w->values = malloc((size_t)w->batch * s->channels);
    }
    if (skips) w->skip = malloc((size_t)w->batch * s->size * s->size);
    if (!w->images || !w->probs || (dpix && !w->dpixels) ||
        (pick && (!w->pixel || !w->values)) || (skips && !w->skip)) {
        work_free(w);
        return pasm_errorf(PASM_ERR_NOMEM, "out of memory for attack batches of %d", w->batch);
    }
    return PASM_OK;
}

static int argmax(const float *row, int k) {
    int best = 0;
    for (int c = 1; c < k; c++)
        if (row[c] > row[best]) best = c;
    return best;
}

static void set_pixel(uint8_t *image, int channels, int size, int row, int col,
                      const uint8_t *values) {
    for (int ch = 0; ch < channels; ch++)
        image[(int64_t)ch * size * size + row * size + col] = values[ch];
}

pasm_status pasm_candidates_assemble(int channels, int size, const uint8_t *images, int n,
                                     int m, const int *img, const int *row, const int *col,
                                     const uint8_t *values, uint8_t *out) {
    const int64_t per = (int64_t)channels * size * size;
    for (int j = 0; j < m; j++) {
        if (img[j] < 0 || img[j] >= n || row[j] < 0 || row[j] >= size || col[j] < 0 ||
            col[j] >= size)
            return pasm_errorf(PASM_ERR_INVALID, "one-pixel candidate %d: pixel (%d, %d) of "
                                                 "image %d, outside %d images of %dx%d",
                               j, row[j], col[j], img[j], n, size, size);
        uint8_t *dst = out + j * per;
        memcpy(dst, images + (int64_t)img[j] * per, (size_t)per);
        set_pixel(dst, channels, size, row[j], col[j], values + (int64_t)j * channels);
    }
    return PASM_OK;
}

/* A list of one-pixel changes: m items, item j sets pixel (row[j], col[j])
 * of image img[j] to values[j * C ..]. Evaluates them all in batches:
 * p_true[j] and pred[j]. */
typedef struct {
    int m;
    int *img, *row, *col;
    uint8_t *values;
    float *p_true;
    int *pred;
} changes;

static pasm_status eval_changes(work *w, const uint8_t *images, const int32_t *labels,
                                changes *ch) {
    const pasm_scorer *s = w->s;
    const int k = s->n_classes;
    for (int start = 0; start < ch->m; start += w->batch) {
        int n = ch->m - start < w->batch ? ch->m - start : w->batch;
        pasm_status st;
        if (w->bound) { /* the scorer assembles them from the bound images */
            st = s->changed(s->ctx, n, ch->img + start, ch->row + start, ch->col + start,
                            ch->values + (int64_t)start * s->channels, w->probs);
        } else {
            st = pasm_candidates_assemble(s->channels, s->size, images, w->n_images, n,
                                          ch->img + start, ch->row + start, ch->col + start,
                                          ch->values + (int64_t)start * s->channels, w->images);
            if (!st) st = s->probs(s->ctx, w->images, n, w->probs);
        }
        if (st) return st;
        for (int b = 0; b < n; b++) {
            int j = start + b;
            const float *row = w->probs + (int64_t)b * k;
            ch->p_true[j] = row[labels[ch->img[j]]];
            ch->pred[j] = argmax(row, k);
        }
    }
    return PASM_OK;
}

static void changes_free(changes *c) {
    free(c->img);
    free(c->row);
    free(c->col);
    free(c->values);
    free(c->p_true);
    free(c->pred);
}

static pasm_status changes_alloc(changes *c, int m, int channels) {
    memset(c, 0, sizeof *c);
    c->m = m;
    c->img = malloc((size_t)m * sizeof(int));
    c->row = malloc((size_t)m * sizeof(int));
    c->col = malloc((size_t)m * sizeof(int));
    c->values = malloc((size_t)m * channels);
    c->p_true = malloc((size_t)m * sizeof(float));
    c->pred = malloc((size_t)m * sizeof(int));
    if (!c->img || !c->row || !c->col || !c->values || !c->p_true || !c->pred) {
        changes_free(c);
        return pasm_errorf(PASM_ERR_NOMEM, "out of memory for %d attack candidates", m);
    }
    return PASM_OK;
}

/* The most salient pixel (sum over channels of |dCE/dpixel|) among those
 * not marked in skip (may be NULL); the values that move it the way the
 * gradient says the loss rises: 255 where the gradient is positive, else 0. */
static int most_salient(const float *d, int channels, int size, const uint8_t *skip,
                        uint8_t *values) {
    const int plane = size * size;
    int best = -1;
    float best_s = -1;
    for (int p = 0; p < plane; p++) {
        if (skip && skip[p]) continue;
        float sal = 0;
        for (int ch = 0; ch < channels; ch++) sal += fabsf(d[(int64_t)ch * plane + p]);
        if (sal > best_s) {
            best_s = sal;
            best = p;
        }
    }
    if (best >= 0)
        for (int ch = 0; ch < channels; ch++)
            values[ch] = d[(int64_t)ch * plane + best] > 0 ? 255 : 0;
    return best;
}

/* The most salient pixels of a batch of m images (skip: (m, S*S) or NULL)
 * into w->pixel and w->values, and their probabilities into w->probs: the
 * scorer's own pick, or the host's from the scorer's gradient. */
static pasm_status salient_batch(work *w, const uint8_t *images, const int32_t *labels,
                                 const uint8_t *skip, int m) {
    const pasm_scorer *s = w->s;
    const int C = s->channels, plane = s->size * s->size;
    if (s->salient)
        return s->salient(s->ctx, images, labels, skip, m, w->probs, w->pixel, w->values);
    pasm_status st = s->grad(s->ctx, images, labels, m, w->probs, w->dpixels);
    for (int b = 0; b < m && !st; b++)
        w->pixel[b] = most_salient(w->dpixels + (int64_t)b * w->per_image, C, s->size,
                                   skip ? skip + (int64_t)b * plane : NULL,
                                   w->values + (int64_t)b * C);
    return st;
}

/* ---- grad: one gradient, the most salient pixel, one more forward ---- */
static pasm_status attack_grad(work *w, const uint8_t *images, const int32_t *labels, int n,
                               pasm_point *points) {
    const pasm_scorer *s = w->s;
    const int k = s->n_classes;
    changes ch;
    pasm_status st = changes_alloc(&ch, n, s->channels);
    if (st) return st;
    for (int start = 0; start < n && !st; start += w->batch) {
        int m = n - start < w->batch ? n - start : w->batch;
        st = salient_batch(w, images + (int64_t)start * w->per_image, labels + start, NULL, m);
        for (int b = 0; b < m && !st; b++) {
            int i = start + b, p = w->pixel[b];
            uint8_t *values = ch.values + (int64_t)i * s->channels;
            points[i].p_true_before = w->probs[(int64_t)b * k + labels[i]];
            if (p >= 0) {
                memcpy(values, w->values + (int64_t)b * s->channels, (size_t)s->channels);
            } else { /* no pixel beats another (a NaN gradient): the first, left as it is */
                p = 0;
                for (int c = 0; c < s->channels; c++)
                    values[c] = images[(int64_t)i * w->per_image + (int64_t)c * s->size * s->size];
            }
            ch.img[i] = i;
            ch.row[i] = p / s->size;
            ch.col[i] = p % s->size;
        }
    }
    if (!st) st = eval_changes(w, images, labels, &ch);
    for (int i = 0; i < n && !st; i++) {
        points[i].row = ch.row[i];
        points[i].col = ch.col[i];
        points[i].p_true_after = ch.p_true[i];
        points[i].fooled = ch.pred[i] != labels[i];
        points[i].queries = 2;
    }
    changes_free(&ch);
    return st;
}

/* ---- random and cam: a point placed without attacking ---- */
static pasm_status place_points(work *w, const pasm_attack_options *o, const uint8_t *images,
                                const int32_t *labels, const int64_t *image_index, int n,
                                pasm_point *points) {
    const pasm_scorer *s = w->s;
    const int k = s->n_classes, C = s->channels, plane = s->size * s->size;
    if (o->kind == PASM_ATTACK_CAM && !s->cam)
        return pasm_errorf(PASM_ERR_INVALID, "cam: this scorer has no class activation maps");
    changes ch; /* image i: its point set to 0 (item 2i) and to 255 (item 2i+1) */
    pasm_status st = changes_alloc(&ch, 2 * n, C);
    if (st) return st;
    for (int start = 0; start < n && !st; start += w->batch) {
        int m = n - start < w->batch ? n - start : w->batch;
        const uint8_t *batch = images + (int64_t)start * w->per_image;
        st = o->kind == PASM_ATTACK_CAM ? s->cam(s->ctx, batch, labels + start, m, w->probs,
                                                 w->dpixels)
                                        : s->probs(s->ctx, batch, m, w->probs);
        for (int b = 0; b < m && !st; b++) {
            int i = start + b, p = 0;
            points[i].p_true_before = w->probs[(int64_t)b * k + labels[i]];
            if (o->kind == PASM_ATTACK_CAM) {
                const float *map = w->dpixels + (int64_t)b * plane;
                for (int q = 1; q < plane; q++)
                    if (map[q] > map[p]) p = q;
            } else {
                pasm_rng r;
                pasm_rng_init(&r, o->seed, PASM_RNG_ATTACK, (uint64_t)image_index[i], 0);
                p = (int)pasm_rng_below(&r, (uint32_t)plane);
            }
            for (int e = 0; e < 2; e++) {
                int j = 2 * i + e;
                ch.img[j] = i, ch.row[j] = p / s->size, ch.col[j] = p % s->size;
                memset(ch.values + (int64_t)j * C, e ? 255 : 0, (size_t)C);
            }
        }
    }
    if (!st) st = eval_changes(w, images, labels, &ch);
    for (int i = 0; i < n && !st; i++) {
        int j = ch.p_true[2 * i + 1] < ch.p_true[2 * i] ? 2 * i + 1 : 2 * i;
        points[i].row = ch.row[j];
        points[i].col = ch.col[j];
        points[i].p_true_after = ch.p_true[j];
        points[i].fooled = ch.pred[j] != labels[i];
        points[i].queries = 3;
    }
    changes_free(&ch);
    return st;
}

/* ---- iter: most salient unchanged pixel to an end, until the flip ---- */
static pasm_status attack_iter(work *w, const pasm_attack_options *o, const uint8_t *images,
                               const int32_t *labels, int n, pasm_point *points) {
    const pasm_scorer *s = w->s;
    const int k = s->n_classes, plane = s->size * s->size;
    uint8_t *cur = malloc((size_t)n * w->per_image), *changed = calloc((size_t)n, (size_t)plane);
    int *active = malloc((size_t)n * sizeof(int)), *was_right = malloc((size_t)n * sizeof(int));
    int32_t *lab = malloc((size_t)w->batch * sizeof(int32_t));
    pasm_status st = PASM_OK;
    if (!cur || !changed || !active || !was_right || !lab) {
        st = pasm_errorf(PASM_ERR_NOMEM, "out of memory for the iter attack on %d images", n);
        goto done;
    }
    memcpy(cur, images, (size_t)n * w->per_image);
    int n_active = n;
    for (int i = 0; i < n; i++) active[i] = i;
    /* Step t evaluates the current images (gradient and probabilities in one
     * pass): t = 0 is the clean image; after each, a flip ends the search. */
    for (int t = 0; t <= o->iter_max && n_active > 0 && !st; t++) {
        int kept = 0;
        for (int start = 0; start < n_active && !st; start += w->batch) {
            int m = n_active - start < w->batch ? n_active - start : w->batch;
            for (int b = 0; b < m; b++) {
                int i = active[start + b];
                memcpy(w->images + (int64_t)b * w->per_image, cur + (int64_t)i * w->per_image,
                       (size_t)w->per_image);
                memcpy(w->skip + (int64_t)b * plane, changed + (int64_t)i * plane, (size_t)plane);
                lab[b] = labels[i];
            }
            /* the last step only reads the outcome: no gradient needed */
            st = t == o->iter_max ? s->probs(s->ctx, w->images, m, w->probs)
                                  : salient_batch(w, w->images, lab, w->skip, m);
            if (st) break;
            for (int b = 0; b < m; b++) {
                int i = active[start + b];
                const float *row = w->probs + (int64_t)b * k;
                int pred = argmax(row, k);
                pasm_point *pt = &points[i];
                pt->queries = t + 1;
                pt->p_true_after = row[labels[i]];
                pt->fooled = pred != labels[i];
                if (t == 0) {
                    pt->p_true_before = row[labels[i]];
                    was_right[i] = pred == labels[i];
                }
                /* a correct image stops once fooled; a wrong one runs the budget */
                if ((t > 0 && was_right[i] && pt->fooled) || t == o->iter_max) continue;
                const uint8_t *values = w->values + (int64_t)b * s->channels;
                int p = w->pixel[b];
                if (p < 0) continue; /* every pixel already changed */
                if (t == 0) {
                    pt->row = p / s->size;
                    pt->col = p % s->size;
                }
                changed[(int64_t)i * plane + p] = 1;
                set_pixel(cur + (int64_t)i * w->per_image, s->channels, s->size, p / s->size,
                          p % s->size, values);
                active[kept++] = i; /* kept <= start + b: compaction in place is safe */
            }
        }
        n_active = kept;
    }
done:
    free(cur);
    free(changed);
    free(active);
    free(was_right);
    free(lab);
    return st;
}

/* ---- de: one-pixel attack by differential evolution ---- */
typedef struct {
    int pop, channels, size;
    int *row, *col;  /* n x pop */
    uint8_t *value;  /* n x pop x C */
    float *fit;      /* n x pop: true-class probability */
    int *pred;       /* n x pop */
} population;

static int clamp_round(float v, int lo, int hi) {
    int r = (int)floorf(v + 0.5f);
    return r < lo ? lo : r > hi ? hi : r;
}

/* Fills ch with the children of every active image's population. */
static void make_children(const population *P, const int *active, int n_active, float f,
                          pasm_rng *rngs, changes *ch) {
    const int C = P->channels;
    ch->m = 0;
    for (int a = 0; a < n_active; a++) {
        int i = active[a];
        for (int j = 0; j < P->pop; j++) {
            int r1, r2, r3;
            do r1 = (int)pasm_rng_below(&rngs[i], (uint32_t)P->pop); while (r1 == j);
            do r2 = (int)pasm_rng_below(&rngs[i], (uint32_t)P->pop); while (r2 == j || r2 == r1);
            do r3 = (int)pasm_rng_below(&rngs[i], (uint32_t)P->pop);
            while (r3 == j || r3 == r1 || r3 == r2);
            int64_t b1 = (int64_t)i * P->pop + r1, b2 = (int64_t)i * P->pop + r2,
                    b3 = (int64_t)i * P->pop + r3;
            int m = ch->m++;
            ch->img[m] = i;
            ch->row[m] = clamp_round(P->row[b1] + f * (P->row[b2] - P->row[b3]), 0, P->size - 1);
            ch->col[m] = clamp_round(P->col[b1] + f * (P->col[b2] - P->col[b3]), 0, P->size - 1);
            for (int c = 0; c < C; c++)
                ch->values[(int64_t)m * C + c] = (uint8_t)clamp_round(
                    P->value[b1 * C + c] + f * (P->value[b2 * C + c] - P->value[b3 * C + c]), 0,
                    255);
        }
    }
}

/* The image's answer: the fooling candidate with the lowest true-class
 * probability if one fools, else the lowest overall. */
static int best_candidate(const population *P, int i, int label) {
    int best = -1, best_fooled = -1;
    for (int j = 0; j < P->pop; j++) {
        int64_t q = (int64_t)i * P->pop + j;
        if (best < 0 || P->fit[q] < P->fit[(int64_t)i * P->pop + best]) best = j;
        if (P->pred[q] != label &&
            (best_fooled < 0 || P->fit[q] < P->fit[(int64_t)i * P->pop + best_fooled]))
            best_fooled = j;
    }
    return best_fooled >= 0 ? best_fooled : best;
}

static int any_fooled(const population *P, int i, int label) {
    for (int j = 0; j < P->pop; j++)
        if (P->pred[(int64_t)i * P->pop + j] != label) return 1;
    return 0;
}

static pasm_status attack_de(work *w, const pasm_attack_options *o, const uint8_t *images,
                             const int32_t *labels, const int64_t *image_index, int n,
                             pasm_point *points) {
    const pasm_scorer *s = w->s;
    const int C = s->channels, k = s->n_classes, pop = o->de_pop;
    const int64_t total = (int64_t)n * pop;
    population P = {pop, C, s->size, malloc(total * sizeof(int)), malloc(total * sizeof(int)),
                    malloc(total * C), malloc(total * sizeof(float)), malloc(total * sizeof(int))};
    pasm_rng *rngs = malloc((size_t)n * sizeof(pasm_rng));
    int *active = malloc((size_t)n * sizeof(int)), *was_right = malloc((size_t)n * sizeof(int));
    changes ch;
    pasm_status st = changes_alloc(&ch, (int)total, C);
    if (!st && (!P.row || !P.col || !P.value || !P.fit || !P.pred || !rngs || !active ||
                !was_right))
        st = pasm_errorf(PASM_ERR_NOMEM, "out of memory for de on %d images x %d", n, pop);
    if (st) goto done;
    /* clean images: the probability before, and who is already wrong */
    for (int start = 0; start < n && !st; start += w->batch) {
        int m = n - start < w->batch ? n - start : w->batch;
        if ((st = s->probs(s->ctx, images + (int64_t)start * w->per_image, m, w->probs))) break;
        for (int b = 0; b < m; b++) {
            const float *row = w->probs + (int64_t)b * k;
            points[start + b].p_true_before = row[labels[start + b]];
            was_right[start + b] = argmax(row, k) == labels[start + b];
        }
    }
    if (st) goto done;
    /* initial population: rows, cols and values uniform */
    for (int i = 0; i < n; i++) {
        pasm_rng_init(&rngs[i], o->seed, PASM_RNG_ATTACK, (uint64_t)image_index[i], 0);
        for (int j = 0; j < pop; j++) {
            int64_t q = (int64_t)i * pop + j;
            ch.img[q] = i;
            ch.row[q] = (int)pasm_rng_below(&rngs[i], (uint32_t)s->size);
            ch.col[q] = (int)pasm_rng_below(&rngs[i], (uint32_t)s->size);
            for (int c = 0; c < C; c++) ch.values[q * C + c] = (uint8_t)pasm_rng_below(&rngs[i], 256);
        }
    }
    ch.m = (int)total;
    if ((st = eval_changes(w, images, labels, &ch))) goto done;
    memcpy(P.row, ch.row, total * sizeof(int));
    memcpy(P.col, ch.col, total * sizeof(int));
    memcpy(P.value, ch.values, total * C);
    memcpy(P.fit, ch.p_true, total * sizeof(float));
    memcpy(P.pred, ch.pred, total * sizeof(int));
    int n_active = 0;
    for (int i = 0; i < n; i++) {
        points[i].queries = 1 + pop;
        if (!(o->de_early_stop && was_right[i] && any_fooled(&P, i, labels[i])))
            active[n_active++] = i;
    }
    for (int g = 0; g < o->de_gens && n_active > 0; g++) {
        make_children(&P, active, n_active, o->de_f, rngs, &ch);
        if ((st = eval_changes(w, images, labels, &ch))) goto done;
        /* synchronous selection: a child replaces its parent when it scores
         * at least as low */
        for (int q = 0; q < ch.m; q++) {
            int i = ch.img[q], j = q % pop;
            int64_t t = (int64_t)i * pop + j;
            if (ch.p_true[q] <= P.fit[t]) {
                P.row[t] = ch.row[q];
                P.col[t] = ch.col[q];
                memcpy(P.value + t * C, ch.values + (int64_t)q * C, (size_t)C);
                P.fit[t] = ch.p_true[q];
                P.pred[t] = ch.pred[q];
            }
        }
        int kept = 0;
        for (int a = 0; a < n_active; a++) {
            int i = active[a];
            points[i].queries += pop;
            if (!(o->de_early_stop && was_right[i] && any_fooled(&P, i, labels[i])))
                active[kept++] = i;
        }
        n_active = kept;
    }
    for (int i = 0; i < n; i++) {
        int j = best_candidate(&P, i, labels[i]);
        int64_t q = (int64_t)i * pop + j;
        points[i].row = P.row[q];
        points[i].col = P.col[q];
        points[i].p_true_after = P.fit[q];
        points[i].fooled = P.pred[q] != labels[i];
    }
done:
    changes_free(&ch);
    free(P.row);
    free(P.col);
    free(P.value);
    free(P.fit);
    free(P.pred);
    free(rngs);
    free(active);
    free(was_right);
    return st;
}

static pasm_status check_options(const pasm_scorer *s, const pasm_attack_options *o,
                                 const int32_t *labels, int n) {
    if (s->channels < 1 || s->channels > 3 || s->size < 1 || s->n_classes < 2)
        return pasm_errorf(PASM_ERR_INVALID, "attack: bad scorer (%d channels, size %d, %d "
                                             "classes)",
                           s->channels, s->size, s->n_classes);
    if ((o->kind == PASM_ATTACK_GRAD || o->kind == PASM_ATTACK_ITER) && !s->grad && !s->salient)
        return pasm_errorf(PASM_ERR_INVALID, "%s: the scorer gives no gradients (a network built "
                                             "with PASM_NET_EVAL); build it with "
                                             "PASM_NET_EVAL_GRAD",
                           pasm_attack_name(o->kind));
    if (o->kind == PASM_ATTACK_DE && (o->de_pop < 4 || o->de_gens < 0 || !(o->de_f > 0)))
        return pasm_errorf(PASM_ERR_INVALID, "de: need --de-pop >= 4, --de-gens >= 0, --de-f > "
                                             "0 (got %d, %d, %g)",
                           o->de_pop, o->de_gens, (double)o->de_f);
    if (o->kind == PASM_ATTACK_ITER && o->iter_max < 1)
        return pasm_errorf(PASM_ERR_INVALID, "iter: --iter-max %d < 1", o->iter_max);
    for (int i = 0; i < n; i++)
        if (labels[i] < 0 || labels[i] >= s->n_classes)
            return pasm_errorf(PASM_ERR_INVALID, "attack: image %d has label %d outside 0..%d", i,
                               labels[i], s->n_classes - 1);
    return PASM_OK;
}

pasm_status pasm_attack_images(const pasm_scorer *s, const pasm_attack_options *o,
                               const uint8_t *images, const int32_t *labels,
                               const int64_t *image_index, int n, pasm_point *points) {
    if (n <= 0) return PASM_OK;
    pasm_status st = check_options(s, o, labels, n);
    if (st) return st;
    memset(points, 0, (size_t)n * sizeof *points);
    work w;
    if ((st = work_init(&w, s, o, o->kind != PASM_ATTACK_DE && o->kind != PASM_ATTACK_RANDOM)))
        return st;
    w.n_images = n;
    /* every attack but iter evaluates one-pixel changes of these images */
    if (o->kind != PASM_ATTACK_ITER && s->bind && s->changed) {
        w.bound = s->bind(s->ctx, images, n) == PASM_OK;
        if (!w.bound) pasm_clear_error(); /* e.g. no room on the GPU: the host assembles them */
    }
    if (o->kind == PASM_ATTACK_GRAD) {
        st = attack_grad(&w, images, labels, n, points);
    } else if (o->kind == PASM_ATTACK_RANDOM || o->kind == PASM_ATTACK_CAM) {
        st = place_points(&w, o, images, labels, image_index, n, points);
    } else if (o->kind == PASM_ATTACK_ITER) {
        st = attack_iter(&w, o, images, labels, n, points);
    } else {
        st = attack_de(&w, o, images, labels, image_index, n, points);
    }
    if (w.bound) {
        pasm_status st2 = s->bind(s->ctx, NULL, 0);
        if (!st) st = st2;
    }
    work_free(&w);
    return st;
}
