/* The mined-points file and SHA-256: known digests; rows written, a torn
 * last line cut off on resume, rows appended after it; other settings
 * refused; the sidecar's complete flag. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pasm/pasm.h"
#include "util/helpers.h"

static void test_sha256(void **state) {
    char dir[256], path[300], hex[65];
    uint8_t d[32];
    pasm_sha256("abc", 3, d);
    char got[65];
    for (int i = 0; i < 32; i++) snprintf(got + 2 * i, 3, "%02x", d[i]);
    assert_string_equal(got, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    test_tmpdir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/f", dir);
    /* 1000 bytes: several blocks and a padding that spills into a new block */
    FILE *f = fopen(path, "wb");
    for (int i = 0; i < 1000; i++) fputc('a', f);
    fclose(f);
    assert_int_equal(pasm_sha256_file(path, hex), PASM_OK);
    assert_string_equal(hex, "41edece42d63e8d9bf515a9ba6932e1c20cbc9f5a5d134645adb5db1b9737ea3");
    test_rmdir(dir);
}

static void points(pasm_point *p, int64_t *index, int32_t *labels, int from, int n) {
    for (int i = 0; i < n; i++) {
        index[i] = from + i;
        labels[i] = (from + i) % 7;
        p[i] = (pasm_point){.row = from + i, .col = 2 * (from + i), .fooled = i % 2,
                            .p_true_before = 0.5f, .p_true_after = 0.25f, .queries = 2};
    }
}

static void test_writer_resumes(void **state) {
    char dir[256], csv[300], sidecar[300];
    test_tmpdir(dir, sizeof dir);
    snprintf(csv, sizeof csv, "%s/m.csv", dir);
    pasm_mined_sidecar_path(csv, sidecar, sizeof sidecar);
    assert_non_null(strstr(sidecar, "/m.json"));
    const char *settings = "{\"attack\":\"grad\",\"seed\":\"1\"}";
    pasm_mined_writer *w;
    int done = -1;
    assert_int_equal(pasm_mined_writer_open(&w, csv, settings, 0, &done), PASM_OK);
    assert_int_equal(done, 0);
    pasm_point p[3];
    int64_t index[3];
    int32_t labels[3];
    points(p, index, labels, 0, 3);
    assert_int_equal(pasm_mined_writer_append(w, index, labels, p, 3), PASM_OK);
    pasm_mined_writer_close(w); /* killed: not complete */
    int complete = 1;
    assert_int_equal(pasm_mined_sidecar_read(csv, NULL, &complete), PASM_OK);
    assert_int_equal(complete, 0);
    /* a torn line, as a kill in the middle of a write leaves */
    FILE *f = fopen(csv, "ab");
    fputs("3,3,3,6,1,0.5", f);
    fclose(f);
    /* other settings: refused */
    assert_int_equal(pasm_mined_writer_open(&w, csv, "{\"attack\":\"de\"}", 0, &done),
                     PASM_ERR_INVALID);
    assert_int_equal(pasm_mined_writer_open(&w, csv, settings, 0, &done), PASM_OK);
    assert_int_equal(done, 3);
    points(p, index, labels, 3, 2);
    assert_int_equal(pasm_mined_writer_append(w, index, labels, p, 2), PASM_OK);
    assert_int_equal(pasm_mined_writer_finish(w), PASM_OK);
    assert_int_equal(pasm_mined_sidecar_read(csv, NULL, &complete), PASM_OK);
    assert_int_equal(complete, 1);
    pasm_mined m;
    assert_int_equal(pasm_mined_read(csv, 0, &m, NULL), PASM_OK);
    assert_int_equal(m.n, 5);
    for (int i = 0; i < 5; i++) {
        assert_int_equal(m.index[i], i);
        assert_int_equal(m.row[i], i);
        assert_int_equal(m.col[i], 2 * i);
        assert_int_equal(m.label[i], i % 7);
    }
    assert_true(m.p_after[4] == 0.25f);
    pasm_mined_free(&m);
    /* overwrite starts afresh */
    assert_int_equal(pasm_mined_writer_open(&w, csv, "{\"attack\":\"de\"}", 1, &done), PASM_OK);
    assert_int_equal(done, 0);
    pasm_mined_writer_close(w);
    assert_int_equal(pasm_mined_read(csv, 0, &m, NULL), PASM_OK);
    assert_int_equal(m.n, 0);
    pasm_mined_free(&m);
    /* a file that is not a mined CSV */
    f = fopen(csv, "wb");
    fputs("a,b\n1,2\n", f);
    fclose(f);
    assert_int_equal(pasm_mined_read(csv, 0, &m, NULL), PASM_ERR_FORMAT);
    test_rmdir(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sha256),
        cmocka_unit_test(test_writer_resumes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
