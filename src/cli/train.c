/* pasm train: loads the data, builds (or resumes) a network, trains it with
 * progress on stderr, and writes the checkpoint and its siblings (last,
 * state, metrics). The run's options are kept as JSON in every file it
 * writes; --resume takes them from the state file, so a resumed run is the
 * same run. */
#include <cJSON.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli_util.h"
#include "cli/progress.h"

static const char *CMD = "train";

typedef struct {
    char data[1024], split[64], val_data[1024], val_split[64], labels[1024], arch[32];
    char schedule[16], balance[16], out[1024], precision[8];
    int width, epochs, batch, warmup_epochs, input_size, channels, crop_padding, hflip, nesterov;
    float lr, momentum, wd, label_smoothing, erase_p, val_fraction;
    uint64_t seed;
} train_args;

static void defaults(train_args *a) {
    memset(a, 0, sizeof *a);
    strcpy(a->split, "Training");
    strcpy(a->val_split, "PublicTest");
    strcpy(a->arch, "resnet18");
    strcpy(a->schedule, "onecycle");
    strcpy(a->balance, "none");
    strcpy(a->precision, "fp32");
    a->width = 64;
    a->epochs = 30;
    a->batch = 128;
    a->warmup_epochs = 1;
    a->input_size = 48;
    a->channels = 1;
    a->crop_padding = 4;
    a->hflip = 1;
    a->nesterov = 1;
    a->lr = 0.1f;
    a->momentum = 0.9f;
    a->wd = 5e-4f;
    a->val_fraction = 0.1f;
}

static void usage(FILE *f) {
    fprintf(f,
            "usage: pasm train --data PATH --out CKPT [options]\n"
            "       pasm train --resume CKPT [--threads T]\n\n"
            "Trains a ResNet-18 expression classifier. Beside CKPT (the best epoch on\n"
            "validation) it writes CKPT.last, CKPT.state (for --resume) and CKPT.metrics.jsonl.\n"
            "Ctrl-C finishes the current step, saves a resumable state and exits 1.\n\n"
            "data:\n"
            "  --data PATH            FER2013 CSV (.csv or .csv.gz) or image folder (required)\n"
            "  --split S              training split (Training); several joined with '+'\n"
            "  --val-data PATH        validation data (default: the same --data)\n"
            "  --val-split S          validation split (PublicTest); a source without splits\n"
            "                         gives a seeded stratified --val-fraction of training\n"
            "  --val-fraction F       share held out when there is no validation split (0.1)\n"
            "  --labels FERPLUS_CSV   FER+ votes (fer2013new.csv) joined to a FER2013 CSV\n"
            "  --input-size N         network input side, images are resized (48)\n"
            "  --channels N           1 (grey) or 3 (1)\n"
            "network:\n"
            "  --arch NAME            resnet18 (resnet18)\n"
            "  --width N              base width 16, 32 or 64 (64)\n"
            "optimisation:\n"
            "  --epochs N             epochs (30)\n"
            "  --batch N              batch size (128)\n"
            "  --lr F                 peak learning rate (0.1)\n"
            "  --schedule S           onecycle, cosine or constant (onecycle)\n"
            "  --warmup-epochs N      linear warm-up epochs for cosine (1)\n"
            "  --momentum F           SGD momentum (0.9; onecycle cycles it 0.85..0.95)\n"
            "  --no-nesterov          classic momentum instead of Nesterov\n"
            "  --wd F                 weight decay (5e-4)\n"
            "  --label-smoothing F    label smoothing (0)\n"
            "  --balance B            none, weights (class-weighted loss) or sampler\n"
            "                         (class-balanced sampling) (none)\n"
            "augmentation:\n"
            "  --crop-padding N       random crop after reflect padding by N, 0 = off (4)\n"
            "  --no-flip              no random horizontal flip (flip is on)\n"
            "  --erase-p F            random erasing probability (0 = off)\n"
            "run:\n"
            "  --seed S               seed of everything random (0)\n"
            "  --threads T            threads, 0 = all cores (0)\n"
            "  --precision P          fp32 or bf16: convolutions with bf16 operands and fp32\n"
            "                         sums (AMX or AVX512-BF16 where the CPU has them), fp32\n"
            "                         weights (fp32)\n"
            "  --device D             cpu, or cuda: train on the GPU (builds with the CUDA\n"
            "                         backend); not part of the run: --resume takes it anew (cpu)\n"
            "  --out CKPT             checkpoint path (required)\n"
            "  --resume CKPT          continue the run that wrote CKPT\n"
            "  --stop-after-epochs N  end this run resumably after N epochs (0 = off)\n"
            "  --help                 this text\n");
}

/* ---- the options as JSON (the checkpoints' "args") ---- */

static char *args_to_json(const train_args *a) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "command", "train");
    cJSON_AddStringToObject(o, "data", a->data);
    cJSON_AddStringToObject(o, "split", a->split);
    cJSON_AddStringToObject(o, "val_data", a->val_data);
    cJSON_AddStringToObject(o, "val_split", a->val_split);
    cJSON_AddNumberToObject(o, "val_fraction", a->val_fraction);
    cJSON_AddStringToObject(o, "labels", a->labels);
    cJSON_AddNumberToObject(o, "input_size", a->input_size);
    cJSON_AddNumberToObject(o, "channels", a->channels);
    cJSON_AddStringToObject(o, "arch", a->arch);
    cJSON_AddNumberToObject(o, "width", a->width);
    cJSON_AddNumberToObject(o, "epochs", a->epochs);
    cJSON_AddNumberToObject(o, "batch", a->batch);
    cJSON_AddNumberToObject(o, "lr", a->lr);
    cJSON_AddStringToObject(o, "schedule", a->schedule);
    cJSON_AddNumberToObject(o, "warmup_epochs", a->warmup_epochs);
    cJSON_AddNumberToObject(o, "momentum", a->momentum);
    cJSON_AddBoolToObject(o, "nesterov", a->nesterov);
    cJSON_AddNumberToObject(o, "wd", a->wd);
    cJSON_AddNumberToObject(o, "label_smoothing", a->label_smoothing);
    cJSON_AddStringToObject(o, "balance", a->balance);
    cJSON_AddNumberToObject(o, "crop_padding", a->crop_padding);
    cJSON_AddBoolToObject(o, "hflip", a->hflip);
    cJSON_AddNumberToObject(o, "erase_p", a->erase_p);
    cJSON_AddStringToObject(o, "precision", a->precision);
    char seed[32];
    snprintf(seed, sizeof seed, "%llu", (unsigned long long)a->seed);
    cJSON_AddStringToObject(o, "seed", seed);
    cJSON_AddStringToObject(o, "out", a->out);
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return s;
}

static int json_str(const cJSON *o, const char *key, char *dst, size_t len) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsString(v)) return 0;
    snprintf(dst, len, "%s", v->valuestring);
    return 1;
}

static int json_num(const cJSON *o, const char *key, double *dst) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (cJSON_IsBool(v)) {
        *dst = cJSON_IsTrue(v);
        return 1;
    }
    if (!cJSON_IsNumber(v)) return 0;
    *dst = v->valuedouble;
    return 1;
}

static pasm_status args_from_json(const char *source, const char *json, train_args *a) {
    cJSON *o = cJSON_Parse(json);
    if (!o || !cJSON_IsObject(o)) {
        cJSON_Delete(o);
        return pasm_errorf(PASM_ERR_FORMAT, "%s: the stored run options are not valid JSON",
                           source);
    }
    double v[18];
    char seed[32];
    int ok = json_str(o, "data", a->data, sizeof a->data) &&
             json_str(o, "split", a->split, sizeof a->split) &&
             json_str(o, "val_data", a->val_data, sizeof a->val_data) &&
             json_str(o, "val_split", a->val_split, sizeof a->val_split) &&
             json_str(o, "labels", a->labels, sizeof a->labels) &&
             json_str(o, "arch", a->arch, sizeof a->arch) &&
             json_str(o, "schedule", a->schedule, sizeof a->schedule) &&
             json_str(o, "balance", a->balance, sizeof a->balance) &&
             json_str(o, "out", a->out, sizeof a->out) && json_str(o, "seed", seed, sizeof seed) &&
             json_num(o, "input_size", &v[0]) && json_num(o, "channels", &v[1]) &&
             json_num(o, "width", &v[2]) && json_num(o, "epochs", &v[3]) &&
             json_num(o, "batch", &v[4]) && json_num(o, "lr", &v[5]) &&
             json_num(o, "warmup_epochs", &v[6]) && json_num(o, "momentum", &v[7]) &&
             json_num(o, "nesterov", &v[8]) && json_num(o, "wd", &v[9]) &&
             json_num(o, "label_smoothing", &v[10]) && json_num(o, "crop_padding", &v[11]) &&
             json_num(o, "hflip", &v[12]) && json_num(o, "erase_p", &v[13]) &&
             json_num(o, "val_fraction", &v[14]);
    /* runs from before --precision existed are fp32 */
    if (!json_str(o, "precision", a->precision, sizeof a->precision))
        strcpy(a->precision, "fp32");
    cJSON_Delete(o);
    if (!ok)
        return pasm_errorf(PASM_ERR_FORMAT, "%s: the stored run options are incomplete", source);
    a->input_size = (int)v[0];
    a->channels = (int)v[1];
    a->width = (int)v[2];
    a->epochs = (int)v[3];
    a->batch = (int)v[4];
    a->lr = (float)v[5];
    a->warmup_epochs = (int)v[6];
    a->momentum = (float)v[7];
    a->nesterov = (int)v[8];
    a->wd = (float)v[9];
    a->label_smoothing = (float)v[10];
    a->crop_padding = (int)v[11];
    a->hflip = (int)v[12];
    a->erase_p = (float)v[13];
    a->val_fraction = (float)v[14];
    a->seed = strtoull(seed, NULL, 10);
    pasm_precision prec;
    if (pasm_precision_parse(a->precision, &prec))
        return pasm_error_prefix(PASM_ERR_FORMAT, "%s: stored run options", source);
    return PASM_OK;
}

/* ---- option parsing ---- */

enum { O_DATA = 256, O_SPLIT, O_VAL_DATA, O_VAL_SPLIT, O_VAL_FRACTION, O_LABELS, O_INPUT_SIZE,
       O_CHANNELS, O_ARCH, O_WIDTH, O_EPOCHS, O_BATCH, O_LR, O_SCHEDULE, O_WARMUP, O_MOMENTUM,
       O_NO_NESTEROV, O_WD, O_SMOOTH, O_BALANCE, O_CROP, O_NO_FLIP, O_ERASE, O_SEED, O_THREADS,
       O_PRECISION, O_DEVICE, O_OUT, O_RESUME, O_STOP_AFTER, O_HELP };

static const struct option long_options[] = {
    {"data", required_argument, 0, O_DATA},
    {"split", required_argument, 0, O_SPLIT},
    {"val-data", required_argument, 0, O_VAL_DATA},
    {"val-split", required_argument, 0, O_VAL_SPLIT},
    {"val-fraction", required_argument, 0, O_VAL_FRACTION},
    {"labels", required_argument, 0, O_LABELS},
    {"input-size", required_argument, 0, O_INPUT_SIZE},
    {"channels", required_argument, 0, O_CHANNELS},
    {"arch", required_argument, 0, O_ARCH},
    {"width", required_argument, 0, O_WIDTH},
    {"epochs", required_argument, 0, O_EPOCHS},
    {"batch", required_argument, 0, O_BATCH},
    {"lr", required_argument, 0, O_LR},
    {"schedule", required_argument, 0, O_SCHEDULE},
    {"warmup-epochs", required_argument, 0, O_WARMUP},
    {"momentum", required_argument, 0, O_MOMENTUM},
    {"no-nesterov", no_argument, 0, O_NO_NESTEROV},
    {"wd", required_argument, 0, O_WD},
    {"label-smoothing", required_argument, 0, O_SMOOTH},
    {"balance", required_argument, 0, O_BALANCE},
    {"crop-padding", required_argument, 0, O_CROP},
    {"no-flip", no_argument, 0, O_NO_FLIP},
    {"erase-p", required_argument, 0, O_ERASE},
    {"seed", required_argument, 0, O_SEED},
    {"threads", required_argument, 0, O_THREADS},
    {"precision", required_argument, 0, O_PRECISION},
    {"device", required_argument, 0, O_DEVICE},
    {"out", required_argument, 0, O_OUT},
    {"resume", required_argument, 0, O_RESUME},
    {"stop-after-epochs", required_argument, 0, O_STOP_AFTER},
    {"help", no_argument, 0, O_HELP},
    {0, 0, 0, 0}};

static int copy_opt(char *dst, size_t len, const char *opt, const char *v) {
    if (strlen(v) >= len) {
        fprintf(stderr, "pasm %s: %s: value too long\n", CMD, opt);
        return 0;
    }
    strcpy(dst, v);
    return 1;
}

/* Returns -1 to go on, else the exit code. */
static int parse(int argc, char **argv, train_args *a, int *threads, char *resume,
                 size_t resume_len, int *stop_after, int *device) {
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, "", long_options, NULL)) != -1) {
        int ok = 1;
        switch (c) {
        case O_DATA: ok = copy_opt(a->data, sizeof a->data, "--data", optarg); break;
        case O_SPLIT: ok = copy_opt(a->split, sizeof a->split, "--split", optarg); break;
        case O_VAL_DATA: ok = copy_opt(a->val_data, sizeof a->val_data, "--val-data", optarg); break;
        case O_VAL_SPLIT: ok = copy_opt(a->val_split, sizeof a->val_split, "--val-split", optarg); break;
        case O_VAL_FRACTION: ok = cli_float(CMD, "--val-fraction", optarg, 0.001, 0.9, &a->val_fraction); break;
        case O_LABELS: ok = copy_opt(a->labels, sizeof a->labels, "--labels", optarg); break;
        case O_INPUT_SIZE: ok = cli_int(CMD, "--input-size", optarg, 32, 1024, &a->input_size); break;
        case O_CHANNELS: ok = cli_int(CMD, "--channels", optarg, 1, 3, &a->channels) && a->channels != 2; break;
        case O_ARCH: ok = copy_opt(a->arch, sizeof a->arch, "--arch", optarg); break;
        case O_WIDTH: ok = cli_int(CMD, "--width", optarg, 16, 64, &a->width); break;
        case O_EPOCHS: ok = cli_int(CMD, "--epochs", optarg, 1, 100000, &a->epochs); break;
        case O_BATCH: ok = cli_int(CMD, "--batch", optarg, 2, 65536, &a->batch); break;
        case O_LR: ok = cli_float(CMD, "--lr", optarg, 0, 100, &a->lr); break;
        case O_SCHEDULE: ok = copy_opt(a->schedule, sizeof a->schedule, "--schedule", optarg); break;
        case O_WARMUP: ok = cli_int(CMD, "--warmup-epochs", optarg, 0, 100000, &a->warmup_epochs); break;
        case O_MOMENTUM: ok = cli_float(CMD, "--momentum", optarg, 0, 0.9999, &a->momentum); break;
        case O_NO_NESTEROV: a->nesterov = 0; break;
        case O_WD: ok = cli_float(CMD, "--wd", optarg, 0, 1, &a->wd); break;
        case O_SMOOTH: ok = cli_float(CMD, "--label-smoothing", optarg, 0, 0.999, &a->label_smoothing); break;
        case O_BALANCE: ok = copy_opt(a->balance, sizeof a->balance, "--balance", optarg); break;
        case O_CROP: ok = cli_int(CMD, "--crop-padding", optarg, 0, 64, &a->crop_padding); break;
        case O_NO_FLIP: a->hflip = 0; break;
        case O_ERASE: ok = cli_float(CMD, "--erase-p", optarg, 0, 1, &a->erase_p); break;
        case O_SEED: ok = cli_u64(CMD, "--seed", optarg, &a->seed); break;
        case O_THREADS: ok = cli_int(CMD, "--threads", optarg, 0, 1024, threads); break;
        case O_PRECISION: {
            int p = 0;
            ok = cli_precision(CMD, optarg, &p);
            snprintf(a->precision, sizeof a->precision, "%s", pasm_precision_name((pasm_precision)p));
            break;
        }
        case O_DEVICE: {
            int rc = cli_device(CMD, optarg, device);
            if (rc) return rc;
            break;
        }
        case O_OUT: ok = copy_opt(a->out, sizeof a->out, "--out", optarg); break;
        case O_RESUME: ok = copy_opt(resume, resume_len, "--resume", optarg); break;
        case O_STOP_AFTER: ok = cli_int(CMD, "--stop-after-epochs", optarg, 0, 100000, stop_after); break;
        case O_HELP: usage(stdout); return EXIT_OK;
        default: return cli_usage_error(CMD, "unknown or incomplete option");
        }
        if (!ok) return EXIT_USAGE;
    }
    if (optind < argc) return cli_usage_error(CMD, "unexpected argument '%s'", argv[optind]);
    if (a->channels == 2) return cli_usage_error(CMD, "--channels must be 1 or 3");
    return -1;
}

/* ---- data ---- */

/* Training and validation sets as design.md says: --val-data, else the
 * source's validation split, else a seeded stratified share of training. */
static int load_data(const train_args *a, pasm_dataset *train, pasm_dataset *val) {
    pasm_load_spec spec = {.path = a->data, .split = a->split, .input_size = a->input_size,
                           .channels = a->channels, .labels = a->labels[0] ? a->labels : NULL};
    pasm_status st = cli_dataset_load(&spec, train);
    if (st) return cli_fail(CMD, st);
    pasm_load_spec vspec = spec;
    vspec.path = a->val_data[0] ? a->val_data : a->data;
    vspec.split = a->val_split;
    if (a->val_data[0]) vspec.labels = NULL;
    st = cli_dataset_load(&vspec, val);
    if (st && a->val_data[0]) {
        pasm_dataset_free(train);
        return cli_fail(CMD, st);
    }
    /* No separate validation split in this source: hold out a share. */
    if (st || cli_same_images(train, val) || val->n == 0) {
        if (!st) pasm_dataset_free(val);
        pasm_dataset all = *train;
        memset(train, 0, sizeof *train);
        st = pasm_dataset_split(&all, a->val_fraction, a->seed, train, val);
        pasm_dataset_free(&all);
        if (st) return cli_fail(CMD, st);
    }
    if (val->labelled && val->n_classes && train->n_classes) {
        st = pasm_dataset_match_classes(val, (const char *const *)train->class_names,
                                        train->n_classes, 0, NULL);
        if (st) {
            pasm_dataset_free(train);
            pasm_dataset_free(val);
            return cli_fail(CMD, st);
        }
    }
    return EXIT_OK;
}

/* ---- the run ---- */

static int setup_options(const train_args *a, pasm_train_options *o) {
    pasm_train_defaults(o);
    o->epochs = a->epochs;
    o->batch = a->batch;
    o->sgd = (pasm_sgd_options){.lr = a->lr, .momentum = a->momentum, .weight_decay = a->wd,
                                .nesterov = a->nesterov && a->momentum > 0};
    o->warmup_epochs = a->warmup_epochs;
    o->label_smoothing = a->label_smoothing;
    o->augment.crop_padding = a->crop_padding;
    o->augment.hflip = a->hflip;
    o->augment.erase_p = a->erase_p;
    o->seed = a->seed;
    pasm_status st = pasm_schedule_parse(a->schedule, &o->schedule);
    if (!st) st = pasm_balance_parse(a->balance, &o->balance);
    if (!st && a->crop_padding >= a->input_size)
        st = pasm_errorf(PASM_ERR_INVALID, "--crop-padding %d must be below --input-size %d",
                         a->crop_padding, a->input_size);
    if (st) return cli_fail(CMD, st);
    return -1;
}

static volatile int stop_requested;

static int run(train_args *a, int resume, int stop_after, int device) {
    /* Caught from the start: a Ctrl-C while loading stops after the first step. */
    cli_catch_signals(&stop_requested);
    pasm_train_options o;
    int rc = setup_options(a, &o);
    if (rc >= 0) return rc;
    o.out_path = a->out;
    o.resume = resume;
    o.stop_after_epochs = stop_after;
    pasm_dataset train, val;
    memset(&train, 0, sizeof train);
    memset(&val, 0, sizeof val);
    if ((rc = load_data(a, &train, &val))) return rc;
    pasm_model_meta meta;
    memset(&meta, 0, sizeof meta);
    pasm_net *net = NULL;
    pasm_status st = PASM_OK;
    meta.net = (pasm_net_config){.width = a->width, .in_channels = a->channels,
                                 .num_classes = train.n_classes, .input_size = a->input_size};
    snprintf(meta.net.arch, sizeof meta.net.arch, "%s", a->arch);
    pasm_precision precision = PASM_PRECISION_FP32;
    pasm_precision_parse(a->precision, &precision); /* checked when parsed */
    meta.net.precision = precision;
    meta.net.device = device;
    meta.seed = a->seed;
    meta.args_json = args_to_json(a);
    const char *const *names = (const char *const *)train.class_names;
    meta.n_classes = train.n_classes;
    meta.class_names = calloc((size_t)train.n_classes, sizeof(char *));
    for (int i = 0; meta.class_names && i < train.n_classes; i++)
        meta.class_names[i] = strdup(names[i]);
    meta.n_norm = a->channels;
    if ((st = pasm_dataset_mean_std(&train, meta.norm_mean, meta.norm_std))) goto done;
    if ((st = pasm_net_create(&net, &meta.net, a->batch))) goto done;
    pasm_net_init(net, a->seed);
    printf("training resnet18 width %d on %d images (%s), validating on %d (%s); %d classes, "
           "%d epochs of batch %d, %s schedule, lr %g\n",
           a->width, train.n, train.source ? train.source : a->data, val.n,
           val.source ? val.source : "held out", train.n_classes, a->epochs, a->batch,
           a->schedule, (double)a->lr);
    printf("memory planned for the network: %.1f MiB\n", pasm_net_memory_bytes(net) / 1048576.0);
    cli_print_device(device);
    if (precision == PASM_PRECISION_BF16) {
        const char *how = "on the GPU's tensor cores";
        if (device != PASM_DEVICE_CUDA) {
            switch (pasm_precision_bf16_native()) {
            case 1: how = "on AMX tiles"; break;
            case 2: how = "as AVX512-BF16 dot products (this CPU has no AMX-BF16)"; break;
            default:
                how = "emulated with fp32 sgemm (neither AMX-BF16 nor AVX512-BF16 in use here: "
                      "slower than fp32)";
            }
        }
        printf("precision bf16: convolutions with bf16 operands and fp32 sums, %s\n", how);
    }
    fflush(stdout);
    cli_progress progress;
    cli_progress_init(&progress, cli_stderr_is_tty());
    pasm_train_hooks hooks = {cli_progress_batch, cli_progress_epoch, &progress, &stop_requested};
    pasm_train_result result;
    st = pasm_train(net, &meta, &train, val.n ? &val : NULL, &o, &hooks, &result);
    cli_progress_end(&progress);
    if (!st)
        printf("done: %d epochs, %lld steps in %.1f s; best epoch %d (validation accuracy "
               "%.4f) -> %s\n",
               result.epochs_done, (long long)result.steps, result.seconds, result.best_epoch,
               result.best_val_accuracy, a->out);
    if (!st) cli_print_steps(device, &result);
    if (!st && device)
        printf("peak GPU memory: %.0f MiB\n",
               (double)pasm_device_peak_bytes((pasm_device)device) / 1048576.0);
done:
    pasm_net_free(net);
    pasm_model_meta_free(&meta);
    pasm_dataset_free(&train);
    pasm_dataset_free(&val);
    if (st == PASM_ERR_INTERRUPTED) {
        fprintf(stderr, "pasm train: %s\n", pasm_last_error());
        return EXIT_FAIL;
    }
    return st ? cli_fail(CMD, st) : EXIT_OK;
}

/* --resume CKPT: the options come from CKPT's state file. */
static int load_resume_args(const char *ckpt, train_args *a) {
    char path[4096];
    pasm_train_sibling(ckpt, "state", NULL, path, sizeof path);
    pasm_safetensors st_file;
    pasm_status st = pasm_safetensors_read(path, &st_file);
    if (st) return cli_fail(CMD, pasm_error_prefix(st, "cannot resume %s", ckpt));
    const char *json = pasm_safetensors_meta(&st_file, "args");
    st = json ? args_from_json(path, json, a)
              : pasm_errorf(PASM_ERR_FORMAT, "%s: no stored run options", path);
    pasm_safetensors_free(&st_file);
    if (st) return cli_fail(CMD, st);
    snprintf(a->out, sizeof a->out, "%s", ckpt);
    return -1;
}

int pasm_cmd_train(int argc, char **argv) {
    train_args a;
    defaults(&a);
    int threads = 0, stop_after = 0, device = 0;
    char resume[1024] = "";
    int rc = parse(argc, argv, &a, &threads, resume, sizeof resume, &stop_after, &device);
    if (rc >= 0) return rc;
    cli_threads(threads);
    if (resume[0]) {
        if ((rc = load_resume_args(resume, &a)) >= 0) return rc;
        return run(&a, 1, stop_after, device);
    }
    if (!a.data[0]) return cli_usage_error(CMD, "--data is required");
    if (!a.out[0]) return cli_usage_error(CMD, "--out is required");
    return run(&a, 0, stop_after, device);
}
