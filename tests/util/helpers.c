/* Shared test helpers: paths to ../shared and the pasm binary, scratch
 * folders, and closeness checks that print the largest difference. */
#include "util/helpers.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *test_shared_path(const char *rel) {
    static char buf[4096];
    const char *root = getenv("PASM_SHARED");
    snprintf(buf, sizeof buf, "%s/%s", root && *root ? root : "../shared", rel);
    return buf;
}

const char *test_pasm_bin(void) {
    const char *bin = getenv("PASM_BIN");
    return bin && *bin ? bin : "build/pasm";
}

char *test_tmpdir(char *buf, size_t len) {
    snprintf(buf, len, "/tmp/pasm-test-XXXXXX");
    if (!mkdtemp(buf)) fail_msg("mkdtemp failed");
    return buf;
}

void test_rmdir(const char *path) {
    char cmd[4200];
    if (strncmp(path, "/tmp/pasm-test-", 15) != 0) return; /* never anything else */
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", path);
    if (system(cmd) != 0) fprintf(stderr, "warning: could not remove %s\n", path);
}

double test_max_abs_diff(const float *a, const float *b, int64_t n) {
    double m = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (d > m || isnan(d)) m = isnan(d) ? INFINITY : d;
    }
    return m;
}

void test_assert_close(const char *label, const float *a, const float *b, int64_t n, double atol,
                       double rtol) {
    double worst = 0, max_abs = 0;
    int64_t worst_i = -1;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (isnan(d)) d = INFINITY;
        if (d > max_abs) max_abs = d;
        double ratio = d / (atol + rtol * fabs((double)b[i]));
        if (ratio > worst) {
            worst = ratio;
            worst_i = i;
        }
    }
    printf("  %-44s max|diff| %.3g (tolerance %.0e + %.0e*|ref|)\n", label, max_abs, atol, rtol);
    if (worst > 1.0)
        fail_msg("%s: element %lld differs: %.9g vs reference %.9g", label, (long long)worst_i,
                 (double)a[worst_i], (double)b[worst_i]);
}
