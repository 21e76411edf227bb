/* pasm predict: the label and class probabilities (or raw logits) of each
 * face, from image files or a data split, one line or JSON object per face in
 * input order. */
#include <cJSON.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli_util.h"

static const char *CMD = "predict";

static void usage(FILE *f) {
    fprintf(f, "usage: pasm predict --model CKPT [options] IMAGE...\n"
               "       pasm predict --model CKPT --data PATH [--split S] [options]\n\n"
               "Predicts the expression of each face: one line per face, in input order,\n"
               "with the label and the class probabilities (or raw logits).\n\n"
               "  --model CKPT        checkpoint (required)\n"
               "  --data PATH         FER2013 CSV or image folder instead of IMAGE files\n"
               "  --split S           split of --data (PrivateTest)\n"
               "  --json              one JSON object per face (index, label, label_index,\n"
               "                      probabilities or logits, path)\n"
               "  --logits            raw logits instead of probabilities\n"
               "  --batch N           faces per forward pass (256)\n"
               "  --threads T         threads, 0 = all cores (0)\n"
               "  --precision P       fp32 or bf16 convolutions (as pasm train's) (fp32)\n"
               "  --device D          cpu or cuda (a GPU, in builds with the CUDA backend) (cpu)\n"
               "for files without pasm's metadata:\n"
               "  --input-size N, --classes A,B,..., --norm MEAN,STD   as in pasm eval\n"
               "  --help              this text\n");
}

/* The image files, decoded, converted and resized to the model's input. */
static int load_images(char **paths, int n, const pasm_model_meta *meta, pasm_dataset *ds) {
    int s = meta->net.input_size, ch = meta->net.in_channels;
    pasm_status st = pasm_dataset_alloc(ds, n, ch, s, "images");
    if (!st) st = pasm_dataset_set_classes(ds, (const char *const *)meta->class_names,
                                           meta->n_classes);
    if (!st) {
        ds->paths = calloc((size_t)n, sizeof(char *));
        if (!ds->paths) st = pasm_errorf(PASM_ERR_NOMEM, "out of memory");
    }
    for (int i = 0; i < n && !st; i++) {
        pasm_image img;
        if ((st = pasm_image_read(paths[i], ch, &img))) break;
        st = pasm_image_resize(&img, s, s, ds->images + (size_t)i * ch * s * s);
        pasm_image_free(&img);
        ds->paths[i] = strdup(paths[i]);
    }
    if (st) {
        pasm_dataset_free(ds);
        return cli_fail(CMD, st);
    }
    return EXIT_OK;
}

static void print_face(const pasm_model_meta *meta, const pasm_dataset *ds, int i,
                       const float *values, int json, int logits) {
    int k = meta->n_classes, best = 0;
    for (int c = 1; c < k; c++)
        if (values[c] > values[best]) best = c;
    const char *path = ds->paths && ds->paths[i] ? ds->paths[i] : NULL;
    if (json) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "index", i);
        if (path) cJSON_AddStringToObject(o, "path", path);
        cJSON_AddStringToObject(o, "label", meta->class_names[best]);
        cJSON_AddNumberToObject(o, "label_index", best);
        if (ds->labelled && ds->labels[i] >= 0) {
            cJSON_AddStringToObject(o, "true_label", meta->class_names[ds->labels[i]]);
            cJSON_AddNumberToObject(o, "true_label_index", ds->labels[i]);
        }
        cJSON *arr = cJSON_AddArrayToObject(o, logits ? "logits" : "probabilities");
        for (int c = 0; c < k; c++) cJSON_AddItemToArray(arr, cJSON_CreateNumber(values[c]));
        char *s = cJSON_PrintUnformatted(o);
        printf("%s\n", s);
        free(s);
        cJSON_Delete(o);
        return;
    }
    if (path) printf("%s\t", path);
    else printf("%d\t", i);
    printf("%s", meta->class_names[best]);
    if (!logits) printf(" %.3f", values[best]);
    if (ds->labelled && ds->labels[i] >= 0) printf("\t(true %s)", meta->class_names[ds->labels[i]]);
    printf("\t");
    for (int c = 0; c < k; c++)
        printf("%s%s %.4f", c ? ", " : "", meta->class_names[c], values[c]);
    printf("\n");
}

int pasm_cmd_predict(int argc, char **argv) {
    enum { O_MODEL = 256, O_DATA, O_SPLIT, O_JSON, O_LOGITS, O_BATCH, O_THREADS, O_INPUT_SIZE,
           O_CLASSES, O_NORM, O_PRECISION, O_DEVICE, O_HELP };
    static const struct option opts[] = {
        {"model", required_argument, 0, O_MODEL}, {"data", required_argument, 0, O_DATA},
        {"split", required_argument, 0, O_SPLIT}, {"json", no_argument, 0, O_JSON},
        {"logits", no_argument, 0, O_LOGITS}, {"batch", required_argument, 0, O_BATCH},
        {"threads", required_argument, 0, O_THREADS},
        {"input-size", required_argument, 0, O_INPUT_SIZE},
        {"classes", required_argument, 0, O_CLASSES}, {"norm", required_argument, 0, O_NORM},
        {"precision", required_argument, 0, O_PRECISION},
        {"device", required_argument, 0, O_DEVICE},
        {"help", no_argument, 0, O_HELP}, {0, 0, 0, 0}};
    const char *model = NULL, *data = NULL, *split = "PrivateTest";
    int json = 0, logits = 0, batch = 256, threads = 0;
    cli_model_options mo = {0};
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        int ok = 1;
        switch (c) {
        case O_MODEL: model = optarg; break;
        case O_DATA: data = optarg; break;
        case O_SPLIT: split = optarg; break;
        case O_JSON: json = 1; break;
        case O_LOGITS: logits = 1; break;
        case O_BATCH: ok = cli_int(CMD, "--batch", optarg, 1, 65536, &batch); break;
        case O_THREADS: ok = cli_int(CMD, "--threads", optarg, 0, 1024, &threads); break;
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
    if (!model) return cli_usage_error(CMD, "--model is required");
    if (!data && optind >= argc) return cli_usage_error(CMD, "give IMAGE files or --data");
    if (data && optind < argc)
        return cli_usage_error(CMD, "give either IMAGE files or --data, not both");
    cli_threads(threads);
    pasm_net *net = NULL;
    pasm_model_meta meta;
    int rc = cli_load_model(CMD, model, &mo, batch, PASM_NET_EVAL, &net, &meta);
    if (rc) return rc;
    pasm_dataset ds;
    memset(&ds, 0, sizeof ds);
    if (data) rc = cli_load_data_for_model(CMD, data, split, &meta, 1, &ds);
    else rc = load_images(argv + optind, argc - optind, &meta, &ds);
    if (rc) goto done;
    int k = meta.n_classes;
    float *values = malloc((size_t)ds.n * k * sizeof(float));
    pasm_status st = values ? PASM_OK : pasm_errorf(PASM_ERR_NOMEM, "out of memory");
    if (!st)
        st = pasm_evaluate(net, &ds, meta.norm_mean, meta.norm_std, 0, NULL, NULL,
                           logits ? NULL : values, logits ? values : NULL);
    if (st) rc = cli_fail(CMD, st);
    else
        for (int i = 0; i < ds.n; i++) print_face(&meta, &ds, i, values + (size_t)i * k, json, logits);
    free(values);
done:
    pasm_dataset_free(&ds);
    pasm_model_meta_free(&meta);
    pasm_net_free(net);
    return rc;
}
