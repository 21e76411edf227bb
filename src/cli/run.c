/* pasm run: the whole PASM loop in one folder — the round-0 baseline
 * (pasm train), then R rounds of mine + round — with a checkpoint and an
 * evaluation (validation and test splits, with and without flip TTA) after
 * every training phase. DIR/run.json records the run's options and every
 * finished phase; running the same command again skips finished phases and
 * resumes the one a kill interrupted (training from its state file, mining
 * after its last written row), so a killed run ends with the same bytes as
 * an unkilled one. summary.json and summary.md are rewritten after every
 * phase. */
#include <cJSON.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/pasm_cli.h"

static const char *CMD = "run";

typedef struct {
    const char *data, *split, *val_data, *val_split, *test_split, *out;
    int input_size, channels, width, epochs, batch, crop_padding, hflip, rounds;
    const char *lr, *schedule, *momentum, *wd, *val_fraction; /* passed to train as given */
    uint64_t seed;
    cli_mine_args mine;
    cli_round_args round;
    const char *control;  /* NULL: PASM itself */
    const char *baseline; /* round 0 taken from this checkpoint instead of trained */
    char baseline_sha[65];
    const char *erase_p;  /* random erasing in every phase ("0" = off) */
    int stop_after_phases, stop_mining_after; /* tests */
    double started; /* pasm_now_seconds() when this run began */
} run_args;

/* The controls of pasm-method.md; each differs from PASM in one thing. */
static const char *const CONTROLS[] = {"long-baseline", "kd-only", "random-point",
                                       "random-erasing", "cam-erasing"};

static int is_control(const run_args *a, const char *name) {
    return a->control && !strcmp(a->control, name);
}

/* Epochs of the long-baseline: the baseline's plus every round's
 * sample-passes (a union round sees 2N faces an epoch). */
static int long_epochs(const run_args *a) {
    int per_round = a->round.epochs * (!strcmp(a->round.mix, "union") ? 2 : 1);
    return a->epochs + a->rounds * per_round;
}

static void usage(FILE *f) {
    fprintf(f,
            "usage: pasm run --data PATH --out DIR [options]\n\n"
            "Runs PASM: a baseline, then --rounds rounds of mining and student training, each\n"
            "checkpointed and evaluated, into DIR (run.json, roundK.safetensors,\n"
            "roundK.mined.csv, summary.json, summary.md). Run the same command again to\n"
            "resume after a kill: finished phases are skipped.\n\n"
            "data:\n"
            "  --data PATH            FER2013 CSV or image folder (required)\n"
            "  --split S              training split (Training)\n"
            "  --val-data PATH        validation data (--data); --val-split S (PublicTest)\n"
            "  --test-split S         split reported as test (PrivateTest)\n"
            "  --val-fraction F       held-out share without a validation split (0.1)\n"
            "  --input-size N (48)    --channels N (1)    --width N (64)\n"
            "baseline (pasm train's options):\n"
            "  --epochs N (30)  --batch N (128)  --lr F (0.1)  --schedule S (onecycle)\n"
            "  --momentum F (0.9)  --wd F (5e-4)  --crop-padding N (4)  --no-flip\n"
            "rounds:\n"
            "  --rounds R             mine + round repetitions (2)\n"
            "  --attack A (de)  --de-pop N (32)  --de-gens N (8)  --de-f F (0.5)\n"
            "  --no-de-early-stop  --iter-max N (8)  --attack-batch N (1024)\n"
            "  --side N (input/4)  --fill F (mean)  --mix M (union)  --mask-prob P (0.5)\n"
            "  --skip-misclassified  --kd-alpha A (0.5)  --kd-temp T (4)\n"
            "  --student-init S (teacher)  --round-epochs N (10)  --round-lr F (0.01)\n"
            "  --round-schedule S (cosine)\n"
            "  --erase-p F            random erasing in every phase (0 = off)\n"
            "  --precision P          fp32 or bf16 convolutions in every phase, mining and\n"
            "                         evaluation too (fp32)\n"
            "  --device D             cpu, or cuda: every phase (training, mining, evaluation)\n"
            "                         on the GPU; not part of the run: a resume takes it anew (cpu)\n"
            "controls (pasm-method.md), each matched to PASM in sample-passes:\n"
            "  --control C            long-baseline (one network, no rounds), kd-only (rounds\n"
            "                         without masks), random-point (squares at random points),\n"
            "                         random-erasing (random erasing instead of squares) or\n"
            "                         cam-erasing (squares at the teacher's Grad-CAM peak)\n"
            "  --baseline CKPT        take round 0 from CKPT (a shared baseline) instead of\n"
            "                         training it\n"
            "run:\n"
            "  --seed S (0)  --threads T (0 = all cores)  --out DIR (required)  --help\n");
}

/* ---- the options as JSON: what must match to resume ---- */

static char *args_json(const run_args *a) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "data", a->data);
    cJSON_AddStringToObject(o, "split", a->split);
    cJSON_AddStringToObject(o, "val_data", a->val_data ? a->val_data : "");
    cJSON_AddStringToObject(o, "val_split", a->val_split);
    cJSON_AddStringToObject(o, "test_split", a->test_split);
    cJSON_AddStringToObject(o, "val_fraction", a->val_fraction);
    cJSON_AddNumberToObject(o, "input_size", a->input_size);
    cJSON_AddNumberToObject(o, "channels", a->channels);
    cJSON_AddNumberToObject(o, "width", a->width);
    cJSON_AddNumberToObject(o, "epochs", a->epochs);
    cJSON_AddNumberToObject(o, "batch", a->batch);
    cJSON_AddStringToObject(o, "lr", a->lr);
    cJSON_AddStringToObject(o, "schedule", a->schedule);
    cJSON_AddStringToObject(o, "momentum", a->momentum);
    cJSON_AddStringToObject(o, "wd", a->wd);
    cJSON_AddNumberToObject(o, "crop_padding", a->crop_padding);
    cJSON_AddBoolToObject(o, "hflip", a->hflip);
    cJSON_AddNumberToObject(o, "rounds", a->rounds);
    const pasm_attack_options *at = &a->mine.attack;
    cJSON_AddStringToObject(o, "attack", pasm_attack_name(at->kind));
    cJSON_AddNumberToObject(o, "de_pop", at->de_pop);
    cJSON_AddNumberToObject(o, "de_gens", at->de_gens);
    cJSON_AddNumberToObject(o, "de_f", at->de_f);
    cJSON_AddBoolToObject(o, "de_early_stop", at->de_early_stop);
    cJSON_AddNumberToObject(o, "iter_max", at->iter_max);
    cJSON_AddNumberToObject(o, "side", a->round.side);
    cJSON_AddStringToObject(o, "fill", a->round.fill);
    cJSON_AddStringToObject(o, "mix", a->round.mix);
    cJSON_AddNumberToObject(o, "mask_prob", a->round.mask_prob);
    cJSON_AddBoolToObject(o, "skip_misclassified", a->round.skip_misclassified);
    cJSON_AddNumberToObject(o, "kd_alpha", a->round.kd_alpha);
    cJSON_AddNumberToObject(o, "kd_temp", a->round.kd_temp);
    cJSON_AddStringToObject(o, "student_init", a->round.student_init);
    cJSON_AddNumberToObject(o, "round_epochs", a->round.epochs);
    cJSON_AddNumberToObject(o, "round_lr", a->round.lr);
    cJSON_AddStringToObject(o, "round_schedule", a->round.schedule);
    char seed[32];
    snprintf(seed, sizeof seed, "%llu", (unsigned long long)a->seed);
    cJSON_AddStringToObject(o, "seed", seed);
    /* added only when used, so older run folders still resume */
    if (a->control) cJSON_AddStringToObject(o, "control", a->control);
    if (a->baseline) {
        cJSON_AddStringToObject(o, "baseline", a->baseline);
        cJSON_AddStringToObject(o, "baseline_sha256", a->baseline_sha);
    }
    if (strcmp(a->erase_p, "0")) cJSON_AddStringToObject(o, "erase_p", a->erase_p);
    if (a->round.precision)
        cJSON_AddStringToObject(o, "precision",
                                pasm_precision_name((pasm_precision)a->round.precision));
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return s;
}

/* ---- run.json: options + finished phases ---- */

static pasm_status state_write(const char *dir, const cJSON *state) {
    char path[4096];
    snprintf(path, sizeof path, "%s/run.json", dir);
    char *text = cJSON_Print(state);
    if (!text) return pasm_errorf(PASM_ERR_NOMEM, "out of memory");
    pasm_status st = pasm_write_file_atomic(path, text, strlen(text));
    free(text);
    return st;
}

/* Loads DIR/run.json (its args must equal ours) or starts a new one. */
static pasm_status state_open(const char *dir, const char *args, cJSON **state) {
    char path[4096];
    snprintf(path, sizeof path, "%s/run.json", dir);
    unsigned char *data;
    size_t size;
    cJSON *mine = cJSON_Parse(args);
    if (access(path, F_OK) != 0) {
        *state = cJSON_CreateObject();
        cJSON_AddItemToObject(*state, "args", mine);
        cJSON_AddArrayToObject(*state, "phases");
        return state_write(dir, *state);
    }
    pasm_status st = pasm_read_file(path, &data, &size);
    if (st) {
        cJSON_Delete(mine);
        return st;
    }
    *state = cJSON_ParseWithLength((const char *)data, size);
    free(data);
    const cJSON *old = cJSON_GetObjectItemCaseSensitive(*state, "args");
    int same = old && cJSON_Compare(old, mine, 1);
    cJSON_Delete(mine);
    if (!cJSON_IsArray(cJSON_GetObjectItemCaseSensitive(*state, "phases")) || !same) {
        cJSON_Delete(*state);
        *state = NULL;
        return pasm_errorf(PASM_ERR_INVALID, "%s belongs to a run with other options; resume it "
                                             "with the same options or choose another --out",
                           path);
    }
    return PASM_OK;
}

static const cJSON *phase_done(const cJSON *state, const char *name) {
    const cJSON *p;
    cJSON_ArrayForEach(p, cJSON_GetObjectItemCaseSensitive(state, "phases")) {
        const cJSON *n = cJSON_GetObjectItemCaseSensitive(p, "name");
        if (cJSON_IsString(n) && !strcmp(n->valuestring, name)) return p;
    }
    return NULL;
}

/* ---- phases ---- */

static void ckpt_path(const run_args *a, int round, char *buf, size_t len) {
    snprintf(buf, len, "%s/round%d.safetensors", a->out, round);
}

/* Round 0 from a shared baseline: a checked copy of its checkpoint. */
static int copy_baseline(const run_args *a) {
    char out[4096], hex[65];
    ckpt_path(a, 0, out, sizeof out);
    unsigned char *data;
    size_t size;
    pasm_status st = pasm_read_file(a->baseline, &data, &size);
    if (st) return cli_fail(CMD, st);
    uint8_t digest[32];
    pasm_sha256(data, size, digest);
    for (int i = 0; i < 32; i++) snprintf(hex + 2 * i, 3, "%02x", digest[i]);
    if (strcmp(hex, a->baseline_sha)) {
        free(data);
        return cli_fail(CMD, pasm_errorf(PASM_ERR_INVALID, "%s changed since this run started "
                                                           "(sha256 %s, was %s)",
                                         a->baseline, hex, a->baseline_sha));
    }
    st = pasm_write_file_atomic(out, data, size);
    free(data);
    if (!st) printf("round 0: the shared baseline %s\n", a->baseline);
    return st ? cli_fail(CMD, st) : EXIT_OK;
}

static int phase_baseline(const run_args *a, int round) {
    char out[4096], state[4096], w[16], e[16], b[16], s[16], in[16], ch[16], cp[16], vf[64];
    if (a->baseline) return copy_baseline(a);
    ckpt_path(a, round, out, sizeof out);
    pasm_train_sibling(out, "state", NULL, state, sizeof state);
    if (access(state, F_OK) == 0) {
        char *argv[] = {"train", "--resume", out, NULL};
        return pasm_cmd_train(3, argv);
    }
    snprintf(w, sizeof w, "%d", a->width);
    snprintf(e, sizeof e, "%d", is_control(a, "long-baseline") ? long_epochs(a) : a->epochs);
    snprintf(b, sizeof b, "%d", a->batch);
    snprintf(s, sizeof s, "%llu", (unsigned long long)a->seed);
    snprintf(in, sizeof in, "%d", a->input_size);
    snprintf(ch, sizeof ch, "%d", a->channels);
    snprintf(cp, sizeof cp, "%d", a->crop_padding);
    snprintf(vf, sizeof vf, "%s", a->val_fraction);
    char *argv[50] = {"train", "--data", (char *)a->data, "--split", (char *)a->split,
                      "--val-split", (char *)a->val_split, "--val-fraction", vf,
                      "--input-size", in, "--channels", ch, "--width", w, "--epochs", e,
                      "--batch", b, "--lr", (char *)a->lr, "--schedule", (char *)a->schedule,
                      "--momentum", (char *)a->momentum, "--wd", (char *)a->wd,
                      "--crop-padding", cp, "--seed", s, "--out", out};
    int argc = 33;
    if (a->val_data) argv[argc++] = "--val-data", argv[argc++] = (char *)a->val_data;
    if (!a->hflip) argv[argc++] = "--no-flip";
    if (strcmp(a->erase_p, "0")) argv[argc++] = "--erase-p", argv[argc++] = (char *)a->erase_p;
    if (a->round.precision) argv[argc++] = "--precision", argv[argc++] = "bf16";
    if (a->round.device) argv[argc++] = "--device", argv[argc++] = "cuda";
    argv[argc] = NULL;
    return pasm_cmd_train(argc, argv);
}

static int phase_mine(const run_args *a, int round, int *stop_mining_after) {
    char teacher[4096], out[4096];
    ckpt_path(a, round - 1, teacher, sizeof teacher);
    snprintf(out, sizeof out, "%s/round%d.mined.csv", a->out, round);
    cli_mine_args m = a->mine;
    m.model = teacher;
    m.data = a->data;
    m.split = a->split;
    m.out = out;
    m.side = a->round.side;
    m.attack.seed = a->seed + (uint64_t)round; /* a new draw every round */
    if (is_control(a, "random-point")) m.attack.kind = PASM_ATTACK_RANDOM;
    if (is_control(a, "cam-erasing")) m.attack.kind = PASM_ATTACK_CAM;
    m.stop_after_images = *stop_mining_after;
    *stop_mining_after = 0;
    return cli_mine_run(&m);
}

/* Whether rounds mine points (PASM, random-point, cam-erasing). */
static int has_mining(const run_args *a) {
    return !is_control(a, "kd-only") && !is_control(a, "random-erasing");
}

static int phase_round(const run_args *a, int round) {
    char teacher[4096], out[4096], mined[4096];
    ckpt_path(a, round - 1, teacher, sizeof teacher);
    ckpt_path(a, round, out, sizeof out);
    snprintf(mined, sizeof mined, "%s/round%d.mined.csv", a->out, round);
    cli_round_args r = a->round;
    r.teacher = teacher;
    r.data = a->data;
    r.split = a->split;
    r.val_data = a->val_data;
    r.val_split = a->val_split;
    r.val_fraction = (float)atof(a->val_fraction);
    r.mined = has_mining(a) ? mined : NULL;
    r.no_mask = is_control(a, "kd-only");
    r.erase_copy = is_control(a, "random-erasing");
    r.erase_p = (float)atof(a->erase_p);
    r.out = out;
    r.batch = a->batch;
    r.crop_padding = a->crop_padding;
    r.hflip = a->hflip;
    r.seed = a->seed + (uint64_t)round;
    r.resume = 1;
    return cli_round_run(&r);
}

/* Evaluation of a finished training phase into its phase record. */
static int evaluate_into(const run_args *a, int round, cJSON *rec) {
    const double t0 = pasm_now_seconds();
    char ckpt[4096];
    ckpt_path(a, round, ckpt, sizeof ckpt);
    const char *names[2] = {"val", "test"}, *splits[2] = {a->val_split, a->test_split};
    const char *paths[2] = {a->val_data ? a->val_data : a->data, a->data};
    cli_split_accuracy res[2];
    /* in the run's precision, as its training validated and its mining scored */
    const cli_model_options mo = {.device = a->round.device, .precision = a->round.precision};
    int rc = cli_eval_splits(CMD, ckpt, &mo, 2, paths, splits, res);
    if (rc) return rc;
    for (int i = 0; i < 2; i++) {
        const int count = res[i].count;
        char key[64];
        snprintf(key, sizeof key, "%s_count", names[i]);
        cJSON_AddNumberToObject(rec, key, count);
        snprintf(key, sizeof key, "%s_accuracy", names[i]);
        if (count) cJSON_AddNumberToObject(rec, key, res[i].accuracy);
        else cJSON_AddNullToObject(rec, key);
        snprintf(key, sizeof key, "%s_accuracy_tta", names[i]);
        if (count) cJSON_AddNumberToObject(rec, key, res[i].accuracy_tta);
        else cJSON_AddNullToObject(rec, key);
        if (count)
            printf("round %d %s (%s): accuracy %.4f, with flip TTA %.4f (%d faces)\n", round,
                   names[i], splits[i], res[i].accuracy, res[i].accuracy_tta, count);
    }
    /* outside the phase's seconds: the whole run's time is the sum of both */
    const double secs = pasm_now_seconds() - t0;
    cJSON_AddNumberToObject(rec, "eval_seconds", secs);
    cJSON_AddStringToObject(rec, "eval_precision",
                            pasm_precision_name((pasm_precision)mo.precision));
    printf("round %d evaluated in %.1f s (%s)\n", round, secs,
           pasm_precision_name((pasm_precision)mo.precision));
    return EXIT_OK;
}

/* Mining statistics into its phase record. */
static void mined_into(const run_args *a, int round, cJSON *rec) {
    char mined[4096];
    snprintf(mined, sizeof mined, "%s/round%d.mined.csv", a->out, round);
    pasm_mined m;
    if (pasm_mined_read(mined, 0, &m, NULL)) {
        pasm_clear_error();
        return;
    }
    int fooled = 0;
    for (int i = 0; i < m.n; i++) fooled += m.fooled[i];
    cJSON_AddNumberToObject(rec, "count", m.n);
    cJSON_AddNumberToObject(rec, "fooled", m.n ? (double)fooled / m.n : 0);
    pasm_mined_free(&m);
}

/* ---- summary ---- */

static double num(const cJSON *o, const char *key, int *ok) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    *ok = cJSON_IsNumber(v);
    return *ok ? v->valuedouble : 0;
}

static pasm_status write_summary(const run_args *a, const cJSON *state) {
    cJSON *sum = cJSON_CreateObject();
    cJSON_AddStringToObject(sum, "val_split", a->val_split);
    cJSON_AddStringToObject(sum, "test_split", a->test_split);
    cJSON_AddStringToObject(sum, "control", a->control ? a->control : "none");
    cJSON_AddItemToObject(sum, "args",
                          cJSON_Duplicate(cJSON_GetObjectItemCaseSensitive(state, "args"), 1));
    cJSON *rounds = cJSON_AddArrayToObject(sum, "rounds");
    char md[16384];
    size_t len = 0;
    len += snprintf(md + len, sizeof md - len,
                    "# PASM run %s%s%s\n\n| round | %s | %s (TTA) | %s | %s (TTA) | mined: fooled | "
                    "mine s | train s |\n| --- | --- | --- | --- | --- | --- | --- | --- |\n",
                    a->out, a->control ? ", control " : "", a->control ? a->control : "",
                    a->val_split, a->val_split, a->test_split, a->test_split);
    const int long_run = is_control(a, "long-baseline");
    for (int r = long_run ? a->rounds : 0; r <= a->rounds; r++) {
        char train_name[32], mine_name[32];
        snprintf(train_name, sizeof train_name, long_run ? "long" : r ? "round%d" : "baseline", r);
        snprintf(mine_name, sizeof mine_name, "mine%d", r);
        const cJSON *t = phase_done(state, train_name), *m = r ? phase_done(state, mine_name) : NULL;
        if (!t) break;
        cJSON *row = cJSON_CreateObject();
        cJSON_AddNumberToObject(row, "round", r);
        char ck[64];
        snprintf(ck, sizeof ck, "round%d.safetensors", r);
        cJSON_AddStringToObject(row, "checkpoint", ck);
        const char *keys[] = {"val_accuracy", "val_accuracy_tta", "test_accuracy",
                              "test_accuracy_tta"};
        char cells[4][32];
        for (int k = 0; k < 4; k++) {
            int ok;
            double v = num(t, keys[k], &ok);
            if (ok) cJSON_AddNumberToObject(row, keys[k], v);
            else cJSON_AddNullToObject(row, keys[k]);
            snprintf(cells[k], sizeof cells[k], ok ? "%.4f" : "–", v);
        }
        int ok_f, ok_ms, ok_ts;
        double fooled = m ? num(m, "fooled", &ok_f) : (ok_f = 0, 0);
        double ms = m ? num(m, "seconds", &ok_ms) : (ok_ms = 0, 0), ts = num(t, "seconds", &ok_ts);
        if (ok_f) cJSON_AddNumberToObject(row, "mined_fooled", fooled);
        cJSON_AddNumberToObject(row, "seconds_mine", ms);
        cJSON_AddNumberToObject(row, "seconds_train", ts);
        int ok_es;
        const double es = num(t, "eval_seconds", &ok_es); /* runs of older pasm: none */
        if (ok_es) cJSON_AddNumberToObject(row, "seconds_eval", es);
        const cJSON *ep = cJSON_GetObjectItemCaseSensitive(t, "eval_precision");
        if (cJSON_IsString(ep)) cJSON_AddStringToObject(row, "eval_precision", ep->valuestring);
        cJSON_AddItemToArray(rounds, row);
        char fool[32] = "–", mcell[32] = "–";
        if (ok_f) snprintf(fool, sizeof fool, "%.1f%%", 100 * fooled);
        if (ok_ms) snprintf(mcell, sizeof mcell, "%.1f", ms);
        len += snprintf(md + len, sizeof md - len, "| %d | %s | %s | %s | %s | %s | %s | %.1f |\n",
                        r, cells[0], cells[1], cells[2], cells[3], fool, mcell, ts);
        if (len >= sizeof md) len = sizeof md - 1;
    }
    char path[4096];
    char *text = cJSON_Print(sum);
    cJSON_Delete(sum);
    snprintf(path, sizeof path, "%s/summary.json", a->out);
    pasm_status st = text ? pasm_write_file_atomic(path, text, strlen(text))
                          : pasm_errorf(PASM_ERR_NOMEM, "out of memory");
    free(text);
    snprintf(path, sizeof path, "%s/summary.md", a->out);
    if (!st) st = pasm_write_file_atomic(path, md, len);
    return st;
}

/* Runs one phase unless run.json has it; records it when it finishes. */
static int do_phase(const run_args *a, cJSON *state, const char *name, int round, int is_mine,
                    int *stop_mining_after) {
    if (phase_done(state, name)) {
        printf("phase %s: done before, skipped\n", name);
        return EXIT_OK;
    }
    double t0 = pasm_now_seconds();
    printf("== phase %s == (%.1f s into this run)\n", name, t0 - a->started);
    fflush(stdout);
    int rc = round == 0 || !strcmp(name, "long") ? phase_baseline(a, round)
             : is_mine  ? phase_mine(a, round, stop_mining_after)
                        : phase_round(a, round);
    if (rc) return rc;
    cJSON *rec = cJSON_CreateObject();
    cJSON_AddStringToObject(rec, "name", name);
    cJSON_AddNumberToObject(rec, "round", round);
    cJSON_AddNumberToObject(rec, "seconds", pasm_now_seconds() - t0);
    if (is_mine) mined_into(a, round, rec);
    else if ((rc = evaluate_into(a, round, rec))) {
        cJSON_Delete(rec);
        return rc;
    }
    cJSON_AddItemToArray(cJSON_GetObjectItemCaseSensitive(state, "phases"), rec);
    pasm_status st = state_write(a->out, state);
    if (!st) st = write_summary(a, state);
    fflush(stdout);
    return st ? cli_fail(CMD, st) : EXIT_OK;
}

static int run(const run_args *a) {
    if (mkdir(a->out, 0777) != 0 && access(a->out, W_OK) != 0)
        return cli_fail(CMD, pasm_errorf(PASM_ERR_IO, "%s: cannot create the run folder", a->out));
    char *args = args_json(a);
    cJSON *state = NULL;
    pasm_status st = state_open(a->out, args, &state);
    free(args);
    if (st) return cli_fail(CMD, st);
    int rc = EXIT_OK, finished_now = 0, stop_mining_after = a->stop_mining_after;
    const int long_run = is_control(a, "long-baseline");
    for (int r = long_run ? a->rounds : 0; r <= a->rounds && !rc; r++) {
        for (int is_mine = r && has_mining(a) && !long_run; is_mine >= 0 && !rc; is_mine--) {
            char name[32];
            if (long_run) snprintf(name, sizeof name, "long");
            else if (r == 0) snprintf(name, sizeof name, "baseline");
            else snprintf(name, sizeof name, is_mine ? "mine%d" : "round%d", r);
            int was_done = phase_done(state, name) != NULL;
            if (!was_done && a->stop_after_phases && finished_now >= a->stop_after_phases) {
                fprintf(stderr, "pasm run: stopped after %d phases as asked; run the same "
                                "command again to resume\n",
                        finished_now);
                rc = EXIT_FAIL;
                break;
            }
            rc = do_phase(a, state, name, r, is_mine, &stop_mining_after);
            finished_now += !was_done && !rc;
            if (r == 0 || long_run) break;
        }
    }
    if (!rc) printf("done: %s/summary.md\n", a->out);
    if (!rc && a->round.device) /* machine-readable, for bench/gpu-check.sh */
        printf("gpu_peak_mb %.0f\n",
               (double)pasm_device_peak_bytes((pasm_device)a->round.device) / 1048576.0);
    cJSON_Delete(state);
    return rc;
}

int pasm_cmd_run(int argc, char **argv) {
    enum { O_DATA = 256, O_SPLIT, O_VAL_DATA, O_VAL_SPLIT, O_TEST_SPLIT, O_VAL_FRACTION,
           O_INPUT_SIZE, O_CHANNELS, O_WIDTH, O_EPOCHS, O_BATCH, O_LR, O_SCHEDULE, O_MOMENTUM,
           O_WD, O_CROP, O_NO_FLIP, O_ROUNDS, O_ATTACK, O_POP, O_GENS, O_F, O_NO_EARLY, O_ITER,
           O_ABATCH, O_SIDE, O_FILL, O_MIX, O_MASK_PROB, O_SKIP, O_KD_ALPHA, O_KD_TEMP, O_INIT,
           O_REPOCHS, O_RLR, O_RSCHED, O_SEED, O_THREADS, O_OUT, O_STOP_PHASES, O_STOP_MINING,
           O_CONTROL, O_BASELINE, O_ERASE_P, O_PRECISION, O_DEVICE, O_HELP };
    static const struct option opts[] = {
        {"data", 1, 0, O_DATA}, {"split", 1, 0, O_SPLIT}, {"val-data", 1, 0, O_VAL_DATA},
        {"val-split", 1, 0, O_VAL_SPLIT}, {"test-split", 1, 0, O_TEST_SPLIT},
        {"val-fraction", 1, 0, O_VAL_FRACTION}, {"input-size", 1, 0, O_INPUT_SIZE},
        {"channels", 1, 0, O_CHANNELS}, {"width", 1, 0, O_WIDTH}, {"epochs", 1, 0, O_EPOCHS},
        {"batch", 1, 0, O_BATCH}, {"lr", 1, 0, O_LR}, {"schedule", 1, 0, O_SCHEDULE},
        {"momentum", 1, 0, O_MOMENTUM}, {"wd", 1, 0, O_WD}, {"crop-padding", 1, 0, O_CROP},
        {"no-flip", 0, 0, O_NO_FLIP}, {"rounds", 1, 0, O_ROUNDS}, {"attack", 1, 0, O_ATTACK},
        {"de-pop", 1, 0, O_POP}, {"de-gens", 1, 0, O_GENS}, {"de-f", 1, 0, O_F},
        {"no-de-early-stop", 0, 0, O_NO_EARLY}, {"iter-max", 1, 0, O_ITER},
        {"attack-batch", 1, 0, O_ABATCH}, {"side", 1, 0, O_SIDE}, {"fill", 1, 0, O_FILL},
        {"mix", 1, 0, O_MIX}, {"mask-prob", 1, 0, O_MASK_PROB},
        {"skip-misclassified", 0, 0, O_SKIP}, {"kd-alpha", 1, 0, O_KD_ALPHA},
        {"kd-temp", 1, 0, O_KD_TEMP}, {"student-init", 1, 0, O_INIT},
        {"round-epochs", 1, 0, O_REPOCHS}, {"round-lr", 1, 0, O_RLR},
        {"round-schedule", 1, 0, O_RSCHED}, {"seed", 1, 0, O_SEED}, {"threads", 1, 0, O_THREADS},
        {"out", 1, 0, O_OUT}, {"stop-after-phases", 1, 0, O_STOP_PHASES},
        {"stop-mining-after", 1, 0, O_STOP_MINING}, {"control", 1, 0, O_CONTROL},
        {"baseline", 1, 0, O_BASELINE}, {"erase-p", 1, 0, O_ERASE_P},
        {"precision", 1, 0, O_PRECISION}, {"device", 1, 0, O_DEVICE}, {"help", 0, 0, O_HELP},
        {0, 0, 0, 0}};
    run_args a;
    memset(&a, 0, sizeof a);
    a.split = "Training", a.val_split = "PublicTest", a.test_split = "PrivateTest";
    a.val_fraction = "0.1", a.lr = "0.1", a.schedule = "onecycle", a.momentum = "0.9";
    a.wd = "0.0005", a.erase_p = "0";
    a.input_size = 48, a.channels = 1, a.width = 64, a.epochs = 30, a.batch = 128;
    a.crop_padding = 4, a.hflip = 1, a.rounds = 2;
    cli_mine_defaults(&a.mine);
    cli_round_defaults(&a.round);
    int threads = 0;
    float check;
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        int ok = 1;
        pasm_status st;
        switch (c) {
        case O_DATA: a.data = optarg; break;
        case O_SPLIT: a.split = optarg; break;
        case O_VAL_DATA: a.val_data = optarg; break;
        case O_VAL_SPLIT: a.val_split = optarg; break;
        case O_TEST_SPLIT: a.test_split = optarg; break;
        case O_VAL_FRACTION: ok = cli_float(CMD, "--val-fraction", optarg, 0.001, 0.9, &check), a.val_fraction = optarg; break;
        case O_INPUT_SIZE: ok = cli_int(CMD, "--input-size", optarg, 32, 1024, &a.input_size); break;
        case O_CHANNELS: ok = cli_int(CMD, "--channels", optarg, 1, 3, &a.channels) && a.channels != 2; break;
        case O_WIDTH: ok = cli_int(CMD, "--width", optarg, 16, 64, &a.width); break;
        case O_EPOCHS: ok = cli_int(CMD, "--epochs", optarg, 1, 100000, &a.epochs); break;
        case O_BATCH: ok = cli_int(CMD, "--batch", optarg, 2, 65536, &a.batch); break;
        case O_LR: ok = cli_float(CMD, "--lr", optarg, 0, 100, &check), a.lr = optarg; break;
        case O_SCHEDULE: a.schedule = optarg; break;
        case O_MOMENTUM: ok = cli_float(CMD, "--momentum", optarg, 0, 0.9999, &a.round.momentum), a.momentum = optarg; break;
        case O_WD: ok = cli_float(CMD, "--wd", optarg, 0, 1, &a.round.wd), a.wd = optarg; break;
        case O_CROP: ok = cli_int(CMD, "--crop-padding", optarg, 0, 64, &a.crop_padding); break;
        case O_NO_FLIP: a.hflip = 0; break;
        case O_ROUNDS: ok = cli_int(CMD, "--rounds", optarg, 0, 1000, &a.rounds); break;
        case O_ATTACK:
            if ((st = pasm_attack_parse(optarg, &a.mine.attack.kind))) return cli_fail(CMD, st);
            break;
        case O_POP: ok = cli_int(CMD, "--de-pop", optarg, 4, 100000, &a.mine.attack.de_pop); break;
        case O_GENS: ok = cli_int(CMD, "--de-gens", optarg, 0, 100000, &a.mine.attack.de_gens); break;
        case O_F: ok = cli_float(CMD, "--de-f", optarg, 1e-6, 2, &a.mine.attack.de_f); break;
        case O_NO_EARLY: a.mine.attack.de_early_stop = 0; break;
        case O_ITER: ok = cli_int(CMD, "--iter-max", optarg, 1, 100000, &a.mine.attack.iter_max); break;
        case O_ABATCH: ok = cli_int(CMD, "--attack-batch", optarg, 1, 65536, &a.mine.attack.attack_batch); break;
        case O_SIDE: ok = cli_int(CMD, "--side", optarg, 1, 4096, &a.round.side); break;
        case O_FILL: a.round.fill = optarg; break;
        case O_MIX: a.round.mix = optarg; break;
        case O_MASK_PROB: ok = cli_float(CMD, "--mask-prob", optarg, 0, 1, &a.round.mask_prob); break;
        case O_SKIP: a.round.skip_misclassified = 1; break;
        case O_KD_ALPHA: ok = cli_float(CMD, "--kd-alpha", optarg, 0, 1, &a.round.kd_alpha); break;
        case O_KD_TEMP: ok = cli_float(CMD, "--kd-temp", optarg, 0.01, 1000, &a.round.kd_temp); break;
        case O_INIT: a.round.student_init = optarg; break;
        case O_REPOCHS: ok = cli_int(CMD, "--round-epochs", optarg, 1, 100000, &a.round.epochs); break;
        case O_RLR: ok = cli_float(CMD, "--round-lr", optarg, 0, 100, &a.round.lr); break;
        case O_RSCHED: a.round.schedule = optarg; break;
        case O_SEED: ok = cli_u64(CMD, "--seed", optarg, &a.seed); break;
        case O_THREADS: ok = cli_int(CMD, "--threads", optarg, 0, 1024, &threads); break;
        case O_OUT: a.out = optarg; break;
        case O_STOP_PHASES: ok = cli_int(CMD, "--stop-after-phases", optarg, 0, 1000, &a.stop_after_phases); break;
        case O_STOP_MINING: ok = cli_int(CMD, "--stop-mining-after", optarg, 0, 1 << 30, &a.stop_mining_after); break;
        case O_CONTROL: a.control = optarg; break;
        case O_BASELINE: a.baseline = optarg; break;
        case O_ERASE_P: ok = cli_float(CMD, "--erase-p", optarg, 0, 1, &check), a.erase_p = optarg; break;
        case O_PRECISION:
            ok = cli_precision(CMD, optarg, &a.round.precision);
            a.mine.precision = a.round.precision;
            break;
        case O_DEVICE: {
            int rc = cli_device(CMD, optarg, &a.round.device);
            if (rc) return rc;
            a.mine.device = a.round.device;
            break;
        }
        case O_HELP: usage(stdout); return EXIT_OK;
        default: return cli_usage_error(CMD, "unknown or incomplete option");
        }
        if (!ok) return EXIT_USAGE;
    }
    if (optind < argc) return cli_usage_error(CMD, "unexpected argument '%s'", argv[optind]);
    if (!a.data || !a.out) return cli_usage_error(CMD, "--data and --out are required");
    if (a.control) {
        int known = 0;
        for (size_t i = 0; i < sizeof CONTROLS / sizeof *CONTROLS; i++)
            known |= !strcmp(a.control, CONTROLS[i]);
        if (!strcmp(a.control, "none")) a.control = NULL;
        else if (!known)
            return cli_usage_error(CMD, "unknown --control '%s' (known: long-baseline, kd-only, "
                                        "random-point, random-erasing, cam-erasing, none)",
                                   a.control);
    }
    if (is_control(&a, "long-baseline") && a.baseline)
        return cli_usage_error(CMD, "--control long-baseline trains its own network: no "
                                    "--baseline");
    if (is_control(&a, "random-erasing") && !strcmp(a.round.mix, "replace"))
        return cli_usage_error(CMD, "--control random-erasing needs --mix union or masked");
    if (is_control(&a, "random-point")) a.mine.attack.kind = PASM_ATTACK_RANDOM;
    if (is_control(&a, "cam-erasing")) a.mine.attack.kind = PASM_ATTACK_CAM;
    if (a.baseline) {
        pasm_status bst = pasm_sha256_file(a.baseline, a.baseline_sha);
        if (bst) return cli_fail(CMD, bst);
    }
    pasm_fill_kind fk;
    pasm_status st = pasm_fill_parse(a.round.fill, &fk);
    if (st) return cli_fail(CMD, st);
    cli_threads(threads);
    a.started = pasm_now_seconds();
    return run(&a);
}
