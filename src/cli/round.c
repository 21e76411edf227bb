/* pasm round: one PASM student. Masks each training face's mined square
 * (baked into the uint8 images, so the augmentation moves the mask with the
 * face), mixes originals and masked copies (union, replace or masked), and
 * trains the student — from the teacher's weights or from scratch — with
 * cross-entropy plus distillation from the frozen teacher on the same
 * augmented batch. The best epoch on validation is the next teacher. */
#include <cJSON.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/pasm_cli.h"
#include "cli/progress.h"

static const char *CMD = "round";

void cli_round_defaults(cli_round_args *a) {
    memset(a, 0, sizeof *a);
    a->split = "Training";
    a->val_split = "PublicTest";
    a->fill = "mean";
    a->mix = "union";
    a->student_init = "teacher";
    a->schedule = "cosine";
    a->mask_prob = 0.5f;
    a->kd_alpha = 0.5f;
    a->kd_temp = 4.0f;
    a->lr = 0.01f;
    a->momentum = 0.9f;
    a->wd = 5e-4f;
    a->val_fraction = 0.1f;
    a->epochs = 10;
    a->batch = 128;
    a->crop_padding = 4;
    a->hflip = 1;
}

static void usage(FILE *f) {
    fprintf(f,
            "usage: pasm round --teacher CKPT --data PATH --mined MINED.csv --out STUDENT [options]\n\n"
            "Trains one PASM student on the training faces and their masked copies (a square\n"
            "at each mined point) with distillation from the teacher.\n\n"
            "  --teacher CKPT        the teacher that was mined (required)\n"
            "  --data PATH           the data mined (required); --split S (Training)\n"
            "  --val-data PATH       validation data (default: --data); --val-split S (PublicTest)\n"
            "  --val-fraction F      held-out share when there is no validation split (0.1)\n"
            "  --mined MINED.csv     the mined points (required)\n"
            "masks:\n"
            "  --side N              square side (the mined file's, else a quarter of the input)\n"
            "  --fill F              mean, zero or noise (mean)\n"
            "  --mix M               union (originals + masked, 2N per epoch), replace (N per\n"
            "                        epoch, each face its masked twin with --mask-prob, drawn\n"
            "                        every epoch) or masked (masked only) (union)\n"
            "  --mask-prob P         replace: probability of the masked twin (0.5)\n"
            "  --skip-misclassified  leave faces the teacher gets wrong unmasked\n"
            "  --no-mask             control kd-only: no --mined; the copies stay unmasked\n"
            "  --erase-copy          control random-erasing: no --mined; the copies get random\n"
            "                        erasing (p 1, area 0.02-0.4, aspect 0.3-3.3) every epoch\n"
            "  --erase-p F           random erasing of every face (0 = off)\n"
            "distillation and training:\n"
            "  --kd-alpha A          weight of the distillation term (0.5)\n"
            "  --kd-temp T           temperature (4)\n"
            "  --student-init S      teacher (fine-tune a copy) or scratch (teacher)\n"
            "  --round-epochs N      epochs (10)\n"
            "  --round-lr F          peak learning rate (0.01)\n"
            "  --round-schedule S    cosine, onecycle or constant (cosine, no warm-up)\n"
            "  --batch N             batch size (128); --momentum F (0.9); --wd F (5e-4)\n"
            "  --crop-padding N      random crop padding (4); --no-flip: no horizontal flip\n"
            "  --seed S              seed (0)\n"
            "  --out STUDENT         checkpoint (required), with .last, .state, .metrics.jsonl\n"
            "  --resume              continue from STUDENT's state file when there is one\n"
            "  --threads T           threads, 0 = all cores (0)\n"
            "  --device D            cpu or cuda: teacher and student on the GPU (cpu)\n"
            "  --precision P         fp32 or bf16 convolutions (teacher and student) (fp32)\n"
            "  --help                this text\n");
}

static char *args_json(const cli_round_args *a, int side) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "command", "round");
    cJSON_AddStringToObject(o, "teacher", a->teacher);
    cJSON_AddStringToObject(o, "data", a->data);
    cJSON_AddStringToObject(o, "split", a->split);
    cJSON_AddStringToObject(o, "val_data", a->val_data ? a->val_data : "");
    cJSON_AddStringToObject(o, "val_split", a->val_split);
    cJSON_AddStringToObject(o, "mined", a->mined ? a->mined : "");
    if (a->no_mask) cJSON_AddBoolToObject(o, "no_mask", 1);
    if (a->erase_copy) cJSON_AddBoolToObject(o, "erase_copy", 1);
    if (a->erase_p > 0) cJSON_AddNumberToObject(o, "erase_p", a->erase_p);
    if (a->precision) /* only when set: older round states still resume */
        cJSON_AddStringToObject(o, "precision", pasm_precision_name((pasm_precision)a->precision));
    cJSON_AddNumberToObject(o, "side", side);
    cJSON_AddStringToObject(o, "fill", a->fill);
    cJSON_AddStringToObject(o, "mix", a->mix);
    cJSON_AddNumberToObject(o, "mask_prob", a->mask_prob);
    cJSON_AddBoolToObject(o, "skip_misclassified", a->skip_misclassified);
    cJSON_AddNumberToObject(o, "kd_alpha", a->kd_alpha);
    cJSON_AddNumberToObject(o, "kd_temp", a->kd_temp);
    cJSON_AddStringToObject(o, "student_init", a->student_init);
    cJSON_AddNumberToObject(o, "epochs", a->epochs);
    cJSON_AddNumberToObject(o, "lr", a->lr);
    cJSON_AddStringToObject(o, "schedule", a->schedule);
    cJSON_AddNumberToObject(o, "batch", a->batch);
    cJSON_AddNumberToObject(o, "momentum", a->momentum);
    cJSON_AddNumberToObject(o, "wd", a->wd);
    cJSON_AddNumberToObject(o, "crop_padding", a->crop_padding);
    cJSON_AddBoolToObject(o, "hflip", a->hflip);
    char seed[32];
    snprintf(seed, sizeof seed, "%llu", (unsigned long long)a->seed);
    cJSON_AddStringToObject(o, "seed", seed);
    cJSON_AddStringToObject(o, "out", a->out);
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return s;
}

/* The square side: --side, else the mined file's, else a quarter. */
static int mined_side(const cli_round_args *a, int input_size) {
    if (a->side) return a->side;
    if (!a->mined) return input_size / 4;
    char *settings = NULL;
    int side = input_size / 4;
    if (!pasm_mined_sidecar_read(a->mined, &settings, NULL)) {
        cJSON *o = cJSON_Parse(settings);
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, "side");
        if (cJSON_IsNumber(v) && v->valueint > 0) side = v->valueint;
        cJSON_Delete(o);
    }
    pasm_clear_error();
    free(settings);
    return side;
}

/* D~: a copy of ds with each face's square filled; faces the teacher gets
 * wrong stay unmasked when skip (wrong[i] != 0). m NULL: a plain copy. */
static pasm_status make_masked(const pasm_dataset *ds, const pasm_mined *m, int side,
                               const pasm_fill *fill, const uint8_t *wrong, pasm_dataset *out) {
    int *idx = malloc((size_t)ds->n * sizeof(int));
    if (!idx) return pasm_errorf(PASM_ERR_NOMEM, "out of memory");
    for (int i = 0; i < ds->n; i++) idx[i] = i;
    pasm_status st = pasm_dataset_subset(ds, idx, ds->n, out);
    free(idx);
    if (st) return st;
    const int64_t per_image = (int64_t)ds->channels * ds->size * ds->size;
    for (int i = 0; i < ds->n && m; i++)
        if (!wrong || !wrong[i])
            pasm_mask_apply(out->images + i * per_image, ds->channels, ds->size, m->row[i],
                            m->col[i], side, fill, (uint64_t)i);
    return PASM_OK;
}

static pasm_status check_mined(const pasm_mined *m, const pasm_dataset *ds, const char *path) {
    if (m->n != ds->n)
        return pasm_errorf(PASM_ERR_INVALID, "%s has %d points for %d training images (mined "
                                             "on other data, or unfinished: run pasm mine again)",
                           path, m->n, ds->n);
    for (int i = 0; i < m->n; i++)
        if (m->index[i] != i || m->label[i] != ds->labels[i])
            return pasm_errorf(PASM_ERR_INVALID, "%s: row %d (index %d, label %d) does not match "
                                                 "image %d (label %d)",
                               path, i + 2, m->index[i], m->label[i], i, ds->labels[i]);
    return PASM_OK;
}

/* The round's training set from originals d and masked copies dm: both
 * (union, and replace, whose epochs pick one of each pair) or dm alone. */
static pasm_status mix_sets(const cli_round_args *a, const pasm_dataset *d, const pasm_dataset *dm,
                            pasm_dataset *out) {
    const int64_t per_image = (int64_t)d->channels * d->size * d->size;
    const int masked_only = !strcmp(a->mix, "masked"), copies = masked_only ? 1 : 2;
    pasm_status st = pasm_dataset_alloc(out, copies * d->n, d->channels, d->size, d->source);
    if (!st) st = pasm_dataset_set_classes(out, (const char *const *)d->class_names, d->n_classes);
    if (st) return st;
    out->labelled = 1;
    for (int i = 0; i < d->n; i++) {
        memcpy(out->images + i * per_image, (masked_only ? dm : d)->images + i * per_image,
               (size_t)per_image);
        out->labels[i] = d->labels[i];
        if (copies == 2) {
            memcpy(out->images + (d->n + i) * per_image, dm->images + i * per_image,
                   (size_t)per_image);
            out->labels[d->n + i] = d->labels[i];
        }
    }
    return PASM_OK;
}

/* Teacher's errors on the training faces (for --skip-misclassified). */
static pasm_status teacher_wrong(pasm_net *teacher, const pasm_model_meta *meta,
                                 const pasm_dataset *ds, uint8_t *wrong) {
    const int k = meta->net.num_classes;
    float *logits = malloc((size_t)ds->n * k * sizeof(float));
    if (!logits) return pasm_errorf(PASM_ERR_NOMEM, "out of memory");
    pasm_status st = pasm_evaluate(teacher, ds, meta->norm_mean, meta->norm_std, 0, NULL, NULL,
                                   NULL, logits);
    for (int i = 0; i < ds->n && !st; i++) {
        const float *row = logits + (size_t)i * k;
        int best = 0;
        for (int c = 1; c < k; c++)
            if (row[c] > row[best]) best = c;
        wrong[i] = best != ds->labels[i];
    }
    free(logits);
    return st;
}

static pasm_status train_options(const cli_round_args *a, pasm_net *teacher, int n_first,
                                 pasm_train_options *o) {
    pasm_train_defaults(o);
    o->epochs = a->epochs;
    o->batch = a->batch;
    o->sgd = (pasm_sgd_options){.lr = a->lr, .momentum = a->momentum, .weight_decay = a->wd,
                                .nesterov = a->momentum > 0};
    o->warmup_epochs = 0;
    o->augment.crop_padding = a->crop_padding;
    o->augment.hflip = a->hflip;
    o->augment.erase_p = a->erase_p;
    if (a->erase_copy) { /* the second copy (union) or every face (masked) */
        if (!strcmp(a->mix, "union")) o->augment.erase_always_from = n_first;
        else o->augment.erase_p = 1.0f;
    }
    o->seed = a->seed;
    o->teacher = a->kd_alpha > 0 ? teacher : NULL;
    o->pairs = !strcmp(a->mix, "replace"); /* each epoch: a face or its masked twin */
    o->twin_prob = a->mask_prob;
    o->kd_alpha = a->kd_alpha;
    o->kd_temp = a->kd_temp;
    o->out_path = a->out;
    char state[4096];
    pasm_train_sibling(a->out, "state", NULL, state, sizeof state);
    o->resume = a->resume && access(state, F_OK) == 0;
    return pasm_schedule_parse(a->schedule, &o->schedule);
}

static pasm_status check_args(const cli_round_args *a, pasm_fill_kind *fill) {
    pasm_status st = pasm_fill_parse(a->fill, fill);
    if (st) return st;
    if (strcmp(a->mix, "union") && strcmp(a->mix, "replace") && strcmp(a->mix, "masked"))
        return pasm_errorf(PASM_ERR_INVALID, "unknown --mix '%s' (known: union, replace, masked)",
                           a->mix);
    if (a->no_mask && a->erase_copy)
        return pasm_errorf(PASM_ERR_INVALID, "--no-mask and --erase-copy exclude each other");
    if (a->erase_copy && !strcmp(a->mix, "replace"))
        return pasm_errorf(PASM_ERR_INVALID, "--erase-copy needs --mix union or masked (replace "
                                             "would erase a fixed half)");
    if (!a->mined && !a->no_mask && !a->erase_copy)
        return pasm_errorf(PASM_ERR_INVALID, "--mined is required (unless --no-mask or "
                                             "--erase-copy)");
    if (strcmp(a->student_init, "teacher") && strcmp(a->student_init, "scratch"))
        return pasm_errorf(PASM_ERR_INVALID, "unknown --student-init '%s' (known: teacher, "
                                             "scratch)",
                           a->student_init);
    return PASM_OK;
}

static volatile int stop_requested;

int cli_round_run(const cli_round_args *a) {
    pasm_fill_kind fill_kind;
    pasm_status st = check_args(a, &fill_kind);
    if (st) return cli_fail(CMD, st);
    cli_catch_signals(&stop_requested);
    pasm_net *teacher = NULL, *student = NULL;
    pasm_model_meta tmeta, smeta;
    memset(&smeta, 0, sizeof smeta);
    /* the student inherits the teacher's config, precision included */
    const cli_model_options tmo = {.precision = a->precision, .device = a->device};
    int rc = cli_load_model(CMD, a->teacher, &tmo, a->batch, PASM_NET_EVAL, &teacher, &tmeta);
    if (rc) return rc;
    pasm_dataset d, dm, val, mixed, tmp;
    memset(&d, 0, sizeof d), memset(&dm, 0, sizeof dm), memset(&val, 0, sizeof val);
    memset(&mixed, 0, sizeof mixed), memset(&tmp, 0, sizeof tmp);
    pasm_mined m = {0};
    int held_out = 0, *train_idx = NULL, n_train = 0;
    uint8_t *wrong = NULL;
    if ((rc = cli_load_train_val(CMD, a->data, a->split, a->val_data, a->val_split,
                                 a->val_fraction, a->seed, &tmeta, &d, &val, &held_out,
                                 &train_idx, &n_train)))
        goto done;
    const int masks = !a->no_mask && !a->erase_copy;
    if (masks &&
        ((st = pasm_mined_read(a->mined, 0, &m, NULL)) || (st = check_mined(&m, &d, a->mined))))
        goto done;
    const int side = mined_side(a, tmeta.net.input_size);
    pasm_fill fill = {.kind = fill_kind, .seed = a->seed};
    for (int c = 0; c < tmeta.net.in_channels; c++)
        fill.mean[c] = (uint8_t)lrintf(fminf(fmaxf(tmeta.norm_mean[c] * 255.0f, 0), 255));
    if (a->skip_misclassified) {
        if (!(wrong = calloc((size_t)d.n, 1))) {
            st = pasm_errorf(PASM_ERR_NOMEM, "out of memory");
            goto done;
        }
        if ((st = teacher_wrong(teacher, &tmeta, &d, wrong))) goto done;
    }
    if (masks) st = make_masked(&d, &m, side, &fill, wrong, &dm);
    else st = make_masked(&d, NULL, 0, NULL, NULL, &dm); /* a plain copy */
    if (st) goto done;
    if (held_out) { /* drop the held-out validation faces from both */
        if ((st = pasm_dataset_subset(&d, train_idx, n_train, &tmp))) goto done;
        pasm_dataset_free(&d), d = tmp, memset(&tmp, 0, sizeof tmp);
        if ((st = pasm_dataset_subset(&dm, train_idx, n_train, &tmp))) goto done;
        pasm_dataset_free(&dm), dm = tmp, memset(&tmp, 0, sizeof tmp);
    }
    if ((st = mix_sets(a, &d, &dm, &mixed))) goto done;
    if ((st = pasm_net_create(&student, &tmeta.net, a->batch))) goto done;
    if (!strcmp(a->student_init, "teacher")) st = pasm_net_copy_state(student, teacher);
    else pasm_net_init(student, a->seed);
    if (st || (st = pasm_model_meta_copy(&smeta, &tmeta))) goto done;
    smeta.round = tmeta.round + 1;
    smeta.seed = a->seed;
    smeta.epoch = 0;
    free(smeta.args_json);
    smeta.args_json = args_json(a, side);
    pasm_train_options o;
    if ((st = train_options(a, teacher, d.n, &o))) goto done;
    char what[96];
    if (a->no_mask) snprintf(what, sizeof what, "no masks: originals only");
    else if (a->erase_copy) snprintf(what, sizeof what, "random erasing instead of masks");
    else snprintf(what, sizeof what, "squares of %d, %s fill", side, a->fill);
    printf("round %d: student (%s) on %d faces an epoch (%s mix, %s), kd alpha %g t %g, %d "
           "epochs, lr %g %s%s\n",
           smeta.round, a->student_init, o.pairs ? mixed.n / 2 : mixed.n, a->mix, what, (double)a->kd_alpha,
           (double)a->kd_temp, a->epochs, (double)a->lr, a->schedule, o.resume ? " (resuming)" : "");
    cli_print_device(a->device);
    fflush(stdout);
    cli_progress progress;
    cli_progress_init(&progress, cli_stderr_is_tty());
    pasm_train_hooks hooks = {cli_progress_batch, cli_progress_epoch, &progress, &stop_requested};
    pasm_train_result result;
    st = pasm_train(student, &smeta, &mixed, val.n ? &val : NULL, &o, &hooks, &result);
    cli_progress_end(&progress);
    if (!st)
        printf("done: best epoch %d (validation accuracy %.4f) -> %s\n", result.best_epoch,
               result.best_val_accuracy, a->out);
    if (!st) cli_print_steps(a->device, &result);
done:
    free(wrong);
    free(train_idx);
    pasm_mined_free(&m);
    pasm_dataset_free(&d), pasm_dataset_free(&dm), pasm_dataset_free(&val);
    pasm_dataset_free(&mixed), pasm_dataset_free(&tmp);
    pasm_net_free(student);
    pasm_net_free(teacher);
    pasm_model_meta_free(&tmeta);
    pasm_model_meta_free(&smeta);
    if (st == PASM_ERR_INTERRUPTED) {
        fprintf(stderr, "pasm round: %s\n", pasm_last_error());
        return EXIT_FAIL;
    }
    return st ? cli_fail(CMD, st) : rc;
}

int pasm_cmd_round(int argc, char **argv) {
    enum { O_TEACHER = 256, O_DATA, O_SPLIT, O_VAL_DATA, O_VAL_SPLIT, O_VAL_FRACTION, O_MINED,
           O_SIDE, O_FILL, O_MIX, O_MASK_PROB, O_SKIP, O_KD_ALPHA, O_KD_TEMP, O_INIT, O_EPOCHS,
           O_LR, O_SCHEDULE, O_BATCH, O_MOMENTUM, O_WD, O_CROP, O_NO_FLIP, O_SEED, O_OUT,
           O_RESUME, O_THREADS, O_NO_MASK, O_ERASE_COPY, O_ERASE_P, O_PRECISION, O_DEVICE, O_HELP };
    static const struct option opts[] = {
        {"teacher", required_argument, 0, O_TEACHER}, {"data", required_argument, 0, O_DATA},
        {"split", required_argument, 0, O_SPLIT}, {"val-data", required_argument, 0, O_VAL_DATA},
        {"val-split", required_argument, 0, O_VAL_SPLIT},
        {"val-fraction", required_argument, 0, O_VAL_FRACTION},
        {"mined", required_argument, 0, O_MINED}, {"side", required_argument, 0, O_SIDE},
        {"fill", required_argument, 0, O_FILL}, {"mix", required_argument, 0, O_MIX},
        {"mask-prob", required_argument, 0, O_MASK_PROB},
        {"skip-misclassified", no_argument, 0, O_SKIP},
        {"kd-alpha", required_argument, 0, O_KD_ALPHA}, {"kd-temp", required_argument, 0, O_KD_TEMP},
        {"student-init", required_argument, 0, O_INIT},
        {"round-epochs", required_argument, 0, O_EPOCHS}, {"round-lr", required_argument, 0, O_LR},
        {"round-schedule", required_argument, 0, O_SCHEDULE},
        {"batch", required_argument, 0, O_BATCH}, {"momentum", required_argument, 0, O_MOMENTUM},
        {"wd", required_argument, 0, O_WD}, {"crop-padding", required_argument, 0, O_CROP},
        {"no-flip", no_argument, 0, O_NO_FLIP}, {"seed", required_argument, 0, O_SEED},
        {"out", required_argument, 0, O_OUT}, {"resume", no_argument, 0, O_RESUME},
        {"threads", required_argument, 0, O_THREADS}, {"no-mask", no_argument, 0, O_NO_MASK},
        {"erase-copy", no_argument, 0, O_ERASE_COPY}, {"erase-p", required_argument, 0, O_ERASE_P},
        {"precision", required_argument, 0, O_PRECISION},
        {"device", required_argument, 0, O_DEVICE}, {"help", no_argument, 0, O_HELP},
        {0, 0, 0, 0}};
    cli_round_args a;
    cli_round_defaults(&a);
    int threads = 0;
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        int ok = 1;
        switch (c) {
        case O_TEACHER: a.teacher = optarg; break;
        case O_DATA: a.data = optarg; break;
        case O_SPLIT: a.split = optarg; break;
        case O_VAL_DATA: a.val_data = optarg; break;
        case O_VAL_SPLIT: a.val_split = optarg; break;
        case O_VAL_FRACTION: ok = cli_float(CMD, "--val-fraction", optarg, 0.001, 0.9, &a.val_fraction); break;
        case O_MINED: a.mined = optarg; break;
        case O_SIDE: ok = cli_int(CMD, "--side", optarg, 1, 4096, &a.side); break;
        case O_FILL: a.fill = optarg; break;
        case O_MIX: a.mix = optarg; break;
        case O_MASK_PROB: ok = cli_float(CMD, "--mask-prob", optarg, 0, 1, &a.mask_prob); break;
        case O_SKIP: a.skip_misclassified = 1; break;
        case O_KD_ALPHA: ok = cli_float(CMD, "--kd-alpha", optarg, 0, 1, &a.kd_alpha); break;
        case O_KD_TEMP: ok = cli_float(CMD, "--kd-temp", optarg, 0.01, 1000, &a.kd_temp); break;
        case O_INIT: a.student_init = optarg; break;
        case O_EPOCHS: ok = cli_int(CMD, "--round-epochs", optarg, 1, 100000, &a.epochs); break;
        case O_LR: ok = cli_float(CMD, "--round-lr", optarg, 0, 100, &a.lr); break;
        case O_SCHEDULE: a.schedule = optarg; break;
        case O_BATCH: ok = cli_int(CMD, "--batch", optarg, 2, 65536, &a.batch); break;
        case O_MOMENTUM: ok = cli_float(CMD, "--momentum", optarg, 0, 0.9999, &a.momentum); break;
        case O_WD: ok = cli_float(CMD, "--wd", optarg, 0, 1, &a.wd); break;
        case O_CROP: ok = cli_int(CMD, "--crop-padding", optarg, 0, 64, &a.crop_padding); break;
        case O_NO_FLIP: a.hflip = 0; break;
        case O_SEED: ok = cli_u64(CMD, "--seed", optarg, &a.seed); break;
        case O_OUT: a.out = optarg; break;
        case O_RESUME: a.resume = 1; break;
        case O_THREADS: ok = cli_int(CMD, "--threads", optarg, 0, 1024, &threads); break;
        case O_NO_MASK: a.no_mask = 1; break;
        case O_ERASE_COPY: a.erase_copy = 1; break;
        case O_ERASE_P: ok = cli_float(CMD, "--erase-p", optarg, 0, 1, &a.erase_p); break;
        case O_PRECISION: ok = cli_precision(CMD, optarg, &a.precision); break;
        case O_DEVICE: {
            int rc = cli_device(CMD, optarg, &a.device);
            if (rc) return rc;
            break;
        }
        case O_HELP: usage(stdout); return EXIT_OK;
        default: return cli_usage_error(CMD, "unknown or incomplete option");
        }
        if (!ok) return EXIT_USAGE;
    }
    if (optind < argc) return cli_usage_error(CMD, "unexpected argument '%s'", argv[optind]);
    if (!a.teacher || !a.data || !a.out || (!a.mined && !a.no_mask && !a.erase_copy))
        return cli_usage_error(CMD, "--teacher, --data, --mined and --out are required (--mined "
                                    "not with --no-mask or --erase-copy)");
    cli_threads(threads);
    return cli_round_run(&a);
}
