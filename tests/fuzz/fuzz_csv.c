/* libFuzzer target for the FER2013 CSV parser (plain or gzip bytes in
 * memory): any input must load into a consistent dataset or fail with a
 * message; never crash, leak or read out of bounds (ASan + UBSan). The last
 * byte picks the split, size and channels, so all paths get exercised. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "pasm/data.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static unsigned check_dataset(const pasm_dataset *ds) {
    unsigned sum = 0;
    size_t bytes = (size_t)ds->n * ds->channels * ds->size * ds->size;
    for (size_t i = 0; i < bytes; i++)
        sum += ds->images[i];
    for (int i = 0; i < ds->n; i++) {
        if (ds->labelled && (ds->labels[i] < 0 || ds->labels[i] >= ds->n_classes)) abort();
        if (!ds->labelled && ds->labels[i] != -1) abort();
        if (ds->rows[i] < 0) abort();
    }
    for (int c = 0; c < ds->n_classes; c++)
        sum += (unsigned)strlen(ds->class_names[c]);
    return sum + (unsigned)strlen(ds->source);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static const char *const splits[] = {"all", "Training", "PublicTest+PrivateTest", "val", NULL};
    static const int sizes[] = {0, 1, 7, 16};
    uint8_t knob = size ? data[size - 1] : 0;
    pasm_load_spec spec = {
        .split = splits[knob % 5],
        .input_size = sizes[(knob / 5) % 4],
        .channels = (knob / 20) % 2 ? 3 : 1,
    };
    /* An exact-size copy, so reading one byte past the end is caught. */
    unsigned char *buffer = malloc(size ? size : 1);
    if (!buffer) return 0;
    memcpy(buffer, data, size);
    pasm_clear_error();
    pasm_dataset ds;
    if (pasm_fer_csv_parse("fuzz.csv", buffer, size, &spec, &ds) == PASM_OK) {
        volatile unsigned sink = check_dataset(&ds);
        (void)sink;
        pasm_dataset_free(&ds);
    } else if (pasm_last_error()[0] == '\0') {
        abort(); /* every failure says why */
    }
    free(buffer);
    return 0;
}
