/* pasm stats: the tests behind `pasm experiment`'s claims (pasm-method.md):
 * a gain is claimed only when, over at least 3 seeds, PASM beats a control
 * in a one-sided paired t-test (pairs: seeds) with p < 0.05 after Holm's
 * correction over the controls compared. Also one-sided Welch tests, the
 * Student t survival function they rest on, and a sample mean and sd.
 *
 * Nothing here allocates except pasm_holm for m > 64; no input crashes:
 * NULL arrays, n < 2 and NaNs give NaN p-values. */
#ifndef PASM_STATS_H
#define PASM_STATS_H

#ifdef __cplusplus
extern "C" {
#endif

/* One one-sided t-test's result. */
typedef struct {
    int n;            /* pairs (paired) or na + nb (Welch) */
    double mean_diff; /* mean(a - b) (paired) or mean(a) - mean(b) (Welch) */
    double t, df;     /* statistic and degrees of freedom (Welch: Welch–Satterthwaite) */
    double p;         /* one-sided p of H1: a > b; NaN when undefined */
} pasm_ttest;

/* Student's t survival function P(T > t) with df > 0 degrees of freedom (df may be fractional).
   t = +inf gives 0, -inf 1; df = +inf is the standard normal; NaN t, NaN df or df <= 0 give NaN. */
double pasm_t_sf(double t, double df);

/* One-sided paired t-test of H1: mean(a_i - b_i) > 0 over n pairs. n < 2: p NaN.
   All differences equal (zero variance): p = 0 if the difference is > 0, 1 if < 0, 0.5 if all 0
   (t = ±inf or NaN accordingly). */
pasm_ttest pasm_ttest_paired(const double *a, const double *b, int n);

/* One-sided Welch t-test of H1: mean(a) > mean(b). na or nb < 2: p NaN. Both variances 0: as
   above from the sign of the mean difference (df NaN then: Welch–Satterthwaite is 0/0). */
pasm_ttest pasm_ttest_welch(const double *a, int na, const double *b, int nb);

/* Holm's step-down adjustment of m p-values into adjusted[] (may alias p): sort ascending,
   adj_(i) = max_{j<=i} min(1, (m' - j) p_(j)) (j from 0) with m' the number of non-NaN p-values;
   NaN stays NaN. Ties keep their input order (so tied p-values get equal adjusted values). If m >
   64 and memory runs out, every adjusted value is NaN. */
void pasm_holm(const double *p, int m, double *adjusted);

/* Sample mean and standard deviation (n - 1 denominator; sd NaN for n < 2; mean NaN for
   n < 1). Either output may be NULL. */
void pasm_mean_sd(const double *x, int n, double *mean, double *sd);

#ifdef __cplusplus
}
#endif

#endif
