/* The ResNet's passes on the GPU: the layers of src/nn/passes.c and
 * passes_eval.c in the same order, over device buffers, through the
 * backend's ops (cuDNN convolutions, own kernels for the rest). Parameters,
 * gradients and BN statistics sit in device blocks laid out as the host
 * net's (a layer's offset is its host pointer's offset in the host block);
 * convolution weights are packed to KRSC in the compute type before every
 * forward, and weight gradients unpacked back to fp32 KCRS.
 *
 * All work is queued on one stream; a forward waits only to hand the logits
 * back, a backward only to hand the input gradient back. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/env.h"
#include "cuda/net_internal.h"

#define TRY(x)                                                                                   \
    do {                                                                                         \
        pasm_status st_ = (x);                                                                   \
        if (st_) return st_;                                                                     \
    } while (0)

static int64_t conv_out_count(const pasm_conv2d_shape *s, int n) {
    return (int64_t)n * s->c_out * s->h_out * s->w_out;
}

/* ---- creation ---- */

typedef struct {
    pasm_net *net;
    pasm_cuda_net *g;
    size_t ws_need, partial_need;
    int64_t largest;    /* the largest convolution output, values */
    int64_t largest_bn; /* the largest BN output, values */
    int64_t largest_w;  /* the largest weight, values */
} builder;

/* The network's convolutions in order (the stem, then each block's conv1,
 * conv2 and shortcut convolution if it has one), into out; how many. */
enum { NET_CONVS = 1 + 8 * 3 };
static int net_convs(pasm_cuda_net *g, gconv **out) {
    int n = 0;
    out[n++] = &g->stem;
    for (int i = 0; i < 8; i++) {
        out[n++] = &g->blocks[i].conv1;
        out[n++] = &g->blocks[i].conv2;
        if (g->blocks[i].has_down) out[n++] = &g->blocks[i].down;
    }
    return n;
}

/* values activations of the network's compute type */
static pasm_status alloc_values(const pasm_cuda_net *g, void **p, int64_t values,
                                const char *what) {
    return pasm_cuda_alloc(p, (size_t)values * g->esize, what);
}

static pasm_status make_conv(builder *b, gconv *gc, const conv_layer *c) {
    pasm_cuda_net *g = b->g;
    gc->shape = c->shape;
    gc->shape.n = b->net->max_batch;
    gc->w_off = c->weight - b->net->param_block;
    /* what the mode's passes run: evaluation forwards only, input
     * gradients too, or everything */
    const pasm_net_mode mode = b->net->mode;
    const unsigned needs = mode == PASM_NET_TRAIN ? PASM_CUDA_CONV_ALL
                           : mode == PASM_NET_EVAL_GRAD
                               ? PASM_CUDA_CONV_FORWARD | PASM_CUDA_CONV_DATA
                               : PASM_CUDA_CONV_FORWARD;
    TRY(pasm_cuda_conv_create(g->ctx, &gc->shape, g->t, needs, &gc->plan));
    size_t ws = pasm_cuda_conv_workspace(gc->plan);
    gc->ws_need = ws;
    if (ws > b->ws_need) b->ws_need = ws;
    const pasm_conv2d_shape *s = &gc->shape;
    int64_t wcount = (int64_t)s->c_out * s->c_in * s->kernel * s->kernel;
    if (wcount > b->largest_w) b->largest_w = wcount;
    int64_t out = conv_out_count(s, s->n);
    if (out > b->largest) b->largest = out;
    /* outputs: a training network's from its plan; else conv_tmp, later */
    return alloc_values(g, &gc->w_packed, wcount, "packed convolution weights");
}

static pasm_status make_bn(builder *b, gbn *gb, const bn_layer *l) {
    pasm_cuda_net *g = b->g;
    pasm_net *net = b->net;
    gb->c = l->shape.c;
    gb->hw = (int64_t)l->shape.h * l->shape.w;
    gb->m_max = (int64_t)net->max_batch * gb->hw;
    gb->gamma_off = l->gamma - net->param_block;
    gb->beta_off = l->beta - net->param_block;
    gb->mean_off = l->running_mean - net->buffer_block;
    gb->var_off = l->running_var - net->buffer_block;
    size_t partial = pasm_cuda_bn_partial_doubles(gb->m_max, gb->c);
    if (partial > b->partial_need) b->partial_need = partial;
    float **f[4] = {&gb->save_mean, &gb->save_invstd, &gb->scale, &gb->shift};
    for (int i = 0; i < 4; i++) TRY(pasm_cuda_alloc((void **)f[i], (size_t)gb->c * 4, "BN state"));
    if (gb->m_max * gb->c > b->largest_bn) b->largest_bn = gb->m_max * gb->c;
    /* outputs: a training network's from its plan, an evaluation one's in the slots */
    if (net->mode != PASM_NET_EVAL_GRAD) return PASM_OK;
    gb->own_out = 1;
    return alloc_values(g, &gb->out, gb->m_max * gb->c, "BN outputs");
}

/* ---- a training network's plan ----
 * The step's ops are numbered in order, forward then backward, and every
 * activation and gradient lives from the op that writes it to the last op
 * that reads it. Each gets a place in one arena where the tensors alive at
 * the same time never overlap (the largest placed first, each at the lowest
 * offset clear of those placed), so the backward's gradients reuse what it
 * has consumed of the forward, as PyTorch's allocator does. */

typedef struct {
    void **ptr;
    size_t bytes, off;
    int first, last;
    int ws; /* a convolution's workspace */
} ptensor;

/* ResNet-18: 3 + 8 * 9 forward (a block's convolution outputs, BN outputs
 * and workspaces, with a shortcut convolution), 1 + 8 * 8 + 3 backward: 143
 * were every block to have a shortcut convolution (113 have) */
enum { PLAN_MAX = 160 };

typedef struct {
    ptensor t[PLAN_MAX];
    int n, now, full;
} tplan;

enum { ARENA_ALIGN = 256 };

/* A tensor written by the current op, returned by index. */
static int def(tplan *p, void **ptr, int64_t values, size_t esize) {
    if (p->n == PLAN_MAX) { /* plan_training refuses the plan */
        p->full = 1;
        return PLAN_MAX - 1;
    }
    ptensor *t = &p->t[p->n];
    t->ptr = ptr;
    t->bytes = ((size_t)values * esize + ARENA_ALIGN - 1) / ARENA_ALIGN * ARENA_ALIGN;
    t->first = t->last = p->now;
    t->ws = 0;
    return p->n++;
}

/* The workspace of conv c for the current op, its forward's or (bwd) its
 * backward's (none: NULL); its index or -1. */
static int def_ws(tplan *p, gconv *c, int bwd) {
    void **ptr = bwd ? &c->ws_bwd : &c->ws_fwd;
    *ptr = NULL;
    c->ws_bytes = c->ws_need;
    if (!c->ws_need) return -1;
    const int i = def(p, ptr, (int64_t)c->ws_need, 1);
    p->t[i].ws = 1;
    return i;
}

static size_t place(tplan *p);

/* PASM_CUDA_ALLOC_LOG: what the convolutions' workspaces add to the arena
 * (its size against a plan without them), on stderr. */
static void log_workspace(const tplan *p, size_t total) {
    tplan *q = malloc(sizeof *q);
    if (!q) return;
    *q = *p;
    size_t largest = 0;
    for (int i = 0; i < q->n; i++)
        if (q->t[i].ws) {
            if (q->t[i].bytes > largest) largest = q->t[i].bytes;
            q->t[i].bytes = 0;
        }
    const size_t without = place(q);
    free(q);
    fprintf(stderr, "pasm: GPU memory plan: %.3f MiB of activations and gradients; convolution "
                    "workspace adds %.3f MiB to it (the largest %.3f MiB, each alive for its "
                    "convolution alone)\n",
            total / 1048576.0, (total > without ? total - without : 0) / 1048576.0,
            largest / 1048576.0);
}

/* Tensor i read by the current op. */
static void use(tplan *p, int i) { p->t[i].last = p->now; }

static void tick(tplan *p) { p->now++; }

static int by_size(const void *a, const void *b) {
    const ptensor *x = *(const ptensor *const *)a, *y = *(const ptensor *const *)b;
    if (x->bytes != y->bytes) return x->bytes < y->bytes ? 1 : -1;
    return x->first - y->first;
}

/* PASM_CUDA_PLAN_CHECK=1 on the emulation, for tests: every tensor of the
 * plan gets a place of its own, all of them start a step poisoned (0xFF
 * bytes: a NaN in fp32 and bf16), and each is poisoned again at the end of
 * its last op, so that a read the plan's list left out reads NaNs and the
 * results part from the CPU's. A tensor must still be poison just before
 * its first op and, once dead, at the end of the step: else some op wrote
 * it outside its lifetime. The ops are counted against the plan's. Graph
 * recording is not checked (the checks would run at capture). */
struct plan_check {
    tplan plan; /* its tensors' places, sizes and lifetimes */
    unsigned char *arena;
    int now, forward_ops, step_ops, off;
};

static void poison(struct plan_check *c, int i) {
    memset(c->arena + c->plan.t[i].off, 0xFF, c->plan.t[i].bytes);
}

static int poisoned(const struct plan_check *c, int i) {
    const unsigned char *p = c->arena + c->plan.t[i].off;
    for (size_t b = 0; b < c->plan.t[i].bytes; b++)
        if (p[b] != 0xFF) return 0;
    return 1;
}

static int checking(pasm_cuda_net *g) {
    struct plan_check *c = g->check;
    if (!c || c->off) return 0;
    if (pasm_cuda_recording()) c->off = 1; /* a graph's capture: not checked from here on */
    return !c->off;
}

/* A step's first op is next: every tensor poisoned. */
static void ops_begin(pasm_cuda_net *g) {
    if (!checking(g)) return;
    for (int i = 0; i < g->check->plan.n; i++) poison(g->check, i);
    g->check->now = 0;
}

static pasm_status op_done(pasm_cuda_net *g) {
    if (!checking(g)) return PASM_OK;
    struct plan_check *c = g->check;
    const int k = c->now++;
    for (int i = 0; i < c->plan.n; i++) {
        const ptensor *t = &c->plan.t[i];
        if (k + 1 == t->first && !poisoned(c, i))
            return pasm_errorf(PASM_ERR_INVALID, "GPU network plan check: tensor %d, alive for "
                                                 "ops %d..%d, was written by op %d or before",
                               i, t->first, t->last, k);
        if (k == t->last) poison(c, i);
    }
    return PASM_OK;
}

/* The ops so far, against the plan's count at this point. */
static pasm_status ops_expect(pasm_cuda_net *g, int backward) {
    if (!checking(g)) return PASM_OK;
    struct plan_check *c = g->check;
    const int want = backward ? c->step_ops : c->forward_ops;
    if (c->now != want)
        return pasm_errorf(PASM_ERR_INVALID, "GPU network plan check: %d ops at the end of the "
                                             "%s, the plan lists %d",
                           c->now, backward ? "backward" : "forward", want);
    for (int i = 0; backward && i < c->plan.n; i++)
        if (c->plan.t[i].last < c->now && !poisoned(c, i))
            return pasm_errorf(PASM_ERR_INVALID, "GPU network plan check: tensor %d, alive for "
                                                 "ops %d..%d, was written after its last op",
                               i, c->plan.t[i].first, c->plan.t[i].last);
    return PASM_OK;
}

/* Offsets for every tensor; the arena's size. */
static size_t place(tplan *p) {
    ptensor *order[PLAN_MAX];
    for (int i = 0; i < p->n; i++) order[i] = &p->t[i];
    qsort(order, (size_t)p->n, sizeof order[0], by_size);
    size_t total = 0;
    for (int i = 0; i < p->n; i++) {
        ptensor *t = order[i];
        size_t off = 0;
        for (int moved = 1; moved;) { /* past every placed tensor it would overlap */
            moved = 0;
            for (int j = 0; j < i; j++) {
                const ptensor *u = order[j];
                if (u->last < t->first || t->last < u->first) continue; /* not alive together */
                if (off < u->off + u->bytes && u->off < off + t->bytes) {
                    off = u->off + u->bytes;
                    moved = 1;
                }
            }
        }
        t->off = off;
        if (off + t->bytes > total) total = off + t->bytes;
    }
    return total;
}

static int64_t bn_values(const gbn *b) { return b->m_max * b->c; }

static int64_t conv_values(const gconv *c) { return conv_out_count(&c->shape, c->shape.n); }

/* The ops of pasm_cuda_net_forward_dev (training) and _backward_dev in
 * order, with what each writes and reads; then the arena. The last
 * block's output stays to the end (class maps read it after a step). */
static pasm_status plan_training(pasm_cuda_net *g, const pasm_net *net) {
    tplan *p = calloc(1, sizeof *p);
    if (!p) return pasm_errorf(PASM_ERR_NOMEM, "out of memory planning the GPU network");
    const size_t es = g->esize;
    int stem = def(p, &g->stem.out, conv_values(&g->stem), es);
    def_ws(p, &g->stem, 0);
    tick(p);
    use(p, stem);
    int h = def(p, &g->stem_bn.out, bn_values(&g->stem_bn), es);
    int64_t h_values = bn_values(&g->stem_bn);
    tick(p);
    int in[8], c1[8], b1[8], dc[8], c2[8], b2[8];
    int64_t in_values[8];
    for (int i = 0; i < 8; i++) {
        gblock *b = &g->blocks[i];
        in[i] = h, in_values[i] = h_values;
        use(p, h);
        c1[i] = def(p, &b->conv1.out, conv_values(&b->conv1), es);
        def_ws(p, &b->conv1, 0);
        tick(p);
        use(p, c1[i]);
        b1[i] = def(p, &b->bn1.out, bn_values(&b->bn1), es);
        tick(p);
        int shortcut = h;
        dc[i] = -1;
        if (b->has_down) {
            use(p, h);
            dc[i] = def(p, &b->down.out, conv_values(&b->down), es);
            def_ws(p, &b->down, 0);
            tick(p);
            use(p, dc[i]);
            shortcut = def(p, &b->down_bn.out, bn_values(&b->down_bn), es);
            tick(p);
        }
        use(p, b1[i]);
        c2[i] = def(p, &b->conv2.out, conv_values(&b->conv2), es);
        def_ws(p, &b->conv2, 0);
        tick(p);
        use(p, c2[i]), use(p, shortcut);
        b2[i] = h = def(p, &b->bn2.out, bn_values(&b->bn2), es);
        h_values = bn_values(&b->bn2);
        tick(p);
    }
    use(p, h); /* the pool */
    tick(p);
    const int forward_ops = p->now;
    int d = def(p, &g->d_pool, h_values, es); /* the pool's backward */
    tick(p);
    for (int i = 7; i >= 0; i--) {
        gblock *b = &g->blocks[i];
        gbwd *q = &b->grads;
        use(p, c2[i]), use(p, d), use(p, b2[i]); /* bn2's backward, its ReLU's on the way */
        int a = def(p, &q->a, bn_values(&b->bn2), es);
        tick(p);
        use(p, b1[i]), use(p, a);
        int bb = def(p, &q->b, bn_values(&b->bn1), es);
        def_ws(p, &b->conv2, 1);
        tick(p);
        use(p, c1[i]), use(p, bb), use(p, b1[i]); /* bn1's backward, with its ReLU's */
        int a2 = def(p, &q->a2, bn_values(&b->bn1), es);
        tick(p);
        use(p, in[i]), use(p, a2);
        def_ws(p, &b->conv1, 1);
        if (!b->has_down) { /* conv1's input gradient added into dout */
            use(p, d);
            tick(p);
            continue;
        }
        int din = def(p, &q->din, in_values[i], es);
        tick(p);
        use(p, dc[i]), use(p, d);
        int a3 = def(p, &q->a3, bn_values(&b->down_bn), es);
        tick(p);
        use(p, in[i]), use(p, a3), use(p, din); /* the shortcut's input gradient added into din */
        def_ws(p, &b->down, 1);
        tick(p);
        d = din;
    }
    /* the stem's output again: a 1- or 3-channel convolution costs less to
     * redo than its output, the size of layer 1's, costs to keep */
    stem = def(p, &g->stem_again, conv_values(&g->stem), es);
    const int stem_ws = def_ws(p, &g->stem, 1);
    tick(p);
    use(p, stem), use(p, d), use(p, in[0]); /* the stem BN's backward, with its ReLU's */
    int ds = def(p, &g->d_stem, bn_values(&g->stem_bn), es);
    tick(p);
    use(p, ds); /* the stem's weight and input gradients */
    if (stem_ws >= 0) use(p, stem_ws);
    tick(p);
    const int step_ops = p->now;
    use(p, b2[7]);
    if (p->full) {
        free(p);
        return pasm_errorf(PASM_ERR_INVALID, "GPU network plan: more than %d tensors", PLAN_MAX);
    }
    const int check = pasm_env_flag("PASM_CUDA_PLAN_CHECK") && pasm_cuda_emulating();
    size_t total = place(p);
    if (pasm_env_flag("PASM_CUDA_ALLOC_LOG")) log_workspace(p, total);
    if (check) { /* each apart */
        total = 0;
        for (int i = 0; i < p->n; i++) p->t[i].off = total, total += p->t[i].bytes;
    }
    for (int i = 0; i < p->n; i++) /* the plan's promise, checked */
        for (int j = 0; j < i; j++) {
            const ptensor *a = &p->t[i], *b = &p->t[j];
            const int together = a->first <= b->last && b->first <= a->last;
            const int overlap = a->off < b->off + b->bytes && b->off < a->off + a->bytes;
            if (together && overlap) {
                free(p);
                return pasm_errorf(PASM_ERR_INVALID, "GPU network plan: tensors %d and %d "
                                                     "overlap while both are alive", j, i);
            }
        }
    pasm_status st = pasm_cuda_alloc(&g->arena, total, "activations and gradients");
    for (int i = 0; !st && i < p->n; i++) *p->t[i].ptr = (char *)g->arena + p->t[i].off;
    if (!st && check) {
        struct plan_check *c = calloc(1, sizeof *c);
        if (!c) st = pasm_errorf(PASM_ERR_NOMEM, "out of memory for the plan check");
        else c->plan = *p, c->arena = g->arena, c->forward_ops = forward_ops, c->step_ops = step_ops;
        g->check = c;
    }
    free(p);
    return st;
}

static pasm_status build(builder *b) {
    pasm_net *net = b->net;
    pasm_cuda_net *g = b->g;
    const pasm_net_config *cfg = &net->cfg;
    TRY(pasm_cuda_ctx_create(&g->ctx));
    const int64_t np = net->n_param_floats, n = net->max_batch;
    TRY(pasm_cuda_alloc((void **)&g->param, (size_t)np * 4, "parameters"));
    const pasm_net_mode mode = net->mode;
    if (mode == PASM_NET_TRAIN)
        TRY(pasm_cuda_alloc((void **)&g->grad, (size_t)np * 4, "gradients"));
    TRY(pasm_cuda_alloc((void **)&g->buffer, (size_t)net->buffer_floats * 4, "BN statistics"));
    g->in_count = (int64_t)cfg->in_channels * cfg->input_size * cfg->input_size;
    TRY(pasm_cuda_alloc((void **)&g->x_nchw, (size_t)(n * g->in_count) * 4, "input"));
    TRY(pasm_cuda_alloc((void **)&g->dx_nchw, (size_t)(n * g->in_count) * 4, "input gradient"));
    TRY(alloc_values(g, &g->x_in, n * g->in_count, "input"));
    TRY(alloc_values(g, &g->dx_in, n * g->in_count, "input gradient"));
    TRY(make_conv(b, &g->stem, &net->stem_conv));
    TRY(make_bn(b, &g->stem_bn, &net->stem_bn));
    for (int i = 0; i < 8; i++) {
        const block *hb = &net->blocks[i];
        gblock *gb = &g->blocks[i];
        TRY(make_conv(b, &gb->conv1, &hb->conv1));
        TRY(make_bn(b, &gb->bn1, &hb->bn1));
        TRY(make_conv(b, &gb->conv2, &hb->conv2));
        TRY(make_bn(b, &gb->bn2, &hb->bn2));
        gb->has_down = hb->has_downsample;
        if (gb->has_down) {
            TRY(make_conv(b, &gb->down, &hb->down_conv));
            TRY(make_bn(b, &gb->down_bn, &hb->down_bn));
        }
    }
    const int c = net->final_channels, k = cfg->num_classes;
    TRY(pasm_cuda_alloc((void **)&g->pooled, (size_t)n * c * 4, "pooled features"));
    TRY(pasm_cuda_alloc((void **)&g->dpooled, (size_t)n * c * 4, "pooled gradient"));
    TRY(pasm_cuda_alloc((void **)&g->logits, (size_t)n * k * 4, "logits"));
    TRY(pasm_cuda_alloc((void **)&g->dlogits, (size_t)n * k * 4, "logit gradient"));
    if (mode == PASM_NET_EVAL_GRAD) /* gradient flow: the largest activation is a BN output */
        for (int i = 0; i < 3; i++)
            TRY(alloc_values(g, &g->scratch[i], b->largest_bn, "gradient scratch"));
    if (mode == PASM_NET_TRAIN) {
        TRY(alloc_values(g, &g->dw_packed, b->largest_w, "weight gradient"));
        TRY(plan_training(g, net));
    } else { /* one convolution output buffer, one workspace */
        TRY(alloc_values(g, &g->conv_tmp, b->largest, "convolution outputs"));
        g->ws_bytes = b->ws_need;
        TRY(pasm_cuda_alloc(&g->ws, g->ws_bytes, "convolution workspace"));
        gconv *convs[NET_CONVS];
        const int nc = net_convs(g, convs);
        for (int i = 0; i < nc; i++) {
            convs[i]->out = g->conv_tmp;
            convs[i]->ws_fwd = convs[i]->ws_bwd = g->ws;
            convs[i]->ws_bytes = g->ws_bytes;
        }
    }
    if (mode == PASM_NET_EVAL) {
        /* A block reads slot a, writes bn1 to a+1 and the shortcut's BN to
         * a+2; conv2 has read bn1's output before bn2 overwrites it with
         * the block's output, which the next block reads. */
        for (int i = 0; i < 3; i++)
            TRY(alloc_values(g, &g->slots[i], b->largest_bn, "layer outputs"));
        g->stem_bn.out = g->slots[0];
        int a = 0;
        for (int i = 0; i < 8; i++) {
            gblock *gb = &g->blocks[i];
            gb->bn1.out = g->slots[(a + 1) % 3];
            gb->down_bn.out = g->slots[(a + 2) % 3];
            gb->bn2.out = g->slots[(a + 1) % 3];
            a = (a + 1) % 3;
        }
    }
    TRY(pasm_cuda_alloc((void **)&g->partial, b->partial_need * sizeof(double), "BN sums"));
    int cmax = c > cfg->width ? c : cfg->width;
    return pasm_cuda_alloc((void **)&g->coef, (size_t)cmax * 4 * sizeof(float), "BN coefficients");
}

static void free_conv(gconv *c) {
    pasm_cuda_conv_free(c->plan);
    pasm_cuda_free(c->w_packed);
}

static void free_bn(gbn *b) {
    pasm_cuda_free(b->save_mean);
    pasm_cuda_free(b->save_invstd);
    pasm_cuda_free(b->scale);
    pasm_cuda_free(b->shift);
    if (b->own_out) pasm_cuda_free(b->out);
}

void pasm_cuda_net_free(pasm_net *net) {
    pasm_cuda_net *g = net->gpu;
    if (!g) return;
    if (g->ctx) pasm_cuda_sync(g->ctx, "freeing the network");
    free_conv(&g->stem);
    free_bn(&g->stem_bn);
    for (int i = 0; i < 8; i++) {
        free_conv(&g->blocks[i].conv1);
        free_conv(&g->blocks[i].conv2);
        free_conv(&g->blocks[i].down);
        free_bn(&g->blocks[i].bn1);
        free_bn(&g->blocks[i].bn2);
        free_bn(&g->blocks[i].down_bn);
    }
    void *bufs[] = {g->param,   g->grad,    g->buffer,     g->momentum, g->x_nchw,
                    g->x_in,    g->dx_in,   g->dx_nchw,    g->pooled,   g->dpooled,
                    g->logits,  g->dlogits, g->scratch[0], g->scratch[1], g->scratch[2],
                    g->dw_packed, g->ws, g->partial, g->coef,
                    g->conv_tmp, g->slots[0], g->slots[1], g->slots[2], g->staging,
                    g->arena};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) pasm_cuda_free(bufs[i]);
    pasm_cuda_ctx_free(g->ctx);
    free(g->check);
    free(g);
    net->gpu = NULL;
}

pasm_status pasm_cuda_net_create(pasm_net *net) {
    pasm_cuda_net *g = calloc(1, sizeof *g);
    if (!g) return pasm_errorf(PASM_ERR_NOMEM, "out of memory for the GPU network");
    g->t = net->cfg.precision == PASM_PRECISION_BF16 ? PASM_CUDA_BF16 : PASM_CUDA_F32;
    g->esize = pasm_cuda_dtype_size(g->t);
    net->gpu = g;
    builder b = {.net = net, .g = g};
    const size_t before = pasm_cuda_bytes_now();
    pasm_status st = build(&b);
    g->bytes = pasm_cuda_bytes_now() - before; /* networks are built one at a time */
    if (st) {
        pasm_status keep = st;
        char msg[512];
        snprintf(msg, sizeof msg, "%s", pasm_last_error());
        pasm_cuda_net_free(net);
        return pasm_errorf(keep, "building resnet18 width %d for batch %d on the GPU: %s",
                           net->cfg.width, net->max_batch, msg);
    }
    return PASM_OK;
}

size_t pasm_cuda_net_bytes(const pasm_net *net) { return net->gpu ? net->gpu->bytes : 0; }

/* ---- copies ---- */

pasm_status pasm_cuda_net_push(pasm_net *net) {
    pasm_cuda_net *g = net->gpu;
    g->packed = 0;
    TRY(pasm_cuda_to_device(g->ctx, g->param, net->param_block, (size_t)net->n_param_floats * 4));
    TRY(pasm_cuda_to_device(g->ctx, g->buffer, net->buffer_block, (size_t)net->buffer_floats * 4));
    return pasm_cuda_sync(g->ctx, "sending the weights to the GPU");
}

pasm_status pasm_cuda_net_pull(pasm_net *net, int with_grads) {
    pasm_cuda_net *g = net->gpu;
    TRY(pasm_cuda_to_host(g->ctx, net->param_block, g->param, (size_t)net->n_param_floats * 4));
    TRY(pasm_cuda_to_host(g->ctx, net->buffer_block, g->buffer, (size_t)net->buffer_floats * 4));
    return with_grads ? pasm_cuda_net_pull_grads(net) : PASM_OK;
}

pasm_status pasm_cuda_net_pull_grads(pasm_net *net) {
    pasm_cuda_net *g = net->gpu;
    if (!net->grad_block || !g->grad) return PASM_OK;
    return pasm_cuda_to_host(g->ctx, net->grad_block, g->grad, (size_t)net->n_param_floats * 4);
}

/* ---- forward ---- */

static pasm_status conv_fwd(pasm_cuda_net *g, gconv *c, const void *x, int n) {
    return pasm_cuda_conv_forward(c->plan, n, x, c->w_packed, c->out, c->ws_fwd, c->ws_bytes);
}

/* b->out = relu?(bn(x) + residual): batch statistics when training (the
 * running estimates move), else the running estimates. */
static pasm_status bn_fwd(pasm_cuda_net *g, gbn *b, const void *x, const void *residual, int relu,
                          int n, int train) {
    const int64_t m = (int64_t)n * b->hw;
    if (!train) return pasm_cuda_net_bn_eval(g, b, m, x, residual, relu, b->out);
    TRY(pasm_cuda_bn_stats(g->ctx, m, b->c, x, g->t, 1e-5f, 0.1f, g->param + b->gamma_off,
                           g->param + b->beta_off, g->buffer + b->mean_off,
                           g->buffer + b->var_off, b->save_mean, b->save_invstd, b->scale,
                           b->shift, g->partial));
    return pasm_cuda_affine(g->ctx, m, b->c, x, b->scale, b->shift, residual, relu, b->out, g->t);
}

pasm_status pasm_cuda_net_bn_eval(pasm_cuda_net *g, gbn *b, int64_t rows, const void *x,
                                  const void *residual, int relu, void *out) {
    TRY(pasm_cuda_bn_fold(g->ctx, b->c, 1e-5f, g->param + b->gamma_off, g->param + b->beta_off,
                          g->buffer + b->mean_off, g->buffer + b->var_off, b->scale, b->shift));
    return pasm_cuda_affine(g->ctx, rows, b->c, x, b->scale, b->shift, residual, relu, out, g->t);
}

static pasm_cuda_pack_job pack_job(const pasm_cuda_net *g, const gconv *c) {
    const pasm_conv2d_shape *s = &c->shape;
    return (pasm_cuda_pack_job){g->param + c->w_off, c->w_packed, s->c_out, s->c_in,
                                s->kernel * s->kernel};
}

/* Every convolution's weights in one launch. */
pasm_status pasm_cuda_net_packed(pasm_cuda_net *g) {
    if (g->packed) return PASM_OK;
    gconv *convs[NET_CONVS];
    const int n = net_convs(g, convs);
    pasm_cuda_pack_job jobs[NET_CONVS];
    for (int i = 0; i < n; i++) jobs[i] = pack_job(g, convs[i]);
    TRY(pasm_cuda_pack_weights(g->ctx, n, jobs, g->t));
    g->packed = 1;
    return PASM_OK;
}

/* Each op ends with op_done: plan_training lists these ops. */
static pasm_status block_fwd(pasm_cuda_net *g, gblock *b, const void *in, int n, int train) {
    b->in = in;
    TRY(conv_fwd(g, &b->conv1, in, n));
    TRY(op_done(g));
    TRY(bn_fwd(g, &b->bn1, b->conv1.out, NULL, 1, n, train));
    TRY(op_done(g));
    const void *shortcut = in;
    if (b->has_down) {
        TRY(conv_fwd(g, &b->down, in, n));
        TRY(op_done(g));
        TRY(bn_fwd(g, &b->down_bn, b->down.out, NULL, 0, n, train));
        TRY(op_done(g));
        shortcut = b->down_bn.out;
    }
    TRY(conv_fwd(g, &b->conv2, b->bn1.out, n));
    TRY(op_done(g));
    TRY(bn_fwd(g, &b->bn2, b->conv2.out, shortcut, 1, n, train));
    return op_done(g);
}

static pasm_status forward_from(pasm_net *net, int first, const void *h, int n, int train);

pasm_status pasm_cuda_net_forward(pasm_net *net, const float *x, int n, int train) {
    pasm_cuda_net *g = net->gpu;
    TRY(pasm_cuda_to_device(g->ctx, g->x_nchw, x, (size_t)(n * g->in_count) * 4));
    TRY(pasm_cuda_net_forward_dev(net, g->x_nchw, n, train));
    return pasm_cuda_to_host(g->ctx, net->logits, g->logits,
                             (size_t)n * net->cfg.num_classes * 4);
}

const float *pasm_cuda_net_logits(const pasm_net *net) { return net->gpu->logits; }

void pasm_cuda_net_params_changed(pasm_net *net) { net->gpu->packed = 0; }

pasm_status pasm_cuda_net_forward_dev(pasm_net *net, const float *x, int n, int train) {
    pasm_cuda_net *g = net->gpu;
    const pasm_net_config *cfg = &net->cfg;
    const int hw = cfg->input_size * cfg->input_size;
    TRY(pasm_cuda_nchw_to_nhwc(g->ctx, n, cfg->in_channels, hw, x, g->x_in, g->t));
    if (train) g->packed = 0; /* a training step always packs: a graph of it must */
    TRY(pasm_cuda_net_packed(g));
    ops_begin(g);
    TRY(conv_fwd(g, &g->stem, g->x_in, n));
    TRY(op_done(g));
    TRY(bn_fwd(g, &g->stem_bn, g->stem.out, NULL, 1, n, train));
    TRY(op_done(g));
    TRY(forward_from(net, 0, g->stem_bn.out, n, train));
    TRY(ops_expect(g, 0));
    g->last_n = n;
    g->last_train = train;
    g->have_forward = 1;
    g->consumed = 0;
    return PASM_OK;
}

pasm_status pasm_cuda_net_forward_tail_dev(pasm_net *net, int first, const void *h, int n) {
    pasm_cuda_net *g = net->gpu;
    TRY(pasm_cuda_net_packed(g));
    g->have_forward = 0; /* the activations are the candidates': no backward */
    return forward_from(net, first, h, n, 0);
}

/* blocks[first..7], the pool and fc from h, the input of blocks[first] */
static pasm_status forward_from(pasm_net *net, int first, const void *h, int n, int train) {
    pasm_cuda_net *g = net->gpu;
    const pasm_net_config *cfg = &net->cfg;
    for (int i = first; i < 8; i++) {
        TRY(block_fwd(g, &g->blocks[i], h, n, train));
        h = g->blocks[i].bn2.out;
    }
    const int c = net->final_channels, size = net->final_size, k = cfg->num_classes;
    TRY(pasm_cuda_avgpool_forward(g->ctx, n, c, size * size, h, g->t, g->pooled));
    TRY(pasm_cuda_linear_forward(g->ctx, n, c, k, g->pooled, g->param + (net->fc_weight -
                                                                         net->param_block),
                                 g->param + (net->fc_bias - net->param_block), g->logits));
    return op_done(g);
}

/* ---- backward ---- */

/* BN backward from dy into dx: through the batch statistics after a
 * training forward (parameter gradients too), else through the frozen
 * affine map (dx = dy * scale). x is the BN's input; relu: the BN is
 * followed by a ReLU whose backward is taken on the way (dy is then
 * overwritten on the frozen path; relu = 2: on both paths, dy left as the
 * ReLU's backward leaves it, for the block's shortcut). */
static pasm_status bn_bwd(pasm_cuda_net *g, gbn *b, const void *x, void *dy, void *dx, int relu,
                          int n) {
    const int64_t m = (int64_t)n * b->hw;
    if (!g->last_train) {
        if (relu) TRY(pasm_cuda_relu_backward(g->ctx, m * b->c, b->out, dy, g->t));
        return pasm_cuda_affine(g->ctx, m, b->c, dy, b->scale, NULL, NULL, 0, dx, g->t);
    }
    return pasm_cuda_bn_backward(g->ctx, m, b->c, x, dy, relu ? b->out : NULL, relu == 2, g->t,
                                 g->param + b->gamma_off,
                                 b->save_mean, b->save_invstd, dx, g->grad + b->gamma_off,
                                 g->grad + b->beta_off, g->partial, g->coef);
}

/* Conv backward: the input gradient into dx (NULL: none; add: dx += it),
 * and after a training forward the weight gradient into the gradient block. */
static pasm_status conv_bwd(pasm_cuda_net *g, gconv *c, const void *x, const void *dy, void *dx,
                            int add, int n) {
    const pasm_conv2d_shape *s = &c->shape;
    if (g->last_train) {
        TRY(pasm_cuda_conv_backward_filter(c->plan, n, x, dy, g->dw_packed, c->ws_bwd,
                                           c->ws_bytes));
        TRY(pasm_cuda_unpack_weight(g->ctx, s->c_out, s->c_in, s->kernel * s->kernel,
                                    g->dw_packed, g->t, g->grad + c->w_off));
    }
    if (!dx) return PASM_OK;
    return pasm_cuda_conv_backward_data(c->plan, n, dy, c->w_packed, dx, add, c->ws_bwd,
                                        c->ws_bytes);
}

/* The gradient buffers of block b's backward: a training network's from
 * its plan (plan_training lists these ops), else the two scratch buffers
 * other than dout, taking turns with it: each is written only after the
 * last read of what it held (a2 and a3 reuse a, din reuses b). */
static gbwd block_grads(const pasm_cuda_net *g, const gblock *b, void *dout) {
    if (g->arena) return b->grads;
    void *spare[2];
    int k = 0;
    for (int i = 0; i < 3; i++)
        if (g->scratch[i] != dout) spare[k++] = g->scratch[i];
    return (gbwd){.a = spare[0], .b = spare[1], .a2 = spare[0], .din = spare[1], .a3 = spare[0]};
}

/* dout: the gradient of the block's output (overwritten); *din: of its
 * input. The shortcut's share is summed into conv1's input gradient as
 * cuDNN writes it (beta = 1): dout itself where the shortcut is the
 * identity, the shortcut convolution's input gradient otherwise. */
static pasm_status block_bwd(pasm_cuda_net *g, gblock *b, void *dout, void **din, int n) {
    const gbwd q = block_grads(g, b, dout);
    /* the block's ReLU on the way, dout masked in place (the shortcut reads it) */
    TRY(bn_bwd(g, &b->bn2, b->conv2.out, dout, q.a, 2, n));
    TRY(op_done(g));
    TRY(conv_bwd(g, &b->conv2, b->bn1.out, q.a, q.b, 0, n));
    TRY(op_done(g));
    TRY(bn_bwd(g, &b->bn1, b->conv1.out, q.b, q.a2, 1, n));
    TRY(op_done(g));
    if (!b->has_down) {
        TRY(conv_bwd(g, &b->conv1, b->in, q.a2, dout, 1, n));
        *din = dout;
        return op_done(g);
    }
    TRY(conv_bwd(g, &b->conv1, b->in, q.a2, q.din, 0, n));
    TRY(op_done(g));
    TRY(bn_bwd(g, &b->down_bn, b->down.out, dout, q.a3, 0, n));
    TRY(op_done(g));
    TRY(conv_bwd(g, &b->down, b->in, q.a3, q.din, 1, n));
    *din = q.din;
    return op_done(g);
}

static pasm_status check_forward(const pasm_cuda_net *g) {
    if (g->have_forward) return PASM_OK;
    if (g->consumed)
        return pasm_errorf(PASM_ERR_INVALID, "a second backward after one forward: a GPU training "
                                             "network's backward reuses the place of the "
                                             "activations it has consumed; run the forward again");
    return pasm_errorf(PASM_ERR_INVALID, "backward called before any forward");
}

pasm_status pasm_cuda_net_backward(pasm_net *net, const float *dlogits, float *dx) {
    pasm_cuda_net *g = net->gpu;
    TRY(check_forward(g));
    const int n = g->last_n, k = net->cfg.num_classes;
    TRY(pasm_cuda_to_device(g->ctx, g->dlogits, dlogits, (size_t)n * k * 4));
    TRY(pasm_cuda_net_backward_dev(net, g->dlogits, dx ? g->dx_nchw : NULL));
    if (!dx) return PASM_OK;
    return pasm_cuda_to_host(g->ctx, dx, g->dx_nchw, (size_t)(n * g->in_count) * 4);
}

pasm_status pasm_cuda_net_backward_dev(pasm_net *net, const float *dlogits, float *dx) {
    pasm_cuda_net *g = net->gpu;
    TRY(check_forward(g));
    const int n = g->last_n;
    const pasm_net_config *cfg = &net->cfg;
    const int c = net->final_channels, size = net->final_size, k = cfg->num_classes;
    const int64_t fcw = net->fc_weight - net->param_block, fcb = net->fc_bias - net->param_block;
    TRY(pasm_cuda_linear_backward(g->ctx, n, c, k, g->pooled, g->param + fcw, dlogits,
                                  g->dpooled, g->last_train ? g->grad + fcw : NULL,
                                  g->last_train ? g->grad + fcb : NULL));
    /* a training network's backward consumes the forward's activations */
    if (g->arena) g->have_forward = 0, g->consumed = 1;
    void *d = g->arena ? g->d_pool : g->scratch[0];
    TRY(pasm_cuda_avgpool_backward(g->ctx, n, c, size * size, g->dpooled, d, g->t));
    TRY(op_done(g));
    for (int i = 7; i >= 0; i--) TRY(block_bwd(g, &g->blocks[i], d, &d, n));
    void *dstem = g->arena ? g->d_stem : d == g->scratch[0] ? g->scratch[1] : g->scratch[0];
    const void *stem_out = g->stem.out;
    if (g->arena && g->last_train) { /* its place is gone: again, the same bits */
        TRY(pasm_cuda_conv_forward(g->stem.plan, n, g->x_in, g->stem.w_packed, g->stem_again,
                                   g->stem.ws_bwd, g->stem.ws_bytes));
        stem_out = g->stem_again;
    }
    TRY(op_done(g));
    TRY(bn_bwd(g, &g->stem_bn, stem_out, d, dstem, 1, n)); /* with the stem's ReLU */
    TRY(op_done(g));
    TRY(conv_bwd(g, &g->stem, g->x_in, dstem, dx ? g->dx_in : NULL, 0, n));
    TRY(op_done(g));
    TRY(ops_expect(g, 1));
    if (!dx) return PASM_OK;
    const int hw = cfg->input_size * cfg->input_size;
    return pasm_cuda_nhwc_to_nchw(g->ctx, n, cfg->in_channels, hw, g->dx_in, g->t, dx);
}

/* ---- the optimiser ---- */

pasm_status pasm_cuda_net_sgd(pasm_net *net, float lr, float weight_decay, float momentum,
                              float dampening, int nesterov, int first, const float *host_momentum,
                              int upload_momentum, const void *step) {
    pasm_cuda_net *g = net->gpu;
    const int64_t np = net->n_param_floats;
    float *buf = NULL;
    if (!g->grad)
        return pasm_errorf(PASM_ERR_INVALID, "an SGD step on a network built for evaluation");
    if (host_momentum) {
        if (!g->momentum)
            TRY(pasm_cuda_alloc((void **)&g->momentum, (size_t)np * 4, "momentum buffer"));
        if (upload_momentum)
            TRY(pasm_cuda_to_device(g->ctx, g->momentum, host_momentum, (size_t)np * 4));
        buf = g->momentum;
    }
    g->packed = 0;
    return pasm_cuda_sgd(g->ctx, np, g->param, g->grad, buf, lr, weight_decay, momentum, dampening,
                         nesterov, first, (const pasm_cuda_step *)step);
}

pasm_status pasm_cuda_net_pull_momentum(pasm_net *net, float *host_momentum) {
    pasm_cuda_net *g = net->gpu;
    if (!g->momentum) return PASM_OK;
    return pasm_cuda_to_host(g->ctx, host_momentum, g->momentum, (size_t)net->n_param_floats * 4);
}

pasm_status pasm_cuda_net_pull_features(pasm_net *net, float *host, int n) {
    pasm_cuda_net *g = net->gpu;
    const int c = net->final_channels, size = net->final_size;
    if (!g->staging) { /* the first class maps' */
        const size_t bytes = (size_t)net->max_batch * c * size * size * sizeof(float);
        TRY(pasm_cuda_alloc((void **)&g->staging, bytes, "features"));
        g->bytes += bytes;
    }
    TRY(pasm_cuda_nhwc_to_nchw(g->ctx, n, c, size * size, g->blocks[7].bn2.out, g->t, g->staging));
    return pasm_cuda_to_host(g->ctx, host, g->staging, (size_t)n * c * size * size * 4);
}
