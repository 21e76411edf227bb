/* The error message (src/core/status.c): formatted with context, kept per
 * thread, cleared on request, truncated rather than overrun, and safe to
 * extend with itself (pasm_errorf(st, "context: %s", pasm_last_error()),
 * as callers that add context to a lower layer's message do). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "pasm/core.h"

static void test_message_and_clear(void **state) {
    (void)state;
    assert_int_equal(pasm_errorf(PASM_ERR_IO, "%s:%d: bad %s", "faces.csv", 7, "pixels"),
                     PASM_ERR_IO);
    assert_string_equal(pasm_last_error(), "faces.csv:7: bad pixels");
    pasm_clear_error();
    assert_string_equal(pasm_last_error(), "");
}

static void test_context_on_itself(void **state) {
    (void)state;
    pasm_errorf(PASM_ERR_FORMAT, "tensor 'fc.weight' has shape [7, 8]");
    assert_int_equal(pasm_errorf(PASM_ERR_FORMAT, "model.safetensors: %s (and again: %s)",
                                 pasm_last_error(), pasm_last_error()),
                     PASM_ERR_FORMAT);
    assert_string_equal(pasm_last_error(), "model.safetensors: tensor 'fc.weight' has shape [7, 8] "
                                           "(and again: tensor 'fc.weight' has shape [7, 8])");
}

static void test_long_message_truncated(void **state) {
    (void)state;
    static char long_name[4000];
    memset(long_name, 'x', sizeof long_name - 1);
    pasm_errorf(PASM_ERR_IO, "%s: cannot open", long_name);
    const size_t len = strlen(pasm_last_error());
    assert_true(len > 500 && len < 1024);
    pasm_errorf(PASM_ERR_IO, "%s%s", pasm_last_error(), pasm_last_error());
    assert_true(strlen(pasm_last_error()) < 1024);
    assert_int_equal(pasm_last_error()[0], 'x');
}

/* Notes go to the handler with its context, formatted and cut to the
 * buffer; without a handler, to stderr as "pasm: note: TEXT". */
typedef struct {
    int calls;
    char last[2048];
} note_sink;

static void collect(const char *text, void *ctx) {
    note_sink *sink = ctx;
    sink->calls++;
    snprintf(sink->last, sizeof sink->last, "%s", text);
}

static void test_notes(void **state) {
    (void)state;
    note_sink sink = {0};
    pasm_set_note_handler(collect, &sink);
    pasm_note("a %dx%d convolution uses %s", 3, 3, "the default math");
    assert_int_equal(sink.calls, 1);
    assert_string_equal(sink.last, "a 3x3 convolution uses the default math");
    char big[3000];
    memset(big, 'n', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    pasm_note("%s", big);
    assert_int_equal(sink.calls, 2);
    assert_int_equal((int)strlen(sink.last), 1023);
    /* the default: stderr, captured through a temporary file */
    pasm_set_note_handler(NULL, NULL);
    fflush(stderr);
    FILE *tmp = tmpfile();
    assert_non_null(tmp);
    const int saved = dup(fileno(stderr));
    assert_true(saved >= 0);
    assert_true(dup2(fileno(tmp), fileno(stderr)) >= 0);
    pasm_note("steps run launch by launch (%s)", "graphs off");
    fflush(stderr);
    assert_true(dup2(saved, fileno(stderr)) >= 0);
    close(saved);
    char line[256] = {0};
    rewind(tmp);
    assert_non_null(fgets(line, sizeof line, tmp));
    fclose(tmp);
    assert_string_equal(line, "pasm: note: steps run launch by launch (graphs off)\n");
    assert_int_equal(sink.calls, 2); /* the handler is gone */
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_message_and_clear),
        cmocka_unit_test(test_context_on_itself),
        cmocka_unit_test(test_long_message_truncated),
        cmocka_unit_test(test_notes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
