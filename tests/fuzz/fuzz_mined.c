/* libFuzzer target for the files a user hands back to pasm round/run: the
 * mined-points CSV (pasm_mined_read) and its JSON sidecar
 * (pasm_mined_sidecar_read). The input is written to a private scratch
 * folder as both files; each reader must either return what it read or fail
 * with a message; never crash, leak or read out of bounds (ASan + UBSan). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pasm/pasm.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char csv[4096 + 16], json[4096 + 16];

static void put(const char *path, const uint8_t *data, size_t size) {
    FILE *f = fopen(path, "wb");
    if (!f || (size && fwrite(data, 1, size, f) != size) || fclose(f) != 0) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!csv[0]) {
        char tmpl[] = "/tmp/pasm-fuzz-mined-XXXXXX";
        if (!mkdtemp(tmpl)) abort();
        snprintf(csv, sizeof csv, "%s/m.csv", tmpl);
        pasm_mined_sidecar_path(csv, json, sizeof json);
    }
    put(csv, data, size);
    put(json, data, size);
    pasm_clear_error();
    pasm_mined m;
    long valid = -1;
    if (pasm_mined_read(csv, 0, &m, &valid) == PASM_OK) {
        if (valid < 0 || (size_t)valid > size || m.n < 0) abort();
        volatile int64_t sink = 0;
        for (int i = 0; i < m.n; i++)
            sink += m.index[i] + m.label[i] + m.row[i] + m.col[i] + m.fooled[i] + m.queries[i] +
                    (int64_t)(m.p_before[i] + m.p_after[i]);
        (void)sink;
        pasm_mined_free(&m);
    } else if (pasm_last_error()[0] == '\0') {
        abort(); /* every failure says why */
    }
    pasm_clear_error();
    char *settings = NULL;
    int complete = -1;
    if (pasm_mined_sidecar_read(csv, &settings, &complete) == PASM_OK) {
        if (!settings) abort();
        volatile size_t len = strlen(settings);
        (void)len;
        free(settings);
    } else if (pasm_last_error()[0] == '\0') {
        abort();
    }
    pasm_clear_error();
    return 0;
}
