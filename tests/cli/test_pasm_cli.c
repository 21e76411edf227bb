/* PASM end to end on a small synthetic set (140 faces of 32x32, width 16,
 * one epoch per phase): mining with a seed reproduces its points exactly
 * and reports region hits and a gallery; a student starts from the
 * teacher's weights when asked (and not from scratch); round k mines with
 * round k-1's model (its file's sha256 is in the mined sidecar); `pasm run --rounds 2`
 * stopped between phases and killed during mining, then resumed, ends with
 * the same mined points, accuracies and checkpoint bytes as an unkilled run. */
#include <cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pasm/pasm.h"
#include "util/helpers.h"

static char dir[256], faces[320], teacher[320];
#define SMALL "--input-size 32 --width 16 --batch 32"

static int setup(void **state) {
    test_tmpdir(dir, sizeof dir);
    snprintf(faces, sizeof faces, "%s/faces", dir);
    snprintf(teacher, sizeof teacher, "%s/t.safetensors", dir);
    char *out;
    int rc = test_run_pasm(&out, "synth --out '%s' --count 140 --size 32 --seed 2 -q", faces);
    if (!rc) {
        free(out);
        rc = test_run_pasm(&out, "train --data '%s' " SMALL " --epochs 1 --seed 1 --out '%s'",
                           faces, teacher);
    }
    if (rc) fprintf(stderr, "%s", out);
    free(out);
    return rc;
}

static int teardown(void **state) {
    test_rmdir(dir);
    return 0;
}

static void test_mine_seed_reproduces(void **state) {
    char a[400], b[400], c[400], png[400], *out;
    snprintf(a, sizeof a, "%s/a.csv", dir);
    snprintf(b, sizeof b, "%s/b.csv", dir);
    snprintf(c, sizeof c, "%s/c.csv", dir);
    snprintf(png, sizeof png, "%s/g.png", dir);
    const char *de = "--attack de --de-pop 4 --de-gens 1 --attack-batch 64";
    int rc = test_run_pasm(&out, "mine --model '%s' --data '%s' %s --seed 4 --gallery '%s' --out '%s'",
                           teacher, faces, de, png, a);
    if (rc) fail_msg("mine failed: %s", out);
    assert_non_null(strstr(out, "mined 98 images"));
    assert_non_null(strstr(out, "for random points"));
    free(out);
    assert_int_equal(access(png, R_OK), 0);
    assert_int_equal(test_run_pasm(NULL, "mine --model '%s' --data '%s' %s --seed 4 --out '%s'",
                                   teacher, faces, de, b),
                     0);
    assert_true(test_files_equal(a, b));
    assert_int_equal(test_run_pasm(NULL, "mine --model '%s' --data '%s' %s --seed 5 --out '%s'",
                                   teacher, faces, de, c),
                     0);
    assert_false(test_files_equal(a, c));
    /* the same file with other settings is refused */
    assert_int_equal(test_run_pasm(NULL, "mine --model '%s' --data '%s' %s --seed 6 --out '%s'",
                                   teacher, faces, de, a),
                     2);
    pasm_mined m;
    assert_int_equal(pasm_mined_read(a, 0, &m, NULL), PASM_OK);
    assert_int_equal(m.n, 98);
    /* DE's answer is its population's best, and the clean face is not in
     * the population: on a face where all 4 x 2 candidates raise the true
     * class's probability, p after is above p before. On most it is lower. */
    int lowered = 0;
    for (int i = 0; i < m.n; i++) {
        assert_int_equal(m.index[i], i);
        assert_in_range(m.row[i], 0, 31);
        assert_in_range(m.col[i], 0, 31);
        assert_true(m.p_before[i] >= 0.0f && m.p_before[i] <= 1.0f);
        assert_true(m.p_after[i] >= 0.0f && m.p_after[i] <= 1.0f);
        lowered += m.p_after[i] <= m.p_before[i];
    }
    printf("  de lowered p(true) on %d of %d faces\n", lowered, m.n);
    assert_true(lowered >= m.n * 9 / 10);
    pasm_mined_free(&m);
}

/* conv1.weight of a checkpoint, copied. */
static float *conv1(const char *path, int64_t *n) {
    pasm_safetensors st;
    assert_int_equal(pasm_safetensors_read(path, &st), PASM_OK);
    const pasm_tensor *t = pasm_safetensors_find(&st, "conv1.weight");
    assert_non_null(t);
    *n = pasm_tensor_numel(t);
    float *w = malloc((size_t)*n * sizeof(float));
    memcpy(w, t->data, (size_t)*n * sizeof(float));
    pasm_safetensors_free(&st);
    return w;
}

/* With learning rate 0 the weights stay where they started. */
static void test_student_init(void **state) {
    char mined[400], s1[400], s2[400], *out;
    snprintf(mined, sizeof mined, "%s/g.csv", dir);
    snprintf(s1, sizeof s1, "%s/s1.safetensors", dir);
    snprintf(s2, sizeof s2, "%s/s2.safetensors", dir);
    assert_int_equal(test_run_pasm(NULL, "mine --model '%s' --data '%s' --attack grad --out '%s'",
                                   teacher, faces, mined),
                     0);
    { /* mined in bf16: another file (resuming the fp32 one is refused), mostly the same points */
        char half[400];
        snprintf(half, sizeof half, "%s/g16.csv", dir);
        assert_int_equal(test_run_pasm(NULL, "mine --model '%s' --data '%s' --attack grad "
                                             "--precision bf16 --out '%s'",
                                       teacher, faces, mined),
                         2);
        assert_int_equal(test_run_pasm(NULL, "mine --model '%s' --data '%s' --attack grad "
                                             "--precision bf16 --out '%s'",
                                       teacher, faces, half),
                         0);
        pasm_mined m32, m16;
        assert_int_equal(pasm_mined_read(mined, 0, &m32, NULL), PASM_OK);
        assert_int_equal(pasm_mined_read(half, 0, &m16, NULL), PASM_OK);
        assert_int_equal(m16.n, m32.n);
        int same = 0;
        double dp = 0;
        for (int i = 0; i < m32.n; i++) {
            same += m16.row[i] == m32.row[i] && m16.col[i] == m32.col[i];
            dp = fmax(dp, fabs((double)m16.p_before[i] - m32.p_before[i]));
        }
        printf("  grad in bf16: %d of %d points as in fp32; p(true) before within %.3g\n", same,
               m32.n, dp);
        assert_true(same * 2 > m32.n);
        assert_true(dp < 0.05);
        pasm_mined_free(&m32);
        pasm_mined_free(&m16);
    }
    const char *opts = "--mix masked --round-epochs 1 --round-lr 0 --batch 32";
    int rc = test_run_pasm(&out, "round --teacher '%s' --data '%s' --mined '%s' %s --out '%s'",
                           teacher, faces, mined, opts, s1);
    if (rc) fail_msg("round failed: %s", out);
    free(out);
    rc = test_run_pasm(&out, "round --teacher '%s' --data '%s' --mined '%s' %s "
                             "--student-init scratch --out '%s'",
                       teacher, faces, mined, opts, s2);
    if (rc) fail_msg("round failed: %s", out);
    free(out);
    int64_t n, n1, n2;
    float *t = conv1(teacher, &n), *w1 = conv1(s1, &n1), *w2 = conv1(s2, &n2);
    assert_int_equal(n, n1);
    assert_memory_equal(t, w1, (size_t)n * sizeof(float));
    assert_memory_not_equal(t, w2, (size_t)n * sizeof(float));
    free(t), free(w1), free(w2);
    /* the student is round 1 */
    pasm_safetensors st;
    assert_int_equal(pasm_safetensors_read(s1, &st), PASM_OK);
    assert_string_equal(pasm_safetensors_meta(&st, "round"), "1");
    pasm_safetensors_free(&st);
}

#define RUN_ARGS "run --data '%s' " SMALL " --epochs 1 --round-epochs 1 --attack grad " \
                 "--attack-batch 32 --rounds 2 --mix masked --seed 3 --out '%s'"

/* pasm eval OPTS of run's round r checkpoint gives the accuracy the run's
 * summary has under key. */
static void expect_eval_equal(const char *run, int r, const char *opts, const char *key) {
    char model[520], *out;
    snprintf(model, sizeof model, "%s/round%d.safetensors", run, r);
    int rc = test_run_pasm(&out, "eval --model '%s' --data '%s' %s --json", model, faces, opts);
    if (rc) fail_msg("eval %s failed: %s", opts, out);
    const char *json = strchr(out, '{'); /* after anything on stderr */
    cJSON *o = json ? cJSON_Parse(json) : NULL;
    const cJSON *acc = cJSON_GetObjectItemCaseSensitive(o, "accuracy");
    if (!cJSON_IsNumber(acc)) fail_msg("eval --json: %s", out);
    const double x = acc->valuedouble, y = test_summary_value(run, r, key);
    if (x != y) fail_msg("%s: pasm eval %s %.17g, the run %.17g", key, opts, x, y);
    cJSON_Delete(o);
    free(out);
}

/* pasm run --precision bf16: every training phase in bf16 (run.json says
 * so), its mining and evaluation are in bf16, the run ends, and the same
 * folder with fp32 is another run, refused. */
static void test_run_bf16(void **state) {
    char c[400], *out;
    snprintf(c, sizeof c, "%s/runC", dir);
    int rc = test_run_pasm(&out, "run --data '%s' " SMALL " --epochs 1 --round-epochs 1 "
                                 "--attack grad --attack-batch 32 --rounds 1 --seed 3 "
                                 "--precision bf16 --out '%s'", faces, c);
    if (rc) fail_msg("run --precision bf16 failed: %s", out);
    assert_non_null(strstr(out, "precision bf16"));
    assert_non_null(strstr(out, "round 1 evaluated in"));
    assert_non_null(strstr(strstr(out, "round 1 evaluated in"), "s (bf16)"));
    free(out);
    char json[520];
    snprintf(json, sizeof json, "%s/run.json", c);
    FILE *f = fopen(json, "r");
    assert_non_null(f);
    char text[8192];
    size_t n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[n] = 0;
    size_t k = 0; /* without white space */
    for (size_t i = 0; i < n; i++)
        if (text[i] != ' ' && text[i] != '\t' && text[i] != '\n') text[k++] = text[i];
    text[k] = 0;
    if (!strstr(text, "\"precision\":\"bf16\"")) fail_msg("run.json: %s", text);
    /* its mining ran in bf16 too, and says so */
    snprintf(json, sizeof json, "%s/round1.mined.csv", c);
    char *settings = NULL;
    assert_int_equal(pasm_mined_sidecar_read(json, &settings, NULL), PASM_OK);
    if (!strstr(settings, "\"precision\":\"bf16\"")) fail_msg("mined settings: %s", settings);
    free(settings);
    /* and its evaluation: in bf16 (the summary says so), pasm eval's in bf16 */
    for (int r = 0; r <= 1; r++)
        if (!test_summary_string_is(c, r, "eval_precision", "bf16"))
            fail_msg("summary round %d: eval_precision is not \"bf16\"", r);
    expect_eval_equal(c, 1, "--split PrivateTest --precision bf16", "test_accuracy");
    rc = test_run_pasm(&out, "run --data '%s' " SMALL " --epochs 1 --round-epochs 1 "
                             "--attack grad --attack-batch 32 --rounds 1 --seed 3 --out '%s'",
                       faces, c);
    assert_int_not_equal(rc, 0);
    assert_non_null(strstr(out, "other options"));
    free(out);
}

static void test_run_killed_and_resumed(void **state) {
    char a[400], b[400], fa[500], fb[500], *out;
    snprintf(a, sizeof a, "%s/runA", dir);
    snprintf(b, sizeof b, "%s/runB", dir);
    /* A runs in b's folder and is moved aside: the options stored in every
     * checkpoint name the folder, so both runs must use the same one */
    int rc = test_run_pasm(&out, RUN_ARGS, faces, b);
    if (rc) fail_msg("run failed: %s", out);
    free(out);
    assert_int_equal(rename(b, a), 0);
    /* B: stopped after the baseline, then killed 32 images into mining
     * (a chunk written), then resumed to the end */
    rc = test_run_pasm(&out, RUN_ARGS " --stop-after-phases 1", faces, b);
    assert_int_equal(rc, 1);
    assert_non_null(strstr(out, "stopped after 1 phases"));
    free(out);
    rc = test_run_pasm(&out, RUN_ARGS " --stop-mining-after 32", faces, b);
    assert_int_equal(rc, 1);
    assert_non_null(strstr(out, "done before, skipped"));
    free(out);
    snprintf(fb, sizeof fb, "%s/round1.mined.csv", b);
    pasm_mined m;
    assert_int_equal(pasm_mined_read(fb, 0, &m, NULL), PASM_OK);
    assert_int_equal(m.n, 32);
    pasm_mined_free(&m);
    rc = test_run_pasm(&out, RUN_ARGS, faces, b);
    if (rc) fail_msg("resume failed: %s", out);
    assert_non_null(strstr(out, "(resuming)"));
    free(out);
    const char *files[] = {"round0.safetensors", "round1.mined.csv", "round1.safetensors",
                           "round2.mined.csv", "round2.safetensors", "round2.last.safetensors"};
    for (int i = 0; i < 6; i++) {
        snprintf(fa, sizeof fa, "%s/%s", a, files[i]);
        snprintf(fb, sizeof fb, "%s/%s", b, files[i]);
        if (!test_files_equal(fa, fb)) fail_msg("%s differs after the resumed run", files[i]);
    }
    /* round k mines with round k-1's model: its sidecar names that file's sha256 */
    for (int k = 1; k <= 2; k++) {
        char mined[520], model[520], hex[65], *settings = NULL;
        snprintf(mined, sizeof mined, "%s/round%d.mined.csv", a, k);
        snprintf(model, sizeof model, "%s/round%d.safetensors", a, k - 1);
        assert_int_equal(pasm_sha256_file(model, hex), PASM_OK);
        assert_int_equal(pasm_mined_sidecar_read(mined, &settings, NULL), PASM_OK);
        cJSON *o = cJSON_Parse(settings);
        const cJSON *sha = cJSON_GetObjectItemCaseSensitive(o, "teacher_sha256");
        assert_true(cJSON_IsString(sha));
        assert_string_equal(sha->valuestring, hex);
        cJSON_Delete(o);
        free(settings);
    }
    for (int r = 0; r <= 2; r++) {
        assert_true(test_summary_value(a, r, "test_accuracy") ==
                    test_summary_value(b, r, "test_accuracy"));
        assert_true(test_summary_value(a, r, "val_accuracy_tta") ==
                    test_summary_value(b, r, "val_accuracy_tta"));
        /* each round's evaluation timed apart from its training (a number there) */
        assert_true(test_summary_value(a, r, "seconds_eval") >= 0);
    }
    /* the run's accuracies (both splits through one evaluation network) are
     * pasm eval's of the same checkpoint */
    expect_eval_equal(a, 2, "--split PrivateTest", "test_accuracy");
    expect_eval_equal(a, 2, "--split PublicTest --tta flip", "val_accuracy_tta");
    snprintf(fa, sizeof fa, "%s/summary.md", a);
    assert_int_equal(access(fa, R_OK), 0);
    /* other options in the same folder are refused */
    assert_int_equal(test_run_pasm(NULL, RUN_ARGS " --kd-alpha 0.3", faces, b), 2);
}

static int count_lines(const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    int n = 0, c;
    while ((c = fgetc(f)) != EOF) n += c == '\n';
    fclose(f);
    return n;
}

static char *mined_attack(const char *csv) {
    char *settings = NULL;
    assert_int_equal(pasm_mined_sidecar_read(csv, &settings, NULL), PASM_OK);
    cJSON *o = cJSON_Parse(settings);
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(o, "attack");
    assert_true(cJSON_IsString(a));
    char *name = strdup(a->valuestring);
    cJSON_Delete(o);
    free(settings);
    return name;
}

#define CTL_ARGS "run --data '%s' " SMALL " --epochs 1 --round-epochs 1 --attack grad " \
                 "--attack-batch 32 --rounds 1 --seed 3"

/* The controls: each shares the baseline it is given (round 0 is its
 * copy), differs from PASM in its one thing, and sees as many faces. Under
 * the sanitizers, PASM and kd-only of the five union-mix runs (one that
 * mines, one that does not): the random and cam points and the erasing are
 * checked there by their own tests (test_attack, test_batch), and all
 * five run here in the normal build. */
#if defined(__SANITIZE_ADDRESS__)
#define CONTROL_STEP 3 /* "none", "kd-only" */
#else
#define CONTROL_STEP 1
#endif

static void test_controls(void **state) {
    char base[400], ckpt[420], d[400], f[520], g[520], *out;
    snprintf(base, sizeof base, "%s/ctl-base", dir);
    int rc = test_run_pasm(&out, "run --data '%s' " SMALL " --epochs 1 --rounds 0 --seed 3 "
                                 "--out '%s'", faces, base);
    if (rc) fail_msg("baseline failed: %s", out);
    free(out);
    snprintf(ckpt, sizeof ckpt, "%s/round0.safetensors", base);
    const char *controls[] = {"none", "random-point", "cam-erasing", "kd-only", "random-erasing"};
    const char *attack[] = {"grad", "random", "cam", NULL, NULL};
    for (int i = 0; i < 5; i += CONTROL_STEP) {
        snprintf(d, sizeof d, "%s/ctl-%s", dir, controls[i]);
        rc = test_run_pasm(&out, CTL_ARGS " --control %s --baseline '%s' --out '%s'", faces,
                           controls[i], ckpt, d);
        if (rc) fail_msg("--control %s failed: %s", controls[i], out);
        /* the same number of faces in the round: 2N under union */
        assert_non_null(strstr(out, "on 196 faces an epoch (union mix"));
        assert_non_null(strstr(out, "the shared baseline"));
        free(out);
        snprintf(f, sizeof f, "%s/round0.safetensors", d);
        assert_true(test_files_equal(f, ckpt));
        snprintf(f, sizeof f, "%s/round1.mined.csv", d);
        if (attack[i]) {
            char *a = mined_attack(f);
            assert_string_equal(a, attack[i]);
            free(a);
        } else {
            assert_int_not_equal(access(f, F_OK), 0); /* nothing mined */
        }
        snprintf(f, sizeof f, "%s/round1.metrics.jsonl", d);
        assert_int_equal(count_lines(f), 1);
        assert_true(test_summary_value(d, 1, "test_accuracy") >= 0);
    }
    /* long-baseline: one network for the baseline's epoch plus the round's
     * 2N faces = 3 epochs of N, no round 0 */
    snprintf(d, sizeof d, "%s/ctl-long", dir);
    rc = test_run_pasm(&out, CTL_ARGS " --control long-baseline --out '%s'", faces, d);
    if (rc) fail_msg("long-baseline failed: %s", out);
    free(out);
    snprintf(f, sizeof f, "%s/round1.metrics.jsonl", d);
    assert_int_equal(count_lines(f), 3);
    snprintf(f, sizeof f, "%s/round0.safetensors", d);
    assert_int_not_equal(access(f, F_OK), 0);
    assert_true(test_summary_value(d, 0, "test_accuracy") >= 0); /* its one row */
    /* bad combinations */
    snprintf(d, sizeof d, "%s/ctl-bad", dir);
    assert_int_equal(test_run_pasm(&out, CTL_ARGS " --control random --out '%s'", faces, d), 2);
    assert_non_null(strstr(out, "unknown --control 'random'"));
    free(out);
    assert_int_equal(test_run_pasm(NULL, CTL_ARGS " --control long-baseline --baseline '%s' "
                                         "--out '%s'", faces, ckpt, d), 2);
    assert_int_equal(test_run_pasm(NULL, CTL_ARGS " --control random-erasing --mix replace "
                                         "--out '%s'", faces, d), 2);
    /* a baseline that changed under a run is refused on resume */
    snprintf(g, sizeof g, "%s/base-copy.safetensors", dir);
    snprintf(f, sizeof f, "cp '%s' '%s'", ckpt, g);
    assert_int_equal(system(f), 0);
    snprintf(d, sizeof d, "%s/ctl-changed", dir);
    assert_int_equal(test_run_pasm(NULL, CTL_ARGS " --control kd-only --baseline '%s' "
                                         "--stop-after-phases 1 --out '%s'", faces, g, d), 1);
    snprintf(f, sizeof f, "printf x >> '%s'", g);
    assert_int_equal(system(f), 0);
    assert_int_equal(test_run_pasm(&out, CTL_ARGS " --control kd-only --baseline '%s' --out '%s'",
                                   faces, g, d), 2);
    assert_non_null(strstr(out, "other options"));
    free(out);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_controls),
        cmocka_unit_test(test_mine_seed_reproduces),
        cmocka_unit_test(test_student_init),
        cmocka_unit_test(test_run_killed_and_resumed),
        cmocka_unit_test(test_run_bf16),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
