/* --device on the command line. Without a GPU (or in a build without the
 * CUDA backend) every command refuses --device cuda with a message saying
 * why, and exit status 1, before touching any file; an unknown device is a
 * usage error (2). With a GPU (or, in CUDA builds on machines without one,
 * on the backend's host emulation): pasm train --device cuda trains, its loss
 * follows the CPU's, a run stopped after an epoch resumes to the bytes of an
 * uninterrupted GPU run, eval and predict run on the GPU and agree with the
 * CPU, and a short pasm run (mining with grad, a round) completes. */
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
/* lr 0.02: gentle enough that two devices' runs stay close for two epochs
 * (this tiny set at batch 16 is chaotic: on the CPU alone, 1 and 2 threads
 * end epoch 1 with train losses 0.2% and validation losses 7% apart) */
#define TRAIN_ARGS "train --data '%s' --input-size 32 --width 16 --epochs 2 --batch 16 --seed 3 --lr 0.02"

static int setup(void **state) {
    test_tmpdir(dir, sizeof dir);
    snprintf(faces, sizeof faces, "%s/faces", dir);
    char *out;
    int rc = test_run_pasm(&out, "synth --out '%s' --count 140 --size 32 --seed 2", faces);
    if (rc) fprintf(stderr, "%s", out);
    free(out);
    return rc;
}

static int teardown(void **state) {
    test_rmdir(dir);
    return 0;
}


static void test_unknown_device(void **unused) {
    char *out;
    int rc = test_run_pasm(&out, TRAIN_ARGS " --out '%s/x.safetensors' --device tpu", faces, dir);
    assert_int_equal(rc, 2);
    assert_non_null(strstr(out, "unknown device 'tpu'"));
    free(out);
}

static void test_refused_without_gpu(void **unused) {
    /* before test_cuda_device turns the emulation on */
    if (pasm_device_check(PASM_DEVICE_CUDA) == PASM_OK || getenv("PASM_CUDA_EMULATE")) skip();
    const char *cmds[] = {
        "train --data '%s' --out '%s/m.safetensors' --device cuda",
        "eval --model '%s' --data '%s' --device cuda",
        "predict --model '%s' --data '%s' --device cuda",
        "mine --model '%s' --data '%s' --out x.csv --device cuda",
        "round --teacher '%s' --data '%s' --mined x.csv --out y --device cuda",
        "run --data '%s' --out '%s/run' --device cuda",
    };
    for (size_t i = 0; i < sizeof cmds / sizeof *cmds; i++) {
        char *out;
        int rc = test_run_pasm(&out, cmds[i], faces, dir);
        printf("  pasm %.*s... -> %d: %s", 8, cmds[i], rc, out);
        assert_int_equal(rc, 1);
        assert_non_null(strstr(out, "--device cuda"));
        free(out);
    }
    char m[400];
    snprintf(m, sizeof m, "%s/m.safetensors", dir);
    FILE *f = fopen(m, "rb");
    assert_null(f); /* nothing written */
}

/* A value ("train_loss", "val_loss") of an epoch line of a metrics file. */
static double epoch_value(const char *metrics, int epoch, const char *key) {
    FILE *f = fopen(metrics, "r");
    assert_non_null(f);
    char line[4096];
    double loss = NAN;
    for (int e = 1; fgets(line, sizeof line, f); e++) {
        char quoted[64];
        snprintf(quoted, sizeof quoted, "\"%s\":", key);
        const char *p = strstr(line, quoted);
        if (e == epoch && p) loss = atof(p + strlen(quoted));
    }
    fclose(f);
    return loss;
}

/* The emulated GPU under the sanitizers is slow, and what it would check
 * there (the network's memory on the GPU path) tests/cuda/test_cuda_net.c
 * checks under them already. */
static int gpu_runs_here(void) {
    int where = test_cuda_device();
    const char *san = getenv("PASM_SANITIZED");
    if (where == 2 && san && san[0] == '1') {
        printf("  the emulated GPU's CLI runs are left to the unsanitized suite\n");
        return 0;
    }
    return where;
}

static void test_train_on_gpu(void **unused) {
    if (!gpu_runs_here()) skip();
    char *out, m[400], g[400], r[400], metrics[420];
    snprintf(m, sizeof m, "%s/cpu.safetensors", dir);
    snprintf(g, sizeof g, "%s/gpu.safetensors", dir);
    snprintf(r, sizeof r, "%s/uninterrupted.safetensors", dir);
    assert_int_equal(test_run_pasm(&out, TRAIN_ARGS " --out '%s'", faces, m), 0);
    free(out);
    int rc = test_run_pasm(&out, TRAIN_ARGS " --out '%s' --device cuda", faces, g);
    printf("%s", out);
    assert_int_equal(rc, 0);
    assert_non_null(strstr(out, "device: cuda"));
    free(out);
    for (int e = 1; e <= 2; e++) {
        snprintf(metrics, sizeof metrics, "%s/cpu.metrics.jsonl", dir);
        double lc = epoch_value(metrics, e, "train_loss");
        snprintf(metrics, sizeof metrics, "%s/gpu.metrics.jsonl", dir);
        double lg = epoch_value(metrics, e, "train_loss");
        printf("  epoch %d train loss: cpu %.5f gpu %.5f\n", e, lc, lg);
        assert_true(fabs(lc - lg) <= 0.05 * fmax(1, lc));
    }
    /* stopped after an epoch and resumed on the GPU: the same bytes (the
     * same --out, which the checkpoint records) */
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "cp '%s' '%s' && rm -f '%s/gpu.'*", g, r, dir);
    assert_int_equal(system(cmd), 0);
    assert_int_equal(test_run_pasm(&out, TRAIN_ARGS " --out '%s' --device cuda --stop-after-epochs 1",
                                   faces, g), 1);
    free(out);
    rc = test_run_pasm(&out, "train --resume '%s' --device cuda", g);
    if (rc) fail_msg("resume: %s", out);
    free(out);
    assert_true(test_files_equal(g, r));
    /* SIGINT as training starts: the GPU trainer stops after a step (mid
     * epoch, at whatever batch the GPU had reached), and the resumed run
     * (from that batch, its schedule and augmentation) ends the same */
    snprintf(cmd, sizeof cmd, "rm -f '%s/gpu.'*", dir);
    assert_int_equal(system(cmd), 0);
    snprintf(metrics, sizeof metrics, "%s/gpu.metrics.jsonl", dir);
    fflush(stdout); /* the child must not print what this process buffered */
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        char log[420];
        snprintf(log, sizeof log, "%s/sigint.log", dir);
        if (!freopen(log, "w", stdout) || !freopen(log, "a", stderr)) _exit(99);
        execl(test_pasm_bin(), "pasm", "train", "--data", faces, "--input-size", "32", "--width",
              "16", "--epochs", "2", "--batch", "16", "--seed", "3", "--lr", "0.02", "--out", g,
              "--device", "cuda", (char *)NULL);
        _exit(98);
    }
    struct stat sb;
    for (int i = 0; i < 6000 && stat(metrics, &sb) != 0; i++) usleep(5000);
    kill(pid, SIGINT);
    int status;
    waitpid(pid, &status, 0);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 1);
    snprintf(cmd, sizeof cmd, "grep -h 'stopped' '%s/sigint.log'", dir);
    if (system(cmd)) fail_msg("no stop message");
    rc = test_run_pasm(&out, "train --resume '%s' --device cuda", g);
    if (rc) fail_msg("resume after SIGINT: %s", out);
    free(out);
    assert_true(test_files_equal(g, r));
    /* eval and predict on the GPU agree with the CPU on the GPU's model */
    char *ce, *ge;
    assert_int_equal(test_run_pasm(&ce, "eval --model '%s' --data '%s' --split test --json", g, faces), 0);
    assert_int_equal(test_run_pasm(&ge, "eval --model '%s' --data '%s' --split test --json --device cuda",
                                   g, faces), 0);
    const char *a = strstr(ce, "\"accuracy\":"), *b = strstr(ge, "\"accuracy\":");
    assert_non_null(a);
    assert_non_null(b);
    printf("  eval accuracy cpu %.4f gpu %.4f\n", atof(a + 11), atof(b + 11));
    /* at most one of the 21 test faces may change its class (a near-tie) */
    assert_true(fabs(atof(a + 11) - atof(b + 11)) <= 1.0 / 21 + 1e-9);
    free(ce);
    free(ge);
    assert_int_equal(test_run_pasm(&out, "predict --model '%s' --data '%s' --split test --device cuda",
                                   g, faces), 0);
    free(out);
    /* evaluation with the images on the GPU (read back once) against the
     * host's batches through the same GPU network: the same inputs, so
     * the same logits, on the emulation and on a GPU alike */
    const char *same[] = {"eval --model '%s' --data '%s' --split test --json --tta flip "
                          "--device cuda",
                          "predict --model '%s' --data '%s' --split test --json --logits "
                          "--device cuda"};
    for (int i = 0; i < 2; i++) {
        char *dev, *host;
        assert_int_equal(test_run_pasm(&dev, same[i], g, faces), 0);
        setenv("PASM_CUDA_HOST_STEP", "1", 1);
        int hrc = test_run_pasm(&host, same[i], g, faces);
        unsetenv("PASM_CUDA_HOST_STEP");
        assert_int_equal(hrc, 0);
        const char *d0 = strchr(dev, '{'), *h0 = strchr(host, '{');
        assert_non_null(d0);
        assert_non_null(h0);
        if (strcmp(d0, h0)) fail_msg("%.8s on the GPU's batches:\n%s\nhost batches:\n%s", same[i], d0, h0);
        free(dev);
        free(host);
    }
}

static void test_run_on_gpu(void **unused) {
    if (!gpu_runs_here()) skip();
    char *out;
    int rc = test_run_pasm(&out, "run --data '%s' --out '%s/run' --input-size 32 --width 16 "
                                 "--epochs 1 --batch 16 --rounds 1 --round-epochs 1 --attack grad "
                                 "--device cuda --seed 1",
                           faces, dir);
    printf("%s", out);
    assert_int_equal(rc, 0);
    free(out);
    char run[400];
    snprintf(run, sizeof run, "%s/run", dir);
    double acc = test_summary_value(run, -1, "test_accuracy");
    printf("  round 1 test accuracy %.4f\n", acc);
    assert_true(acc >= 0 && acc <= 1);
}

/* Runs the command on path 0 (the GPU trainer: steps that stay on the GPU,
 * full batches replayed as a CUDA graph on a GPU), 1 (the host's batches and
 * loss around the GPU network: PASM_CUDA_HOST_STEP=1) or 2 (the GPU trainer
 * without graphs: PASM_CUDA_GRAPHS=0); moves the checkpoint it wrote (path)
 * to path.keepN. */
static void train_path(int how, const char *path, const char *fmt, const char *a, const char *b,
                       const char *c) {
    char *out, keep[520];
    if (how == 1) setenv("PASM_CUDA_HOST_STEP", "1", 1);
    if (how == 2) setenv("PASM_CUDA_GRAPHS", "0", 1);
    int rc = test_run_pasm(&out, fmt, a, b, c);
    unsetenv("PASM_CUDA_HOST_STEP");
    unsetenv("PASM_CUDA_GRAPHS");
    if (rc) fail_msg("path %d: %s", how, out);
    const char *said = how == 1 ? "steps: batches and loss on the host" : "steps: on the GPU";
    if (!strstr(out, said)) fail_msg("expected '%s' in: %s", said, out);
    if (strstr(out, "could not run as a CUDA graph"))
        fail_msg("the GPU trainer fell back to launch-by-launch steps:\n%s", out);
    const char *steps = strstr(out, "steps: on the GPU"), *g = steps ? strstr(steps, "; ") : NULL;
    const char *replayed = g ? strstr(g, " replayed as a CUDA graph") : NULL;
    if (how == 0 && (!replayed || atoi(g + 2) < 1))
        fail_msg("path 0 replayed no step as a graph: %s", out);
    if (how == 2 && (!replayed || atoi(g + 2) != 0))
        fail_msg("PASM_CUDA_GRAPHS=0 replayed steps as a graph: %s", out);
    free(out);
    snprintf(keep, sizeof keep, "%s.keep%d", path, how);
    assert_int_equal(rename(path, keep), 0);
}

/* The GPU trainer writes its epoch files from a thread while the next epoch
 * trains: the same bytes as written before going on
 * (PASM_TRAIN_SYNC_EPOCH_FILES=1), and a write that fails (a folder where
 * the last model goes) ends the run with the file's name, not in silence. */
static void test_epoch_files_thread(void **unused) {
    if (!gpu_runs_here()) skip();
    char a[400], fa[440], fb[440], *out;
    const char *kinds[] = {"", ".last", ".state"};
    /* the same --out both times (the files record it) */
    snprintf(a, sizeof a, "%s/ef.safetensors", dir);
    int rc = test_run_pasm(&out, TRAIN_ARGS " --out '%s' --device cuda", faces, a);
    if (rc) fail_msg("%s", out);
    free(out);
    for (int i = 0; i < 3; i++) {
        snprintf(fa, sizeof fa, "%s/ef%s.safetensors", dir, kinds[i]);
        snprintf(fb, sizeof fb, "%s/ef%s.thread", dir, kinds[i]);
        assert_int_equal(rename(fa, fb), 0);
    }
    setenv("PASM_TRAIN_SYNC_EPOCH_FILES", "1", 1);
    rc = test_run_pasm(&out, TRAIN_ARGS " --out '%s' --device cuda", faces, a);
    unsetenv("PASM_TRAIN_SYNC_EPOCH_FILES");
    if (rc) fail_msg("%s", out);
    free(out);
    for (int i = 0; i < 3; i++) {
        snprintf(fa, sizeof fa, "%s/ef%s.safetensors", dir, kinds[i]);
        snprintf(fb, sizeof fb, "%s/ef%s.thread", dir, kinds[i]);
        printf("  ef%s.safetensors, from the thread and written before going on: ", kinds[i]);
        const int same = test_files_equal(fa, fb);
        printf("%s\n", same ? "the same bytes" : "different");
        assert_true(same);
    }
    snprintf(fa, sizeof fa, "%s/blocked.last.safetensors", dir);
    assert_int_equal(mkdir(fa, 0755), 0);
    snprintf(fb, sizeof fb, "%s/blocked.safetensors", dir);
    rc = test_run_pasm(&out, TRAIN_ARGS " --out '%s' --device cuda", faces, fb);
    printf("  a folder where the last model goes: exit %d\n", rc);
    assert_int_not_equal(rc, 0);
    if (!strstr(out, "blocked.last.safetensors")) fail_msg("no file named in: %s", out);
    free(out);
    rmdir(fa);
}

/* loss[how][epoch][0: train, 1: validation] of paths 0..paths-1 and
 * epochs 1..epochs */
static void compare_paths(const char *what, const char *path, double loss[3][2][2], int paths,
                          int epochs, int emulated) {
    char a[520], b[520];
    snprintf(a, sizeof a, "%s.keep0", path);
    snprintf(b, sizeof b, "%s.keep1", path);
    for (int e = 0; e < epochs; e++)
        for (int v = 0; v < 2; v++) {
            double l0 = loss[0][e][v], l1 = loss[1][e][v], l2 = paths > 2 ? loss[2][e][v] : l0;
            printf("  %s epoch %d %s loss: GPU trainer %.6f, host step %.6f", what, e + 1,
                   v ? "validation" : "train", l0, l1);
            if (paths > 2) printf(", no graphs %.6f", l2);
            printf("\n");
            assert_true(isfinite(l0));
            assert_true(l0 == l2);
            if (emulated) assert_true(l0 == l1);
            else assert_true(fabs(l0 - l1) <= 1e-4 * fmax(1, l1));
        }
    if (emulated) assert_true(test_files_equal(a, b));
    if (paths < 3) return;
    /* graphs or launch by launch, the same kernels in the same order: the
     * same bytes */
    snprintf(b, sizeof b, "%s.keep2", path);
    if (!test_files_equal(a, b)) fail_msg("%s: the graph-replayed run differs from the "
                                          "launch-by-launch one", what);
}

/* The GPU trainer (batch assembly and augmentation from the images kept on
 * the GPU, the loss on the GPU, no wait inside an epoch) against the host
 * path around the same GPU network: on the emulation the same bytes (the
 * same arithmetic in the same order); on a GPU, whose exp and log may
 * differ from the host's in the last bit, the same losses to 1e-4; and
 * everywhere the graph-replayed run (the emulation records and replays its
 * work as a graph does) the bytes of the launch-by-launch one. Training with
 * label smoothing, class weights and random erasing; a PASM round with
 * distillation from a teacher on the GPU. */
static void test_gpu_trainer_matches_host_step(void **unused) {
    if (!gpu_runs_here()) skip();
    const int emulated = test_cuda_device() == 2;
    char m[400], run[400], model[420], mined[420], student[420];
    snprintf(m, sizeof m, "%s/steps.safetensors", dir);
    /* batch 14: 98 faces in 7 full batches, every step of epoch 2 replayed
     * and then validation (the round's batches of 16 end with a partial one) */
    const char *train = TRAIN_ARGS " --batch 14 --out '%s' --device cuda --label-smoothing 0.1 "
                                   "--balance weights --erase-p 0.5%s";
    char metrics[420];
    snprintf(metrics, sizeof metrics, "%s/steps.metrics.jsonl", dir);
    double loss[3][2][2];
    for (int how = 0; how < 3; how++) {
        train_path(how, m, train, faces, m, "");
        for (int e = 0; e < 2; e++) {
            loss[how][e][0] = epoch_value(metrics, e + 1, "train_loss");
            loss[how][e][1] = epoch_value(metrics, e + 1, "val_loss");
        }
    }
    compare_paths("train", m, loss, 3, 2, emulated);
    /* a round: the teacher and mined points of test_run_on_gpu's run */
    snprintf(run, sizeof run, "%s/run", dir);
    snprintf(model, sizeof model, "%s/round0.safetensors", run);
    snprintf(mined, sizeof mined, "%s/round1.mined.csv", run);
    snprintf(student, sizeof student, "%s/student.safetensors", dir);
    FILE *f = fopen(mined, "r");
    if (!f) fail_msg("%s: missing (test_run_on_gpu runs first)", mined);
    fclose(f);
    char round[600];
    snprintf(round, sizeof round, "round --teacher '%s' --data '%%s' --mined '%s' --out '%%s' "
                                  "--round-epochs 1 --batch 16 --device cuda%%s",
             model, mined);
    snprintf(metrics, sizeof metrics, "%s/student.metrics.jsonl", dir);
    /* (one epoch, two paths: graphs against launch by launch is the
     * training's above and test_cuda_net's) */
    for (int how = 0; how < 2; how++) {
        train_path(how, student, round, faces, student, "");
        for (int e = 0; e < 1; e++) {
            loss[how][e][0] = epoch_value(metrics, e + 1, "train_loss");
            loss[how][e][1] = epoch_value(metrics, e + 1, "val_loss");
        }
    }
    compare_paths("round", student, loss, 2, 1, emulated);
}

/* An experiment plan's "device" reaches every run, the shared baseline too. */
static void test_experiment_on_gpu(void **unused) {
    if (!gpu_runs_here()) skip();
    char plan[400], out[400], log[500], cmd[1400];
    snprintf(plan, sizeof plan, "%s/plan.json", dir);
    snprintf(out, sizeof out, "%s/exp", dir);
    FILE *f = fopen(plan, "w");
    assert_non_null(f);
    fprintf(f, "{\"seeds\": [0], \"options\": {\"data\": \"%s\", \"input-size\": 32, "
               "\"width\": 16, \"epochs\": 1, \"batch\": 16, \"rounds\": 1, "
               "\"round-epochs\": 1, \"attack\": \"grad\", \"device\": \"cuda\"}, "
               "\"arms\": [{\"name\": \"pasm\"}]}\n",
            faces);
    fclose(f);
    char *text;
    int rc = test_run_pasm(&text, "experiment --plan '%s' --out '%s' --jobs 1", plan, out);
    if (rc) fail_msg("experiment: %s", text);
    free(text);
    const char *logs[] = {"baselines_seed0.log", "pasm_seed0.log"};
    for (int i = 0; i < 2; i++) {
        snprintf(log, sizeof log, "%s/logs/%s", out, logs[i]);
        snprintf(cmd, sizeof cmd, "grep -q 'device: cuda' '%s'", log);
        if (system(cmd) != 0) fail_msg("%s: the run did not train on the GPU", log);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_unknown_device),
        cmocka_unit_test(test_refused_without_gpu),
        cmocka_unit_test(test_train_on_gpu),
        cmocka_unit_test(test_run_on_gpu),
        cmocka_unit_test(test_gpu_trainer_matches_host_step),
        cmocka_unit_test(test_epoch_files_thread),
        cmocka_unit_test(test_experiment_on_gpu),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
