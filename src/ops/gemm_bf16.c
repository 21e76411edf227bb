/* The bf16 matrix product (see gemm_bf16.h): packers from fp32, an AMX
 * kernel, an AVX512-BF16 dot-product kernel and the sgemm fallback.
 *
 * AMX: eight tile registers of 16 rows x 64 bytes. A block of 32 x 32
 * outputs keeps four fp32 accumulator tiles (0-3); each step of 32 along
 * the depth loads two A tiles (4, 5: 16 rows x 32 bf16) and two B tiles (6,
 * 7: 16 pairs x 16 columns) and issues four tile products. Blocks at the
 * matrix's edge use fewer tiles; outputs past M or N go through a small
 * buffer so C is never written outside M x N. The tile configuration is
 * loaded at each call (tile state belongs to the thread) and released at the
 * end. Linux hands out the tile data only on request
 * (arch_prctl(ARCH_REQ_XCOMP_PERM)), made once per process. */
#include <cblas.h>
#include <immintrin.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "core/env.h"

#include "ops/gemm_bf16.h"

#define ARCH_REQ_XCOMP_PERM 0x1023
#define XFEATURE_XTILEDATA 18

static int amx_state = -1;
static int amx_off;

int pasm_bf16_amx(void) {
    if (amx_state < 0) {
        int ok = 0;
        const char *env = getenv("PASM_BF16_AMX");
        __builtin_cpu_init();
        if (!(env && strcmp(env, "0") == 0) && __builtin_cpu_supports("avx512f")) {
            unsigned a, b, c, d;
            /* CPUID leaf 7: EDX bit 22 AMX-BF16, bit 24 AMX-TILE. */
            __asm__ volatile("cpuid" : "=a"(a), "=b"(b), "=c"(c), "=d"(d) : "a"(7), "c"(0));
            if ((d >> 22 & 1) && (d >> 24 & 1))
                ok = syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) == 0;
        }
        /* Benign race: every thread computes the same answer. */
        __atomic_store_n(&amx_state, ok, __ATOMIC_RELAXED);
    }
    return __atomic_load_n(&amx_state, __ATOMIC_RELAXED) && !__atomic_load_n(&amx_off, __ATOMIC_RELAXED);
}

int pasm_bf16_use_amx(int on) {
    int was = pasm_bf16_amx();
    __atomic_store_n(&amx_off, !on, __ATOMIC_RELAXED);
    return was;
}

static int has_avx512bf16(void) {
    static int cached = -1;
    if (cached < 0) {
        __builtin_cpu_init();
        __atomic_store_n(&cached,
                         __builtin_cpu_supports("avx512bf16") && __builtin_cpu_supports("avx512bw") &&
                             __builtin_cpu_supports("avx512vl"),
                         __ATOMIC_RELAXED);
    }
    return __atomic_load_n(&cached, __ATOMIC_RELAXED);
}

static int dot_on = -1; /* -1: PASM_BF16_DOT not read yet */

static int dot_enabled(void) { return has_avx512bf16() && pasm_env_on("PASM_BF16_DOT", &dot_on); }

int pasm_bf16_kernel(void) {
    if (pasm_bf16_amx()) return PASM_BF16_AMX;
    return dot_enabled() ? PASM_BF16_DOT : PASM_BF16_WIDENED;
}

int pasm_bf16_use_dot(int on) {
    int was = dot_enabled();
    __atomic_store_n(&dot_on, on != 0, __ATOMIC_RELAXED);
    return was;
}

size_t pasm_bf16_gemm_scratch(int Mp, int Np, int Kp) {
    if (pasm_bf16_kernel() != PASM_BF16_WIDENED) return 0;
    return ((size_t)Mp * Kp + (size_t)Kp * Np) * sizeof(float);
}

/* ---- conversion ---- */

#define BF16_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16")))

BF16_TARGET static void convert_avx512(uint16_t *dst, const float *src, int n) {
    int i = 0;
    for (; i + 16 <= n; i += 16)
        _mm256_storeu_si256((__m256i *)(dst + i), (__m256i)_mm512_cvtneps_pbh(_mm512_loadu_ps(src + i)));
    if (i < n) {
        const __mmask16 m = (__mmask16)((1u << (n - i)) - 1u);
        __m256i v = (__m256i)_mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(m, src + i));
        _mm256_mask_storeu_epi16(dst + i, m, v);
    }
}

/* word 2i <- a's i-th (low half of cvtne2ps's result), 2i+1 <- b's */
static const uint16_t interleave[32] = {0, 16, 1, 17, 2,  18, 3,  19, 4,  20, 5,  21, 6,  22, 7,  23,
                                        8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31};

BF16_TARGET static void convert_pairs_avx512(uint32_t *dst, const float *a, const float *b, int n) {
    const __m512i idx = _mm512_loadu_si512(interleave);
    int i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512 va = _mm512_loadu_ps(a + i), vb = b ? _mm512_loadu_ps(b + i) : _mm512_setzero_ps();
        __m512i both = (__m512i)_mm512_cvtne2ps_pbh(vb, va);
        _mm512_storeu_si512(dst + i, _mm512_permutexvar_epi16(idx, both));
    }
    if (i < n) {
        const __mmask16 m = (__mmask16)((1u << (n - i)) - 1u);
        __m512 va = _mm512_maskz_loadu_ps(m, a + i);
        __m512 vb = b ? _mm512_maskz_loadu_ps(m, b + i) : _mm512_setzero_ps();
        __m512i both = (__m512i)_mm512_cvtne2ps_pbh(vb, va);
        _mm512_mask_storeu_epi32(dst + i, m, _mm512_permutexvar_epi16(idx, both));
    }
}

void pasm_bf16_convert(uint16_t *dst, const float *src, int n) {
    if (has_avx512bf16()) {
        convert_avx512(dst, src, n);
        return;
    }
    for (int i = 0; i < n; i++) dst[i] = pasm_bf16_from_float(src[i]);
}

void pasm_bf16_convert_pairs(uint32_t *dst, const float *a, const float *b, int n) {
    if (has_avx512bf16()) {
        convert_pairs_avx512(dst, a, b, n);
        return;
    }
    for (int i = 0; i < n; i++)
        dst[i] = (uint32_t)pasm_bf16_from_float(a[i]) |
                 (uint32_t)(b ? pasm_bf16_from_float(b[i]) : 0) << 16;
}

/* ---- packing ---- */

void pasm_bf16_pack_rows(uint16_t *a, int Kp, int k0, const float *src, int M, int K,
                         size_t lda) {
    for (int m = 0; m < M; m++) pasm_bf16_convert(a + (size_t)m * Kp + k0, src + (size_t)m * lda, K);
}

void pasm_bf16_pack_rows_t(uint16_t *a, int Kp, const float *src, int M, int K, size_t ld) {
    for (int k = 0; k < K; k++) {
        const float *row = src + (size_t)k * ld;
        for (int m = 0; m < M; m++) a[(size_t)m * Kp + k] = pasm_bf16_from_float(row[m]);
    }
}

void pasm_bf16_pack_pairs(uint16_t *b, int Np, int n0, const float *src, int K, int N,
                          size_t ldb) {
    for (int k = 0; k + 1 < K; k += 2) {
        const float *r0 = src + (size_t)k * ldb;
        pasm_bf16_convert_pairs((uint32_t *)(b + (size_t)(k / 2) * Np * 2) + n0, r0, r0 + ldb, N);
    }
    if (K & 1) { /* the last k alone: the even halves of its pair */
        uint16_t *dst = b + (size_t)(K / 2) * Np * 2 + (size_t)n0 * 2;
        const float *r0 = src + (size_t)(K - 1) * ldb;
        for (int n = 0; n < N; n++) dst[2 * n] = pasm_bf16_from_float(r0[n]);
    }
}

/* 16 source rows (n0..n0+15) x 16 pairs (p0..p0+15): each row's 32 floats
 * become 16 pairs in one vector; a 16 x 16 transpose of 32-bit elements
 * (unpack 32, unpack 64, two rounds of 128-bit shuffles) turns them into 16
 * rows of B pairs. */
BF16_TARGET static void pairs_t_block(uint32_t *dst, int Np, const float *src, size_t ld) {
    __m512i r[16], t[16];
    for (int i = 0; i < 16; i++) {
        const float *row = src + (size_t)i * ld;
        r[i] = (__m512i)_mm512_cvtne2ps_pbh(_mm512_loadu_ps(row + 16), _mm512_loadu_ps(row));
    }
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_epi32(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_epi32(r[i], r[i + 1]);
    }
    for (int i = 0; i < 16; i += 4) {
        r[i] = _mm512_unpacklo_epi64(t[i], t[i + 2]);
        r[i + 1] = _mm512_unpackhi_epi64(t[i], t[i + 2]);
        r[i + 2] = _mm512_unpacklo_epi64(t[i + 1], t[i + 3]);
        r[i + 3] = _mm512_unpackhi_epi64(t[i + 1], t[i + 3]);
    }
    for (int h = 0; h < 16; h += 8)
        for (int i = 0; i < 4; i++) {
            t[h + i] = _mm512_shuffle_i32x4(r[h + i], r[h + i + 4], 0x88);
            t[h + i + 4] = _mm512_shuffle_i32x4(r[h + i], r[h + i + 4], 0xdd);
        }
    for (int i = 0; i < 8; i++) {
        r[i] = _mm512_shuffle_i32x4(t[i], t[i + 8], 0x88);
        r[i + 8] = _mm512_shuffle_i32x4(t[i], t[i + 8], 0xdd);
    }
    /* r[j] holds pair j of rows 0..15 */
    for (int j = 0; j < 16; j++) _mm512_storeu_si512(dst + (size_t)j * Np, r[j]);
}

void pasm_bf16_pack_pairs_t(uint16_t *b, int Np, int k0, const float *src, int K, int N,
                            size_t ld) {
    if (k0 % 2 == 0) {
        /* Pairs (k, k+1) sit side by side in each source row: one 32-bit
         * store each. Whole 16 x 16 blocks go through vectors where the CPU
         * has AVX512-BF16; the rest 16 pairs of a row at a time, to keep the
         * stores near. */
        const int pairs = K / 2, vec = has_avx512bf16();
        const int pb = vec ? pairs / 16 * 16 : 0, nb = vec ? N / 16 * 16 : 0;
        uint32_t *dst0 = (uint32_t *)(b + (size_t)(k0 / 2) * Np * 2);
        for (int p0 = 0; p0 < pb; p0 += 16)
            for (int n0 = 0; n0 < nb; n0 += 16)
                pairs_t_block(dst0 + (size_t)p0 * Np + n0, Np, src + (size_t)n0 * ld + 2 * p0, ld);
        for (int p0 = 0; p0 < pairs; p0 += 16) {
            const int p1 = p0 + 16 < pairs ? p0 + 16 : pairs;
            for (int n = p0 < pb ? nb : 0; n < N; n++) {
                const float *row = src + (size_t)n * ld;
                for (int p = p0; p < p1; p++)
                    dst0[(size_t)p * Np + n] = (uint32_t)pasm_bf16_from_float(row[2 * p]) |
                                               (uint32_t)pasm_bf16_from_float(row[2 * p + 1]) << 16;
            }
        }
        if (K & 1) {
            const int k = k0 + K - 1;
            for (int n = 0; n < N; n++)
                b[(size_t)(k / 2) * Np * 2 + (size_t)n * 2] =
                    pasm_bf16_from_float(src[(size_t)n * ld + K - 1]);
        }
        return;
    }
    for (int n = 0; n < N; n++)
        for (int k = 0; k < K; k++) {
            const int kk = k0 + k;
            b[(size_t)(kk / 2) * Np * 2 + (size_t)n * 2 + (kk & 1)] =
                pasm_bf16_from_float(src[(size_t)n * ld + k]);
        }
}

void pasm_bf16_pad_rows(uint16_t *a, int M, int K, int Mp, int Kp) {
    if (K < Kp)
        for (int m = 0; m < M; m++) memset(a + (size_t)m * Kp + K, 0, sizeof(uint16_t) * (Kp - K));
    if (M < Mp) memset(a + (size_t)M * Kp, 0, sizeof(uint16_t) * (size_t)(Mp - M) * Kp);
}

void pasm_bf16_pad_pairs(uint16_t *b, int K, int N, int Kp, int Np) {
    for (int p = 0; p < Kp / 2; p++) {
        uint16_t *row = b + (size_t)p * Np * 2;
        if (2 * p >= K) {
            memset(row, 0, sizeof(uint16_t) * (size_t)Np * 2);
            continue;
        }
        if (2 * p + 1 == K)
            for (int n = 0; n < N; n++) row[2 * n + 1] = 0;
        if (N < Np) memset(row + (size_t)N * 2, 0, sizeof(uint16_t) * (size_t)(Np - N) * 2);
    }
}

/* ---- AMX ---- */

typedef struct {
    uint8_t palette, start_row;
    uint8_t reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} tile_config;

#define AMX __attribute__((target("amx-tile,amx-bf16,avx512f")))

/* Where accumulator tile (mi, ni) of the block at (m0, n0) lives: in C when
 * its 16 x 16 outputs all lie inside M x N, else in edge[e]. */
#define C_PTR(mi, ni, e)                                                                   \
    (full(m0 + 16 * (mi), n0 + 16 * (ni), M, N) ? c + (size_t)(m0 + 16 * (mi)) * ldc +     \
                                                      n0 + 16 * (ni)                       \
                                                : edge[e])
#define C_STRIDE(mi, ni) (full(m0 + 16 * (mi), n0 + 16 * (ni), M, N) ? ldc * 4 : 64)

static inline int full(int r, int col, int M, int N) { return r + 16 <= M && col + 16 <= N; }

/* edge <- the valid part of C's tile at (r, col), zeros elsewhere. */
static void edge_in(float *edge, const float *c, size_t ldc, int r, int col, int M, int N,
                    int accumulate) {
    memset(edge, 0, 256 * sizeof(float));
    if (!accumulate) return;
    for (int i = 0; i < 16 && r + i < M; i++)
        for (int j = 0; j < 16 && col + j < N; j++) edge[i * 16 + j] = c[(size_t)(r + i) * ldc + col + j];
}

static void edge_out(const float *edge, float *c, size_t ldc, int r, int col, int M, int N) {
    for (int i = 0; i < 16 && r + i < M; i++)
        for (int j = 0; j < 16 && col + j < N; j++) c[(size_t)(r + i) * ldc + col + j] = edge[i * 16 + j];
}

AMX static void gemm_amx(int M, int N, int Kp, const uint16_t *a, const uint16_t *b, float *c,
                         size_t ldc, int accumulate) {
    tile_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.palette = 1;
    for (int t = 0; t < 8; t++) {
        cfg.colsb[t] = 64;
        cfg.rows[t] = 16;
    }
    _tile_loadconfig(&cfg);
    const int Mp = pasm_bf16_rows(M), Np = pasm_bf16_rows(N);
    const size_t a_stride = (size_t)Kp * 2, b_stride = (size_t)Np * 4;
    _Alignas(64) float edge[4][256];
    for (int n0 = 0; n0 < Np; n0 += 32) {
        const int two_n = n0 + 16 < Np;
        for (int m0 = 0; m0 < Mp; m0 += 32) {
            const int two_m = m0 + 16 < Mp;
            /* accumulators in */
            const int e00 = !full(m0, n0, M, N), e01 = two_n && !full(m0, n0 + 16, M, N);
            const int e10 = two_m && !full(m0 + 16, n0, M, N);
            const int e11 = two_m && two_n && !full(m0 + 16, n0 + 16, M, N);
            if (e00) edge_in(edge[0], c, ldc, m0, n0, M, N, accumulate);
            if (e01) edge_in(edge[1], c, ldc, m0, n0 + 16, M, N, accumulate);
            if (e10) edge_in(edge[2], c, ldc, m0 + 16, n0, M, N, accumulate);
            if (e11) edge_in(edge[3], c, ldc, m0 + 16, n0 + 16, M, N, accumulate);
            if (accumulate || e00) _tile_loadd(0, C_PTR(0, 0, 0), C_STRIDE(0, 0));
            else _tile_zero(0);
            if (two_n) {
                if (accumulate || e01) _tile_loadd(1, C_PTR(0, 1, 1), C_STRIDE(0, 1));
                else _tile_zero(1);
            }
            if (two_m) {
                if (accumulate || e10) _tile_loadd(2, C_PTR(1, 0, 2), C_STRIDE(1, 0));
                else _tile_zero(2);
                if (two_n) {
                    if (accumulate || e11) _tile_loadd(3, C_PTR(1, 1, 3), C_STRIDE(1, 1));
                    else _tile_zero(3);
                }
            }
            const uint16_t *a0 = a + (size_t)m0 * Kp, *a1 = a0 + (size_t)16 * Kp;
            const uint16_t *b0 = b + (size_t)n0 * 2, *b1 = b0 + 32;
            if (two_m && two_n) {
                for (int k = 0; k < Kp; k += 32) {
                    const size_t bk = (size_t)(k / 2) * Np * 2;
                    _tile_loadd(4, a0 + k, a_stride);
                    _tile_loadd(6, b0 + bk, b_stride);
                    _tile_loadd(5, a1 + k, a_stride);
                    _tile_loadd(7, b1 + bk, b_stride);
                    _tile_dpbf16ps(0, 4, 6);
                    _tile_dpbf16ps(1, 4, 7);
                    _tile_dpbf16ps(2, 5, 6);
                    _tile_dpbf16ps(3, 5, 7);
                }
            } else {
                for (int k = 0; k < Kp; k += 32) {
                    const size_t bk = (size_t)(k / 2) * Np * 2;
                    _tile_loadd(4, a0 + k, a_stride);
                    _tile_loadd(6, b0 + bk, b_stride);
                    _tile_dpbf16ps(0, 4, 6);
                    if (two_n) {
                        _tile_loadd(7, b1 + bk, b_stride);
                        _tile_dpbf16ps(1, 4, 7);
                    }
                    if (two_m) {
                        _tile_loadd(5, a1 + k, a_stride);
                        _tile_dpbf16ps(2, 5, 6);
                    }
                }
            }
            _tile_stored(0, C_PTR(0, 0, 0), C_STRIDE(0, 0));
            if (two_n) _tile_stored(1, C_PTR(0, 1, 1), C_STRIDE(0, 1));
            if (two_m) {
                _tile_stored(2, C_PTR(1, 0, 2), C_STRIDE(1, 0));
                if (two_n) _tile_stored(3, C_PTR(1, 1, 3), C_STRIDE(1, 1));
            }
            if (e00) edge_out(edge[0], c, ldc, m0, n0, M, N);
            if (e01) edge_out(edge[1], c, ldc, m0, n0 + 16, M, N);
            if (e10) edge_out(edge[2], c, ldc, m0 + 16, n0, M, N);
            if (e11) edge_out(edge[3], c, ldc, m0 + 16, n0 + 16, M, N);
        }
    }
    _tile_release();
}

/* ---- AVX512-BF16 dot products (no AMX) ----
 * VDPBF16PS adds to each of 16 fp32 lanes the products of one pair of bf16
 * values from each operand: B's pair rows are exactly its operand (16
 * columns' pairs, one 64-byte row of the packed layout), A's pair (m, k..k+1)
 * is broadcast. A register block of DOT_MR rows x 32 columns (24
 * accumulators) runs down the whole depth; outputs past N are masked, rows
 * past M are not computed. */

enum { DOT_MR = 12 };

/* Rows m0..m0+MR-1, columns n0..n0+16*NV-1 (the last vector masked by
 * last). MR and NV are compile-time constants at every call. */
__attribute__((target("avx512f,avx512bf16"), always_inline)) static inline void
dot_block(int Kp, int Np, const uint16_t *a, const uint16_t *b, float *c, size_t ldc,
          int accumulate, int m0, int n0, __mmask16 last, const int MR, const int NV) {
    __m512 acc[DOT_MR][2];
#pragma GCC unroll 12
    for (int r = 0; r < MR; r++)
#pragma GCC unroll 2
        for (int v = 0; v < NV; v++) {
            const __mmask16 m = v == NV - 1 ? last : (__mmask16)0xFFFF;
            acc[r][v] = accumulate
                            ? _mm512_maskz_loadu_ps(m, c + (size_t)(m0 + r) * ldc + n0 + 16 * v)
                            : _mm512_setzero_ps();
        }
    const uint16_t *ar = a + (size_t)m0 * Kp;
    const uint32_t *bp = (const uint32_t *)b + n0;
    for (int k = 0; k < Kp; k += 2, bp += Np) {
        __m512bh bv[2];
#pragma GCC unroll 2
        for (int v = 0; v < NV; v++) bv[v] = (__m512bh)_mm512_loadu_si512(bp + 16 * v);
#pragma GCC unroll 12
        for (int r = 0; r < MR; r++) {
            uint32_t pair;
            memcpy(&pair, ar + (size_t)r * Kp + k, sizeof pair);
            const __m512bh av = (__m512bh)_mm512_set1_epi32((int)pair);
#pragma GCC unroll 2
            for (int v = 0; v < NV; v++) acc[r][v] = _mm512_dpbf16_ps(acc[r][v], av, bv[v]);
        }
    }
#pragma GCC unroll 12
    for (int r = 0; r < MR; r++)
#pragma GCC unroll 2
        for (int v = 0; v < NV; v++)
            _mm512_mask_storeu_ps(c + (size_t)(m0 + r) * ldc + n0 + 16 * v,
                                  v == NV - 1 ? last : (__mmask16)0xFFFF, acc[r][v]);
}

#define DOT_ROWS(NV)                                                                             \
    switch (mr) {                                                                                \
    case 12: dot_block(Kp, Np, a, b, c, ldc, accumulate, m0, n0, last, 12, NV); break;          \
    case 11: dot_block(Kp, Np, a, b, c, ldc, accumulate, m0, n0, last, 11, NV); break;          \
    case 10: dot_block(Kp, Np, a, b, c, ldc, accumulate, m0, n0, last, 10, NV); break;          \
    case 9: dot_block(Kp, Np, a, b, c, ldc, accumulate, m0, n0, last, 9, NV); break;            \
    case 8: dot_block(Kp, Np, a, b, c, ldc, accumulate, m0, n0, last, 8, NV); break;            \
    case 7: dot_block(Kp, Np, a, b, c, ldc, accumulate, m0, n0, last, 7, NV); break;            \
    case 6: dot_block(Kp, Np, a, b, c, ldc, accumulate, m0, n0, last, 6, NV); break;            \
    case 5: dot_block(Kp, Np, a, b, c, ldc, accumulate, m0, n0, last, 5, NV); break;            \
    case 4: dot_block(Kp, Np, a, b, c, ldc, accumulate, m0, n0, last, 4, NV); break;            \
    case 3: dot_block(Kp, Np, a, b, c, ldc, accumulate, m0, n0, last, 3, NV); break;            \
    case 2: dot_block(Kp, Np, a, b, c, ldc, accumulate, m0, n0, last, 2, NV); break;            \
    default: dot_block(Kp, Np, a, b, c, ldc, accumulate, m0, n0, last, 1, NV); break;           \
    }

/* Column blocks of 32 outside, row blocks inside: a block's B columns
 * (Kp/2 x 32 pairs) stay in cache while the rows of A stream past. */
__attribute__((target("avx512f,avx512bf16"))) static void
gemm_dot(int M, int N, int Kp, const uint16_t *a, const uint16_t *b, float *c, size_t ldc,
         int accumulate) {
    const int Np = pasm_bf16_rows(N);
    for (int n0 = 0; n0 < N; n0 += 32) {
        const int left = N - n0, two = left > 16;
        const int in_last = two ? left - 16 : left; /* columns of the last vector */
        const __mmask16 last =
            in_last >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << in_last) - 1u);
        for (int m0 = 0; m0 < M; m0 += DOT_MR) {
            const int mr = M - m0 < DOT_MR ? M - m0 : DOT_MR;
            if (two) {
                DOT_ROWS(2)
            } else {
                DOT_ROWS(1)
            }
        }
    }
}

/* ---- fallback: widen to fp32 (exact) and call sgemm ----
 * A bf16 value is the top half of its fp32: widening is a shift (A's
 * elements; B's even rows, the low halves of its 32-bit pairs) or a mask
 * (B's odd rows, the high halves). Sixteen at a time where the CPU has
 * AVX-512: the scalar loops were a fifth of a bf16 training step on such a
 * CPU without AMX, and most of it under the sanitizers. */

static int has_avx512f(void) {
    static int cached = -1;
    if (cached < 0) {
        __builtin_cpu_init();
        __atomic_store_n(&cached, __builtin_cpu_supports("avx512f"), __ATOMIC_RELAXED);
    }
    return __atomic_load_n(&cached, __ATOMIC_RELAXED);
}

/* dst[i] = widen(src[i]), i < n */
__attribute__((target("avx512f"))) static size_t widen_avx512(float *dst, const uint16_t *src,
                                                              size_t n) {
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512i v = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(src + i)));
        _mm512_storeu_si512(dst + i, _mm512_slli_epi32(v, 16));
    }
    return i;
}

static void widen(float *dst, const uint16_t *src, size_t n) {
    size_t i = has_avx512f() ? widen_avx512(dst, src, n) : 0;
    for (; i < n; i++) dst[i] = pasm_bf16_to_float(src[i]);
}

/* even[i] = widen(low half of pairs[i]), odd[i] = widen(high half), i < n */
__attribute__((target("avx512f"))) static int widen_pairs_avx512(float *even, float *odd,
                                                                 const uint32_t *pairs, int n) {
    const __m512i high = _mm512_set1_epi32((int)0xffff0000u);
    int i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512i w = _mm512_loadu_si512(pairs + i);
        _mm512_storeu_si512(even + i, _mm512_slli_epi32(w, 16));
        _mm512_storeu_si512(odd + i, _mm512_and_si512(w, high));
    }
    return i;
}

static void widen_pairs(float *even, float *odd, const uint32_t *pairs, int n) {
    int i = has_avx512f() ? widen_pairs_avx512(even, odd, pairs, n) : 0;
    for (; i < n; i++) {
        even[i] = pasm_bf16_to_float((uint16_t)pairs[i]);
        odd[i] = pasm_bf16_to_float((uint16_t)(pairs[i] >> 16));
    }
}

static void gemm_widened(int M, int N, int Kp, const uint16_t *a, const uint16_t *b, float *c,
                         size_t ldc, int accumulate, float *scratch) {
    const int Np = pasm_bf16_rows(N);
    float *af = scratch, *bf = scratch + (size_t)pasm_bf16_rows(M) * Kp;
    widen(af, a, (size_t)M * Kp);
    for (int k = 0; k < Kp; k += 2) /* Kp is a multiple of 32 */
        widen_pairs(bf + (size_t)k * Np, bf + (size_t)(k + 1) * Np,
                    (const uint32_t *)(b + (size_t)k * Np), N);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, N, Kp, 1.0f, af, Kp, bf, Np,
                accumulate ? 1.0f : 0.0f, c, (int)ldc);
}

void pasm_bf16_gemm(int M, int N, int Kp, const uint16_t *a, const uint16_t *b, float *c,
                    size_t ldc, int accumulate, float *scratch) {
    if (M <= 0 || N <= 0) return;
    switch (pasm_bf16_kernel()) {
    case PASM_BF16_AMX: gemm_amx(M, N, Kp, a, b, c, ldc, accumulate); break;
    case PASM_BF16_DOT: gemm_dot(M, N, Kp, a, b, c, ldc, accumulate); break;
    default: gemm_widened(M, N, Kp, a, b, c, ldc, accumulate, scratch); break;
    }
}
