/* Private to src/ops: the bf16 matrix product behind --precision bf16
 * (gemm_bf16.c). Operands are rounded to bfloat16 (round to nearest even)
 * when they are packed; products and sums are fp32, as in PyTorch's bf16
 * autocast. OpenBLAS as Debian builds it has no bf16 GEMM (no sbgemm), so
 * this is our own: Intel AMX tiles where the CPU has AMX-BF16 and the kernel
 * grants them, else AVX512-BF16 dot products (VDPBF16PS) where the CPU has
 * those, otherwise the packed operands widened back to fp32 (exactly) and
 * multiplied by OpenBLAS sgemm, which gives the same products. The three
 * differ only in the order of the fp32 sums (and the first two flush
 * denormal values to zero).
 *
 * Layouts (bf16 as uint16_t):
 *   A, "rows":  [Mp][Kp], Mp = pasm_bf16_rows(M), Kp = pasm_bf16_depth(K);
 *   B, "pairs": [Kp/2][Np][2], Np = pasm_bf16_rows(N): element (k, n) at
 *               (k/2)*Np*2 + n*2 + (k&1) (AMX's VNNI layout).
 * Padding is zero. */
#ifndef PASM_OPS_GEMM_BF16_H
#define PASM_OPS_GEMM_BF16_H

#include <stddef.h>
#include <stdint.h>

static inline int pasm_bf16_rows(int m) { return (m + 15) / 16 * 16; }
static inline int pasm_bf16_depth(int k) { return (k + 31) / 32 * 32; }

/* One fp32 value rounded to bf16 as AVX512-BF16's VCVTNEPS2BF16 does it:
 * nearest even, NaN stays (quiet) NaN, denormal inputs become zero. */
static inline uint16_t pasm_bf16_from_float(float f) {
    union { float f; uint32_t u; } v = {f};
    if ((v.u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((v.u >> 16) | 0x40u);
    if ((v.u & 0x7f800000u) == 0) return (uint16_t)((v.u >> 16) & 0x8000u);
    return (uint16_t)((v.u + 0x7fffu + ((v.u >> 16) & 1u)) >> 16);
}
static inline float pasm_bf16_to_float(uint16_t h) {
    union { uint32_t u; float f; } v = {(uint32_t)h << 16};
    return v.f;
}

/* Non-zero when the AMX kernel runs (AMX-BF16 present, the kernel granted
 * the tile data, and PASM_BF16_AMX is not 0). Decided once per process. */
int pasm_bf16_amx(void);

/* For tests: run the AMX kernel (on != 0, only where pasm_bf16_amx found
 * it) or the fallback from now on; returns the previous choice. Workspace
 * sizes depend on it: plan after switching. */
int pasm_bf16_use_amx(int on);

/* The kernel pasm_bf16_gemm runs now (and pasm_precision_bf16_native
 * reports). */
enum { PASM_BF16_WIDENED = 0, PASM_BF16_AMX = 1, PASM_BF16_DOT = 2 };
int pasm_bf16_kernel(void);
/* For tests, as pasm_bf16_use_amx: where AMX is off, the dot-product kernel
 * (on != 0; only where the CPU has AVX512-BF16) or the widened sgemm from
 * now on, whatever PASM_BF16_DOT says; returns the previous setting (on
 * an AMX machine, the setting, not the kernel that ran). */
int pasm_bf16_use_dot(int on);

/* Bytes of fp32 scratch pasm_bf16_gemm needs for these padded sizes: 0 with
 * AMX or dot products, the widened operands otherwise. */
size_t pasm_bf16_gemm_scratch(int Mp, int Np, int Kp);

/* dst[i] = bf16(src[i]), i < n. */
void pasm_bf16_convert(uint16_t *dst, const float *src, int n);
/* dst[i] = bf16(a[i]) | bf16(b[i]) << 16, i < n (b NULL: zeros): one pair
 * row of B pairs. */
void pasm_bf16_convert_pairs(uint32_t *dst, const float *a, const float *b, int n);

/* The packers write the elements they are given and nothing else; the
 * pad functions then zero the padding. Several sources can be packed side
 * by side (k0, n0: where this one starts) before one pad call.
 * A rows: element (m, k0 + k) = src[m*lda + k], m < M, k < K. */
void pasm_bf16_pack_rows(uint16_t *a, int Kp, int k0, const float *src, int M, int K, size_t lda);
/* A rows: element (m, k) = src[k*ld + m] (the source transposed). */
void pasm_bf16_pack_rows_t(uint16_t *a, int Kp, const float *src, int M, int K, size_t ld);
/* B pairs: element (k, n0 + n) = src[k*ldb + n], k < K, n < N. */
void pasm_bf16_pack_pairs(uint16_t *b, int Np, int n0, const float *src, int K, int N,
                          size_t ldb);
/* B pairs: element (k0 + k, n) = src[n*ld + k] (the source is B transposed,
 * N rows of K). */
void pasm_bf16_pack_pairs_t(uint16_t *b, int Np, int k0, const float *src, int K, int N,
                            size_t ld);
/* Zero every element of an (M x K)-filled A rows [Mp][Kp] outside the
 * M x K corner; the same for B pairs filled K x N of Kp x Np. */
void pasm_bf16_pad_rows(uint16_t *a, int M, int K, int Mp, int Kp);
void pasm_bf16_pad_pairs(uint16_t *b, int K, int N, int Kp, int Np);

/* C (M x N, fp32, row stride ldc) = A . B (+ C when accumulate), over the
 * padded depth Kp; A and B packed as above for Mp = rows(M), Np = rows(N).
 * scratch: pasm_bf16_gemm_scratch bytes (NULL when that is 0). Runs on the
 * calling thread alone. */
void pasm_bf16_gemm(int M, int N, int Kp, const uint16_t *a, const uint16_t *b, float *c,
                    size_t ldc, int accumulate, float *scratch);

#endif
