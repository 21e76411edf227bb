/* The CUDA backend's own kernels: layouts, batch normalisation, elementwise
 * ops, pooling, the linear layer and SGD, each an element loop (pasm_each)
 * over a __host__ __device__ body, so the same arithmetic runs on the GPU
 * and, emulated, on the host in the tests. Activations are NHWC of float or
 * bf16 (T); everything else fp32, with sums in double where the CPU ops take
 * them in double. */
#include <math.h>
#include <string.h>

#include "cuda/cuda_internal.cuh"

/* ---- layouts ---- */

template <typename T>
static pasm_status nchw_to_nhwc(pasm_cuda_ctx *ctx, int n, int c, int hw, const float *x, T *y) {
    const int64_t total = (int64_t)n * c * hw;
    return pasm_each(
        ctx, total,
        [=] __host__ __device__(int64_t i) { /* i indexes y: ((img * hw) + p) * c + ch */
            const int64_t ch = i % c, rest = i / c, p = rest % hw, img = rest / hw;
            y[i] = from_f<T>(x[(img * c + ch) * hw + p]);
        },
        "NCHW to NHWC");
}

pasm_status pasm_cuda_nchw_to_nhwc(pasm_cuda_ctx *ctx, int n, int c, int hw, const float *x,
                                   void *y, pasm_cuda_dtype t) {
    return PASM_BY_DTYPE(t, nchw_to_nhwc(ctx, n, c, hw, x, (float *)y),
                         nchw_to_nhwc(ctx, n, c, hw, x, (bf16 *)y));
}

template <typename T>
static pasm_status nhwc_to_nchw(pasm_cuda_ctx *ctx, int n, int c, int hw, const T *x, float *y) {
    const int64_t total = (int64_t)n * c * hw;
    return pasm_each(
        ctx, total,
        [=] __host__ __device__(int64_t i) { /* i indexes y: ((img * c) + ch) * hw + p */
            const int64_t p = i % hw, rest = i / hw, ch = rest % c, img = rest / c;
            y[i] = to_f(x[(img * hw + p) * c + ch]);
        },
        "NHWC to NCHW");
}

pasm_status pasm_cuda_nhwc_to_nchw(pasm_cuda_ctx *ctx, int n, int c, int hw, const void *x,
                                   pasm_cuda_dtype t, float *y) {
    return PASM_BY_DTYPE(t, nhwc_to_nchw(ctx, n, c, hw, (const float *)x, y),
                         nhwc_to_nchw(ctx, n, c, hw, (const bf16 *)x, y));
}

/* A weight (K,C,RS) is an "image" of K channels-first maps: the same two
 * transposes with n = K. */
pasm_status pasm_cuda_pack_weight(pasm_cuda_ctx *ctx, int k, int c, int rs, const float *w,
                                  void *out, pasm_cuda_dtype t) {
    return pasm_cuda_nchw_to_nhwc(ctx, k, c, rs, w, out, t);
}

/* The jobs' tables, passed to the kernel by value. */
typedef struct {
    int n;
    int64_t start[PASM_CUDA_PACK_MAX + 1]; /* each job's first element; start[n]: all */
    const float *w[PASM_CUDA_PACK_MAX];
    void *out[PASM_CUDA_PACK_MAX];
    int c[PASM_CUDA_PACK_MAX], rs[PASM_CUDA_PACK_MAX];
} pack_table;

template <typename T>
static pasm_status pack_weights(pasm_cuda_ctx *ctx, const pack_table tab) {
    return pasm_each(
        ctx, tab.start[tab.n],
        [=] __host__ __device__(int64_t i) {
            int j = 0;
            while (i >= tab.start[j + 1]) j++;
            const int64_t o = i - tab.start[j]; /* indexes out: (kk * rs + p) * c + ch */
            const int c = tab.c[j], rs = tab.rs[j];
            const int64_t ch = o % c, rest = o / c, p = rest % rs, kk = rest / rs;
            ((T *)tab.out[j])[o] = from_f<T>(tab.w[j][(kk * c + ch) * rs + p]);
        },
        "pack weights");
}

pasm_status pasm_cuda_pack_weights(pasm_cuda_ctx *ctx, int n, const pasm_cuda_pack_job *jobs,
                                   pasm_cuda_dtype t) {
    if (n < 0 || n > PASM_CUDA_PACK_MAX)
        return pasm_errorf(PASM_ERR_INVALID, "packing %d weights at once (at most %d)", n,
                           (int)PASM_CUDA_PACK_MAX);
    pack_table tab;
    memset(&tab, 0, sizeof tab);
    tab.n = n;
    for (int j = 0; j < n; j++) {
        tab.start[j + 1] = tab.start[j] + (int64_t)jobs[j].k * jobs[j].c * jobs[j].rs;
        tab.w[j] = jobs[j].w, tab.out[j] = jobs[j].out;
        tab.c[j] = jobs[j].c, tab.rs[j] = jobs[j].rs;
    }
    return PASM_BY_DTYPE(t, pack_weights<float>(ctx, tab), pack_weights<bf16>(ctx, tab));
}

pasm_status pasm_cuda_unpack_weight(pasm_cuda_ctx *ctx, int k, int c, int rs, const void *dw,
                                    pasm_cuda_dtype t, float *out) {
    return pasm_cuda_nhwc_to_nchw(ctx, k, c, rs, dw, t, out);
}

/* Whether an element loop over rows of c channels may take sixteen bytes
 * of T an index: each vector inside a row, and every pointer (the
 * per-channel float tables too) 16-byte aligned. */
template <typename T>
static bool rows_vectorise(int64_t c, std::initializer_list<const void *> ptrs) {
    if (!pasm_cuda_vectors_on() || c % (int64_t)(16 / sizeof(T)) != 0) return false;
    for (const void *p : ptrs)
        if (!pasm_aligned16(p)) return false;
    pasm_cuda_count_vector_loop();
    return true;
}

/* out[0..L) = p[0..L), p 16-byte aligned and L a multiple of 4: float4 loads. */
template <int L> __host__ __device__ inline void load_floats(const float *p, float *out) {
PASM_UNROLL
    for (int k = 0; k < L; k += 4) {
        const float4 q = *(const float4 *)(p + k);
        out[k] = q.x, out[k + 1] = q.y, out[k + 2] = q.z, out[k + 3] = q.w;
    }
}

/* ---- batch normalisation ----
 * Rows are split into chunks; one thread sums one channel over one chunk
 * (neighbouring threads read neighbouring channels of the same row, so
 * reads coalesce), about half a million threads in all, enough to keep the
 * GPU's memory busy. The chunks' sums are then added in two levels, each in
 * a fixed order: groups of chunks (about the square root of the chunks: as
 * many threads a channel), then the groups (one thread a channel), each
 * thread keeping four sums in flight (sum4), as these levels have too few
 * threads to hide a load's latency otherwise. The statistics take one pass: the sums of
 * d and d^2 for d = x - ref, ref the channel's value in the first row (the
 * shifted-data sums, in double), so every merge is an addition; the
 * variance (S2 - S1^2/m)/m loses about log10(1 + (mean - ref)^2 / var)
 * of double's 16 digits, none that float keeps, for a ref taken from the
 * data: (ref - mean)^2 / var <= m - 1, at most log10(m) digits. (Merging
 * each chunk's mean and squared deviations by Chan's rule instead cost a
 * chain of 256 double divisions per channel in the last level: 1.9 ms of
 * a 14.7 ms profiled step, each launch waited for, on the H200 at batch
 * 128; 7.7 ms unprofiled.)
 * partial: [sums A: chunks*c][sums B: chunks*c][groups A][groups B]. */

enum { BN_THREADS = 1 << 19, BN_MIN_ROWS = 16 };
/* The vector chunk loops load this many rows before adding them (in row
 * order), having 8x fewer threads than the one-channel loops to hide a
 * load's latency with. */
enum { ROWS_IN_FLIGHT = 4 };

/* add(load(r)) for the rows r of [r0, r1) in order, ROWS_IN_FLIGHT loads
 * issued before their adds (past r1 the last row is loaded again, not
 * added). */
template <typename Load, typename Add>
__host__ __device__ inline void rows_in_flight(int64_t r0, int64_t r1, Load load, Add add) {
    for (int64_t r = r0; r < r1; r += ROWS_IN_FLIGHT) {
        decltype(load(r0)) v[ROWS_IN_FLIGHT];
PASM_UNROLL
        for (int u = 0; u < ROWS_IN_FLIGHT; u++) v[u] = load(r + u < r1 ? r + u : r1 - 1);
PASM_UNROLL
        for (int u = 0; u < ROWS_IN_FLIGHT; u++)
            if (r + u < r1) add(v[u]);
    }
}

static int bn_chunks(int64_t m, int c) {
    int64_t want = BN_THREADS / (c > 0 ? c : 1);
    int64_t most = (m + BN_MIN_ROWS - 1) / BN_MIN_ROWS;
    if (want > most) want = most;
    return (int)(want < 1 ? 1 : want);
}

/* The smallest g with g * g >= chunks: both levels sum about sqrt(chunks). */
static int bn_groups(int chunks) {
    int g = (int)sqrt((double)chunks);
    while ((int64_t)g * g < chunks) g++;
    while (g > 1 && (int64_t)(g - 1) * (g - 1) >= chunks) g--;
    return g < 1 ? 1 : g;
}

/* *sa, *sb = the sums of a[p * stride] and b[p * stride] for p in [p0, p1),
 * four terms of each in flight: (t0 + t1) + (t2 + t3), ti the terms p with
 * (p - p0) % 4 == i, in order. */
__host__ __device__ inline void sum4(const double *a, const double *b, int64_t p0, int64_t p1,
                                     int64_t stride, double *sa, double *sb) {
    double a0 = 0.0, a1 = 0.0, a2 = 0.0, a3 = 0.0, b0 = 0.0, b1 = 0.0, b2 = 0.0, b3 = 0.0;
    int64_t p = p0;
    for (; p + 4 <= p1; p += 4) {
        a0 += a[p * stride], b0 += b[p * stride];
        a1 += a[(p + 1) * stride], b1 += b[(p + 1) * stride];
        a2 += a[(p + 2) * stride], b2 += b[(p + 2) * stride];
        a3 += a[(p + 3) * stride], b3 += b[(p + 3) * stride];
    }
    if (p < p1) a0 += a[p * stride], b0 += b[p * stride];
    if (p + 1 < p1) a1 += a[(p + 1) * stride], b1 += b[(p + 1) * stride];
    if (p + 2 < p1) a2 += a[(p + 2) * stride], b2 += b[(p + 2) * stride];
    *sa = (a0 + a1) + (a2 + a3);
    *sb = (b0 + b1) + (b2 + b3);
}

size_t pasm_cuda_bn_partial_doubles(int64_t m, int c) {
    const int chunks = bn_chunks(m, c);
    return ((size_t)chunks * 2 + (size_t)bn_groups(chunks) * 2) * (size_t)c;
}

/* grp[g * c + ch] = the sum of part[p * c + ch] over group g's chunks, and
 * the same from part2 into grp2. */
static pasm_status group_sums(pasm_cuda_ctx *ctx, const double *part, const double *part2,
                              int chunks, int c, double *grp, double *grp2) {
    const int groups = bn_groups(chunks);
    const int per = (chunks + groups - 1) / groups;
    return pasm_each(
        ctx, (int64_t)groups * c,
        [=] __host__ __device__(int64_t i) {
            const int64_t ch = i % c, g = i / c;
            const int64_t p1 = (g + 1) * per < chunks ? (g + 1) * per : chunks;
            double s, s2;
            sum4(part + ch, part2 + ch, g * per, p1, c, &s, &s2);
            grp[i] = s;
            grp2[i] = s2;
        },
        "batch-norm group sums");
}

/* *s, *s2 = the sums over groups of grp[g * c + ch] and grp2[g * c + ch]. */
__host__ __device__ inline void group_totals(const double *grp, const double *grp2, int groups,
                                             int c, int64_t ch, double *s, double *s2) {
    sum4(grp + ch, grp2 + ch, 0, groups, c, s, s2);
}

/* A row's term of a chunk's sums: d = x - ref, s1 += d, s2 += d^2. */
template <typename T>
__host__ __device__ inline void stat_add(T x, double ref, double &s1, double &s2) {
    const double d = (double)to_f(x) - ref;
    s1 += d;
    s2 += d * d;
}

template <typename T>
static pasm_status bn_stats(pasm_cuda_ctx *ctx, int64_t m, int c, const T *x, float eps,
                            float momentum, const float *gamma, const float *beta, float *rmean,
                            float *rvar, float *save_mean, float *save_invstd, float *scale,
                            float *shift, double *partial) {
    if (m < 1) return pasm_errorf(PASM_ERR_INVALID, "batch-norm statistics over %lld rows",
                                  (long long)m);
    const int chunks = bn_chunks(m, c), groups = bn_groups(chunks);
    const int64_t rows = (m + chunks - 1) / chunks;
    double *s1_k = partial, *s2_k = partial + (size_t)chunks * c;
    double *s1_g = partial + (size_t)chunks * 2 * c, *s2_g = s1_g + (size_t)groups * c;
    const double count = (double)m;
    const double unbias = count > 1.0 ? count / (count - 1.0) : 1.0;
    const double mom = momentum;
    pasm_status st;
    if (rows_vectorise<T>(c, {x})) { /* a chunk's sums for a vector of channels */
        typedef pasm_v16<T> V;
        enum { L = 16 / sizeof(T) };
        const int64_t cv = c / L;
        const V *xv = (const V *)x;
        st = pasm_each(
            ctx, (int64_t)chunks * cv,
            [=] __host__ __device__(int64_t i) {
                const int64_t q = i % cv, p = i / cv;
                const int64_t r0 = p * rows, r1 = r0 + rows < m ? r0 + rows : m;
                const V first = xv[q];
                double ref[L], s1[L], s2[L];
PASM_UNROLL
                for (int j = 0; j < L; j++) ref[j] = to_f(first.e[j]), s1[j] = s2[j] = 0.0;
                rows_in_flight(
                    r0, r1, [&](int64_t r) { return xv[r * cv + q]; },
                    [&](const V &v) {
PASM_UNROLL
                        for (int j = 0; j < L; j++) stat_add(v.e[j], ref[j], s1[j], s2[j]);
                    });
PASM_UNROLL
                for (int j = 0; j < L; j++) s1_k[p * c + q * L + j] = s1[j], s2_k[p * c + q * L + j] = s2[j];
            },
            "batch-norm chunk statistics");
    } else {
        st = pasm_each(
            ctx, (int64_t)chunks * c,
            [=] __host__ __device__(int64_t i) { /* a chunk's sums of d and d^2 */
                const int64_t ch = i % c, p = i / c;
                const int64_t r0 = p * rows, r1 = r0 + rows < m ? r0 + rows : m;
                const double ref = (double)to_f(x[ch]);
                double s1 = 0.0, s2 = 0.0;
                for (int64_t r = r0; r < r1; r++) stat_add(x[r * c + ch], ref, s1, s2);
                s1_k[i] = s1;
                s2_k[i] = s2;
            },
            "batch-norm chunk statistics");
    }
    if (!st) st = group_sums(ctx, s1_k, s2_k, chunks, c, s1_g, s2_g);
    if (st) return st;
    return pasm_each(
        ctx, c,
        [=] __host__ __device__(int64_t ch) { /* the groups, in order */
            double s1, s2;
            group_totals(s1_g, s2_g, groups, c, ch, &s1, &s2);
            const double mu = (double)to_f(x[ch]) + s1 / count;
            const double m2 = s2 - s1 * s1 / count;
            const double var = m2 < 0.0 ? 0.0 : m2 / count; /* NaN stays NaN */
            const double invstd = 1.0 / sqrt(var + (double)eps);
            const double g = gamma ? gamma[ch] : 1.0, b = beta ? beta[ch] : 0.0;
            scale[ch] = (float)(g * invstd);
            shift[ch] = (float)(b - mu * invstd * g);
            if (rmean) rmean[ch] = (float)((1.0 - mom) * rmean[ch] + mom * mu);
            if (rvar) rvar[ch] = (float)((1.0 - mom) * rvar[ch] + mom * var * unbias);
            if (save_mean) save_mean[ch] = (float)mu;
            if (save_invstd) save_invstd[ch] = (float)invstd;
        },
        "batch-norm statistics");
}

pasm_status pasm_cuda_bn_stats(pasm_cuda_ctx *ctx, int64_t m, int c, const void *x,
                               pasm_cuda_dtype t, float eps, float momentum, const float *gamma,
                               const float *beta, float *running_mean, float *running_var,
                               float *save_mean, float *save_invstd, float *scale, float *shift,
                               double *partial) {
    return PASM_BY_DTYPE(t,
                         bn_stats(ctx, m, c, (const float *)x, eps, momentum, gamma, beta,
                                  running_mean, running_var, save_mean, save_invstd, scale,
                                  shift, partial),
                         bn_stats(ctx, m, c, (const bf16 *)x, eps, momentum, gamma, beta,
                                  running_mean, running_var, save_mean, save_invstd, scale,
                                  shift, partial));
}

pasm_status pasm_cuda_bn_fold(pasm_cuda_ctx *ctx, int c, float eps, const float *gamma,
                              const float *beta, const float *running_mean,
                              const float *running_var, float *scale, float *shift) {
    return pasm_each(
        ctx, c,
        [=] __host__ __device__(int64_t ch) {
            const double invstd = 1.0 / sqrt((double)running_var[ch] + (double)eps);
            const double g = gamma ? gamma[ch] : 1.0, b = beta ? beta[ch] : 0.0;
            scale[ch] = (float)(g * invstd);
            shift[ch] = (float)(b - running_mean[ch] * invstd * g);
        },
        "batch-norm fold");
}

/* x * scale + shift (+ the residual r where has_r) (then ReLU), an element. */
template <typename T>
__host__ __device__ inline T affine_one(T x, float scale, float shift, bool has_r, T r, int relu) {
    float v = to_f(x) * scale + shift;
    if (has_r) v += to_f(r);
    if (relu && !(v > 0.0f)) v = 0.0f;
    return from_f<T>(v);
}

template <typename T>
static pasm_status affine(pasm_cuda_ctx *ctx, int64_t m, int c, const T *x, const float *scale,
                          const float *shift, const T *res, int relu, T *y) {
    if (rows_vectorise<T>(c, {x, res, y, scale, shift})) { /* a vector of channels an index */
        typedef pasm_v16<T> V;
        enum { L = 16 / sizeof(T) };
        const int64_t nv = m * c / L;
        const pasm_mod vch(c / L, nv);
        const V *xv = (const V *)x, *rv = (const V *)res;
        V *yv = (V *)y;
        return pasm_each(
            ctx, nv,
            [=] __host__ __device__(int64_t i) {
                const int64_t ch = vch(i) * L;
                const V a = xv[i];
                V r = a, o;
                if (rv) r = rv[i];
                float sc[L], sh[L];
                load_floats<L>(scale + ch, sc);
                if (shift) load_floats<L>(shift + ch, sh);
PASM_UNROLL
                for (int j = 0; j < L; j++)
                    o.e[j] = affine_one(a.e[j], sc[j], shift ? sh[j] : 0.0f, rv != NULL, r.e[j], relu);
                yv[i] = o;
            },
            "batch-norm affine");
    }
    const pasm_mod chan(c, m * c);
    return pasm_each(
        ctx, m * c,
        [=] __host__ __device__(int64_t i) {
            const int64_t ch = chan(i);
            y[i] = affine_one(x[i], scale[ch], shift ? shift[ch] : 0.0f, res != NULL,
                              res ? res[i] : x[i], relu);
        },
        "batch-norm affine");
}

pasm_status pasm_cuda_affine(pasm_cuda_ctx *ctx, int64_t m, int c, const void *x,
                             const float *scale, const float *shift, const void *residual,
                             int relu, void *y, pasm_cuda_dtype t) {
    return PASM_BY_DTYPE(t,
                         affine(ctx, m, c, (const float *)x, scale, shift,
                                (const float *)residual, relu, (float *)y),
                         affine(ctx, m, c, (const bf16 *)x, scale, shift, (const bf16 *)residual,
                                relu, (bf16 *)y));
}

/* dy through the backward of a ReLU whose output was ry, where gated:
 * zero where ry is not above zero. */
template <typename T> __host__ __device__ inline T relu_gate(T dy, bool gated, T ry) {
    return gated && !(to_f(ry) > 0.0f) ? from_f<T>(0.0f) : dy;
}

/* An element's input gradient, from its (gated) output gradient g and its
 * channel's coefficients (k, the x term kx, the constant k0, the mean mu). */
template <typename T>
__host__ __device__ inline T bn_dx_one(T x, T g, float k, float kx, float k0, float mu) {
    return from_f<T>(k * to_f(g) + kx * (to_f(x) - mu) + k0);
}

template <typename T>
static pasm_status relu_backward(pasm_cuda_ctx *ctx, int64_t count, const T *y, T *d);

/* A row's terms of a chunk's gradient sums, from its (gated) output
 * gradient: a += g, b += g (x - mu). */
template <typename T>
__host__ __device__ inline void grad_add(T x, T gated_dy, double mu, double &a, double &b) {
    const double g = to_f(gated_dy);
    a += g;
    b += g * ((double)to_f(x) - mu);
}

template <typename T>
static pasm_status bn_backward(pasm_cuda_ctx *ctx, int64_t m, int c, const T *x, T *dy,
                               const T *relu_y, int mask_dy, const float *gamma,
                               const float *save_mean, const float *save_invstd, T *dx,
                               float *dgamma, float *dbeta, double *partial, float *coef) {
    const int chunks = bn_chunks(m, c), groups = bn_groups(chunks);
    const int64_t rows = (m + chunks - 1) / chunks;
    double *sum_dy = partial, *sum_dy_xc = partial + (size_t)chunks * c;
    double *grp_dy = partial + (size_t)chunks * 2 * c, *grp_dy_xc = grp_dy + (size_t)groups * c;
    const double count = (double)m;
    pasm_status st;
    if (rows_vectorise<T>(c, {x, dy, relu_y, save_mean})) { /* a vector of channels */
        typedef pasm_v16<T> V;
        enum { L = 16 / sizeof(T) };
        const int64_t cv = c / L;
        const V *xv = (const V *)x, *dyv = (const V *)dy, *ryv = (const V *)relu_y;
        st = pasm_each(
            ctx, (int64_t)chunks * cv,
            [=] __host__ __device__(int64_t i) {
                const int64_t q = i % cv, p = i / cv;
                const int64_t r0 = p * rows, r1 = r0 + rows < m ? r0 + rows : m;
                float muf[L];
                load_floats<L>(save_mean + q * L, muf);
                double a[L], b[L];
PASM_UNROLL
                for (int j = 0; j < L; j++) a[j] = b[j] = 0.0;
                struct row3 {
                    V x, d, ry;
                };
                rows_in_flight(
                    r0, r1,
                    [&](int64_t r) {
                        const int64_t k = r * cv + q;
                        row3 o;
                        o.x = xv[k], o.d = dyv[k];
                        o.ry = ryv ? ryv[k] : o.d;
                        return o;
                    },
                    [&](const row3 &v) {
PASM_UNROLL
                        for (int j = 0; j < L; j++)
                            grad_add(v.x.e[j], relu_gate(v.d.e[j], ryv != NULL, v.ry.e[j]),
                                     (double)muf[j], a[j], b[j]);
                    });
PASM_UNROLL
                for (int j = 0; j < L; j++)
                    sum_dy[p * c + q * L + j] = a[j], sum_dy_xc[p * c + q * L + j] = b[j];
            },
            "batch-norm gradient sums");
    } else {
        st = pasm_each(
            ctx, (int64_t)chunks * c,
            [=] __host__ __device__(int64_t i) {
                const int64_t ch = i % c, p = i / c;
                const int64_t r0 = p * rows, r1 = r0 + rows < m ? r0 + rows : m;
                const double mu = save_mean[ch];
                double a = 0.0, b = 0.0;
                for (int64_t r = r0; r < r1; r++) {
                    const int64_t k = r * c + ch;
                    grad_add(x[k], relu_gate(dy[k], relu_y != NULL, relu_y ? relu_y[k] : dy[k]), mu,
                             a, b);
                }
                sum_dy[i] = a;
                sum_dy_xc[i] = b;
            },
            "batch-norm gradient sums");
    }
    if (!st) st = group_sums(ctx, sum_dy, sum_dy_xc, chunks, c, grp_dy, grp_dy_xc);
    if (st) return st;
    st = pasm_each(
        ctx, c,
        [=] __host__ __device__(int64_t ch) {
            double sdy, sdyxc;
            group_totals(grp_dy, grp_dy_xc, groups, c, ch, &sdy, &sdyxc);
            const double invstd = save_invstd[ch];
            const double sdyxh = sdyxc * invstd;
            if (dbeta) dbeta[ch] = (float)sdy;
            if (dgamma) dgamma[ch] = (float)sdyxh;
            const double g = gamma ? gamma[ch] : 1.0;
            const double k = g * invstd;
            coef[ch] = (float)k;
            coef[c + ch] = (float)(-k * invstd * sdyxh / count);
            coef[2 * c + ch] = (float)(-k * sdy / count);
            coef[3 * c + ch] = save_mean[ch];
        },
        "batch-norm gradient coefficients");
    if (!relu_y) mask_dy = 0;
    if (st) return st;
    if (!dx) return mask_dy ? relu_backward(ctx, m * c, relu_y, dy) : PASM_OK;
    if (rows_vectorise<T>(c, {x, dy, relu_y, dx, coef})) { /* a vector of channels an index */
        typedef pasm_v16<T> V;
        enum { L = 16 / sizeof(T) };
        const int64_t nv = m * c / L;
        const pasm_mod vch(c / L, nv);
        const V *xv = (const V *)x, *ryv = (const V *)relu_y;
        V *dyv = (V *)dy, *dxv = (V *)dx;
        return pasm_each(
            ctx, nv,
            [=] __host__ __device__(int64_t i) {
                const int64_t ch = vch(i) * L;
                const V a = xv[i], d = dyv[i];
                V r = d, g, o;
                if (ryv) r = ryv[i];
                float k[L], kx[L], k0[L], mu[L];
                load_floats<L>(coef + ch, k);
                load_floats<L>(coef + c + ch, kx);
                load_floats<L>(coef + 2 * c + ch, k0);
                load_floats<L>(coef + 3 * c + ch, mu);
PASM_UNROLL
                for (int j = 0; j < L; j++) {
                    g.e[j] = relu_gate(d.e[j], ryv != NULL, r.e[j]);
                    o.e[j] = bn_dx_one(a.e[j], g.e[j], k[j], kx[j], k0[j], mu[j]);
                }
                dxv[i] = o;
                if (mask_dy) dyv[i] = g; /* dy as the ReLU's backward leaves it */
            },
            "batch-norm input gradient");
    }
    const pasm_mod chan(c, m * c);
    return pasm_each(
        ctx, m * c,
        [=] __host__ __device__(int64_t i) {
            const int64_t ch = chan(i);
            const T g = relu_gate(dy[i], relu_y != NULL, relu_y ? relu_y[i] : dy[i]);
            dx[i] = bn_dx_one(x[i], g, coef[ch], coef[c + ch], coef[2 * c + ch], coef[3 * c + ch]);
            if (mask_dy) dy[i] = g;
        },
        "batch-norm input gradient");
}

pasm_status pasm_cuda_bn_backward(pasm_cuda_ctx *ctx, int64_t m, int c, const void *x,
                                  void *dy, const void *relu_y, int mask_dy, pasm_cuda_dtype t,
                                  const float *gamma, const float *save_mean,
                                  const float *save_invstd, void *dx, float *dgamma, float *dbeta,
                                  double *partial, float *coef) {
    return PASM_BY_DTYPE(t,
                         bn_backward(ctx, m, c, (const float *)x, (float *)dy,
                                     (const float *)relu_y, mask_dy, gamma, save_mean, save_invstd,
                                     (float *)dx, dgamma, dbeta, partial, coef),
                         bn_backward(ctx, m, c, (const bf16 *)x, (bf16 *)dy,
                                     (const bf16 *)relu_y, mask_dy, gamma, save_mean, save_invstd,
                                     (bf16 *)dx, dgamma, dbeta, partial, coef));
}

/* ---- elementwise ---- */

template <typename T>
static pasm_status relu_backward(pasm_cuda_ctx *ctx, int64_t count, const T *y, T *d) {
    if (rows_vectorise<T>(count, {y, d})) { /* sixteen bytes an index */
        typedef pasm_v16<T> V;
        enum { L = 16 / sizeof(T) };
        const V *yv = (const V *)y;
        V *dv = (V *)d;
        return pasm_each(
            ctx, count / L,
            [=] __host__ __device__(int64_t i) {
                const V a = yv[i];
                V o = dv[i];
PASM_UNROLL
                for (int j = 0; j < L; j++) o.e[j] = relu_gate(o.e[j], true, a.e[j]);
                dv[i] = o;
            },
            "ReLU backward");
    }
    return pasm_each(
        ctx, count,
        [=] __host__ __device__(int64_t i) {
            if (!(to_f(y[i]) > 0.0f)) d[i] = from_f<T>(0.0f);
        },
        "ReLU backward");
}

pasm_status pasm_cuda_relu_backward(pasm_cuda_ctx *ctx, int64_t count, const void *y, void *d,
                                    pasm_cuda_dtype t) {
    return PASM_BY_DTYPE(t, relu_backward(ctx, count, (const float *)y, (float *)d),
                         relu_backward(ctx, count, (const bf16 *)y, (bf16 *)d));
}

/* ---- global average pooling ---- */

template <typename T>
static pasm_status avgpool_forward(pasm_cuda_ctx *ctx, int n, int c, int hw, const T *x, float *y) {
    return pasm_each(
        ctx, (int64_t)n * c,
        [=] __host__ __device__(int64_t i) { /* i = img * c + ch */
            const int64_t ch = i % c, img = i / c;
            double s = 0.0;
            for (int64_t p = 0; p < hw; p++) s += to_f(x[(img * hw + p) * c + ch]);
            y[i] = (float)(s / hw);
        },
        "average pool");
}

pasm_status pasm_cuda_avgpool_forward(pasm_cuda_ctx *ctx, int n, int c, int hw, const void *x,
                                      pasm_cuda_dtype t, float *y) {
    return PASM_BY_DTYPE(t, avgpool_forward(ctx, n, c, hw, (const float *)x, y),
                         avgpool_forward(ctx, n, c, hw, (const bf16 *)x, y));
}

template <typename T>
static pasm_status avgpool_backward(pasm_cuda_ctx *ctx, int n, int c, int hw, const float *dy,
                                    T *dx) {
    const float inv = 1.0f / (float)hw;
    return pasm_each(
        ctx, (int64_t)n * hw * c,
        [=] __host__ __device__(int64_t i) {
            const int64_t ch = i % c, img = i / ((int64_t)hw * c);
            dx[i] = from_f<T>(dy[img * c + ch] * inv);
        },
        "average pool backward");
}

pasm_status pasm_cuda_avgpool_backward(pasm_cuda_ctx *ctx, int n, int c, int hw,
                                       const float *dy, void *dx, pasm_cuda_dtype t) {
    return PASM_BY_DTYPE(t, avgpool_backward(ctx, n, c, hw, dy, (float *)dx),
                         avgpool_backward(ctx, n, c, hw, dy, (bf16 *)dx));
}

/* ---- linear ---- */

pasm_status pasm_cuda_linear_forward(pasm_cuda_ctx *ctx, int n, int in, int out, const float *x,
                                     const float *w, const float *b, float *y) {
    return pasm_each(
        ctx, (int64_t)n * out,
        [=] __host__ __device__(int64_t i) {
            const int64_t o = i % out, img = i / out;
            double s = b ? b[o] : 0.0;
            for (int64_t j = 0; j < in; j++) s += (double)x[img * in + j] * w[o * in + j];
            y[i] = (float)s;
        },
        "linear");
}

pasm_status pasm_cuda_linear_backward(pasm_cuda_ctx *ctx, int n, int in, int out,
                                      const float *x, const float *w, const float *dy, float *dx,
                                      float *dw, float *db) {
    pasm_status st = PASM_OK;
    if (dx)
        st = pasm_each(
            ctx, (int64_t)n * in,
            [=] __host__ __device__(int64_t i) {
                const int64_t j = i % in, img = i / in;
                double s = 0.0;
                for (int64_t o = 0; o < out; o++) s += (double)dy[img * out + o] * w[o * in + j];
                dx[i] = (float)s;
            },
            "linear input gradient");
    if (!st && dw)
        st = pasm_each(
            ctx, (int64_t)out * in,
            [=] __host__ __device__(int64_t i) {
                const int64_t j = i % in, o = i / in;
                double s = 0.0;
                for (int64_t img = 0; img < n; img++)
                    s += (double)dy[img * out + o] * x[img * in + j];
                dw[i] = (float)s;
            },
            "linear weight gradient");
    if (!st && db)
        st = pasm_each(
            ctx, out,
            [=] __host__ __device__(int64_t o) {
                double s = 0.0;
                for (int64_t img = 0; img < n; img++) s += dy[img * out + o];
                db[o] = (float)s;
            },
            "linear bias gradient");
    return st;
}

/* ---- SGD ---- */

pasm_status pasm_cuda_sgd(pasm_cuda_ctx *ctx, int64_t count, float *params, const float *grads,
                          float *buf, float lr_arg, float wd, float mom_arg, float dampening,
                          int nesterov, int first, const pasm_cuda_step *step) {
    const float damp = 1.0f - dampening;
    return pasm_each(
        ctx, count,
        [=] __host__ __device__(int64_t i) {
            const float lr = step ? step->lr : lr_arg, mom = step ? step->momentum : mom_arg;
            float d = grads[i] + wd * params[i];
            if (buf) {
                buf[i] = first ? d : mom * buf[i] + damp * d;
                d = nesterov ? d + mom * buf[i] : buf[i];
            }
            params[i] -= lr * d;
        },
        "SGD step");
}
