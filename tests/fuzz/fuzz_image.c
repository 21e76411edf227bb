/* libFuzzer target for image decoding (PNG through libpng, JPEG through
 * libjpeg-turbo) from memory, then conversion and resizing: any bytes must
 * decode to an image of the stated size or fail with a message; never
 * crash, leak or read out of bounds (ASan + UBSan). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "pasm/data.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    unsigned char *buffer = malloc(size ? size : 1);
    if (!buffer) return 0;
    memcpy(buffer, data, size);
    int channels = (int)(size % 3 == 2 ? 3 : size % 3); /* 0 (native), 1 or 3 */
    pasm_clear_error();
    pasm_image img;
    if (pasm_image_decode(buffer, size, "fuzz", channels, &img) == PASM_OK) {
        if (img.width < 1 || img.height < 1 || (channels && img.channels != channels)) abort();
        size_t n = (size_t)img.width * img.height * img.channels;
        volatile unsigned sum = 0;
        for (size_t i = 0; i < n; i++)
            sum += img.pixels[i];
        /* Resizing reads every pixel too; keep it to images that are quick. */
        if ((size_t)img.width * img.height <= ((size_t)1 << 20)) {
            uint8_t *out = malloc((size_t)img.channels * 17 * 9);
            if (out && pasm_image_resize(&img, 17, 9, out) != PASM_OK) abort();
            free(out);
        }
        pasm_image_free(&img);
    } else if (pasm_last_error()[0] == '\0') {
        abort();
    }
    free(buffer);
    return 0;
}
