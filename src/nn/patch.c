/* One-pixel candidates without the whole forward (pasm_net_patch, nn.h).
 *
 * A candidate of the attacks differs from its clean face in one pixel, and
 * a 3x3 convolution carries that difference one step further per layer:
 * after the stem it touches 3x3 positions, after the first stage (at 48x48,
 * width w) 11x11 of 48x48, after the second 13x13 of 24x24. Outside that
 * window every activation is the clean face's. So the clean face's
 * activations are computed once, and each candidate computes every layer
 * only on its window (a square of fixed side per layer, placed to cover the
 * changed region), reading the clean activations around it. Once a layer's
 * window is the whole map (the third stage at 48x48), the candidates run the
 * rest of the network as usual (pasm_net_forward_eval_tail).
 *
 * The windowed layers run as im2col + one sgemm over all the candidates of
 * a group: window tensors are stored channel-major, (C, group, win, win), so
 * a convolution's output (Cout, group * win * win) is the sgemm's C matrix
 * as it is. The epilogue (batch norm, residual, ReLU) rounds in the order
 * of pasm_conv2d_epilogue_image. Window values inside the window but outside
 * the changed region equal the clean ones up to the summation order of the
 * convolution (the full forward may use the direct kernel): logits agree
 * with the full forward's to float rounding, not bit for bit.
 *
 * Candidates are processed in groups of at most max_group items over at
 * most max_faces faces; each group first computes its faces' clean
 * activations (the windowed layers at full size, with the same fused
 * convolutions as the evaluation forward, so bit for bit its values). */
#include <cblas.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "nn/patch_plan.h"

#define COL_BYTES (8u << 20)  /* the im2col buffer of one sgemm */

typedef struct {
    int c, h, win;
    float *clean;  /* max_faces x c x h x h (the input: the bound faces) */
    float *w;      /* c x group x win x win */
    int *oy, *ox;  /* group: window origins */
    const int *lo; /* the plan's: the window's origin for a pixel in row r */
} ptensor;

struct pasm_net_patch {
    pasm_net *net;
    pasm_patch_plan plan; /* blocks, tensors (0: input, 1: stem, 2 + 2b: block b's mid,
                             3 + 2b: its output), windows, costs */
    ptensor t[PASM_PATCH_TENSORS];
    int max_faces, max_group;
    /* buffers */
    float *xin;      /* max_faces inputs of the clean pass */
    float *res;      /* a block's residual at its output window */
    float *down;     /* clean pass: the downsample branch (max_faces images) */
    float *tail;     /* the tail's input, (group, c, h, h) */
    float *col;      /* im2col of one sgemm */
    size_t col_floats;
    float *crop;     /* per thread one input crop */
    int crop_floats, threads;
    int *face_of;    /* group: each item's slot */
    int *slot_face;  /* max_faces: the bound face in each slot */
    /* bound */
    const float *x;
    int n_bound;
    int *slot_of;    /* n_bound: a face's slot in the current group, or -1 */
};

/* ---- creation ---- */

void pasm_net_patch_free(pasm_net_patch *p) {
    if (!p) return;
    for (int i = 0; i < p->plan.n_tensors; i++) {
        if (i > 0) free(p->t[i].clean);
        free(p->t[i].w);
        free(p->t[i].oy);
        free(p->t[i].ox);
    }
    pasm_patch_plan_free(&p->plan);
    free(p->xin);
    free(p->res);
    free(p->down);
    free(p->tail);
    free(p->col);
    free(p->crop);
    free(p->face_of);
    free(p->slot_face);
    free(p->slot_of);
    free(p);
}

pasm_status pasm_net_patch_create(pasm_net *net, size_t budget_bytes, pasm_net_patch **out) {
    *out = NULL;
    if (!net) return pasm_errorf(PASM_ERR_INVALID, "patch: network is NULL");
    if (net->cfg.device != PASM_DEVICE_CPU || net->cfg.precision != PASM_PRECISION_FP32)
        return PASM_OK; /* the windows are fp32 CPU code */
    pasm_net_patch *p = calloc(1, sizeof *p);
    if (!p) return pasm_errorf(PASM_ERR_NOMEM, "out of memory for the candidate windows");
    p->net = net;
    pasm_status st = pasm_patch_plan_make(net, &p->plan);
    if (st || p->plan.n_blocks == 0) { /* nothing worth windowing (or no memory) */
        pasm_net_patch_free(p);
        return st;
    }
    for (int i = 0; i < p->plan.n_tensors; i++) {
        ptensor *t = &p->t[i];
        t->c = p->plan.c[i], t->h = p->plan.h[i], t->win = p->plan.win[i];
        t->lo = p->plan.lo + (size_t)i * p->plan.size;
    }
    /* sizes: per face its clean activations, per candidate its windows and
     * the tail's input; half the budget each */
    size_t per_face = 0, per_cand = 0, down = 0, res = 0;
    for (int i = 1; i < p->plan.n_tensors; i++) {
        const ptensor *t = &p->t[i];
        per_face += (size_t)t->c * t->h * t->h * sizeof(float);
        per_cand += (size_t)t->c * t->win * t->win * sizeof(float);
    }
    for (int b = 0; b < p->plan.n_blocks; b++) {
        const block *k = &net->blocks[b];
        const ptensor *o = &p->t[3 + 2 * b];
        size_t r = (size_t)o->c * o->win * o->win;
        if (r > res) res = r;
        if (k->has_downsample && (size_t)o->c * o->h * o->h > down) down = (size_t)o->c * o->h * o->h;
    }
    const ptensor *last = &p->t[p->plan.n_tensors - 1];
    const size_t tail = (size_t)last->c * last->h * last->h;
    per_face += down * sizeof(float);
    per_cand += (res + tail) * sizeof(float) + 3 * sizeof(int) * (size_t)p->plan.n_tensors;
    size_t half = budget_bytes / 2;
    p->max_faces = (int)(half / per_face > 256 ? 256 : half / per_face);
    if (p->max_faces < 1) p->max_faces = 1;
    size_t g = half / per_cand;
    p->max_group = (int)(g > (size_t)net->max_batch ? (size_t)net->max_batch : g);
    if (p->max_group < 1) p->max_group = 1;
    const int F = p->max_faces, G = p->max_group;
    /* the largest crop, and the largest im2col of one candidate */
    size_t col1 = 0;
    int crop = 1;
    for (int b = -1; b < p->plan.n_blocks; b++) {
        const pasm_conv2d_shape *cs[3] = {b < 0 ? &net->stem_conv.shape : &net->blocks[b].conv1.shape,
                                          b < 0 ? NULL : &net->blocks[b].conv2.shape,
                                          b >= 0 && net->blocks[b].has_downsample
                                              ? &net->blocks[b].down_conv.shape
                                              : NULL};
        const int wout[3] = {p->t[b < 0 ? 1 : 2 + 2 * b].win, b < 0 ? 0 : p->t[3 + 2 * b].win,
                             b < 0 ? 0 : p->t[3 + 2 * b].win};
        for (int j = 0; j < 3; j++) {
            if (!cs[j]) continue;
            int hc = (wout[j] - 1) * cs[j]->stride + cs[j]->kernel;
            if (hc * hc > crop) crop = hc * hc;
            size_t c1 = (size_t)cs[j]->c_in * cs[j]->kernel * cs[j]->kernel * wout[j] * wout[j];
            if (c1 > col1) col1 = c1;
        }
    }
    p->col_floats = COL_BYTES / sizeof(float) > col1 ? COL_BYTES / sizeof(float) : col1;
    p->threads = omp_get_max_threads();
    p->crop_floats = crop;
    p->col = malloc(p->col_floats * sizeof(float));
    p->crop = malloc((size_t)p->threads * crop * sizeof(float));
    p->xin = malloc((size_t)F * net->cfg.in_channels * net->cfg.input_size * net->cfg.input_size *
                    sizeof(float));
    p->res = malloc((size_t)G * (res ? res : 1) * sizeof(float));
    p->down = down ? malloc((size_t)F * down * sizeof(float)) : NULL;
    p->tail = malloc((size_t)G * tail * sizeof(float));
    p->face_of = malloc((size_t)G * sizeof(int));
    p->slot_face = malloc((size_t)F * sizeof(int));
    int ok = p->col && p->crop && p->xin && p->res && (!down || p->down) && p->tail && p->face_of &&
             p->slot_face;
    for (int i = 0; i < p->plan.n_tensors && ok; i++) {
        ptensor *t = &p->t[i];
        if (i > 0) ok = (t->clean = malloc((size_t)F * t->c * t->h * t->h * sizeof(float))) != NULL;
        ok = ok && (t->w = malloc((size_t)G * t->c * t->win * t->win * sizeof(float))) &&
             (t->oy = malloc((size_t)G * sizeof(int))) && (t->ox = malloc((size_t)G * sizeof(int)));
    }
    if (!ok) {
        pasm_net_patch_free(p);
        return pasm_errorf(PASM_ERR_NOMEM, "out of memory for the candidate windows (%d faces, "
                                           "%d candidates)",
                           F, G);
    }
    *out = p;
    return PASM_OK;
}

double pasm_net_patch_cost(const pasm_net_patch *p, double *clean_cost) {
    if (clean_cost) *clean_cost = p->plan.clean_cost;
    return p->plan.cand_cost;
}

pasm_status pasm_net_patch_bind(pasm_net_patch *p, const float *x, int n) {
    free(p->slot_of);
    p->slot_of = NULL;
    p->x = NULL;
    p->n_bound = 0;
    if (!x || n <= 0) return PASM_OK;
    p->slot_of = malloc((size_t)n * sizeof(int));
    if (!p->slot_of) return pasm_errorf(PASM_ERR_NOMEM, "out of memory binding %d faces", n);
    for (int i = 0; i < n; i++) p->slot_of[i] = -1;
    p->x = x;
    p->n_bound = n;
    return PASM_OK;
}

/* ---- the clean pass ---- */

/* The clean activations of the faces in slots [0, f), from their inputs
 * gathered into xin. */
static void clean_pass(pasm_net_patch *p, int f) {
    pasm_net *net = p->net;
    pasm_net_conv_bn_eval(net, &net->stem_conv, &net->stem_bn, p->xin, NULL, 1, f, p->t[1].clean);
    for (int b = 0; b < p->plan.n_blocks; b++) {
        const block *k = &net->blocks[b];
        const float *in = p->t[1 + 2 * b].clean;
        float *mid = p->t[2 + 2 * b].clean, *out = p->t[3 + 2 * b].clean;
        pasm_net_conv_bn_eval(net, &k->conv1, &k->bn1, in, NULL, 1, f, mid);
        const float *shortcut = in;
        if (k->has_downsample) {
            pasm_net_conv_bn_eval(net, &k->down_conv, &k->down_bn, in, NULL, 0, f, p->down);
            shortcut = p->down;
        }
        pasm_net_conv_bn_eval(net, &k->conv2, &k->bn2, mid, shortcut, 1, f, out);
    }
}

/* ---- the windowed layers ---- */

/* crop (hc, hc) = tensor t's channel ch for item j from row y0, column x0:
 * zero outside the map, the item's window inside it, else its face's clean
 * values (a row at a time). */
static void fill_crop(const pasm_net_patch *p, const ptensor *t, int g, int j, int ch, int y0,
                      int x0, int hc, float *crop) {
    const size_t per = (size_t)t->c * t->h * t->h;
    const float *clean = (t == &p->t[0] ? p->x + (size_t)p->slot_face[p->face_of[j]] * per
                                        : t->clean + (size_t)p->face_of[j] * per) +
                         (size_t)ch * t->h * t->h;
    const float *win = t->w + ((size_t)ch * g + j) * t->win * t->win;
    /* the columns inside the map, and those of the window */
    const int b0 = x0 < 0 ? -x0 : 0, b1 = x0 + hc > t->h ? t->h - x0 : hc;
    int w0 = t->ox[j] - x0, w1 = w0 + t->win;
    if (w0 < b0) w0 = b0;
    if (w1 > b1) w1 = b1;
    for (int a = 0; a < hc; a++) {
        float *dst = crop + (size_t)a * hc;
        const int y = y0 + a;
        if (y < 0 || y >= t->h || b1 <= b0) {
            memset(dst, 0, (size_t)hc * sizeof(float));
            continue;
        }
        memset(dst, 0, (size_t)b0 * sizeof(float));
        memcpy(dst + b0, clean + (size_t)y * t->h + x0 + b0, (size_t)(b1 - b0) * sizeof(float));
        memset(dst + b1, 0, (size_t)(hc - b1) * sizeof(float));
        const int wy = y - t->oy[j];
        if (wy >= 0 && wy < t->win && w1 > w0)
            memcpy(dst + w0, win + (size_t)wy * t->win + (x0 + w0 - t->ox[j]),
                   (size_t)(w1 - w0) * sizeof(float));
    }
}

/* y (Cout, g, wo, wo) = conv of tensor in at the output windows (oy, ox)
 * of side wo, before any epilogue. */
static void conv_windows(pasm_net_patch *p, int g, const pasm_conv2d_shape *s, const float *weight,
                         const ptensor *in, int wo, const int *oy, const int *ox, float *y) {
    const int k = s->kernel, st = s->stride, pad = s->pad, cin = s->c_in;
    const int hc = (wo - 1) * st + k, wo2 = wo * wo, ckk = cin * k * k;
    const size_t per = (size_t)ckk * wo2;
    int chunk = (int)(p->col_floats / per);
    if (chunk < 1) chunk = 1;
    for (int j0 = 0; j0 < g; j0 += chunk) {
        const int cc = g - j0 < chunk ? g - j0 : chunk;
        const size_t ncols = (size_t)cc * wo2;
        float *col = p->col;
#pragma omp parallel for schedule(static) num_threads(p->threads)
        for (int q = 0; q < cc * cin; q++) {
            const int j = j0 + q / cin, ci = q % cin;
            float *crop = p->crop + (size_t)omp_get_thread_num() * p->crop_floats;
            fill_crop(p, in, g, j, ci, oy[j] * st - pad, ox[j] * st - pad, hc, crop);
            for (int kh = 0; kh < k; kh++)
                for (int kw = 0; kw < k; kw++) {
                    float *row = col + (size_t)((ci * k + kh) * k + kw) * ncols +
                                 (size_t)(j - j0) * wo2;
                    if (st == 1) /* contiguous rows: vectorised copies */
                        for (int u = 0; u < wo; u++) {
                            const float *restrict src = crop + (u + kh) * hc + kw;
                            float *restrict d = row + u * wo;
#pragma omp simd
                            for (int v = 0; v < wo; v++) d[v] = src[v];
                        }
                    else
                        for (int u = 0; u < wo; u++)
                            for (int v = 0; v < wo; v++)
                                row[u * wo + v] = crop[(u * st + kh) * hc + v * st + kw];
                }
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, s->c_out, (int)ncols, ckk, 1.0f,
                    weight, ckk, col, (int)ncols, 0.0f, y + (size_t)j0 * wo2, g * wo2);
    }
}

/* y = relu?(y * scale + shift + res), as pasm_conv2d_epilogue_image rounds. */
static void epilogue(pasm_net_patch *p, int cout, size_t len, const float *scale,
                     const float *shift, const float *res, int relu, float *y) {
#pragma omp parallel for schedule(static) num_threads(p->threads)
    for (int co = 0; co < cout; co++) {
        float *restrict row = y + (size_t)co * len;
        const float a = scale[co], b = shift[co];
        const float *restrict r = res ? res + (size_t)co * len : NULL;
        if (r) {
#pragma omp simd
            for (size_t i = 0; i < len; i++) {
                const float v = row[i] * a + b + r[i];
                row[i] = relu && !(v > 0.0f) ? 0.0f : v;
            }
        } else {
#pragma omp simd
            for (size_t i = 0; i < len; i++) {
                const float v = row[i] * a + b;
                row[i] = relu && !(v > 0.0f) ? 0.0f : v;
            }
        }
    }
}

/* Window origins of tensor t for the group's items. */
static void place(ptensor *t, int g, const int *row, const int *col) {
    for (int j = 0; j < g; j++) {
        t->oy[j] = t->lo[row[j]];
        t->ox[j] = t->lo[col[j]];
    }
}

static void layer(pasm_net_patch *p, int g, const conv_layer *c, const bn_layer *b,
                  const ptensor *in, ptensor *out, const float *res, int relu) {
    conv_windows(p, g, &c->shape, c->weight, in, out->win, out->oy, out->ox, out->w);
    pasm_net_fold_bn(b);
    epilogue(p, out->c, (size_t)g * out->win * out->win, b->scale, b->shift, res, relu, out->w);
}

/* One group of g items (slots already set in face_of): the windows, then
 * the tail from the first block not windowed. */
static void group_forward(pasm_net_patch *p, int g, const int *row, const int *col,
                          const float *values, float *logits) {
    pasm_net *net = p->net;
    ptensor *t0 = &p->t[0];
    for (int i = 0; i < p->plan.n_tensors; i++) place(&p->t[i], g, row, col);
    for (int j = 0; j < g; j++)
        for (int ch = 0; ch < t0->c; ch++) t0->w[(size_t)ch * g + j] = values[(size_t)j * t0->c + ch];
    layer(p, g, &net->stem_conv, &net->stem_bn, t0, &p->t[1], NULL, 1);
    for (int b = 0; b < p->plan.n_blocks; b++) {
        const block *k = &net->blocks[b];
        const ptensor *in = &p->t[1 + 2 * b];
        ptensor *mid = &p->t[2 + 2 * b], *out = &p->t[3 + 2 * b];
        layer(p, g, &k->conv1, &k->bn1, in, mid, NULL, 1);
        const int wo = out->win, wo2 = wo * wo;
        if (k->has_downsample) {
            conv_windows(p, g, &k->down_conv.shape, k->down_conv.weight, in, wo, out->oy, out->ox,
                         p->res);
            pasm_net_fold_bn(&k->down_bn);
            epilogue(p, out->c, (size_t)g * wo2, k->down_bn.scale, k->down_bn.shift, NULL, 0,
                     p->res);
        } else {
#pragma omp parallel for schedule(static) num_threads(p->threads)
            for (int q = 0; q < out->c * g; q++) {
                const int co = q / g, j = q % g;
                fill_crop(p, in, g, j, co, out->oy[j], out->ox[j], wo, p->res + (size_t)q * wo2);
            }
        }
        layer(p, g, &k->conv2, &k->bn2, mid, out, p->res, 1);
    }
    /* the tail's input: each item's last window on its clean face */
    const ptensor *last = &p->t[p->plan.n_tensors - 1];
    const size_t plane = (size_t)last->h * last->h, per = (size_t)last->c * plane;
#pragma omp parallel for schedule(static) num_threads(p->threads)
    for (int j = 0; j < g; j++) {
        float *dst = p->tail + (size_t)j * per;
        memcpy(dst, last->clean + (size_t)p->face_of[j] * per, per * sizeof(float));
        for (int ch = 0; ch < last->c; ch++)
            for (int u = 0; u < last->win; u++)
                memcpy(dst + ch * plane + (size_t)(last->oy[j] + u) * last->h + last->ox[j],
                       last->w + (((size_t)ch * g + j) * last->win + u) * last->win,
                       (size_t)last->win * sizeof(float));
    }
    pasm_net_forward_eval_tail(net, p->plan.n_blocks, p->tail, g, 0);
    memcpy(logits, net->logits, (size_t)g * net->cfg.num_classes * sizeof(float));
}

pasm_status pasm_net_patch_forward(pasm_net_patch *p, int m, const int *img, const int *row,
                                   const int *col, const float *values, float *logits) {
    if (!p->x)
        return pasm_errorf(PASM_ERR_INVALID, "patch forward: no faces bound");
    const int S = p->net->cfg.input_size, C = p->net->cfg.in_channels;
    for (int j = 0; j < m; j++)
        if (img[j] < 0 || img[j] >= p->n_bound || row[j] < 0 || row[j] >= S || col[j] < 0 ||
            col[j] >= S)
            return pasm_errorf(PASM_ERR_INVALID, "patch forward: candidate %d is face %d pixel "
                                                 "(%d, %d), outside %d faces of %dx%d",
                               j, img[j], row[j], col[j], p->n_bound, S, S);
    const size_t per_image = (size_t)C * S * S;
    const int K = p->net->cfg.num_classes;
    for (int start = 0; start < m;) {
        int f;
        const int g = pasm_patch_group(img, start, m, p->max_group, p->max_faces, p->slot_of,
                                       p->slot_face, p->face_of, &f);
        for (int s = 0; s < f; s++)
            memcpy(p->xin + s * per_image, p->x + (size_t)p->slot_face[s] * per_image,
                   per_image * sizeof(float));
        clean_pass(p, f);
        group_forward(p, g, row + start, col + start, values + (size_t)start * C,
                      logits + (size_t)start * K);
        start += g;
    }
    p->net->last_n = 0; /* the activations are the candidates' now: no backward */
    return PASM_OK;
}
