/* The statistics of pasm experiment against reference values from scipy
 * 1.17.1 (each table row or constant names the call that made it): the t
 * survival function over df 0.5..1e6 and |t| up to 1e3 to 1e-12 relative,
 * one-sided paired and Welch t-tests to 1e-9, their zero-variance and
 * undefined cases, Holm's adjustment (computed by hand in the comments) with
 * ties, NaNs, the monotonicity clamp and the cap at 1, and the sample mean
 * and sd. Every scipy t.sf value below also agrees with mpmath's betainc at
 * 40 digits to 1e-14 or better, except where a comment says otherwise. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "pasm/pasm.h"
#include "util/helpers.h"

#define SF_RTOL 1e-12  /* the accuracy pasm_t_sf promises */
#define TEST_RTOL 1e-9 /* t-tests: statistic, df and p */

static int close_rel(double got, double want, double rtol) {
    if (isnan(want)) return isnan(got);
    if (isinf(want)) return got == want;
    return fabs(got - want) <= rtol * fabs(want);
}

static void assert_rel(const char *label, double got, double want, double rtol) {
    if (!close_rel(got, want, rtol))
        fail_msg("%s: got %.17g, want %.17g (rel diff %.3g, tolerance %.1g)", label, got, want,
                 fabs(got - want) / fabs(want), rtol);
}

/* ---- pasm_t_sf ---- */

typedef struct {
    double t, df, sf;
} sf_case;

/* scipy.stats.t.sf(t, df) */
static const sf_case SF_CASES[] = {
    {2.0, 3, 0.06966298427942152},
    {-2.0, 3, 0.9303370157205785},
    {1.0, 1, 0.25000000000000006},
    {-1.0, 1, 0.75},
    {0.5, 1, 0.35241638234956674},
    {10.0, 1, 0.03172551743055357},
    {1000.0, 1, 0.0003183097800805589},
    {1.0, 2, 0.2113248654051871},
    {-3.0, 2, 0.9522670168666454},
    {4.5, 2, 0.02300095399713801},
    {2.0, 2.5, 0.07869574787898295},
    {-0.7, 2.5, 0.728297528405226},
    {12.0, 2.5, 0.0014181075150391622},
    {3.0, 0.5, 0.1836540779929717},
    {1000.0, 0.5, 0.010141454540857095},
    {1.7, 7.3, 0.0655826841765435},
    {0.01, 30, 0.49604374628658887},
    {2.0, 30, 0.027312522481491547},
    {-2.0, 30, 0.9726874775185085},
    {5.0, 30, 1.16483427335039e-05},
    {10.0, 30, 2.287625704114809e-11},
    {40.0, 30, 6.863022597203209e-28},
    /* df = 100 on both sides of where pasm_t_sf switches methods */
    {4.0, 100, 6.0761822150380886e-05},
    {8.0, 100, 1.1364324038640347e-12},
    {8.1, 100, 6.922880021167642e-13},
    {50.0, 200, 2.7102877398912223e-115},
    {0.3, 1e5, 0.3820888895951688},
    {-1.5, 1e5, 0.9331912202385847},
    {2.0, 1e5, 0.022751481728753256},
    {5.0, 1e5, 2.8713508393208397e-07},
    {30.0, 1e5, 3.68926843611138e-197}, /* 7e-14 from mpmath */
    {3.0, 1e6, 0.0013499312707109},
    {8.0, 1e6, 6.227531716601252e-16},
    /* scipy.stats.t.sf(1e-8, 1) returns 0.4999999952568131, 3e-9 off; the
     * Cauchy form scipy.stats.cauchy.sf(1e-8) agrees with mpmath. */
    {1e-8, 1, 0.49999999681690116},
    /* x = df / (df + t^2) underflows; scipy.stats.t.sf returns 0 for the
     * first, so: scipy.stats.cauchy.sf(1e300), and t.sf(1e150, 2). */
    {1e300, 1, 3.183098861837907e-301},
    {1e150, 2, 5e-301},
};

static void test_t_sf_matches_scipy(void **state) {
    (void)state;
    int n = (int)(sizeof SF_CASES / sizeof SF_CASES[0]), bad = 0;
    double worst = 0;
    for (int i = 0; i < n; i++) {
        const sf_case *c = &SF_CASES[i];
        double got = pasm_t_sf(c->t, c->df), rel = fabs(got - c->sf) / c->sf;
        if (rel > worst) worst = rel;
        if (!close_rel(got, c->sf, SF_RTOL)) {
            printf("t_sf(%g, %g) = %.17g, want %.17g (rel %.3g)\n", c->t, c->df, got, c->sf, rel);
            bad++;
        }
    }
    printf("t_sf: %d cases, max rel diff %.3g\n", n, worst);
    assert_int_equal(bad, 0);
}

static void test_t_sf_special_values(void **state) {
    (void)state;
    const double dfs[] = {0.5, 1, 2.5, 30, 1e6};
    for (int i = 0; i < 5; i++) {
        assert_true(pasm_t_sf(0.0, dfs[i]) == 0.5);
        assert_true(pasm_t_sf(-0.0, dfs[i]) == 0.5);
        assert_true(pasm_t_sf(INFINITY, dfs[i]) == 0.0);
        assert_true(pasm_t_sf(-INFINITY, dfs[i]) == 1.0);
        assert_true(isnan(pasm_t_sf(NAN, dfs[i])));
    }
    assert_true(isnan(pasm_t_sf(1.0, NAN)));
    assert_true(isnan(pasm_t_sf(1.0, 0.0)));
    assert_true(isnan(pasm_t_sf(1.0, -3.0)));
    assert_true(isnan(pasm_t_sf(INFINITY, -1.0)));
    /* df = inf is the normal: scipy.stats.norm.sf(1.5), norm.sf(-0.3) */
    assert_rel("t_sf(1.5, inf)", pasm_t_sf(1.5, INFINITY), 0.06680720126885807, SF_RTOL);
    assert_rel("t_sf(-0.3, inf)", pasm_t_sf(-0.3, INFINITY), 0.6179114221889526, SF_RTOL);
}

/* sf(t) + sf(-t) = 1 and sf falls as t grows, across both methods. */
static void test_t_sf_symmetric_and_monotone(void **state) {
    (void)state;
    const double dfs[] = {0.5, 1, 2.5, 30, 99, 100, 101, 1e4, 1e6};
    for (int i = 0; i < 9; i++) {
        double prev = 0.5;
        for (double t = 0.01; t < 200; t *= 1.05) {
            double p = pasm_t_sf(t, dfs[i]);
            assert_true(fabs(p + pasm_t_sf(-t, dfs[i]) - 1.0) <= 4e-16);
            assert_true(p <= prev);
            prev = p;
        }
    }
}

/* ---- pasm_ttest_paired ---- */

static void assert_test(const char *label, pasm_ttest r, int n, double mean_diff, double t,
                        double df, double p) {
    char buf[128];
    assert_int_equal(r.n, n);
    snprintf(buf, sizeof buf, "%s mean_diff", label);
    assert_rel(buf, r.mean_diff, mean_diff, TEST_RTOL);
    snprintf(buf, sizeof buf, "%s t", label);
    assert_rel(buf, r.t, t, TEST_RTOL);
    snprintf(buf, sizeof buf, "%s df", label);
    assert_rel(buf, r.df, df, TEST_RTOL);
    snprintf(buf, sizeof buf, "%s p", label);
    assert_rel(buf, r.p, p, TEST_RTOL);
}

/* scipy.stats.ttest_rel(a, b, alternative='greater'): statistic, df, pvalue;
 * mean_diff is numpy.mean(numpy.subtract(a, b)). */
static void test_paired_matches_scipy(void **state) {
    (void)state;
    const double a2[] = {0.71, 0.69}, b2[] = {0.70, 0.66};
    assert_test("2 pairs", pasm_ttest_paired(a2, b2, 2), 2, 0.019999999999999962,
                2.0000000000000058, 1, 0.1475836176504329);
    const double a3[] = {0.712, 0.705, 0.719}, b3[] = {0.701, 0.699, 0.703};
    assert_test("3 pairs", pasm_ttest_paired(a3, b3, 3), 3, 0.01100000000000001, 3.8105117766515297,
                2, 0.03124243347511271);
    const double a5[] = {0.81, 0.79, 0.83, 0.80, 0.82}, b5[] = {0.80, 0.80, 0.79, 0.78, 0.81};
    assert_test("5 pairs", pasm_ttest_paired(a5, b5, 5), 5, 0.013999999999999967,
                1.7232808737106562, 4, 0.07996739941871098);
    /* a worse than b: p above 1/2 */
    const double w5[] = {0.61, 0.64, 0.60, 0.62, 0.63}, v5[] = {0.63, 0.62, 0.64, 0.65, 0.61};
    assert_test("5 pairs, worse", pasm_ttest_paired(w5, v5, 5), 5, -0.010000000000000009,
                -0.7905694150420949, 4, 0.7632863173714313);
}

/* Equal differences (exact in binary). scipy.stats.ttest_rel gives t = +inf,
 * p = 0 and t = -inf, p = 1 for the first two; for all-zero differences it
 * gives NaN where pasm's API says p = 1/2. */
static void test_paired_zero_variance(void **state) {
    (void)state;
    const double up[] = {1.5, 2.5, 3.5}, base[] = {1.0, 2.0, 3.0};
    const double down[] = {1.25, 2.25, 3.25};
    assert_test("constant +0.5", pasm_ttest_paired(up, base, 3), 3, 0.5, INFINITY, 2, 0.0);
    assert_test("constant -0.25", pasm_ttest_paired(base, down, 3), 3, -0.25, -INFINITY, 2, 1.0);
    const double same[] = {0.7, 0.8, 0.9};
    assert_test("constant 0", pasm_ttest_paired(same, same, 3), 3, 0.0, NAN, 2, 0.5);
}

static void test_paired_undefined(void **state) {
    (void)state;
    const double a[] = {0.8, 0.7, NAN}, b[] = {0.6, 0.65, 0.7};
    pasm_ttest one = pasm_ttest_paired(a, b, 1);
    assert_int_equal(one.n, 1);
    assert_rel("1 pair mean_diff", one.mean_diff, 0.8 - 0.6, 1e-15);
    assert_true(isnan(one.t) && isnan(one.p));
    assert_true(isnan(pasm_ttest_paired(a, b, 0).p));
    assert_true(isnan(pasm_ttest_paired(a, b, -2).p));
    assert_true(isnan(pasm_ttest_paired(NULL, b, 2).p));
    assert_true(isnan(pasm_ttest_paired(a, NULL, 2).p));
    pasm_ttest with_nan = pasm_ttest_paired(a, b, 3);
    assert_true(isnan(with_nan.mean_diff) && isnan(with_nan.t) && isnan(with_nan.p));
}

/* ---- pasm_ttest_welch ---- */

/* scipy.stats.ttest_ind(a, b, equal_var=False, alternative='greater'):
 * statistic, df, pvalue; mean_diff is numpy.mean(a) - numpy.mean(b). */
static void test_welch_matches_scipy(void **state) {
    (void)state;
    const double a4[] = {0.712, 0.705, 0.719, 0.731}, b3[] = {0.701, 0.699, 0.703};
    assert_test("4 vs 3", pasm_ttest_welch(a4, 4, b3, 3), 7, 0.01574999999999993,
                2.7815179498365774, 3.256789788469816, 0.03138229316001276);
    const double a5[] = {0.62, 0.71, 0.58, 0.77, 0.69};
    const double b8[] = {0.641, 0.652, 0.648, 0.655, 0.639, 0.650, 0.646, 0.651};
    assert_test("5 wide vs 8 narrow", pasm_ttest_welch(a5, 5, b8, 8), 13, 0.026249999999999996,
                0.7809675418976187, 4.026852404811706, 0.23909220603487655);
    const double w3[] = {0.60, 0.61, 0.59}, v4[] = {0.64, 0.66, 0.62, 0.65};
    assert_test("3 vs 4, worse", pasm_ttest_welch(w3, 3, v4, 4), 7, -0.04249999999999998,
                -4.123105625617655, 4.849596022374146, 0.9951216296461005);
    /* a has no spread: Welch–Satterthwaite gives nb - 1 = 3 */
    const double flat3[] = {1.0, 1.0, 1.0}, s4[] = {0.5, 0.7, 0.9, 0.6};
    assert_test("flat vs 4", pasm_ttest_welch(flat3, 3, s4, 4), 7, 0.32499999999999996,
                3.8060102844992794, 3.0, 0.015937097551778544);
}

/* Both samples flat. scipy.stats.ttest_ind(equal_var=False) gives t = +inf,
 * p = 0 and t = -inf, p = 1 for the first two (and NaN for equal means,
 * where pasm's API says p = 1/2); its df there is not Welch–Satterthwaite's,
 * which is 0/0, so pasm reports NaN. */
static void test_welch_zero_variance(void **state) {
    (void)state;
    const double two2[] = {2.0, 2.0}, one3[] = {1.0, 1.0, 1.0}, three[] = {3.0, 3.0, 3.0};
    assert_test("flat 2 > flat 1", pasm_ttest_welch(two2, 2, one3, 3), 5, 1.0, INFINITY, NAN, 0.0);
    assert_test("flat 1 < flat 2", pasm_ttest_welch(one3, 3, two2, 2), 5, -1.0, -INFINITY, NAN,
                1.0);
    assert_test("flat 3 = flat 3", pasm_ttest_welch(three, 2, three, 3), 5, 0.0, NAN, NAN, 0.5);
}

static void test_welch_undefined(void **state) {
    (void)state;
    const double a[] = {0.8, 0.7, 0.75}, b[] = {0.6, 0.65, NAN};
    pasm_ttest r = pasm_ttest_welch(a, 1, b, 2);
    assert_int_equal(r.n, 3);
    assert_rel("1 vs 2 mean_diff", r.mean_diff, 0.8 - 0.625, 1e-15);
    assert_true(isnan(r.t) && isnan(r.df) && isnan(r.p));
    assert_true(isnan(pasm_ttest_welch(a, 3, b, 1).p));
    assert_true(isnan(pasm_ttest_welch(a, 0, b, 2).p));
    assert_true(isnan(pasm_ttest_welch(NULL, 3, b, 2).p));
    assert_true(isnan(pasm_ttest_welch(a, 3, NULL, 2).p));
    r = pasm_ttest_welch(a, 3, b, 3);
    assert_true(isnan(r.mean_diff) && isnan(r.t) && isnan(r.p));
}

/* ---- pasm_holm ---- */

static void assert_holm(const char *label, const double *p, int m, const double *want) {
    double adjusted[8];
    pasm_holm(p, m, adjusted);
    for (int i = 0; i < m; i++) {
        char buf[96];
        snprintf(buf, sizeof buf, "%s [%d]", label, i);
        assert_rel(buf, adjusted[i], want[i], 1e-15);
    }
}

static void test_holm_by_hand(void **state) {
    (void)state;
    /* sorted 0.01, 0.03, 0.04: 3 * 0.01 = 0.03, 2 * 0.03 = 0.06,
     * 1 * 0.04 = 0.04 -> clamped up to 0.06 by the running max */
    const double clamp[] = {0.01, 0.04, 0.03}, clamp_want[] = {0.03, 0.06, 0.06};
    assert_holm("clamp", clamp, 3, clamp_want);
    /* ties: 3 * 0.02 = 0.06, 2 * 0.02 = 0.04 -> 0.06, 1 * 0.5 = 0.5 */
    const double ties[] = {0.02, 0.5, 0.02}, ties_want[] = {0.06, 0.5, 0.06};
    assert_holm("ties", ties, 3, ties_want);
    /* NaN skipped, m' = 2: 2 * 0.01 = 0.02, 1 * 0.04 = 0.04 */
    const double with_nan[] = {0.04, NAN, 0.01}, nan_want[] = {0.04, NAN, 0.02};
    assert_holm("NaN", with_nan, 3, nan_want);
    /* cap: 3 * 0.3 = 0.9, 2 * 0.6 = 1.2 -> 1, 1 * 0.9 = 0.9 -> 1 */
    const double cap[] = {0.6, 0.3, 0.9}, cap_want[] = {1.0, 0.9, 1.0};
    assert_holm("cap", cap, 3, cap_want);
    /* four controls, 4 * 0.001 = 0.004, 3 * 0.012 = 0.036, 2 * 0.03 = 0.06,
     * 1 * 0.2 = 0.2 */
    const double four[] = {0.2, 0.001, 0.03, 0.012}, four_want[] = {0.2, 0.004, 0.06, 0.036};
    assert_holm("four", four, 4, four_want);
    const double single[] = {0.07}, single_want[] = {0.07};
    assert_holm("m = 1", single, 1, single_want);
    const double all_nan[] = {NAN, NAN}, all_nan_want[] = {NAN, NAN};
    assert_holm("all NaN", all_nan, 2, all_nan_want);
}

static void test_holm_in_place(void **state) {
    (void)state;
    double p[] = {0.01, 0.04, NAN, 0.03};
    pasm_holm(p, 4, p);
    /* m' = 3 as in "clamp" above */
    assert_rel("in place [0]", p[0], 0.03, 1e-15);
    assert_rel("in place [1]", p[1], 0.06, 1e-15);
    assert_true(isnan(p[2]));
    assert_rel("in place [3]", p[3], 0.06, 1e-15);
    double untouched = 0.5;
    pasm_holm(p, 0, &untouched);
    assert_true(untouched == 0.5);
}

/* More p-values than the stack buffer holds. p_(j) = (j + 1) / 1e4 given in
 * reverse order: (100 - j)(j + 1) / 1e4 rises to 50 * 51 / 1e4 = 0.255 at
 * j = 49 and the running max holds it there. */
static void test_holm_many(void **state) {
    (void)state;
    enum { M = 100 };
    double p[M], adjusted[M];
    for (int i = 0; i < M; i++)
        p[i] = (M - i) / 1e4;
    pasm_holm(p, M, adjusted);
    for (int i = 0; i < M; i++) {
        int j = M - 1 - i; /* rank of p[i] */
        double want = j <= 49 ? (M - j) * (j + 1) / 1e4 : 0.255;
        assert_rel("many", adjusted[i], want, 1e-14);
    }
}

/* ---- pasm_mean_sd ---- */

/* numpy.mean(x), numpy.std(x, ddof=1) */
static void test_mean_sd(void **state) {
    (void)state;
    double mean, sd;
    const double x4[] = {1.0, 2.0, 3.0, 4.0};
    pasm_mean_sd(x4, 4, &mean, &sd);
    assert_rel("mean 1..4", mean, 2.5, 1e-15);
    assert_rel("sd 1..4", sd, 1.2909944487358056, 1e-15);
    /* a large offset must not eat the spread */
    const double big[] = {1e9 + 1, 1e9 + 2, 1e9 + 3};
    pasm_mean_sd(big, 3, &mean, &sd);
    assert_rel("mean offset", mean, 1e9 + 2, 1e-15);
    assert_rel("sd offset", sd, 1.0, 1e-12);
    const double acc[] = {0.712, 0.705, 0.719};
    pasm_mean_sd(acc, 3, &mean, &sd);
    assert_rel("mean acc", mean, 0.7119999999999999, 1e-15);
    assert_rel("sd acc", sd, 0.007000000000000006, 1e-12);
    /* numpy gives sd 1.7e-17 here from the rounded mean; the corrected
     * two-pass sum gets the constant sample's 0 */
    const double tenth[] = {0.1, 0.1, 0.1};
    pasm_mean_sd(tenth, 3, &mean, &sd);
    assert_true(mean == 0.1);
    assert_true(sd == 0.0);
    pasm_mean_sd(x4, 1, &mean, &sd);
    assert_true(mean == 1.0 && isnan(sd));
    pasm_mean_sd(x4, 0, &mean, &sd);
    assert_true(isnan(mean) && isnan(sd));
    pasm_mean_sd(NULL, 3, &mean, &sd);
    assert_true(isnan(mean) && isnan(sd));
    pasm_mean_sd(x4, 4, NULL, &sd);
    assert_rel("sd alone", sd, 1.2909944487358056, 1e-15);
    pasm_mean_sd(x4, 4, &mean, NULL);
    assert_rel("mean alone", mean, 2.5, 1e-15);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_t_sf_matches_scipy),
        cmocka_unit_test(test_t_sf_special_values),
        cmocka_unit_test(test_t_sf_symmetric_and_monotone),
        cmocka_unit_test(test_paired_matches_scipy),
        cmocka_unit_test(test_paired_zero_variance),
        cmocka_unit_test(test_paired_undefined),
        cmocka_unit_test(test_welch_matches_scipy),
        cmocka_unit_test(test_welch_zero_variance),
        cmocka_unit_test(test_welch_undefined),
        cmocka_unit_test(test_holm_by_hand),
        cmocka_unit_test(test_holm_in_place),
        cmocka_unit_test(test_holm_many),
        cmocka_unit_test(test_mean_sd),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
