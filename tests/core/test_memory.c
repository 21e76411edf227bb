/* pasm_alloc (src/core/memory.c): zeroed, aligned (64 bytes; 2 MiB for the
 * large blocks that ask for huge pages), counted, and a request that cannot
 * be met, however large, is NULL with a message naming it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "pasm/core.h"

/* Under AddressSanitizer an impossible size aborts unless the allocator may
 * say no, as the C library's does; unused elsewhere. */
const char *__asan_default_options(void);
const char *__asan_default_options(void) { return "allocator_may_return_null=1"; }

static void test_sizes(void **state) {
    (void)state;
    const size_t sizes[] = {0, 1, 63, 65, 4096, ((size_t)4 << 20) - 1, (size_t)4 << 20,
                            ((size_t)5 << 20) + 3};
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        const uint64_t before = pasm_alloc_count();
        unsigned char *p = pasm_alloc(sizes[k], "test block");
        assert_non_null(p);
        assert_int_equal(pasm_alloc_count(), before + 1);
        assert_int_equal((uintptr_t)p % 64, 0);
        if (sizes[k] >= ((size_t)4 << 20)) assert_int_equal((uintptr_t)p % ((size_t)2 << 20), 0);
        size_t nonzero = 0;
        for (size_t i = 0; i < sizes[k]; i++) nonzero += p[i] != 0;
        assert_int_equal(nonzero, 0);
        if (sizes[k]) p[sizes[k] - 1] = 1; /* the last byte asked for is ours */
        pasm_free(p);
    }
}

static void test_impossible(void **state) {
    (void)state;
    const size_t sizes[] = {SIZE_MAX, SIZE_MAX - 63, SIZE_MAX - ((size_t)2 << 20),
                            SIZE_MAX / 2};
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        pasm_clear_error();
        assert_null(pasm_alloc(sizes[k], "a block too large"));
        assert_non_null(strstr(pasm_last_error(), "out of memory allocating"));
        assert_non_null(strstr(pasm_last_error(), "a block too large"));
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sizes),
        cmocka_unit_test(test_impossible),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
