/* The error message (src/core/status.c): formatted with context, kept per
 * thread, cleared on request, truncated rather than overrun, and safe to
 * extend with itself (pasm_errorf(st, "context: %s", pasm_last_error()),
 * as callers that add context to a lower layer's message do). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

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

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_message_and_clear),
        cmocka_unit_test(test_context_on_itself),
        cmocka_unit_test(test_long_message_truncated),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
