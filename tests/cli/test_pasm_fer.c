/* PASM on real faces: `pasm run --rounds 1` on fer2013-mini (FER2013 faces
 * read from ../shared at run time: every other Training face, 700, written
 * to a scratch file to halve the CI time, and all 350 PublicTest and 350
 * PrivateTest faces; width 16 at 32x32, one epoch per phase at lr 0.05
 * (a teacher that does not answer one class for every face: 0.17 on
 * PrivateTest, round 1 0.19), --attack grad), once straight through, and
 * once stopped between
 * phases, then killed with SIGKILL in the middle of round 1's mining,
 * then resumed: both end with the same mined points, checkpoints and
 * accuracies. One round: a second (the student as the next teacher) is
 * test_pasm_cli's, on synthetic faces, killed and resumed the same way.
 * Skipped when the data is not there, and under the sanitizers (minutes
 * there; the synthetic-face run test covers the same code). */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "pasm/pasm.h"
#include "util/helpers.h"

static char dir[256], data[320];

/* fer2013-mini with every other Training row (the rows are not sorted by
 * class, so about 100 of each); 0 when it is not there. */
static int write_half(const char *from, const char *to) {
    FILE *in = fopen(from, "r");
    if (!in) return 0;
    FILE *out = fopen(to, "w");
    assert_non_null(out);
    char *line = NULL;
    size_t cap = 0;
    int row = 0, training = 0;
    for (; getline(&line, &cap, in) > 0; row++) {
        const int is_training = strstr(line, ",Training") != NULL;
        if (row == 0 || !is_training || training++ % 2 == 0) fputs(line, out);
    }
    free(line);
    fclose(in);
    assert_int_equal(fclose(out), 0);
    assert_int_equal(training, 1400);
    return 1;
}

static int setup(void **state) {
    test_tmpdir(dir, sizeof dir);
    snprintf(data, sizeof data, "%s/half.csv", dir);
    return 0;
}

static int teardown(void **state) {
    test_rmdir(dir);
    return 0;
}

#define RUN_ARGS "run --data '%s' --input-size 32 --width 16 --batch 64 --epochs 1 " \
                 "--round-epochs 1 --attack grad --attack-batch 50 --rounds 1 --seed 1 --lr 0.05 " \
                 "--out '%s'"

static int data_lines(const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    int n = 0, c;
    while ((c = fgetc(f)) != EOF) n += c == '\n';
    fclose(f);
    return n > 0 ? n - 1 : 0;
}

/* Starts the run in the background and SIGKILLs it once round 1's mined
 * file has at least `rows` rows; returns the rows found after the kill. */
static int run_and_kill_in_mining(const char *data, const char *out, int rows) {
    char cmd[2048], mined[600];
    snprintf(cmd, sizeof cmd, "exec '%s' " RUN_ARGS " >/dev/null 2>&1", test_pasm_bin(), data,
             out);
    snprintf(mined, sizeof mined, "%s/round1.mined.csv", out);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    int status = 0, finished = 0;
    for (int i = 0; i < 60000 && !finished; i++) { /* up to 10 minutes */
        if (data_lines(mined) >= rows) break;
        if (waitpid(pid, &status, WNOHANG) == pid) finished = 1;
        else usleep(10000);
    }
    if (!finished) {
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
    }
    assert_false(finished); /* it must still have been mining */
    assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    return data_lines(mined);
}

static void test_run_killed_and_resumed_on_fer2013_mini(void **state) {
#if defined(__SANITIZE_ADDRESS__)
    skip();
#endif
    const char *mini = test_shared_path("data/fer2013/fer2013-mini.csv");
    if (!write_half(mini, data)) {
        printf("  %s is not there: skipped\n", mini);
        skip();
    }
    char a[400], b[400], fa[600], fb[600], *out;
    snprintf(a, sizeof a, "%s/runA", dir);
    snprintf(b, sizeof b, "%s/run", dir);
    /* A: straight through (in b's folder, whose name the checkpoints record) */
    int rc = test_run_pasm(&out, RUN_ARGS, data, b);
    if (rc) fail_msg("run failed: %s", out);
    free(out);
    assert_int_equal(rename(b, a), 0);
    /* B: stopped between phases (after the baseline) ... */
    rc = test_run_pasm(&out, RUN_ARGS " --stop-after-phases 1", data, b);
    assert_int_equal(rc, 1);
    free(out);
    /* ... killed during round 1's mining ... */
    int rows = run_and_kill_in_mining(data, b, 100);
    printf("  killed with %d of 700 faces mined\n", rows);
    assert_true(rows >= 100 && rows < 700);
    /* ... and resumed to the end */
    rc = test_run_pasm(&out, RUN_ARGS, data, b);
    if (rc) fail_msg("resume failed: %s", out);
    assert_non_null(strstr(out, "phase baseline: done before, skipped"));
    free(out);
    const char *files[] = {"round0.safetensors", "round1.mined.csv", "round1.safetensors"};
    for (int i = 0; i < 3; i++) {
        snprintf(fa, sizeof fa, "%s/%s", a, files[i]);
        snprintf(fb, sizeof fb, "%s/%s", b, files[i]);
        if (!test_files_equal(fa, fb)) fail_msg("%s differs after the killed run", files[i]);
    }
    const char *keys[] = {"val_accuracy", "val_accuracy_tta", "test_accuracy",
                          "test_accuracy_tta"};
    for (int r = 0; r <= 1; r++)
        for (int k = 0; k < 4; k++) {
            double x = test_summary_value(a, r, keys[k]), y = test_summary_value(b, r, keys[k]);
            if (k == 2) printf("  round %d PrivateTest accuracy %.4f (both)\n", r, x);
            assert_true(x == y);
        }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_run_killed_and_resumed_on_fer2013_mini),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
