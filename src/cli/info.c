/* `pasm info FILE [--json]`: prints a safetensors file's metadata and its
 * tensors (name, dtype, shape). It reads any safetensors file through the
 * validating reader, not only pasm checkpoints, so it doubles as a check
 * that a file is well formed. */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include <cJSON.h>

#include "cli/commands.h"
#include "pasm/io.h"

static void info_usage(FILE *out) {
    fprintf(out,
            "usage: pasm info FILE [--json]\n\n"
            "Prints a safetensors file's metadata and tensors (name, dtype, shape),\n"
            "after checking the file is well formed.\n\n"
            "options:\n"
            "  --json      print one JSON object: {\"path\", \"metadata\": {key: value},\n"
            "              \"tensors\": [{\"name\", \"dtype\", \"shape\"}]} (default: a table)\n"
            "  -h, --help  this text\n");
}

static void print_table(const pasm_safetensors *st) {
    int64_t values = 0;
    size_t bytes = 0, name_width = 4;
    for (int i = 0; i < st->n_tensors; i++) {
        values += pasm_tensor_numel(&st->tensors[i]);
        bytes += pasm_tensor_bytes(&st->tensors[i]);
        size_t len = strlen(st->tensors[i].name);
        if (len > name_width) name_width = len;
    }
    printf("%s: %d tensors, %lld values, %.2f MB\n", st->source, st->n_tensors, (long long)values,
           (double)bytes / 1e6);
    if (st->n_meta > 0) {
        size_t key_width = 0;
        for (int i = 0; i < st->n_meta; i++)
            if (strlen(st->meta_keys[i]) > key_width) key_width = strlen(st->meta_keys[i]);
        printf("\nmetadata:\n");
        for (int i = 0; i < st->n_meta; i++)
            printf("  %-*s  %s\n", (int)key_width, st->meta_keys[i], st->meta_values[i]);
    } else {
        printf("\nmetadata: none\n");
    }
    printf("\ntensors:\n  %-*s  %-5s  %s\n", (int)name_width, "name", "dtype", "shape");
    for (int i = 0; i < st->n_tensors; i++) {
        char shape[128];
        const pasm_tensor *t = &st->tensors[i];
        printf("  %-*s  %-5s  %s\n", (int)name_width, t->name, pasm_dtype_name(t->dtype),
               pasm_shape_str(t, shape, sizeof shape));
    }
}

/* Builds the --json object; NULL when out of memory. Items are attached
 * as soon as they are made so one cJSON_Delete frees everything. */
static cJSON *info_json(const pasm_safetensors *st) {
    cJSON *root = cJSON_CreateObject();
    if (!root) return NULL;
    cJSON_AddStringToObject(root, "path", st->source);
    cJSON *meta = cJSON_AddObjectToObject(root, "metadata");
    cJSON *list = cJSON_AddArrayToObject(root, "tensors");
    if (!meta || !list) goto fail;
    for (int i = 0; i < st->n_meta; i++)
        if (!cJSON_AddStringToObject(meta, st->meta_keys[i], st->meta_values[i])) goto fail;
    for (int i = 0; i < st->n_tensors; i++) {
        const pasm_tensor *t = &st->tensors[i];
        cJSON *item = cJSON_CreateObject();
        if (!item || !cJSON_AddItemToArray(list, item)) {
            cJSON_Delete(item);
            goto fail;
        }
        cJSON_AddStringToObject(item, "name", t->name);
        cJSON_AddStringToObject(item, "dtype", pasm_dtype_name(t->dtype));
        cJSON *shape = cJSON_AddArrayToObject(item, "shape");
        if (!shape) goto fail;
        for (int d = 0; d < t->ndim; d++)
            cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)t->shape[d]));
    }
    return root;
fail:
    cJSON_Delete(root);
    return NULL;
}

int pasm_cmd_info(int argc, char **argv) {
    static const struct option options[] = {
        {"json", no_argument, NULL, 'j'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int json = 0, opt;
    optind = 0; /* glibc: full reset, the dispatcher may have parsed before */
    opterr = 0; /* we say "pasm info:" ourselves */
    while ((opt = getopt_long(argc, argv, "h", options, NULL)) != -1) {
        if (opt == 'j') {
            json = 1;
        } else if (opt == 'h') {
            info_usage(stdout);
            return 0;
        } else {
            fprintf(stderr, "pasm info: unknown option '%s'\n", argv[optind - 1]);
            info_usage(stderr);
            return 2;
        }
    }
    if (optind != argc - 1) {
        fprintf(stderr, "pasm info: expected one FILE, got %d\n", argc - optind);
        info_usage(stderr);
        return 2;
    }
    pasm_safetensors st;
    if (pasm_safetensors_read(argv[optind], &st) != PASM_OK) {
        fprintf(stderr, "pasm info: %s\n", pasm_last_error());
        return 1;
    }
    int rc = 0;
    if (json) {
        cJSON *root = info_json(&st);
        char *text = root ? cJSON_PrintUnformatted(root) : NULL;
        if (text) printf("%s\n", text);
        else {
            fprintf(stderr, "pasm info: out of memory\n");
            rc = 1;
        }
        cJSON_free(text);
        cJSON_Delete(root);
    } else {
        print_table(&st);
    }
    pasm_safetensors_free(&st);
    if (fflush(stdout) != 0) rc = 1;
    return rc;
}
