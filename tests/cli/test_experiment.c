/* pasm experiment end to end on synthetic faces: 2 arms (PASM and the
 * random-point control) x 2 seeds, 2 at a time. Each seed's baseline is
 * trained once and shared (both arms' round 0 are its bytes); the table's
 * means and the tests' p-values are those of the runs' own summaries; a
 * second invocation reuses every finished run and writes the same tables;
 * a bad plan is refused with a message naming the file. */
#include <cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pasm/pasm.h"
#include "pasm/stats.h"
#include "util/helpers.h"

static char dir[256], faces[320];

static int setup(void **state) {
    test_tmpdir(dir, sizeof dir);
    snprintf(faces, sizeof faces, "%s/faces", dir);
    char *out;
    int rc = test_run_pasm(&out, "synth --out '%s' --count 140 --size 32 --seed 2 -q", faces);
    if (rc) fprintf(stderr, "%s", out);
    free(out);
    return rc;
}

static int teardown(void **state) {
    test_rmdir(dir);
    return 0;
}

static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static char *read_text(const char *path) {
    unsigned char *data;
    size_t size;
    assert_int_equal(pasm_read_file(path, &data, &size), PASM_OK);
    char *s = realloc(data, size + 1);
    s[size] = 0;
    return s;
}

static void test_two_arms_two_seeds(void **state) {
    char plan[400], out_dir[400], path[600], other[600], *out;
    snprintf(plan, sizeof plan, "%s/plan.json", dir);
    snprintf(out_dir, sizeof out_dir, "%s/exp", dir);
    char text[1024];
    snprintf(text, sizeof text,
             "{\"seeds\": [4, 9],\n"
             " \"options\": {\"data\": \"%s\", \"input-size\": 32, \"width\": 16, \"batch\": 32,\n"
             "             \"epochs\": 1, \"rounds\": 1, \"round-epochs\": 1, \"attack\": \"grad\",\n"
             "             \"attack-batch\": 32, \"mix\": \"masked\", \"no-flip\": false},\n"
             " \"arms\": [{\"name\": \"pasm\", \"options\": {\"kd-alpha\": 0.4}},\n"
             "          {\"name\": \"rp\", \"control\": \"random-point\",\n"
             "           \"options\": {\"kd-alpha\": 0.4}}]}\n",
             faces);
    write_text(plan, text);
    int rc = test_run_pasm(&out, "experiment --plan '%s' --out '%s' --jobs 2", plan, out_dir);
    if (rc) fail_msg("experiment failed: %s", out);
    assert_non_null(strstr(out, "2 arms x 2 seeds, 2 baselines, 6 runs"));
    free(out);
    /* shared baselines: one per seed, both arms' round 0 are its bytes */
    const char *seeds[] = {"4", "9"};
    double pasm_acc[2], rp_acc[2];
    for (int s = 0; s < 2; s++) {
        char base[600];
        snprintf(base, sizeof base, "%s/baselines/seed%s/round0.safetensors", out_dir, seeds[s]);
        assert_int_equal(access(base, R_OK), 0);
        for (int a = 0; a < 2; a++) {
            snprintf(path, sizeof path, "%s/%s/seed%s/round0.safetensors", out_dir,
                     a ? "rp" : "pasm", seeds[s]);
            assert_true(test_files_equal(path, base));
        }
        snprintf(path, sizeof path, "%s/pasm/seed%s", out_dir, seeds[s]);
        pasm_acc[s] = test_summary_value(path, -1, "test_accuracy");
        snprintf(path, sizeof path, "%s/rp/seed%s", out_dir, seeds[s]);
        rp_acc[s] = test_summary_value(path, -1, "test_accuracy");
        /* the arm's options reached its run, the control its mining */
        snprintf(path, sizeof path, "%s/rp/seed%s/run.json", out_dir, seeds[s]);
        char *run = read_text(path);
        cJSON *o = cJSON_Parse(run);
        free(run);
        const cJSON *args = cJSON_GetObjectItemCaseSensitive(o, "args");
        const cJSON *kd = cJSON_GetObjectItemCaseSensitive(args, "kd_alpha");
        const cJSON *ctl = cJSON_GetObjectItemCaseSensitive(args, "control");
        assert_true(cJSON_IsNumber(kd) && fabs(kd->valuedouble - 0.4) < 1e-6);
        assert_true(cJSON_IsString(ctl) && !strcmp(ctl->valuestring, "random-point"));
        cJSON_Delete(o);
    }
    /* the table: PASM's round-1 PrivateTest mean over seeds */
    snprintf(path, sizeof path, "%s/table.csv", out_dir);
    char *csv = read_text(path);
    double mean = (pasm_acc[0] + pasm_acc[1]) / 2;
    char want[128];
    snprintf(want, sizeof want, "pasm,none,1,2,");
    char *row = strstr(csv, want);
    assert_non_null(row);
    double v_mean, v_sd, t_mean;
    assert_int_equal(sscanf(row + strlen(want), "%lf,%lf,%lf", &v_mean, &v_sd, &t_mean), 3);
    assert_true(fabs(t_mean - mean) < 1e-6);
    assert_non_null(strstr(csv, "rp,random-point,0,2,"));
    assert_non_null(strstr(csv, "rp,random-point,1,2,"));
    free(csv);
    /* the tests: paired over the 2 seeds, p as pasm_ttest_paired gives it */
    snprintf(path, sizeof path, "%s/tests.csv", out_dir);
    char *tests = read_text(path);
    row = strstr(tests, "pasm,rp,random-point,2,");
    assert_non_null(row);
    pasm_ttest t = pasm_ttest_paired(pasm_acc, rp_acc, 2);
    double diff;
    assert_int_equal(sscanf(row + strlen("pasm,rp,random-point,2,"), "%lf", &diff), 1);
    assert_true(fabs(diff - t.mean_diff) < 1e-6);
    assert_non_null(strstr(row, ",0\n")); /* no gain claimed with 2 seeds */
    free(tests);
    snprintf(path, sizeof path, "%s/table.md", out_dir);
    char *md = read_text(path);
    assert_non_null(strstr(md, "| pasm | rp | 2 |"));
    assert_non_null(strstr(md, "fewer than 3 seeds"));
    /* again: every run reused (each phase skipped), the same tables */
    rc = test_run_pasm(&out, "experiment --plan '%s' --out '%s'", plan, out_dir);
    if (rc) fail_msg("second invocation failed: %s", out);
    free(out);
    snprintf(other, sizeof other, "%s/table.md", out_dir);
    char *md2 = read_text(other);
    assert_string_equal(md, md2);
    free(md);
    /* --tables-only: the same tables, no run started (no log grows) */
    snprintf(path, sizeof path, "%s/logs/rp_seed9.log", out_dir);
    char *before = read_text(path);
    rc = test_run_pasm(&out, "experiment --plan '%s' --out '%s' --tables-only", plan, out_dir);
    if (rc) fail_msg("--tables-only failed: %s", out);
    assert_null(strstr(out, "started"));
    free(out);
    char *after = read_text(path), *md3 = read_text(other);
    assert_string_equal(before, after);
    assert_string_equal(md2, md3);
    free(before), free(after), free(md3);
    snprintf(path, sizeof path, "%s/logs/pasm_seed4.log", out_dir);
    char *log = read_text(path);
    assert_non_null(strstr(log, "phase round1: done before, skipped"));
    free(log);
    free(md2);
}

static void test_bad_plans(void **state) {
    char plan[400], out_dir[400], *out;
    snprintf(plan, sizeof plan, "%s/bad.json", dir);
    snprintf(out_dir, sizeof out_dir, "%s/bad", dir);
    const char *cases[][2] = {
        {"{\"seeds\": [1], \"arms\": [{\"name\": \"a\"}]}", "has no \"data\" option"},
        {"{\"seeds\": [1, 1], \"options\": {\"data\": \"x\"}, \"arms\": [{\"name\": \"a\"}]}",
         "a seed appears twice"},
        {"{\"seeds\": [1], \"options\": {\"data\": \"x\", \"seed\": 3}, \"arms\": [{\"name\": "
         "\"a\"}]}",
         "sets \"seed\""},
        {"{\"seeds\": [1], \"options\": {\"data\": \"x\"}, \"arms\": [{\"name\": \"a b\"}]}",
         "use letters"},
        {"{\"seeds\": [1], \"options\": {\"data\": \"x\"}, \"arms\": [{\"name\": \"a\", "
         "\"control\": \"magic\"}]}",
         "unknown control \"magic\""},
        {"{\"seeds\": [1], \"options\": {\"data\": \"x\"}, \"arms\": [{\"name\": \"a\"}, "
         "{\"name\": \"a\"}]}",
         "two arms are called \"a\""},
        {"{\"seeds\": [1], \"options\": {\"data\": [1]}, \"arms\": [{\"name\": \"a\"}]}",
         "must be a string, a number or true/false"},
        {"{\"seeds\": [1], \"arms\": [], \"extra\": 1}", "\"arms\" must be"},
        {"{\"seeds\": [1.5], \"arms\": []}", "not a whole number"},
        {"[1, 2]", "not a JSON object"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        write_text(plan, cases[i][0]);
        int rc = test_run_pasm(&out, "experiment --plan '%s' --out '%s'", plan, out_dir);
        if (rc == 0 || !strstr(out, cases[i][1]) || !strstr(out, plan))
            fail_msg("plan %s: exit %d, output: %s", cases[i][0], rc, out);
        free(out);
    }
    assert_int_equal(test_run_pasm(NULL, "experiment --plan '%s/none.json' --out '%s'", dir,
                                   out_dir),
                     1);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_plans),
        cmocka_unit_test(test_two_arms_two_seeds),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
