/* Tests of pasm_png_write: every channel count round-trips through libpng's
 * reader byte for byte; bad arguments and unwritable paths fail cleanly and
 * leave no file behind. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <png.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "pasm/synth.h"

static char temp_dir[64];

static int setup(void **state) {
    (void)state;
    snprintf(temp_dir, sizeof temp_dir, "/tmp/pasm-test-png-XXXXXX");
    return mkdtemp(temp_dir) ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    return rmdir(temp_dir);
}

static png_uint_32 format_for(int channels) {
    switch (channels) {
    case 1: return PNG_FORMAT_GRAY;
    case 2: return PNG_FORMAT_GA;
    case 3: return PNG_FORMAT_RGB;
    default: return PNG_FORMAT_RGBA;
    }
}

static void test_round_trip(void **state) {
    (void)state;
    enum { W = 37, H = 23 }; /* odd sizes catch stride mistakes */
    for (int channels = 1; channels <= 4; channels++) {
        uint8_t *pixels = malloc(W * H * channels), *back = malloc(W * H * channels);
        assert_non_null(pixels);
        assert_non_null(back);
        for (int i = 0; i < W * H * channels; i++) pixels[i] = (uint8_t)(i * 7 + channels);
        char path[128];
        snprintf(path, sizeof path, "%s/c%d.png", temp_dir, channels);
        assert_int_equal(pasm_png_write(path, W, H, channels, pixels), PASM_OK);
        png_image img;
        memset(&img, 0, sizeof img);
        img.version = PNG_IMAGE_VERSION;
        assert_true(png_image_begin_read_from_file(&img, path));
        assert_int_equal(img.width, W);
        assert_int_equal(img.height, H);
        assert_int_equal(img.format, format_for(channels)); /* stored as written */
        assert_true(png_image_finish_read(&img, NULL, back, 0, NULL));
        assert_memory_equal(pixels, back, W * H * channels);
        assert_int_equal(remove(path), 0);
        free(pixels);
        free(back);
    }
}

static void test_bad_arguments(void **state) {
    (void)state;
    uint8_t pixels[16] = {0};
    char path[128];
    snprintf(path, sizeof path, "%s/bad.png", temp_dir);
    assert_int_equal(pasm_png_write(path, 2, 2, 5, pixels), PASM_ERR_INVALID);
    assert_non_null(strstr(pasm_last_error(), "channels"));
    assert_int_equal(pasm_png_write(path, 0, 2, 1, pixels), PASM_ERR_INVALID);
    assert_int_equal(pasm_png_write(path, 2, -1, 1, pixels), PASM_ERR_INVALID);
    assert_int_equal(pasm_png_write(path, 2, 2, 1, NULL), PASM_ERR_INVALID);
    assert_int_equal(pasm_png_write(NULL, 2, 2, 1, pixels), PASM_ERR_INVALID);
    assert_int_equal(access(path, F_OK), -1);
    /* A folder that does not exist: an I/O error naming the path. */
    snprintf(path, sizeof path, "%s/missing/x.png", temp_dir);
    assert_int_equal(pasm_png_write(path, 2, 2, 1, pixels), PASM_ERR_IO);
    assert_non_null(strstr(pasm_last_error(), "missing/x.png"));
}

/* A write that fails half way (the file-size limit stands in for a full
 * disk): the error is reported and the partial file removed. Runs in a child
 * so the limit does not outlive the test. */
static void test_write_failure_removes_file(void **state) {
    (void)state;
    char path[128];
    snprintf(path, sizeof path, "%s/big.png", temp_dir);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        enum { SIDE = 256 };
        static uint8_t noise[SIDE * SIDE]; /* incompressible, so well over the limit */
        uint32_t x = 2463534242u;          /* xorshift32 */
        for (int i = 0; i < SIDE * SIDE; i++) {
            x ^= x << 13, x ^= x >> 17, x ^= x << 5;
            noise[i] = (uint8_t)(x >> 24);
        }
        signal(SIGXFSZ, SIG_IGN);
        struct rlimit limit = {4096, 4096};
        setrlimit(RLIMIT_FSIZE, &limit);
        pasm_status st = pasm_png_write(path, SIDE, SIDE, 1, noise);
        int ok =
            st == PASM_ERR_IO && strstr(pasm_last_error(), "big.png") && access(path, F_OK) == -1;
        _exit(ok ? 0 : 1);
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    assert_int_equal(access(path, F_OK), -1);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_bad_arguments),
        cmocka_unit_test(test_write_failure_removes_file),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
