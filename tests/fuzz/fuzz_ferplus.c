/* libFuzzer target for FER+ labels (fer2013new.csv) joined to a FER2013 CSV:
 * the input is the labels file (written to a private scratch folder), the
 * CSV a fixed one of four 2x2 faces. The load must either give a dataset
 * whose labels are classes or -1, or fail with a message; never crash, leak
 * or read out of bounds (ASan + UBSan). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pasm/pasm.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char labels[4096 + 16];
static const char faces[] = "emotion,pixels,Usage\n"
                            "0,1 2 3 4,Training\n"
                            "3,5 6 7 8,Training\n"
                            "6,9 10 11 12,PublicTest\n"
                            "4,13 14 15 16,PrivateTest\n";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!labels[0]) {
        char tmpl[] = "/tmp/pasm-fuzz-ferplus-XXXXXX";
        if (!mkdtemp(tmpl)) abort();
        snprintf(labels, sizeof labels, "%s/fer2013new.csv", tmpl);
    }
    FILE *f = fopen(labels, "wb");
    if (!f || (size && fwrite(data, 1, size, f) != size) || fclose(f) != 0) abort();
    static const char *const splits[] = {"all", "Training", "PublicTest+PrivateTest"};
    pasm_load_spec spec = {.split = splits[size % 3], .labels = labels};
    pasm_dataset ds;
    pasm_clear_error();
    if (pasm_fer_csv_parse("faces.csv", faces, sizeof faces - 1, &spec, &ds) == PASM_OK) {
        for (int i = 0; i < ds.n; i++)
            if (ds.labels[i] < -1 || ds.labels[i] >= ds.n_classes) abort();
        pasm_dataset_free(&ds);
    } else if (pasm_last_error()[0] == '\0') {
        abort();
    }
    pasm_clear_error();
    return 0;
}
