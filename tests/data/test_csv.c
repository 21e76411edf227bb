/* The FER2013 CSV loader on small files the tests write: plain and gzip
 * (told apart by magic bytes), Kaggle's train.csv/test.csv variants (quoted
 * pixels, CRLF, no Usage, no emotion), split selection, resizing and
 * channels, the in-memory entry point, and every kind of bad input. */
#include "data/data_test_util.h"

static char dir[256];

static int setup(void **state) {
    (void)state;
    test_tmpdir(dir, sizeof dir);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    test_rmdir(dir);
    return 0;
}

/* A 3x3 face whose pixels are base, base+1, ... */
static void face(char *out, size_t cap, int base) {
    out[0] = '\0';
    for (int i = 0; i < 9; i++) {
        size_t n = strlen(out);
        snprintf(out + n, cap - n, "%s%d", i ? " " : "", (base + i) % 256);
    }
}

/* emotion,pixels,Usage with rows (label, base, usage). */
static char *official_csv(const int *labels, const int *bases, const char *const *usages, int n) {
    size_t cap = 64 + (size_t)n * 64;
    char *s = malloc(cap);
    strcpy(s, "emotion,pixels,Usage\n");
    for (int i = 0; i < n; i++) {
        char px[64];
        face(px, sizeof px, bases[i]);
        size_t len = strlen(s);
        snprintf(s + len, cap - len, "%d,%s,%s\n", labels[i], px, usages[i]);
    }
    return s;
}

static const int labels6[] = {0, 3, 6, 2, 5, 1};
static const int bases6[] = {0, 10, 20, 30, 40, 250};
static const char *const usages6[] = {"Training",    "Training", "PublicTest",
                                      "PrivateTest", "Training", "PrivateTest"};

static void check_face(const pasm_dataset *ds, int i, int base) {
    for (int k = 0; k < 9; k++)
        assert_int_equal(ds->images[i * 9 + k], (base + k) % 256);
}

static pasm_status load(const char *path, const char *split, pasm_dataset *ds) {
    pasm_load_spec spec = {.path = path, .split = split, .input_size = 3, .channels = 1};
    return pasm_dataset_load(&spec, ds);
}

static void test_plain_splits(void **state) {
    (void)state;
    char *text = official_csv(labels6, bases6, usages6, 6);
    const char *path = scratch_path(dir, "fer.csv");
    write_text(path, text);
    free(text);
    pasm_dataset ds;
    assert_int_equal(load(path, "Training", &ds), PASM_OK);
    assert_int_equal(ds.n, 3);
    assert_int_equal(ds.n_classes, 7);
    assert_string_equal(ds.class_names[0], "Angry");
    assert_string_equal(ds.class_names[6], "Neutral");
    assert_int_equal(ds.labelled, 1);
    assert_int_equal(ds.labels[0], 0);
    assert_int_equal(ds.labels[1], 3);
    assert_int_equal(ds.labels[2], 5);
    assert_int_equal(ds.rows[2], 4); /* data row index in the file */
    assert_null(ds.paths);
    check_face(&ds, 0, 0);
    check_face(&ds, 1, 10);
    check_face(&ds, 2, 40);
    assert_non_null(strstr(ds.source, "fer.csv (Training)"));
    pasm_dataset_free(&ds);

    /* Several splits, any case, and the aliases. */
    assert_int_equal(load(path, "publictest+PRIVATETEST", &ds), PASM_OK);
    assert_int_equal(ds.n, 3);
    assert_int_equal(ds.labels[0], 6);
    check_face(&ds, 2, 250); /* 250..258 wraps to 0..2 in face(); values stay 0..255 */
    pasm_dataset_free(&ds);
    assert_int_equal(load(path, "test", &ds), PASM_OK);
    assert_int_equal(ds.n, 2);
    pasm_dataset_free(&ds);
    assert_int_equal(load(path, "val", &ds), PASM_OK);
    assert_int_equal(ds.n, 1);
    pasm_dataset_free(&ds);
    assert_int_equal(load(path, "all", &ds), PASM_OK);
    assert_int_equal(ds.n, 6);
    pasm_dataset_free(&ds);
    assert_int_equal(load(path, NULL, &ds), PASM_OK);
    assert_int_equal(ds.n, 6);
    int64_t counts[7];
    pasm_dataset_class_counts(&ds, counts);
    assert_int_equal(counts[0], 1);
    assert_int_equal(counts[4], 0);
    pasm_dataset_free(&ds);
}

static void test_gzip_same_as_plain(void **state) {
    (void)state;
    char *text = official_csv(labels6, bases6, usages6, 6);
    /* A gzip file named .csv: detection is by magic bytes. */
    const char *gz = scratch_path(dir, "looks_plain.csv");
    write_gz(gz, text);
    const char *plain = scratch_path(dir, "named.csv.gz");
    write_text(plain, text);
    pasm_dataset a, b;
    assert_int_equal(load(gz, "Training+PrivateTest", &a), PASM_OK);
    assert_int_equal(load(plain, "Training+PrivateTest", &b), PASM_OK);
    assert_int_equal(a.n, 5);
    assert_int_equal(b.n, 5);
    assert_memory_equal(a.images, b.images, 5 * 9);
    assert_memory_equal(a.labels, b.labels, 5 * sizeof(int32_t));
    pasm_dataset_free(&a);
    pasm_dataset_free(&b);

    /* Two gzip members one after the other (gzip -c a b) read as one stream. */
    char *head = official_csv(labels6, bases6, usages6, 3);
    size_t head_len = strlen(head);
    const char *m1 = scratch_path(dir, "m1.gz"), *m2 = scratch_path(dir, "m2.gz");
    write_gz(m1, head);
    write_gz(m2, text + head_len);
    size_t s1, s2;
    unsigned char *b1 = read_bytes(m1, &s1), *b2 = read_bytes(m2, &s2);
    unsigned char *both = malloc(s1 + s2);
    memcpy(both, b1, s1);
    memcpy(both + s1, b2, s2);
    const char *multi = scratch_path(dir, "multi.csv.gz");
    write_bytes(multi, both, s1 + s2);
    assert_int_equal(load(multi, "all", &a), PASM_OK);
    assert_int_equal(a.n, 6);
    check_face(&a, 5, 250);
    pasm_dataset_free(&a);
    /* The same from memory. */
    pasm_load_spec spec = {.split = "all", .input_size = 3};
    assert_int_equal(pasm_fer_csv_parse("mem.gz", both, s1 + s2, &spec, &a), PASM_OK);
    assert_int_equal(a.n, 6);
    pasm_dataset_free(&a);
    free(b1), free(b2), free(both), free(head), free(text);
}

static void test_kaggle_variants(void **state) {
    (void)state;
    /* train.csv: emotion,pixels quoted, CRLF, no Usage: one split. */
    const char *train = scratch_path(dir, "train.csv");
    write_text(train, "emotion,pixels\r\n"
                      "3,\"0 1 2 3 4 5 6 7 8\"\r\n"
                      "6,\"10 11 12 13 14 15 16 17 18\"\r\n");
    pasm_dataset ds;
    assert_int_equal(load(train, "Training", &ds), PASM_OK);
    assert_int_equal(ds.n, 2);
    assert_int_equal(ds.labels[1], 6);
    check_face(&ds, 1, 10);
    pasm_dataset_free(&ds);
    /* Every split name reads the whole of a file without Usage. */
    assert_int_equal(load(train, "PrivateTest", &ds), PASM_OK);
    assert_int_equal(ds.n, 2);
    pasm_dataset_free(&ds);

    /* test.csv with pixels only: unlabelled. */
    const char *test = scratch_path(dir, "test.csv");
    write_text(test, "\"pixels\"\r\n\"0 1 2 3 4 5 6 7 8\"\r\n\"9 10 11 12 13 14 15 16 17\"");
    assert_int_equal(load(test, NULL, &ds), PASM_OK);
    assert_int_equal(ds.n, 2);
    assert_int_equal(ds.labelled, 0);
    assert_int_equal(ds.n_classes, 0);
    assert_int_equal(ds.labels[0], -1);
    check_face(&ds, 1, 9);
    pasm_dataset_free(&ds);

    /* Columns in another order, a BOM, a trailing blank line and tabs. */
    const char *odd = scratch_path(dir, "odd.csv");
    write_text(odd, "\xEF\xBB\xBFUsage,pixels,emotion\nTraining,0\t1 2 3 4 5 6 7  8,4\n\n");
    assert_int_equal(load(odd, "train", &ds), PASM_OK);
    assert_int_equal(ds.n, 1);
    assert_int_equal(ds.labels[0], 4);
    check_face(&ds, 0, 0);
    pasm_dataset_free(&ds);
}

static void test_resize_and_channels(void **state) {
    (void)state;
    char *text = official_csv(labels6, bases6, usages6, 6);
    const char *path = scratch_path(dir, "fer.csv");
    write_text(path, text);
    free(text);
    pasm_load_spec spec = {.path = path, .split = "Training", .input_size = 3, .channels = 3};
    pasm_dataset ds;
    assert_int_equal(pasm_dataset_load(&spec, &ds), PASM_OK);
    assert_int_equal(ds.channels, 3);
    /* Grey to RGB replicates the plane. */
    for (int i = 0; i < ds.n; i++)
        for (int c = 1; c < 3; c++)
            assert_memory_equal(ds.images + i * 27 + c * 9, ds.images + i * 27, 9);
    for (int k = 0; k < 9; k++)
        assert_int_equal(ds.images[27 + k], 10 + k);
    pasm_dataset_free(&ds);

    /* Upscaling a constant face keeps it constant; 0 means 48. */
    const char *flat = scratch_path(dir, "flat.csv");
    write_text(flat, "emotion,pixels\n1,7 7 7 7\n");
    spec = (pasm_load_spec){.path = flat};
    assert_int_equal(pasm_dataset_load(&spec, &ds), PASM_OK);
    assert_int_equal(ds.size, 48);
    assert_int_equal(ds.channels, 1);
    for (int k = 0; k < 48 * 48; k++)
        assert_int_equal(ds.images[k], 7);
    pasm_dataset_free(&ds);
}

/* One bad file: loads fail with PASM_ERR_FORMAT and a message with every fragment. */
static void expect_bad(const char *name, const char *text, int gz, const char *where,
                       const char *what) {
    const char *path = scratch_path(dir, name);
    if (gz)
        write_gz(path, text);
    else
        write_text(path, text);
    pasm_dataset ds;
    assert_int_equal(load(path, "all", &ds), PASM_ERR_FORMAT);
    assert_error_has(where, what);
    assert_null(ds.images);
}

static void test_bad_rows(void **state) {
    (void)state;
    const char *h = "emotion,pixels,Usage\n";
    char text[512];
    snprintf(text, sizeof text, "%s0,0 1 2 3 4 5 6 7 8,Training\n0,0 1 2 3 4 5 6 7,Training\n", h);
    expect_bad("count.csv", text, 0,
               "count.csv:3:", "expected 9 pixels (3x3 as on the first row), found 8");
    snprintf(text, sizeof text, "%s0,0 1 2 3 4 5 6 7 8 9,Training\n", h);
    expect_bad("square.csv", text, 0, "square.csv:2:", "10 pixels do not make a square face");
    snprintf(text, sizeof text, "%s0,0 1 2 3 4 x 6 7 8,Training\n", h);
    expect_bad("alpha.csv", text, 0, "alpha.csv:2:", "pixel 6: 'x' is not an integer 0..255");
    snprintf(text, sizeof text, "%s0,0 1 2 3 4 5 6 7 12a,Training\n", h);
    expect_bad("alnum.csv", text, 0, "alnum.csv:2:", "pixel 9: '12a'");
    snprintf(text, sizeof text, "%s0,0 1 2 3 256 5 6 7 8,Training\n", h);
    expect_bad("range.csv", text, 0, "range.csv:2:", "pixel 5: '256' is not an integer 0..255");
    snprintf(text, sizeof text, "%s0,0 1 2 3 -4 5 6 7 8,Training\n", h);
    expect_bad("minus.csv", text, 0, "minus.csv:2:", "'-4'");
    /* A long clean row takes the fast path; its error must still be exact. */
    char long_row[2048] = "";
    for (int i = 0; i < 144; i++)
        strcat(long_row, i == 100 ? "300 " : "12 ");
    long_row[strlen(long_row) - 1] = '\0';
    snprintf(text, sizeof text, "%s", h);
    char *big = malloc(4096);
    snprintf(big, 4096, "%s1,%s,Training\n", h, long_row);
    expect_bad("fastrange.csv", big, 0, "fastrange.csv:2:", "pixel 101: '300'");
    free(big);
    snprintf(text, sizeof text, "%s7,0 1 2 3 4 5 6 7 8,Training\n", h);
    expect_bad("label7.csv", text, 0, "label7.csv:2:", "emotion '7' is not a class index 0..6");
    snprintf(text, sizeof text, "%shappy,0 1 2 3 4 5 6 7 8,Training\n", h);
    expect_bad("labelx.csv", text, 0, "labelx.csv:2:", "emotion 'happy'");
    snprintf(text, sizeof text, "%s,0 1 2 3 4 5 6 7 8,Training\n", h);
    expect_bad("labelempty.csv", text, 0, "labelempty.csv:2:", "emotion ''");
    snprintf(text, sizeof text, "%s0,0 1 2 3 4 5 6 7 8,Training\n1,0 1 2 3 4 5 6 7 8\n", h);
    expect_bad("missing.csv", text, 0, "missing.csv:3:", "missing column 'Usage' (2 of 3 columns)");
    snprintf(text, sizeof text, "%s0,0 1 2 3 4 5 6 7 8,Training,extra\n", h);
    expect_bad("extra.csv", text, 0, "extra.csv:2:", "more columns than the header's 3");
    snprintf(text, sizeof text, "%s0,0 1 2 3 4 5 6 7 8,Validation\n", h);
    expect_bad("usage.csv", text, 0,
               "usage.csv:2:", "Usage 'Validation' is not Training, PublicTest or PrivateTest");
    snprintf(text, sizeof text, "%s0,\"0 1 2 3 4 5 6 7 8,Training\n", h);
    expect_bad("quote.csv", text, 0, "quote.csv:2:", "malformed quoting");
    expect_bad("noheader.csv", "0,0 1 2 3 4 5 6 7 8,Training\n", 0,
               "noheader.csv:1:", "no 'pixels' column");
    expect_bad("dup.csv", "pixels,Pixels\n", 0, "dup.csv:1:", "appears twice");
}

static void test_bad_files(void **state) {
    (void)state;
    /* The last row cut short (no newline): the message says the file ends there. */
    expect_bad("cut.csv", "emotion,pixels,Usage\n0,0 1 2 3 4 5 6 7 8,Training\n1,0 1 2 3 4", 0,
               "cut.csv:3:", "file ends in the middle of this row");
    expect_bad("cutgz.csv.gz",
               "emotion,pixels,Usage\n0,0 1 2 3 4 5 6 7 8,Training\n1,0 1 2 3 4 5 6 7 8,Trai", 1,
               "cutgz.csv.gz:3:", "Usage 'Trai'");
    expect_bad("empty.csv", "", 0, "empty.csv", "empty file");
    expect_bad("blank.csv", "\n\r\n\n", 0, "blank.csv", "empty file");
    expect_bad("emptygz.csv.gz", "", 1, "emptygz.csv.gz", "empty file");
    expect_bad("header.csv", "emotion,pixels,Usage\n", 0, "header.csv",
               "no faces in split 'all' (0 data rows");

    /* An empty selected split. */
    const char *path = scratch_path(dir, "train_only.csv");
    write_text(path, "emotion,pixels,Usage\n0,0 1 2 3 4 5 6 7 8,Training\n");
    pasm_dataset ds;
    assert_int_equal(load(path, "PublicTest", &ds), PASM_ERR_FORMAT);
    assert_error_has("train_only.csv", "no faces in split 'PublicTest' (1 data rows in the file)");
    /* An unknown split name is the caller's mistake. */
    assert_int_equal(load(path, "Training+Holdout", &ds), PASM_ERR_INVALID);
    assert_error_has("unknown split 'Holdout'");
    assert_int_equal(load(scratch_path(dir, "nope.csv"), "all", &ds), PASM_ERR_IO);
    assert_error_has("nope.csv");
}

static void test_bad_gzip(void **state) {
    (void)state;
    char *text = official_csv(labels6, bases6, usages6, 6);
    const char *good = scratch_path(dir, "good.gz");
    write_gz(good, text);
    size_t size;
    unsigned char *bytes = read_bytes(good, &size);
    /* Corrupt deflate data in the middle. */
    unsigned char *bad = malloc(size);
    memcpy(bad, bytes, size);
    for (size_t i = 12; i < size - 8 && i < 40; i++)
        bad[i] ^= 0x5A;
    const char *corrupt = scratch_path(dir, "corrupt.csv.gz");
    write_bytes(corrupt, bad, size);
    pasm_dataset ds;
    assert_int_not_equal(load(corrupt, "all", &ds), PASM_OK);
    assert_error_has("corrupt.csv.gz");
    /* A wrong CRC in the trailer. */
    memcpy(bad, bytes, size);
    bad[size - 6] ^= 0xFF;
    write_bytes(corrupt, bad, size);
    assert_int_equal(load(corrupt, "all", &ds), PASM_ERR_FORMAT);
    assert_error_has("corrupt.csv.gz", "corrupt gzip data");
    /* Truncated. */
    const char *cut = scratch_path(dir, "cut.csv.gz");
    write_bytes(cut, bytes, size / 2);
    assert_int_equal(load(cut, "all", &ds), PASM_ERR_FORMAT);
    assert_error_has("cut.csv.gz", "truncated");
    /* Garbage after the stream. */
    memcpy(bad, bytes, size);
    unsigned char *tail = malloc(size + 4);
    memcpy(tail, bytes, size);
    memcpy(tail + size, "junk", 4);
    const char *junk = scratch_path(dir, "junk.csv.gz");
    write_bytes(junk, tail, size + 4);
    assert_int_equal(load(junk, "all", &ds), PASM_ERR_FORMAT);
    assert_error_has("junk.csv.gz", "unexpected data after the gzip stream");
    /* From memory too. */
    pasm_load_spec spec = {.split = "all"};
    assert_int_equal(pasm_fer_csv_parse("half.gz", bytes, size / 2, &spec, &ds), PASM_ERR_FORMAT);
    assert_error_has("half.gz", "truncated");
    free(tail), free(bad), free(bytes), free(text);
}

static void test_bad_spec(void **state) {
    (void)state;
    const char *path = scratch_path(dir, "ok.csv");
    write_text(path, "emotion,pixels\n0,1 2 3 4\n");
    pasm_dataset ds;
    pasm_load_spec spec = {.path = path, .channels = 2};
    assert_int_equal(pasm_dataset_load(&spec, &ds), PASM_ERR_INVALID);
    assert_error_has("channels 2");
    spec = (pasm_load_spec){.path = path, .input_size = -3};
    assert_int_equal(pasm_dataset_load(&spec, &ds), PASM_ERR_INVALID);
    spec = (pasm_load_spec){.path = NULL};
    assert_int_equal(pasm_dataset_load(&spec, &ds), PASM_ERR_INVALID);
    unsigned mask;
    assert_int_equal(pasm_split_parse("Training+val", &mask), PASM_OK);
    assert_int_equal(mask, PASM_SPLIT_TRAINING | PASM_SPLIT_PUBLIC_TEST);
    assert_int_equal(pasm_split_parse("Training+", &mask), PASM_ERR_INVALID);
    assert_int_equal(pasm_split_parse(NULL, &mask), PASM_OK);
    assert_int_equal(mask, 7);
}

/* A 48x48 face with many 1-, 2- and 3-digit values, through the fast path:
 * exact values, also where rows are long enough to span 64-byte blocks. */
static void test_fast_path_values(void **state) {
    (void)state;
    size_t cap = 48 * 48 * 4 * 3 + 256;
    char *text = malloc(cap);
    strcpy(text, "emotion,pixels,Usage\n");
    for (int r = 0; r < 3; r++) {
        size_t n = strlen(text);
        n += (size_t)snprintf(text + n, cap - n, "%d,", r);
        for (int k = 0; k < 48 * 48; k++)
            n += (size_t)snprintf(text + n, cap - n, k ? " %d" : "%d", (k * 37 + r * 101) % 256);
        snprintf(text + n, cap - n, ",Training\n");
    }
    pasm_load_spec spec = {.split = "Training"};
    pasm_dataset ds;
    assert_int_equal(pasm_fer_csv_parse("mem.csv", text, strlen(text), &spec, &ds), PASM_OK);
    assert_int_equal(ds.n, 3);
    assert_int_equal(ds.size, 48);
    for (int r = 0; r < 3; r++)
        for (int k = 0; k < 48 * 48; k++)
            assert_int_equal(ds.images[r * 2304 + k], (k * 37 + r * 101) % 256);
    pasm_dataset_free(&ds);
    free(text);
}

/* The last face of a file without a final newline, its pixels ending in a
 * 1-digit value and a space exactly at the end of a 64-byte block: the fast
 * path read 4 bytes from the value, 2 past the end of the buffer (found by
 * fuzz_csv; the sanitizer build catches it, the buffer is malloc'd to size). */
static void test_fast_path_at_the_end(void **state) {
    (void)state;
    size_t cap = 48 * 48 * 4 + 256;
    char *field = malloc(cap);
    size_t n = 0;
    for (int k = 0; k < 48 * 48 - 1; k++)
        n += (size_t)snprintf(field + n, cap - n, k ? " %d" : "%d", (k * 37) % 256);
    n += (size_t)snprintf(field + n, cap - n, " 5 ");
    /* pad after the first value (a double space is fine) to a whole block */
    size_t pad = (64 - n % 64) % 64, first = strchr(field, ' ') - field;
    memmove(field + first + pad, field + first, n - first);
    memset(field + first, ' ', pad);
    n += pad;
    assert_int_equal(n % 64, 0);
    const char *head = "emotion,pixels\n3,";
    size_t size = strlen(head) + n;
    char *text = malloc(size); /* exactly: no terminator, no slack */
    memcpy(text, head, strlen(head));
    memcpy(text + strlen(head), field, n);
    pasm_load_spec spec = {.split = "all"};
    pasm_dataset ds;
    assert_int_equal(pasm_fer_csv_parse("end.csv", text, size, &spec, &ds), PASM_OK);
    assert_int_equal(ds.n, 1);
    assert_int_equal(ds.labels[0], 3);
    for (int k = 0; k < 48 * 48 - 1; k++) assert_int_equal(ds.images[k], (k * 37) % 256);
    assert_int_equal(ds.images[48 * 48 - 1], 5);
    pasm_dataset_free(&ds);
    free(text);
    free(field);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plain_splits),     cmocka_unit_test(test_gzip_same_as_plain),
        cmocka_unit_test(test_kaggle_variants),  cmocka_unit_test(test_resize_and_channels),
        cmocka_unit_test(test_bad_rows),         cmocka_unit_test(test_bad_files),
        cmocka_unit_test(test_bad_gzip),         cmocka_unit_test(test_bad_spec),
        cmocka_unit_test(test_fast_path_values), cmocka_unit_test(test_fast_path_at_the_end),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
