/* Helpers shared by the op tests: seeded random tensors, float <-> double
 * copies, and the two comparisons every op test makes, each printing its
 * maximum difference (like llm.c's test does) and returning whether it is
 * inside the stated tolerance:
 *   - compare_forward: a float op's output against a naive double reference;
 *   - check_gradient: a float op's analytic gradient against central finite
 *     differences of a scalar loss computed on the double reference. */
#ifndef PASM_TESTS_OPCHECK_H
#define PASM_TESTS_OPCHECK_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "pasm/core.h"

/* Gradient tolerance: |analytic - numeric| <= GRAD_ATOL + GRAD_RTOL * |numeric|. */
#define GRAD_ATOL 1e-4
#define GRAD_RTOL 1e-3
/* Forward tolerance: |float - double| <= FWD_ATOL + FWD_RTOL * |double|. */
#define FWD_ATOL 1e-5
#define FWD_RTOL 1e-4
/* Central-difference step on the double reference. */
#define FD_STEP 1e-6

/* Uniform values in [lo, hi), as float and as the same values in double. */
static inline void random_fill(uint64_t seed, uint32_t stream, int64_t count, float lo, float hi,
                               float *f, double *d) {
    pasm_rng rng;
    pasm_rng_init(&rng, seed, PASM_RNG_SYNTH, stream, 0);
    for (int64_t i = 0; i < count; i++) {
        float v = lo + (hi - lo) * pasm_rng_uniform(&rng);
        if (f) f[i] = v;
        if (d) d[i] = v;
    }
}

static inline void *zeroed(int64_t count, size_t size) {
    void *p = calloc((size_t)(count > 0 ? count : 1), size);
    if (!p) {
        fprintf(stderr, "test: out of memory\n");
        exit(1);
    }
    return p;
}

static inline int within(double got, double want, double atol, double rtol) {
    return fabs(got - want) <= atol + rtol * fabs(want);
}

/* Compares count float outputs with the double reference; prints the
 * maximum absolute difference and returns 1 when all are within tolerance. */
static inline int compare_forward(const char *what, int64_t count, const float *got,
                                  const double *want, double atol, double rtol) {
    double max_diff = 0.0;
    int ok = 1;
    for (int64_t i = 0; i < count; i++) {
        double diff = fabs((double)got[i] - want[i]);
        if (diff > max_diff || isnan(diff)) max_diff = diff;
        if (!within(got[i], want[i], atol, rtol)) ok = 0;
    }
    printf("  %-44s forward max |diff| %.3e (%lld values)%s\n", what, max_diff, (long long)count,
           ok ? "" : "  FAIL");
    return ok;
}

/* The scalar loss of a double reference as a function of its parameters. */
typedef double (*loss_fn)(void *ctx);

/* Perturbs each of count entries of param (a parameter of the double
 * reference that loss reads through ctx) by +-FD_STEP, compares the central
 * difference with analytic[i]; prints the maximum difference. */
static inline int check_gradient(const char *what, double *param, int64_t count,
                                 const float *analytic, loss_fn loss, void *ctx) {
    double max_diff = 0.0, max_ref = 0.0;
    int ok = 1;
    for (int64_t i = 0; i < count; i++) {
        double saved = param[i];
        param[i] = saved + FD_STEP;
        double plus = loss(ctx);
        param[i] = saved - FD_STEP;
        double minus = loss(ctx);
        param[i] = saved;
        double numeric = (plus - minus) / (2.0 * FD_STEP);
        double diff = fabs((double)analytic[i] - numeric);
        if (diff > max_diff || isnan(diff)) max_diff = diff;
        if (fabs(numeric) > max_ref) max_ref = fabs(numeric);
        if (!within(analytic[i], numeric, GRAD_ATOL, GRAD_RTOL)) {
            if (ok) printf("    first mismatch at %lld: analytic %.8g numeric %.8g\n",
                           (long long)i, (double)analytic[i], numeric);
            ok = 0;
        }
    }
    printf("  %-44s grad    max |diff| %.3e (max |grad| %.3g, %lld values)%s\n", what, max_diff,
           max_ref, (long long)count, ok ? "" : "  FAIL");
    return ok;
}

/* sum_i r[i] * y[i]: the scalar loss whose gradient w.r.t. y is r. */
static inline double weighted_sum(int64_t count, const double *r, const double *y) {
    double s = 0.0;
    for (int64_t i = 0; i < count; i++) s += r[i] * y[i];
    return s;
}

#endif
