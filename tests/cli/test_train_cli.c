/* pasm train end to end on a small synthetic set: the same seed gives the
 * same bytes; a run stopped after an epoch, or by SIGINT in the middle of
 * one, resumes to the bytes of an uninterrupted run; eval and predict read
 * what train wrote; bad options and a diverging loss fail cleanly without
 * replacing a good checkpoint. */
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "pasm/pasm.h"
#include "util/helpers.h"

static char dir[256], faces[320];
/* A small, fast configuration: 32x32 inputs, width 16, 3 epochs (2 under
 * the sanitizers, where a run costs three times as much: a resume after
 * epoch 1 still has an epoch to go). */
#if defined(__SANITIZE_ADDRESS__)
#define EPOCHS 2
#else
#define EPOCHS 3
#endif
#define STR_(x) #x
#define STR(x) STR_(x)
#define TRAIN_ARGS "train --data '%s' --input-size 32 --width 16 --epochs " STR(EPOCHS) \
                   " --batch 16 --seed 3"

static int setup(void **state) {
    test_tmpdir(dir, sizeof dir);
    snprintf(faces, sizeof faces, "%s/faces", dir);
    char *out;
    int rc = test_run_pasm(&out, "synth --out '%s' --count 280 --size 32 --seed 2", faces);
    if (rc) fprintf(stderr, "%s", out);
    free(out);
    return rc;
}

static int teardown(void **state) {
    test_rmdir(dir);
    return 0;
}

static void path(char *buf, size_t len, const char *name) { snprintf(buf, len, "%s/%s", dir, name); }

static void copy(const char *from, const char *to) {
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "cp '%s' '%s'", from, to);
    assert_int_equal(system(cmd), 0);
}

/* The reference run: writes m.safetensors and m.last.safetensors, copied to
 * ref.safetensors and ref.last.safetensors. */
static void reference_run(void) {
    char m[400], ref[400];
    path(m, sizeof m, "m.safetensors");
    char *out;
    int rc = test_run_pasm(&out, TRAIN_ARGS " --out '%s'", faces, m);
    if (rc) fail_msg("pasm train failed (%d): %s", rc, out);
    assert_non_null(strstr(out, "done: " STR(EPOCHS) " epochs"));
    free(out);
    path(ref, sizeof ref, "ref.safetensors");
    copy(m, ref);
    path(ref, sizeof ref, "ref.last.safetensors");
    path(m, sizeof m, "m.last.safetensors");
    copy(m, ref);
}

static void assert_same_as_reference(void) {
    char a[400], b[400];
    path(a, sizeof a, "m.safetensors");
    path(b, sizeof b, "ref.safetensors");
    assert_true(test_files_equal(a, b));
    path(a, sizeof a, "m.last.safetensors");
    path(b, sizeof b, "ref.last.safetensors");
    assert_true(test_files_equal(a, b));
}

static void test_same_seed_same_bytes(void **state) {
    reference_run();
    char m[400], metrics[400];
    path(m, sizeof m, "m.safetensors");
    path(metrics, sizeof metrics, "m.metrics.jsonl");
    char *out;
    assert_int_equal(test_run_pasm(&out, TRAIN_ARGS " --out '%s'", faces, m), 0);
    free(out);
    assert_same_as_reference();
    /* a metrics line per epoch */
    FILE *f = fopen(metrics, "r");
    assert_non_null(f);
    int lines = 0;
    for (int c; (c = fgetc(f)) != EOF;) lines += c == '\n';
    fclose(f);
    assert_int_equal(lines, EPOCHS);
    /* another seed trains another network */
    assert_int_equal(test_run_pasm(&out, TRAIN_ARGS " --out '%s' --seed 4", faces, m), 0);
    free(out);
    char ref[400];
    path(ref, sizeof ref, "ref.last.safetensors");
    path(m, sizeof m, "m.last.safetensors");
    assert_false(test_files_equal(m, ref));
}

static void test_resume_after_an_epoch(void **state) {
    char m[400];
    path(m, sizeof m, "m.safetensors");
    char *out;
    int rc = test_run_pasm(&out, TRAIN_ARGS " --out '%s' --stop-after-epochs 1", faces, m);
    assert_int_equal(rc, 1);
    assert_non_null(strstr(out, "--resume"));
    free(out);
    rc = test_run_pasm(&out, "train --resume '%s'", m);
    if (rc) fail_msg("resume failed (%d): %s", rc, out);
    free(out);
    assert_same_as_reference();
}

/* SIGINT during the first epoch: the step finishes, a resumable state is
 * written, the exit code is 1, and resuming ends with the same bytes. */
static void test_sigint_mid_epoch(void **state) {
    char m[400], metrics[400], log[400];
    path(m, sizeof m, "m.safetensors");
    path(metrics, sizeof metrics, "m.metrics.jsonl");
    path(log, sizeof log, "sigint.log");
    unlink(metrics);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        FILE *f = freopen(log, "w", stdout);
        if (!f || !freopen(log, "a", stderr)) _exit(99);
        execl(test_pasm_bin(), "pasm", "train", "--data", faces, "--input-size", "32", "--width",
              "16", "--epochs", STR(EPOCHS), "--batch", "16", "--seed", "3", "--out", m, (char *)NULL);
        _exit(98);
    }
    /* the metrics file appears when training starts (after loading) */
    struct stat sb;
    for (int i = 0; i < 6000 && stat(metrics, &sb) != 0; i++) usleep(5000);
    kill(pid, SIGINT);
    int status;
    waitpid(pid, &status, 0);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 1);
    char state_path[400];
    path(state_path, sizeof state_path, "m.state.safetensors");
    assert_int_equal(stat(state_path, &sb), 0);
    char *out;
    int rc = test_run_pasm(&out, "train --resume '%s'", m);
    if (rc) fail_msg("resume failed (%d): %s", rc, out);
    free(out);
    assert_same_as_reference();
}

static void test_eval_and_predict(void **state) {
    char m[400], *out;
    path(m, sizeof m, "ref.safetensors");
    assert_int_equal(test_run_pasm(&out, "eval --model '%s' --data '%s' --split test --json", m,
                                   faces),
                     0);
    assert_non_null(strstr(out, "\"accuracy\":"));
    assert_non_null(strstr(out, "\"confusion\":[["));
    assert_non_null(strstr(out, "\"count\":42"));
    free(out);
    assert_int_equal(test_run_pasm(&out, "predict --model '%s' --data '%s' --split test --json",
                                   m, faces),
                     0);
    int lines = 0;
    for (char *p = out; *p; p++) lines += *p == '\n';
    assert_int_equal(lines, 42);
    assert_non_null(strstr(out, "\"probabilities\":["));
    assert_non_null(strstr(out, "\"path\":"));
    free(out);
    /* bf16 inference of the fp32-trained model: the same faces, an accuracy
     * within a few faces of fp32's */
    double acc[2];
    const char *prec[2] = {"fp32", "bf16"};
    for (int i = 0; i < 2; i++) {
        assert_int_equal(test_run_pasm(&out, "eval --model '%s' --data '%s' --split test --json "
                                             "--precision %s", m, faces, prec[i]),
                         0);
        const char *a = strstr(out, "\"accuracy\":");
        assert_non_null(a);
        acc[i] = strtod(a + 11, NULL);
        assert_non_null(strstr(out, "\"count\":42"));
        free(out);
    }
    printf("eval accuracy fp32 %.4f, bf16 %.4f\n", acc[0], acc[1]);
    assert_true(fabs(acc[0] - acc[1]) <= 3.0 / 42 + 1e-9);
    assert_int_equal(test_run_pasm(&out, "predict --model '%s' --data '%s' --split test "
                                         "--precision bf16", m, faces),
                     0);
    free(out);
}

static void test_bad_options(void **state) {
    char m[400], *out;
    path(m, sizeof m, "bad.safetensors");
    assert_int_equal(test_run_pasm(&out, "train --data '%s' --out '%s' --frobnicate", faces, m), 2);
    free(out);
    assert_int_equal(test_run_pasm(&out, "train --data '%s' --out '%s' --epochs ten", faces, m), 2);
    assert_non_null(strstr(out, "--epochs"));
    free(out);
    assert_int_equal(test_run_pasm(&out, "train --data '%s' --out '%s' --schedule step", faces, m),
                     2);
    assert_non_null(strstr(out, "step"));
    free(out);
    assert_int_equal(test_run_pasm(&out, "train --out '%s'", m), 2);
    assert_non_null(strstr(out, "--data"));
    free(out);
    assert_int_equal(test_run_pasm(&out, "train --data '%s/nothing-here.csv' --out '%s'", dir, m),
                     1);
    assert_non_null(strstr(out, "nothing-here.csv"));
    free(out);
    assert_int_equal(test_run_pasm(&out, "train --resume '%s/none.safetensors'", dir), 1);
    assert_non_null(strstr(out, "none.state.safetensors"));
    free(out);
}

/* --precision bf16: announced, different bytes from fp32's run, the same
 * bytes again with the same seed, and kept by --resume (a resumed run that
 * fell back to fp32 would end with other bytes). */
static void test_bf16_precision(void **state) {
    char m[400], b1[400], b1_last[400], ref[400], *out;
    path(m, sizeof m, "b.safetensors");
    path(b1, sizeof b1, "b1.safetensors");
    path(b1_last, sizeof b1_last, "b.last.safetensors");
    path(ref, sizeof ref, "ref.safetensors");
    int rc = test_run_pasm(&out, TRAIN_ARGS " --out '%s' --precision bf16", faces, m);
    if (rc) fail_msg("pasm train --precision bf16 failed (%d): %s", rc, out);
    assert_non_null(strstr(out, "precision bf16"));
    assert_non_null(strstr(out, "done: " STR(EPOCHS) " epochs"));
    free(out);
    assert_false(test_files_equal(m, ref));
    copy(m, b1);
    path(b1, sizeof b1, "b1.last.safetensors");
    copy(b1_last, b1);
    rc = test_run_pasm(&out, TRAIN_ARGS " --out '%s' --precision bf16 --stop-after-epochs 1",
                       faces, m);
    assert_int_equal(rc, 1);
    free(out);
    rc = test_run_pasm(&out, "train --resume '%s'", m);
    if (rc) fail_msg("resume failed (%d): %s", rc, out);
    assert_non_null(strstr(out, "precision bf16"));
    free(out);
    assert_true(test_files_equal(b1_last, b1));
    path(b1, sizeof b1, "b1.safetensors");
    assert_true(test_files_equal(m, b1));
    assert_int_equal(test_run_pasm(&out, TRAIN_ARGS " --out '%s' --precision fp16", faces, m), 2);
    assert_non_null(strstr(out, "fp16"));
    free(out);
}

/* A learning rate that makes the loss blow up: a clear message, exit 1, and
 * the checkpoint of an earlier good run is left as it was. */
static void test_diverging_loss_keeps_checkpoint(void **state) {
    char m[400], saved[400], *out;
    path(m, sizeof m, "m.safetensors");
    path(saved, sizeof saved, "ref.safetensors");
    copy(saved, m);
    int rc = test_run_pasm(&out, TRAIN_ARGS " --out '%s' --lr 100 --schedule constant", faces, m);
    assert_int_equal(rc, 1);
    assert_true(strstr(out, "NaN") || strstr(out, "infinite") || strstr(out, "not finite"));
    free(out);
    assert_true(test_files_equal(m, saved));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_same_seed_same_bytes),
        cmocka_unit_test(test_resume_after_an_epoch),
        cmocka_unit_test(test_sigint_mid_epoch),
        cmocka_unit_test(test_eval_and_predict),
        cmocka_unit_test(test_bad_options),
        cmocka_unit_test(test_bf16_precision),
        cmocka_unit_test(test_diverging_loss_keeps_checkpoint),
    };
    return cmocka_run_group_tests_name("cli/train", tests, setup, teardown);
}
