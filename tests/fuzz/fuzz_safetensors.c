/* libFuzzer target for the safetensors parser: any bytes must either parse
 * into tensors whose data lies inside the buffer, or fail with a message;
 * never crash, leak or read out of bounds (built with ASan + UBSan). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "pasm/io.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Touches every byte of every tensor so ASan sees any bad pointer. */
static unsigned touch_tensors(const pasm_safetensors *st) {
    unsigned sum = 0;
    for (int i = 0; i < st->n_tensors; i++) {
        const pasm_tensor *t = &st->tensors[i];
        const unsigned char *p = t->data;
        size_t bytes = pasm_tensor_bytes(t);
        for (size_t j = 0; j < bytes; j++) sum += p[j];
        if (pasm_safetensors_find(st, t->name) == NULL) abort();
        if (bytes && (uintptr_t)p % pasm_dtype_size(t->dtype) != 0) abort();
    }
    for (int i = 0; i < st->n_meta; i++) {
        if (pasm_safetensors_meta(st, st->meta_keys[i]) == NULL) abort();
        sum += (unsigned)strlen(st->meta_values[i]);
    }
    return sum;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    /* An exact-size copy, so reading one byte past the end is caught. */
    unsigned char *buffer = malloc(size ? size : 1);
    if (!buffer) return 0;
    memcpy(buffer, data, size);
    pasm_safetensors st;
    if (pasm_safetensors_parse("fuzz", buffer, size, &st) == PASM_OK) {
        volatile unsigned sink = touch_tensors(&st);
        (void)sink;
        pasm_safetensors_free(&st);
    } else if (pasm_last_error()[0] == '\0') {
        abort(); /* every failure must say why */
    }
    pasm_clear_error();
    return 0;
}
