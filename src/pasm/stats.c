/* The statistics of `pasm experiment` (pasm-method.md): Student's t survival
 * function through the regularised incomplete beta function I_x(a, b),
 * one-sided paired and Welch t-tests, Holm's step-down adjustment, and a
 * sample mean and sd.
 *
 * I_x(a, b) is the continued fraction of Numerical Recipes' betacf evaluated
 * with the modified Lentz method, on whichever of I_x(a, b) and
 * 1 - I_{1-x}(b, a) converges fast. The t distribution hands it x and 1 - x
 * and their logarithms computed separately, so neither t near 0 (x near 1)
 * nor huge |t| (x underflowing) loses digits; log B(a, b) uses Stirling's
 * series for large arguments, where lgamma(a) - lgamma(a + b) would cancel. */
#include <float.h>
#include <math.h>
#include <stdlib.h>

#include "pasm/stats.h"

#define LOG_SQRT_2PI 0.91893853320467274178 /* log(sqrt(2 pi)) */
#define STIRLING_MIN 15.0                   /* from here the 5-term series is exact to ~2e-16 */
#define CF_EPS 3e-16                        /* about 1.5 ulp of 1: a tighter test may never pass */
#define CF_TINY 1e-300
#define CF_MAX_ITER 1000000
#define HOLM_STACK 64
#define BGRAT_TERMS 30
#define BGRAT_MIN_A 50.0     /* df >= 100: the expansion is exact to ~1e-16 */
#define BGRAT_MIN_LOG_X -0.5 /* x >= 0.61: near 1, where the fraction loses digits */

/* lgamma(z) - ((z - 1/2) log z - z + log sqrt(2 pi)), for z >= STIRLING_MIN. */
static double stirling_error(double z) {
    double r = 1.0 / z, r2 = r * r;
    return r * (1.0 / 12 - r2 * (1.0 / 360 - r2 * (1.0 / 1260 - r2 * (1.0 / 1680 - r2 / 1188))));
}

/* log B(a, b). With a large, lgamma(a) - lgamma(a + b) is the difference of
 * two numbers near a log a; Stirling's form leaves only log1p terms. */
static double log_beta(double a, double b) {
    if (a < b) {
        double tmp = a;
        a = b;
        b = tmp;
    }
    if (a < STIRLING_MIN) return lgamma(a) + lgamma(b) - lgamma(a + b);
    double corr = stirling_error(a) - stirling_error(a + b);
    if (b < STIRLING_MIN) return lgamma(b) - (a - 0.5) * log1p(b / a) - b * log(a + b) + b + corr;
    return LOG_SQRT_2PI - 0.5 * log(b) - (a - 0.5) * log1p(b / a) - b * log1p(a / b) + corr +
           stirling_error(b);
}

/* I_x(a, b) by its continued fraction (fast for x < (a + 1) / (a + b + 2)).
 * y = 1 - x; log_x, log_y their logarithms. NaN if it does not converge. */
static double ibeta_cf(double a, double b, double x, double log_x, double log_y) {
    double front = exp(a * log_x + b * log_y - log_beta(a, b)) / a;
    if (front == 0.0) return 0.0;
    /* Modified Lentz: f = h, with c and d the ratios of successive numerators
     * and denominators, each kept away from 0. */
    double c = 1.0, d = 1.0 - (a + b) * x / (a + 1.0);
    if (fabs(d) < CF_TINY) d = CF_TINY;
    d = 1.0 / d;
    double h = d;
    for (int m = 1; m <= CF_MAX_ITER; m++) {
        double m2 = 2.0 * m;
        for (int odd = 0; odd < 2; odd++) {
            double coef = odd ? -(a + m) * (a + b + m) * x / ((a + m2) * (a + m2 + 1.0))
                              : m * (b - m) * x / ((a + m2 - 1.0) * (a + m2));
            d = 1.0 + coef * d;
            if (fabs(d) < CF_TINY) d = CF_TINY;
            c = 1.0 + coef / c;
            if (fabs(c) < CF_TINY) c = CF_TINY;
            d = 1.0 / d;
            h *= d * c;
            if (odd && fabs(d * c - 1.0) < CF_EPS) return front * h;
        }
    }
    return NAN;
}

/* I_x(a, 1/2) for large a, by DiDonato and Morris's asymptotic expansion
 * (ACM TOMS 18(3), 1992, "BGRAT", eq. 9 with b = 1/2): with T = a - 1/4 and
 * u = -T log x, I = sqrt(-log x) / B(a, 1/2) * sum_n p_n K_n where
 * K_n = e^-u J_n, K_0 = Gamma(1/2, u) u^-1/2 = sqrt(pi) erfc(sqrt u) / sqrt u
 * and K_n = ((2n - 3/2)(2n - 1/2) K_{n-1} + (u + 2n - 1/2) (log x / 2)^(2n-2)
 * e^-u) / (4 T^2). The continued fraction would need x itself, whose
 * rounding near 1 the result amplifies about a-fold; this needs only log x,
 * which t_sf gets from 1 - x. Each term gains about 1 / (4 T^2). */
static double ibeta_large_a_half(double a, double log_x) {
    const double b = 0.5;
    if (!(log_x < 0.0)) return 1.0;
    double big_t = a + (b - 1.0) / 2.0, u = -big_t * log_x;
    double e_minus_u = exp(-u), four_t2 = 4.0 * big_t * big_t;
    double half_log_sq = 0.25 * log_x * log_x, power = 1.0;
    double k = sqrt(M_PI) * erfc(sqrt(u)) / sqrt(u);
    double p[BGRAT_TERMS], inv_odd_fact[BGRAT_TERMS]; /* p_n; 1 / (2n + 1)! */
    p[0] = 1.0;
    inv_odd_fact[0] = 1.0;
    double sum = k;
    for (int n = 1; n < BGRAT_TERMS; n++) {
        inv_odd_fact[n] = inv_odd_fact[n - 1] / ((2.0 * n) * (2.0 * n + 1.0));
        /* p_n = (b - 1) / (2n+1)! + (1/n) sum_{m<n} (m b - n) p_{n-m} / (2m+1)! */
        double acc = 0.0;
        for (int m = 1; m < n; m++)
            acc += (m * b - n) * p[n - m] * inv_odd_fact[m];
        p[n] = acc / n + (b - 1.0) * inv_odd_fact[n];
        k = ((b + 2 * n - 2) * (b + 2 * n - 1) * k + (u + b + 2 * n - 1) * power * e_minus_u) /
            four_t2;
        power *= half_log_sq;
        double term = p[n] * k;
        sum += term;
        if (fabs(term) <= 0.5 * DBL_EPSILON * fabs(sum)) break;
    }
    return sqrt(-log_x) * exp(-log_beta(a, b)) * sum;
}

/* I_x(a, b), given x, y = 1 - x and their logarithms. */
static double ibeta(double a, double b, double x, double y, double log_x, double log_y) {
    /* x itself may have underflowed to 0 while log x is still finite. */
    if (log_x == -INFINITY) return 0.0;
    if (log_y == -INFINITY) return 1.0;
    if (y < (b + 1.0) / (a + b + 2.0)) return 1.0 - ibeta_cf(b, a, y, log_y, log_x);
    return ibeta_cf(a, b, x, log_x, log_y);
}

double pasm_t_sf(double t, double df) {
    if (isnan(t) || isnan(df) || !(df > 0.0)) return NAN;
    if (t == 0.0) return 0.5;
    if (isinf(t)) return t > 0 ? 0.0 : 1.0;
    if (isinf(df)) return 0.5 * erfc(t / sqrt(2.0));
    /* x = df / (df + t^2) = 1 / (1 + s), y = s / (1 + s) with s = t^2 / df;
     * past s = 1 work with u = 1 / s so that huge |t| neither overflows nor
     * rounds x to 0 inside the logarithm. */
    double x, y, log_x, log_y, abs_t = fabs(t);
    double r = abs_t / sqrt(df);
    if (r <= 1.0) {
        double s = r * r;
        x = 1.0 / (1.0 + s);
        y = s / (1.0 + s);
        log_x = -log1p(s);
        log_y = 2.0 * log(r) - log1p(s);
    } else {
        double q = 1.0 / r, u = q * q;
        x = u / (1.0 + u);
        y = 1.0 / (1.0 + u);
        log_x = 2.0 * (0.5 * log(df) - log(abs_t)) - log1p(u);
        log_y = -log1p(u);
    }
    /* P(T > |t|) = I_x(df / 2, 1 / 2) / 2 */
    double a = 0.5 * df;
    int expansion = a >= BGRAT_MIN_A && log_x >= BGRAT_MIN_LOG_X;
    double tail =
        0.5 * (expansion ? ibeta_large_a_half(a, log_x) : ibeta(a, 0.5, x, y, log_x, log_y));
    return t > 0 ? tail : 1.0 - tail;
}

void pasm_mean_sd(const double *x, int n, double *mean, double *sd) {
    double m = NAN, s = NAN;
    if (x && n >= 1) {
        double sum = 0.0;
        for (int i = 0; i < n; i++)
            sum += x[i];
        m = sum / n;
        /* Second pass: squared deviations, and the sum of deviations that
         * corrects the mean's rounding. */
        double dev = 0.0, sq = 0.0;
        for (int i = 0; i < n; i++) {
            dev += x[i] - m;
            sq += (x[i] - m) * (x[i] - m);
        }
        if (n >= 2) s = sqrt(fmax(0.0, (sq - dev * dev / n) / (n - 1)));
        m += dev / n;
    }
    if (mean) *mean = m;
    if (sd) *sd = s;
}

/* The p-value when the spread is exactly 0: the sign of the difference
 * decides it; t is +-inf, or NaN when the difference is 0. */
static void degenerate(pasm_ttest *r) {
    if (r->mean_diff > 0)
        r->t = INFINITY, r->p = 0.0;
    else if (r->mean_diff < 0)
        r->t = -INFINITY, r->p = 1.0;
    else
        r->t = NAN, r->p = 0.5;
}

static int all_equal(const double *x, int n) {
    for (int i = 1; i < n; i++)
        if (!(x[i] == x[0])) return 0;
    return 1;
}

pasm_ttest pasm_ttest_paired(const double *a, const double *b, int n) {
    pasm_ttest r = {.n = n, .mean_diff = NAN, .t = NAN, .df = NAN, .p = NAN};
    if (!a || !b || n < 1) return r;
    /* Differences in place would need a buffer; two passes over a - b need none. */
    double sum = 0.0;
    int equal = 1;
    for (int i = 0; i < n; i++) {
        sum += a[i] - b[i];
        if (!(a[i] - b[i] == a[0] - b[0])) equal = 0;
    }
    double mean = sum / n, dev = 0.0, sq = 0.0;
    for (int i = 0; i < n; i++) {
        double e = (a[i] - b[i]) - mean;
        dev += e;
        sq += e * e;
    }
    r.mean_diff = equal ? a[0] - b[0] : mean + dev / n;
    if (n < 2) return r;
    r.df = n - 1;
    if (equal) {
        degenerate(&r);
        return r;
    }
    double sd = sqrt(fmax(0.0, (sq - dev * dev / n) / (n - 1)));
    r.t = r.mean_diff / (sd / sqrt((double)n));
    r.p = pasm_t_sf(r.t, r.df);
    return r;
}

pasm_ttest pasm_ttest_welch(const double *a, int na, const double *b, int nb) {
    pasm_ttest r = {.n = na + nb, .mean_diff = NAN, .t = NAN, .df = NAN, .p = NAN};
    if (!a || !b || na < 1 || nb < 1) return r;
    double mean_a, sd_a, mean_b, sd_b;
    pasm_mean_sd(a, na, &mean_a, &sd_a);
    pasm_mean_sd(b, nb, &mean_b, &sd_b);
    int flat = all_equal(a, na) && all_equal(b, nb);
    r.mean_diff = flat ? a[0] - b[0] : mean_a - mean_b;
    if (na < 2 || nb < 2) return r;
    if (flat) {
        degenerate(&r);
        return r;
    }
    double va = sd_a * sd_a / na, vb = sd_b * sd_b / nb; /* squared standard errors */
    r.t = r.mean_diff / sqrt(va + vb);
    r.df = (va + vb) * (va + vb) / (va * va / (na - 1) + vb * vb / (nb - 1));
    r.p = pasm_t_sf(r.t, r.df);
    return r;
}

typedef struct {
    double p;
    int index;
} ranked_p;

/* Ascending p, ties by input index, so the adjustment does not depend on
 * qsort's order among equals. */
static int ranked_cmp(const void *x, const void *y) {
    const ranked_p *u = x, *v = y;
    if (u->p != v->p) return u->p < v->p ? -1 : 1;
    return (u->index > v->index) - (u->index < v->index);
}

void pasm_holm(const double *p, int m, double *adjusted) {
    if (!p || !adjusted || m <= 0) return;
    ranked_p stack[HOLM_STACK], *ranked = stack;
    if (m > HOLM_STACK && !(ranked = malloc((size_t)m * sizeof *ranked))) {
        for (int i = 0; i < m; i++)
            adjusted[i] = NAN;
        return;
    }
    /* Copy the non-NaN p-values out first: adjusted may alias p. */
    int valid = 0;
    for (int i = 0; i < m; i++)
        if (!isnan(p[i])) ranked[valid++] = (ranked_p){p[i], i};
    for (int i = 0; i < m; i++)
        if (isnan(p[i])) adjusted[i] = NAN;
    qsort(ranked, (size_t)valid, sizeof *ranked, ranked_cmp);
    /* The running max makes the adjusted values monotone in the raw ones:
     * a hypothesis is rejected only if all smaller ones are. */
    double running = 0.0;
    for (int j = 0; j < valid; j++) {
        double step = fmin(1.0, (double)(valid - j) * ranked[j].p);
        running = j == 0 ? step : fmax(running, step);
        adjusted[ranked[j].index] = running;
    }
    if (ranked != stack) free(ranked);
}
