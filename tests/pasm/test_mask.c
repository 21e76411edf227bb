/* Square masks: geometry at corners, edges and the interior (clipped, never
 * shifted), even and odd sides, and each fill (mean per channel, zero,
 * seeded noise that is reproducible per image and differs between images). */
#include <string.h>

#include "pasm/pasm.h"
#include "util/helpers.h"

static void bounds(int size, int side, int row, int col, int e0, int e1, int e2, int e3) {
    int r0, r1, c0, c1;
    pasm_square_bounds(size, side, row, col, &r0, &r1, &c0, &c1);
    assert_int_equal(r0, e0);
    assert_int_equal(r1, e1);
    assert_int_equal(c0, e2);
    assert_int_equal(c1, e3);
}

static void test_geometry(void **state) {
    bounds(48, 12, 20, 30, 14, 26, 24, 36); /* interior: 12 x 12 */
    bounds(48, 12, 0, 0, 0, 6, 0, 6);       /* top-left corner: shrinks to 6 x 6 */
    bounds(48, 12, 47, 47, 41, 48, 41, 48); /* bottom-right corner: 7 x 7 */
    bounds(48, 12, 2, 30, 0, 8, 24, 36);    /* top edge: 8 rows, full width */
    bounds(48, 12, 30, 46, 24, 36, 40, 48); /* right edge */
    bounds(48, 5, 10, 10, 8, 13, 8, 13);    /* odd side: centred exactly */
    bounds(48, 1, 7, 9, 7, 8, 9, 10);       /* one pixel */
    bounds(48, 12, -20, 5, 0, 0, 0, 11);    /* centre far outside: empty rows */
}

static int count_value(const uint8_t *plane, int size, int value) {
    int n = 0;
    for (int p = 0; p < size * size; p++) n += plane[p] == value;
    return n;
}

static void test_fills(void **state) {
    enum { S = 16, C = 3 };
    uint8_t img[C * S * S], a[C * S * S], b[C * S * S];
    memset(img, 200, sizeof img);
    pasm_fill fill = {.kind = PASM_FILL_MEAN, .mean = {11, 22, 33}};
    memcpy(a, img, sizeof a);
    pasm_mask_apply(a, C, S, 0, 15, 6, &fill, 0); /* corner: rows 0..2, cols 12..15 */
    for (int ch = 0; ch < C; ch++) {
        assert_int_equal(count_value(a + ch * S * S, S, 11 * (ch + 1)), 3 * 4);
        assert_int_equal(count_value(a + ch * S * S, S, 200), S * S - 12);
        assert_int_equal(a[ch * S * S + 2 * S + 12], 11 * (ch + 1));
        assert_int_equal(a[ch * S * S + 3 * S + 12], 200);
    }
    fill.kind = PASM_FILL_ZERO;
    memcpy(a, img, sizeof a);
    pasm_mask_apply(a, C, S, 8, 8, 4, &fill, 0);
    for (int ch = 0; ch < C; ch++) assert_int_equal(count_value(a + ch * S * S, S, 0), 16);
    /* noise: the same image index gives the same bytes, another index others */
    fill.kind = PASM_FILL_NOISE;
    fill.seed = 9;
    memcpy(a, img, sizeof a);
    memcpy(b, img, sizeof b);
    pasm_mask_apply(a, C, S, 8, 8, 8, &fill, 5);
    pasm_mask_apply(b, C, S, 8, 8, 8, &fill, 5);
    assert_memory_equal(a, b, sizeof a);
    int changed = 0, distinct[256] = {0}, n_distinct = 0;
    for (int i = 0; i < C * S * S; i++)
        if (a[i] != 200) {
            changed++;
            if (!distinct[a[i]]++) n_distinct++;
        }
    assert_true(changed >= C * 64 - 3); /* a noise value may equal 200 */
    assert_true(n_distinct > 100);      /* 192 uniform draws over 256 values */
    memcpy(b, img, sizeof b);
    pasm_mask_apply(b, C, S, 8, 8, 8, &fill, 6);
    assert_memory_not_equal(a, b, sizeof a);
    pasm_fill_kind kind;
    assert_int_equal(pasm_fill_parse("noise", &kind), PASM_OK);
    assert_int_equal(kind, PASM_FILL_NOISE);
    assert_int_equal(pasm_fill_parse("grey", &kind), PASM_ERR_INVALID);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_geometry),
        cmocka_unit_test(test_fills),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
