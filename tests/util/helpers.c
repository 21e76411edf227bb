/* Shared test helpers: paths to ../shared and the pasm binary, scratch
 * folders, and closeness checks that print the largest difference. */
#include "util/helpers.h"

#include <cJSON.h>

#include "pasm/io.h"
#include "pasm/nn.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

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

int test_run_pasm(char **output, const char *fmt, ...) {
    char args[3000], cmd[4200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    snprintf(cmd, sizeof cmd, "'%s' %s 2>&1", test_pasm_bin(), args);
    FILE *p = popen(cmd, "r");
    if (!p) fail_msg("cannot run %s", cmd);
    size_t len = 0, cap = 1 << 16;
    char *text = malloc(cap);
    for (size_t n; (n = fread(text + len, 1, cap - len - 1, p)) > 0;) {
        len += n;
        if (cap - len < 1024) text = realloc(text, cap *= 2);
    }
    text[len] = 0;
    int status = pclose(p);
    if (output) *output = text;
    else free(text);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

int test_files_equal(const char *a, const char *b) {
    FILE *fa = fopen(a, "rb"), *fb = fopen(b, "rb");
    int same = fa && fb;
    while (same) {
        int ca = fgetc(fa), cb = fgetc(fb);
        if (ca != cb) same = 0;
        if (ca == EOF || cb == EOF) break;
    }
    if (fa) fclose(fa);
    if (fb) fclose(fb);
    return same;
}

/* The item `key` of a run's summary.json round entry (-1: the last), in
 * *doc (cJSON_Delete it); NULL when absent. */
static const cJSON *summary_item(const char *run, int entry, const char *key, cJSON **doc) {
    char path[4200];
    snprintf(path, sizeof path, "%s/summary.json", run);
    unsigned char *text;
    size_t size;
    if (pasm_read_file(path, &text, &size)) fail_msg("%s: %s", path, pasm_last_error());
    *doc = cJSON_ParseWithLength((const char *)text, size);
    free(text);
    const cJSON *rows = cJSON_GetObjectItemCaseSensitive(*doc, "rounds");
    const cJSON *r = cJSON_GetArrayItem(rows, entry < 0 ? cJSON_GetArraySize(rows) - 1 : entry);
    return cJSON_GetObjectItemCaseSensitive(r, key);
}

double test_summary_value(const char *run, int entry, const char *key) {
    cJSON *o;
    const cJSON *v = summary_item(run, entry, key, &o);
    if (!cJSON_IsNumber(v)) fail_msg("%s/summary.json: entry %d has no number %s", run, entry, key);
    double x = v->valuedouble;
    cJSON_Delete(o);
    return x;
}

int test_summary_string_is(const char *run, int entry, const char *key, const char *want) {
    cJSON *o;
    const cJSON *v = summary_item(run, entry, key, &o);
    const int same = cJSON_IsString(v) && !strcmp(v->valuestring, want);
    cJSON_Delete(o);
    return same;
}

int test_cuda_device(void) {
    static int known = -1;
    if (known >= 0) return known;
    if (pasm_device_check(PASM_DEVICE_CUDA) == PASM_OK) {
        char line[256];
        printf("  GPU tests on %s\n", pasm_device_describe(PASM_DEVICE_CUDA, line, sizeof line));
        known = getenv("PASM_CUDA_EMULATE") ? 2 : 1;
        return known;
    }
    if (getenv("PASM_REQUIRE_GPU")) { /* bench/gpu-check.sh: no emulation there */
        fprintf(stderr, "PASM_REQUIRE_GPU is set but the GPU does not answer: %s\n",
                pasm_last_error());
        exit(1);
    }
#ifdef PASM_HAVE_CUDA
    printf("  no GPU here (%s): the GPU tests run on the backend's host emulation\n",
           pasm_last_error());
    setenv("PASM_CUDA_EMULATE", "1", 1);
    known = 2;
#else
    printf("  skipped: %s\n", pasm_last_error());
    known = 0;
#endif
    return known;
}

double test_rel_diff(const float *a, const float *b, int64_t n) {
    double d = 0, s = 0;
    for (int64_t i = 0; i < n; i++) {
        double e = fabs((double)a[i] - b[i]);
        if (e > d || isnan(e)) d = isnan(e) ? INFINITY : e;
        if (fabs(b[i]) > s) s = fabs(b[i]);
    }
    return d / (s > 0 ? s : 1e-30);
}

double test_cosine(const float *a, const float *b, int64_t n) {
    double ab = 0, aa = 0, bb = 0;
    for (int64_t i = 0; i < n; i++) {
        ab += (double)a[i] * b[i];
        aa += (double)a[i] * a[i];
        bb += (double)b[i] * b[i];
    }
    return aa > 0 && bb > 0 ? ab / sqrt(aa * bb) : (aa == bb ? 1 : 0);
}

int test_gradient_close(const char *label, const float *a, const float *b, int64_t n,
                        double limit, int flips) {
    const double e = test_rel_diff(a, b, n), cos = test_cosine(a, b, n);
    double dd = 0, bb = 0;
    for (int64_t i = 0; i < n; i++) {
        dd += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
        bb += (double)b[i] * b[i];
    }
    const double l2 = bb > 0 ? sqrt(dd / bb) : (dd > 0 ? INFINITY : 0);
    printf("  %-44s max|diff|/max|ref| %.3g (limit %.2g), L2 %.3g, cosine %.7f\n", label, e, limit,
           l2, cos);
    if (e <= limit) return 1;
    if (flips && e <= 0.05 && l2 <= 2e-2 && cos >= 0.9998) {
        printf("  %-44s (above the limit only where a ReLU went the other way: max <= 0.05, "
               "L2 <= 0.02, cosine >= 0.9998)\n",
               "");
        return 1;
    }
    return 0;
}

void test_randomise_net(pasm_net *net, uint64_t seed, uint64_t stream) {
    pasm_net_init(net, seed);
    pasm_rng r;
    pasm_rng_init(&r, seed, PASM_RNG_SYNTH, stream, 0);
    for (int i = 0; i < pasm_net_n_state(net); i++) {
        pasm_tensor *t = pasm_net_state(net, i);
        if (t->ndim != 1 || strncmp(t->name, "fc.", 3) == 0) continue;
        float *d = t->data;
        const int var = strstr(t->name, "running_var") != NULL;
        const int weight = strstr(t->name, ".weight") != NULL;
        for (int64_t j = 0; j < t->shape[0]; j++) {
            float u = pasm_rng_uniform(&r);
            d[j] = var ? 0.3f + 1.5f * u : weight ? 0.6f + 0.8f * u : 0.4f * (u - 0.5f);
        }
    }
}

char *test_env_set(const char *name, const char *value) {
    const char *was = getenv(name);
    char *saved = was ? strdup(was) : NULL;
    if (value) setenv(name, value, 1);
    else unsetenv(name);
    return saved;
}

void test_env_restore(const char *name, char *saved) {
    if (saved) setenv(name, saved, 1);
    else unsetenv(name);
    free(saved);
}
