/* The CLI's data cache (cli_dataset_load, src/cli/cli_util.c, compiled in
 * here): a CSV loaded again comes back as an equal copy without reading the
 * file; a file changed in between (other bytes, another size, a new
 * modification time, or replaced by another file) is read again; other
 * splits, sizes or label files are other entries; folders are always read;
 * errors are not kept; the least recently used goes when the slots or the
 * bytes run out; clearing lets everything go (the sanitizer build checks
 * for leaks). */
#include "util/helpers.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <time.h>

/* 1000 bytes of images at most: the eviction below is seen with small faces */
#define CACHE_MAX_BYTES ((size_t)1000)
#include "cli/cli_util.c"

static char dir[256], csv[320];

/* A FER2013-style CSV of n 4x4 faces, pixel values base + row + i. */
static void write_csv(const char *path, int n, int base) {
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f, "emotion,pixels,Usage\n");
    for (int r = 0; r < n; r++) {
        fprintf(f, "%d,", r % 7);
        for (int i = 0; i < 16; i++) fprintf(f, "%s%d", i ? " " : "", (base + r + i) % 256);
        fprintf(f, ",%s\n", r % 3 == 2 ? "PublicTest" : "Training");
    }
    fclose(f);
}

static pasm_load_spec spec_of(const char *path, const char *split) {
    return (pasm_load_spec){.path = path, .split = split, .input_size = 4, .channels = 1};
}

static void load(const pasm_load_spec *spec, pasm_dataset *ds) {
    if (cli_dataset_load(spec, ds)) fail_msg("%s: %s", spec->path, pasm_last_error());
}

static int kept(void) {
    int n = 0;
    for (int i = 0; i < CACHE_SLOTS; i++) n += cache[i].path != NULL;
    return n;
}

static void expect_same(const pasm_dataset *a, const pasm_dataset *b) {
    assert_int_equal(a->n, b->n);
    assert_memory_equal(a->images, b->images, (size_t)a->n * 16);
    assert_memory_equal(a->labels, b->labels, (size_t)a->n * sizeof(int32_t));
    assert_memory_equal(a->rows, b->rows, (size_t)a->n * sizeof(int32_t));
    assert_int_equal(a->n_classes, b->n_classes);
    assert_string_equal(a->source, b->source);
}

static int setup(void **state) {
    (void)state;
    test_tmpdir(dir, sizeof dir);
    snprintf(csv, sizeof csv, "%s/faces.csv", dir);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    cli_data_cache_clear();
    test_rmdir(dir);
    return 0;
}

static void test_copies_and_changes(void **state) {
    (void)state;
    write_csv(csv, 9, 10);
    pasm_load_spec train = spec_of(csv, "Training"), val = spec_of(csv, "PublicTest");
    pasm_dataset a, b, c, d;
    load(&train, &a);
    assert_int_equal(a.n, 6);
    assert_int_equal(kept(), 1);
    load(&train, &b); /* a copy of what was kept */
    expect_same(&a, &b);
    assert_ptr_not_equal(a.images, b.images);
    b.images[0] ^= 0xff; /* the caller's copy is its own */
    pasm_dataset_free(&b);
    load(&train, &b);
    expect_same(&a, &b);
    pasm_dataset_free(&b);
    load(&val, &c); /* another split: another entry */
    assert_int_equal(c.n, 3);
    assert_int_equal(kept(), 2);
    pasm_load_spec bigger = train;
    bigger.input_size = 8;
    load(&bigger, &d);
    assert_int_equal(d.size, 8);
    assert_int_equal(kept(), 3);
    pasm_dataset_free(&d);

    /* the file rewritten with other pixels, same size: its time differs */
    struct stat before;
    assert_int_equal(stat(csv, &before), 0);
    write_csv(csv, 9, 11);
    struct timespec later[2] = {{before.st_mtim.tv_sec + 1, 0}, {before.st_mtim.tv_sec + 1, 0}};
    assert_int_equal(utimensat(AT_FDCWD, csv, later, 0), 0);
    load(&train, &b);
    assert_int_equal(b.n, 6);
    assert_int_equal(b.images[0], 11);
    assert_int_equal(a.images[0], 10);
    pasm_dataset_free(&b);
    /* more rows (another size), even with the old time put back */
    write_csv(csv, 12, 11);
    struct timespec same[2] = {later[0], later[1]};
    assert_int_equal(utimensat(AT_FDCWD, csv, same, 0), 0);
    load(&train, &b);
    assert_int_equal(b.n, 8);
    pasm_dataset_free(&b);
    /* replaced by another file (another inode) */
    char other[400];
    snprintf(other, sizeof other, "%s/other.csv", dir);
    write_csv(other, 12, 20);
    assert_int_equal(utimensat(AT_FDCWD, other, same, 0), 0);
    assert_int_equal(rename(other, csv), 0);
    load(&train, &b);
    assert_int_equal(b.images[0], 20);
    pasm_dataset_free(&b);
    assert_true(kept() <= CACHE_SLOTS);
    pasm_dataset_free(&a);
    pasm_dataset_free(&c);
    cli_data_cache_clear();
    assert_int_equal(kept(), 0);
}

static void test_errors_and_folders(void **state) {
    (void)state;
    char missing[400];
    snprintf(missing, sizeof missing, "%s/none.csv", dir);
    pasm_load_spec s = spec_of(missing, "Training");
    pasm_dataset ds;
    assert_int_not_equal(cli_dataset_load(&s, &ds), PASM_OK);
    assert_non_null(strstr(pasm_last_error(), "none.csv"));
    assert_int_equal(kept(), 0);
    /* a folder of class folders is read every time */
    char cls[400], png[420];
    snprintf(cls, sizeof cls, "%s/folder", dir);
    assert_int_equal(mkdir(cls, 0755), 0);
    snprintf(cls, sizeof cls, "%s/folder/happy", dir);
    assert_int_equal(mkdir(cls, 0755), 0);
    uint8_t pixels[16] = {0};
    snprintf(png, sizeof png, "%s/a.png", cls);
    assert_int_equal(pasm_png_write_gray(png, 4, 4, pixels), PASM_OK);
    char folder[400];
    snprintf(folder, sizeof folder, "%s/folder", dir);
    s = spec_of(folder, "all");
    load(&s, &ds);
    assert_int_equal(ds.n, 1);
    pasm_dataset_free(&ds);
    assert_int_equal(kept(), 0);
    snprintf(png, sizeof png, "%s/b.png", cls);
    assert_int_equal(pasm_png_write_gray(png, 4, 4, pixels), PASM_OK);
    load(&s, &ds);
    assert_int_equal(ds.n, 2);
    pasm_dataset_free(&ds);
}

static int kept_bytes(void) {
    size_t n = 0;
    for (int i = 0; i < CACHE_SLOTS; i++) n += slot_bytes(&cache[i]);
    return (int)n;
}

static void test_eviction(void **state) {
    (void)state;
    write_csv(csv, 9, 10);
    pasm_dataset ds;
    /* the Training split (6 faces) at sizes 4, 5, 6, 7: 96 + 150 + 216 + 294 bytes */
    for (int size = 4; size <= 7; size++) {
        pasm_load_spec s = spec_of(csv, "Training");
        s.input_size = size;
        load(&s, &ds);
        pasm_dataset_free(&ds);
    }
    assert_int_equal(kept(), 4);
    assert_int_equal(kept_bytes(), 756);
    pasm_load_spec s4 = spec_of(csv, "Training");
    load(&s4, &ds); /* size 4 used again: now the most recent */
    pasm_dataset_free(&ds);
    pasm_load_spec s8 = s4;
    s8.input_size = 8; /* 384 bytes: 5 (150) goes, the least recently used */
    load(&s8, &ds);
    pasm_dataset_free(&ds);
    assert_true(kept_bytes() <= 1000);
    int sizes = 0;
    for (int i = 0; i < CACHE_SLOTS; i++)
        if (cache[i].path) sizes |= 1 << cache[i].input_size;
    assert_int_equal(sizes, (1 << 4) | (1 << 6) | (1 << 7) | (1 << 8));
    /* more entries than slots, all small: the slots bound them */
    for (int k = 0; k < 8; k++) {
        pasm_load_spec v = spec_of(csv, k % 2 ? "PublicTest" : "Training+PublicTest");
        v.input_size = 2 + k / 2;
        load(&v, &ds);
        pasm_dataset_free(&ds);
        assert_true(kept() <= CACHE_SLOTS && kept_bytes() <= 1000);
    }
    /* a load larger than the whole cache is given out but not kept */
    pasm_load_spec big = s4;
    big.input_size = 16; /* 6 x 256 bytes */
    load(&big, &ds);
    assert_int_equal(ds.size, 16);
    pasm_dataset_free(&ds);
    for (int i = 0; i < CACHE_SLOTS; i++) assert_int_not_equal(cache[i].input_size, 16);
    cli_data_cache_clear();
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_copies_and_changes),
        cmocka_unit_test(test_errors_and_folders),
        cmocka_unit_test(test_eviction),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
