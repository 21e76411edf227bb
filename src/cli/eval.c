/* pasm eval: accuracy, mean class accuracy, per-class accuracy and the
 * confusion matrix of a checkpoint on a data split, optionally with
 * horizontal-flip test-time augmentation; --json for machines. */
#include <cJSON.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli_util.h"

static const char *CMD = "eval";

static void usage(FILE *f) {
    fprintf(f, "usage: pasm eval --model CKPT --data PATH [options]\n\n"
               "Evaluates a checkpoint: accuracy, mean class accuracy, per-class accuracy and\n"
               "the confusion matrix (rows: true class, columns: predicted).\n\n"
               "  --model CKPT        checkpoint (pasm's, or a PyTorch state_dict file) (required)\n"
               "  --data PATH         FER2013 CSV or image folder (required)\n"
               "  --split S           split to evaluate (PrivateTest)\n"
               "  --tta flip          average each face's softmax with its mirror image's (off)\n"
               "  --json              one JSON object instead of the table\n"
               "  --batch N           faces per forward pass (256)\n"
               "  --threads T         threads, 0 = all cores (0)\n"
               "  --precision P       fp32 or bf16 convolutions (as pasm train's) (fp32)\n"
               "  --device D          cpu or cuda (a GPU, in builds with the CUDA backend) (cpu)\n"
               "  --ignore-unknown    skip classes the model does not know (with a warning)\n"
               "for files without pasm's metadata:\n"
               "  --input-size N      network input side (48)\n"
               "  --classes A,B,...   class names in label order (FER2013's for 7 classes)\n"
               "  --norm MEAN,STD     normalisation in 0..1 pixel units (per channel: m1,m2,m3,s1,s2,s3)\n"
               "  --help              this text\n");
}

static void print_json(const pasm_model_meta *meta, const pasm_metrics *m, const char *model,
                       const pasm_dataset *ds, int tta) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "model", model);
    cJSON_AddStringToObject(o, "data", ds->source ? ds->source : "");
    cJSON_AddStringToObject(o, "tta", tta ? "flip" : "none");
    cJSON_AddNumberToObject(o, "count", (double)m->count);
    cJSON_AddNumberToObject(o, "accuracy", pasm_metrics_accuracy(m));
    cJSON_AddNumberToObject(o, "mean_class_accuracy", pasm_metrics_mean_class_accuracy(m));
    cJSON *per = cJSON_AddObjectToObject(o, "per_class");
    cJSON *classes = cJSON_AddArrayToObject(o, "classes");
    cJSON *conf = cJSON_AddArrayToObject(o, "confusion");
    for (int c = 0; c < m->n_classes; c++) {
        double a = pasm_metrics_class_accuracy(m, c);
        if (isnan(a)) cJSON_AddNullToObject(per, meta->class_names[c]);
        else cJSON_AddNumberToObject(per, meta->class_names[c], a);
        cJSON_AddItemToArray(classes, cJSON_CreateString(meta->class_names[c]));
        cJSON *row = cJSON_CreateArray();
        for (int j = 0; j < m->n_classes; j++)
            cJSON_AddItemToArray(row, cJSON_CreateNumber((double)m->confusion[c * m->n_classes + j]));
        cJSON_AddItemToArray(conf, row);
    }
    char *s = cJSON_PrintUnformatted(o);
    printf("%s\n", s);
    free(s);
    cJSON_Delete(o);
}

static void print_table(const pasm_model_meta *meta, const pasm_metrics *m, const char *model,
                        const pasm_dataset *ds, int tta) {
    printf("%s on %s: %lld faces%s\n", model, ds->source ? ds->source : "data",
           (long long)m->count, tta ? ", flip test-time augmentation" : "");
    printf("accuracy %.4f   mean class accuracy %.4f\n\n", pasm_metrics_accuracy(m),
           pasm_metrics_mean_class_accuracy(m));
    printf("%-12s %8s %6s\n", "class", "accuracy", "count");
    for (int c = 0; c < m->n_classes; c++) {
        int64_t count = 0;
        for (int j = 0; j < m->n_classes; j++) count += m->confusion[c * m->n_classes + j];
        double a = pasm_metrics_class_accuracy(m, c);
        if (isnan(a)) printf("%-12s %8s %6lld\n", meta->class_names[c], "-", (long long)count);
        else printf("%-12s %8.4f %6lld\n", meta->class_names[c], a, (long long)count);
    }
    printf("\nconfusion (rows: true, columns: predicted)\n%-12s", "");
    for (int j = 0; j < m->n_classes; j++) printf(" %7.7s", meta->class_names[j]);
    printf("\n");
    for (int c = 0; c < m->n_classes; c++) {
        printf("%-12.12s", meta->class_names[c]);
        for (int j = 0; j < m->n_classes; j++)
            printf(" %7lld", (long long)m->confusion[c * m->n_classes + j]);
        printf("\n");
    }
}

int pasm_cmd_eval(int argc, char **argv) {
    enum { O_MODEL = 256, O_DATA, O_SPLIT, O_TTA, O_JSON, O_BATCH, O_THREADS, O_IGNORE,
           O_INPUT_SIZE, O_CLASSES, O_NORM, O_PRECISION, O_DEVICE, O_HELP };
    static const struct option opts[] = {
        {"model", required_argument, 0, O_MODEL}, {"data", required_argument, 0, O_DATA},
        {"split", required_argument, 0, O_SPLIT}, {"tta", required_argument, 0, O_TTA},
        {"json", no_argument, 0, O_JSON}, {"batch", required_argument, 0, O_BATCH},
        {"threads", required_argument, 0, O_THREADS},
        {"ignore-unknown", no_argument, 0, O_IGNORE},
        {"input-size", required_argument, 0, O_INPUT_SIZE},
        {"classes", required_argument, 0, O_CLASSES}, {"norm", required_argument, 0, O_NORM},
        {"precision", required_argument, 0, O_PRECISION},
        {"device", required_argument, 0, O_DEVICE},
        {"help", no_argument, 0, O_HELP}, {0, 0, 0, 0}};
    const char *model = NULL, *data = NULL, *split = "PrivateTest";
    int tta = 0, json = 0, batch = 256, threads = 0, ignore = 0;
    cli_model_options mo = {0};
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        int ok = 1;
        switch (c) {
        case O_MODEL: model = optarg; break;
        case O_DATA: data = optarg; break;
        case O_SPLIT: split = optarg; break;
        case O_TTA:
            if (!strcmp(optarg, "flip")) tta = 1;
            else if (!strcmp(optarg, "none")) tta = 0;
            else return cli_usage_error(CMD, "--tta: '%s' is not flip or none", optarg);
            break;
        case O_JSON: json = 1; break;
        case O_BATCH: ok = cli_int(CMD, "--batch", optarg, 1, 65536, &batch); break;
        case O_THREADS: ok = cli_int(CMD, "--threads", optarg, 0, 1024, &threads); break;
        case O_IGNORE: ignore = 1; break;
        case O_INPUT_SIZE: ok = cli_int(CMD, "--input-size", optarg, 32, 1024, &mo.input_size); break;
        case O_CLASSES: mo.classes = optarg; break;
        case O_NORM: mo.norm = optarg; break;
        case O_PRECISION: ok = cli_precision(CMD, optarg, &mo.precision); break;
        case O_DEVICE: {
            int rc = cli_device(CMD, optarg, &mo.device);
            if (rc) return rc;
            break;
        }
        case O_HELP: usage(stdout); return EXIT_OK;
        default: return cli_usage_error(CMD, "unknown or incomplete option");
        }
        if (!ok) return EXIT_USAGE;
    }
    if (optind < argc) return cli_usage_error(CMD, "unexpected argument '%s'", argv[optind]);
    if (!model || !data) return cli_usage_error(CMD, "--model and --data are required");
    cli_threads(threads);
    pasm_net *net = NULL;
    pasm_model_meta meta;
    int rc = cli_load_model(CMD, model, &mo, batch, PASM_NET_EVAL, &net, &meta);
    if (rc) return rc;
    pasm_dataset ds;
    memset(&ds, 0, sizeof ds);
    if ((rc = cli_load_data_for_model(CMD, data, split, &meta, ignore, &ds))) goto done;
    if (!ds.labelled) {
        rc = cli_usage_error(CMD, "%s has no labels to evaluate against (use pasm predict)", data);
        goto done;
    }
    pasm_metrics m;
    pasm_status st = pasm_metrics_init(&m, meta.n_classes);
    if (!st) st = pasm_evaluate(net, &ds, meta.norm_mean, meta.norm_std, tta, &m, NULL, NULL, NULL);
    if (st) rc = cli_fail(CMD, st);
    else if (json) print_json(&meta, &m, model, &ds, tta);
    else print_table(&meta, &m, model, &ds, tta);
    pasm_metrics_free(&m);
done:
    pasm_dataset_free(&ds);
    pasm_model_meta_free(&meta);
    pasm_net_free(net);
    return rc;
}
