/* safetensors and atomic-write tests: round trips, the on-disk layout other
 * readers need, and every kind of corrupt file (each must fail with a
 * message naming the file, the tensor and the problem, and never read out
 * of bounds: run under ASan by `make SAN=1 test`). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "pasm/io.h"

static char scratch[64];

static int remove_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb, (void)flag, (void)ftw;
    return remove(path);
}

static int make_scratch(void **state) {
    (void)state;
    strcpy(scratch, "/tmp/pasm-test-st-XXXXXX");
    return mkdtemp(scratch) ? 0 : -1;
}

static int remove_scratch(void **state) {
    (void)state;
    return nftw(scratch, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static const char *scratch_path(const char *name) {
    static char path[256];
    snprintf(path, sizeof path, "%s/%s", scratch, name);
    return path;
}

/* Asserts the last error message contains `part`, printing it otherwise. */
static void assert_error_has(const char *part) {
    if (!strstr(pasm_last_error(), part)) {
        print_error("error message \"%s\" lacks \"%s\"\n", pasm_last_error(), part);
        fail();
    }
}

static void write_bytes(const char *path, const void *data, size_t size) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, size, f), size);
    assert_int_equal(fclose(f), 0);
}

/* A raw safetensors file: declared header length, header text, data bytes. */
static void write_raw(const char *path, uint64_t declared_len, const char *header,
                      size_t data_len) {
    size_t header_len = strlen(header);
    unsigned char *file = calloc(1, 8 + header_len + data_len);
    assert_non_null(file);
    for (int i = 0; i < 8; i++) file[i] = (unsigned char)(declared_len >> (8 * i));
    memcpy(file + 8, header, header_len);
    for (size_t i = 0; i < data_len; i++) file[8 + header_len + i] = (unsigned char)i;
    write_bytes(path, file, 8 + header_len + data_len);
    free(file);
}

/* Writes header + data_len bytes and expects reading to fail with a status
 * and a message containing each of the NULL-terminated parts. */
static void expect_corrupt(const char *name, const char *header, size_t data_len,
                           pasm_status want, ...) {
    const char *path = scratch_path(name);
    write_raw(path, strlen(header), header, data_len);
    pasm_safetensors st;
    pasm_clear_error();
    pasm_status got = pasm_safetensors_read(path, &st);
    if (got != want) print_error("%s: status %d, message: %s\n", name, got, pasm_last_error());
    assert_int_equal(got, want);
    assert_null(st.buffer);
    assert_int_equal(st.n_tensors, 0);
    assert_error_has(path);
    va_list ap;
    va_start(ap, want);
    for (const char *part; (part = va_arg(ap, const char *));) assert_error_has(part);
    va_end(ap);
}

/* ------------------------------------------------------------ round trip */

static float weights[6] = {1.5f, -2.25f, 3.0f, 0.0f, -0.0f, 1e-30f};
static int64_t steps = 1234567890123LL;
static uint8_t bytes5[5] = {1, 2, 3, 254, 255};
static int32_t labels[3] = {-7, 0, 2147483647};

static int make_tensors(pasm_tensor *t) {
    memset(t, 0, 4 * sizeof *t);
    strcpy(t[0].name, "layer1.0.conv1.weight");
    t[0].dtype = PASM_F32, t[0].ndim = 2, t[0].shape[0] = 2, t[0].shape[1] = 3;
    t[0].data = weights;
    strcpy(t[1].name, "bn1.num_batches_tracked");
    t[1].dtype = PASM_I64, t[1].ndim = 0, t[1].data = &steps;
    strcpy(t[2].name, "bytes");
    t[2].dtype = PASM_U8, t[2].ndim = 1, t[2].shape[0] = 5, t[2].data = bytes5;
    strcpy(t[3].name, "labels \"quoted\"");
    t[3].dtype = PASM_I32, t[3].ndim = 1, t[3].shape[0] = 3, t[3].data = labels;
    return 4;
}

static void test_round_trip(void **state) {
    (void)state;
    pasm_tensor t[4];
    int n = make_tensors(t);
    const char *keys[] = {"format", "note"};
    const char *values[] = {"pasm", "line\nbreak \"and\" \\ tab\t\x01 ünï"};
    const char *path = scratch_path("round.safetensors");
    assert_int_equal(pasm_safetensors_write(path, t, n, keys, values, 2), PASM_OK);

    pasm_safetensors st;
    assert_int_equal(pasm_safetensors_read(path, &st), PASM_OK);
    assert_int_equal(st.n_tensors, n);
    for (int i = 0; i < n; i++) { /* same order, dtype, shape, bytes */
        assert_string_equal(st.tensors[i].name, t[i].name);
        assert_int_equal(st.tensors[i].dtype, t[i].dtype);
        assert_int_equal(st.tensors[i].ndim, t[i].ndim);
        for (int d = 0; d < t[i].ndim; d++) assert_int_equal(st.tensors[i].shape[d], t[i].shape[d]);
        assert_memory_equal(st.tensors[i].data, t[i].data, pasm_tensor_bytes(&t[i]));
        /* Every tensor is readable in place as its own type. */
        assert_int_equal((uintptr_t)st.tensors[i].data % pasm_dtype_size(t[i].dtype), 0);
    }
    assert_int_equal(st.n_meta, 2);
    assert_string_equal(pasm_safetensors_meta(&st, "format"), "pasm");
    assert_string_equal(pasm_safetensors_meta(&st, "note"), values[1]);
    assert_null(pasm_safetensors_meta(&st, "absent"));
    assert_ptr_equal(pasm_safetensors_find(&st, "bytes"), &st.tensors[2]);
    assert_null(pasm_safetensors_find(&st, "byte"));
    assert_int_equal(*(const int64_t *)pasm_safetensors_find(&st, "bn1.num_batches_tracked")->data,
                     steps);

    /* Layout other readers expect: header padded to 8, __metadata__ first,
     * tensors back to back with no gap, nothing after the last one. */
    uint64_t header_len = 0;
    for (int i = 7; i >= 0; i--) header_len = (header_len << 8) | st.buffer[i];
    assert_int_equal(header_len % 8, 0);
    assert_memory_equal(st.buffer + 8, "{\"__metadata__\":{", 17);
    size_t data = 0;
    for (int i = 0; i < n; i++) data += pasm_tensor_bytes(&t[i]);
    assert_int_equal(st.size, 8 + header_len + data);
    pasm_safetensors_free(&st);
    assert_null(st.buffer);
    pasm_safetensors_free(&st); /* freeing twice is harmless */
}

static void test_exact_header_text(void **state) {
    (void)state;
    pasm_tensor t = {.name = "w", .dtype = PASM_F32, .ndim = 1, .shape = {2}, .data = weights};
    const char *path = scratch_path("exact.safetensors");
    assert_int_equal(pasm_safetensors_write(path, &t, 1, NULL, NULL, 0), PASM_OK);
    unsigned char *file;
    size_t size;
    assert_int_equal(pasm_read_file(path, &file, &size), PASM_OK);
    const char *want = "{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";
    /* 54 bytes of JSON padded with 2 spaces to 56. */
    assert_int_equal(strlen(want), 54);
    assert_int_equal(file[0], 56);
    assert_memory_equal(file + 8, want, strlen(want));
    assert_memory_equal(file + 8 + strlen(want), "  ", 2);
    assert_int_equal(size, 8 + 56 + 8);
    assert_memory_equal(file + 64, weights, 8);
    free(file);
}

static void test_empty_and_zero_sized(void **state) {
    (void)state;
    const char *path = scratch_path("empty.safetensors");
    assert_int_equal(pasm_safetensors_write(path, NULL, 0, NULL, NULL, 0), PASM_OK);
    pasm_safetensors st;
    assert_int_equal(pasm_safetensors_read(path, &st), PASM_OK);
    assert_int_equal(st.n_tensors, 0);
    assert_int_equal(st.n_meta, 0);
    pasm_safetensors_free(&st);

    /* Zero-element tensors share offsets with neighbours without clashing. */
    const char *header = "{\"a\":{\"dtype\":\"F32\",\"shape\":[0,3],\"data_offsets\":[4,4]},"
                         "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}   ";
    write_raw(scratch_path("zero.safetensors"), strlen(header), header, 8);
    assert_int_equal(pasm_safetensors_read(scratch_path("zero.safetensors"), &st), PASM_OK);
    assert_int_equal(st.n_tensors, 2);
    assert_string_equal(st.tensors[0].name, "a");
    assert_int_equal(pasm_tensor_numel(&st.tensors[0]), 0);
    pasm_safetensors_free(&st);
}

/* A file written by another tool may leave a tensor misaligned for its
 * dtype; the reader still hands out aligned data. */
static void test_misaligned_tensor_is_realigned(void **state) {
    (void)state;
    char header[200];
    snprintf(header, sizeof header, "%-*s", 112,
             "{\"u\":{\"dtype\":\"U8\",\"shape\":[3],\"data_offsets\":[0,3]},"
             "\"f\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[3,11]}}");
    const char *path = scratch_path("misaligned.safetensors");
    write_raw(path, strlen(header), header, 11); /* data starts 8-aligned, f at +3 */
    pasm_safetensors st;
    assert_int_equal(pasm_safetensors_read(path, &st), PASM_OK);
    const pasm_tensor *f = pasm_safetensors_find(&st, "f");
    assert_int_equal((uintptr_t)f->data % 4, 0);
    const unsigned char want[8] = {3, 4, 5, 6, 7, 8, 9, 10}; /* write_raw fills i */
    assert_memory_equal(f->data, want, 8);
    pasm_safetensors_free(&st);
}

/* ---------------------------------------------------------- corrupt files */

static void test_truncated_and_bad_lengths(void **state) {
    (void)state;
    const char *path = scratch_path("short.safetensors");
    write_bytes(path, "\x10\0\0\0\0", 5);
    pasm_safetensors st;
    assert_int_equal(pasm_safetensors_read(path, &st), PASM_ERR_FORMAT);
    assert_error_has(path);
    assert_error_has("file of 5 bytes is too short");

    write_raw(path, 1000, "{}", 40);
    assert_int_equal(pasm_safetensors_read(path, &st), PASM_ERR_FORMAT);
    assert_error_has("header length 1000 runs past the end of the file (50 bytes)");

    write_raw(path, 1ull << 63, "{}", 0);
    assert_int_equal(pasm_safetensors_read(path, &st), PASM_ERR_FORMAT);
    assert_error_has("exceeds the limit");

    assert_int_equal(pasm_safetensors_read(scratch_path("missing.safetensors"), &st), PASM_ERR_IO);
    assert_error_has("missing.safetensors: cannot open: No such file or directory");
}

/* Every prefix of a valid file must be refused cleanly. */
static void test_every_truncation_fails(void **state) {
    (void)state;
    pasm_tensor t[4];
    int n = make_tensors(t);
    const char *keys[] = {"k"}, *values[] = {"v"};
    const char *path = scratch_path("full.safetensors");
    assert_int_equal(pasm_safetensors_write(path, t, n, keys, values, 1), PASM_OK);
    unsigned char *file;
    size_t size;
    assert_int_equal(pasm_read_file(path, &file, &size), PASM_OK);
    for (size_t cut = 0; cut < size; cut++) {
        unsigned char *copy = malloc(cut ? cut : 1);
        memcpy(copy, file, cut);
        pasm_safetensors st;
        assert_int_not_equal(pasm_safetensors_parse("cut", copy, cut, &st), PASM_OK);
        assert_error_has("cut: ");
    }
    free(file);
}

static void test_bad_json(void **state) {
    (void)state;
    expect_corrupt("json.st", "{\"a\": {\"dtype\": ", 0, PASM_ERR_FORMAT, "header is not valid JSON",
                   NULL);
    expect_corrupt("array.st", "[1, 2]", 0, PASM_ERR_FORMAT, "header is not a JSON object", NULL);
    expect_corrupt("trailing.st", "{} x", 0, PASM_ERR_FORMAT, "trailing bytes", NULL);
}

static void test_offsets_outside(void **state) {
    (void)state;
    expect_corrupt("outside.st",
                   "{\"layer1.0.conv1.weight\":{\"dtype\":\"F32\",\"shape\":[16],"
                   "\"data_offsets\":[0,64]}}",
                   32, PASM_ERR_FORMAT,
                   "tensor 'layer1.0.conv1.weight': data_offsets [0, 64] outside the data block "
                   "of 32 bytes",
                   NULL);
    expect_corrupt("reversed.st",
                   "{\"w\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[8,4]}}", 8,
                   PASM_ERR_FORMAT, "tensor 'w': data_offsets [8, 4] end before they begin", NULL);
    expect_corrupt("huge.st",
                   "{\"w\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,"
                   "18446744073709551615]}}",
                   8, PASM_ERR_FORMAT, "tensor 'w': \"data_offsets\" must be [begin, end]", NULL);
    expect_corrupt("three.st", "{\"w\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1,2]}}",
                   8, PASM_ERR_FORMAT, "tensor 'w': \"data_offsets\" must be", NULL);
    expect_corrupt("stroff.st", "{\"w\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[\"0\",1]}}",
                   8, PASM_ERR_FORMAT, "tensor 'w': \"data_offsets\" must be", NULL);
}

static void test_overlap(void **state) {
    (void)state;
    expect_corrupt("overlap.st",
                   "{\"fc.weight\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
                   "\"fc.bias\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[8,24]}}",
                   24, PASM_ERR_FORMAT, "tensors 'fc.weight' [0, 16] and 'fc.bias' [8, 24] overlap",
                   NULL);
    /* Contained in an earlier, longer range (not just the previous one). */
    expect_corrupt("inside.st",
                   "{\"a\":{\"dtype\":\"U8\",\"shape\":[32],\"data_offsets\":[0,32]},"
                   "\"b\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[2,4]},"
                   "\"c\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[6,8]}}",
                   32, PASM_ERR_FORMAT, "tensors 'a' [0, 32] and 'b' [2, 4] overlap", NULL);
}

static void test_dtype_and_shape_errors(void **state) {
    (void)state;
    expect_corrupt("f16.st", "{\"conv1.weight\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[0,4]}}",
                   4, PASM_ERR_UNSUPPORTED, "tensor 'conv1.weight': dtype F16 is not supported",
                   NULL);
    expect_corrupt("nodtype.st", "{\"w\":{\"shape\":[2],\"data_offsets\":[0,8]}}", 8,
                   PASM_ERR_FORMAT, "tensor 'w': \"dtype\" is missing", NULL);
    expect_corrupt("noshape.st", "{\"w\":{\"dtype\":\"F32\",\"data_offsets\":[0,8]}}", 8,
                   PASM_ERR_FORMAT, "tensor 'w': \"shape\" is missing", NULL);
    expect_corrupt("size.st", "{\"bn1.weight\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}",
                   8, PASM_ERR_FORMAT,
                   "tensor 'bn1.weight': shape [3] of F32 needs 3 elements but data_offsets [0, 8] "
                   "hold 8 bytes",
                   NULL);
    expect_corrupt("dims.st", "{\"w\":{\"dtype\":\"U8\",\"shape\":[1,1,1,1,1],\"data_offsets\":[0,1]}}",
                   8, PASM_ERR_FORMAT, "tensor 'w': shape has 5 dimensions; at most 4", NULL);
    expect_corrupt("negative.st", "{\"w\":{\"dtype\":\"U8\",\"shape\":[-1],\"data_offsets\":[0,1]}}",
                   8, PASM_ERR_FORMAT, "tensor 'w': shape entry 0 is not a non-negative integer",
                   NULL);
    expect_corrupt("fraction.st", "{\"w\":{\"dtype\":\"U8\",\"shape\":[1,1.5],\"data_offsets\":[0,1]}}",
                   8, PASM_ERR_FORMAT, "shape entry 1 is not a non-negative integer", NULL);
    /* 2^40 cubed overflows 64 bits: must be caught, not wrapped. */
    expect_corrupt("overflow.st",
                   "{\"w\":{\"dtype\":\"U8\",\"shape\":[1099511627776,1099511627776,"
                   "1099511627776],\"data_offsets\":[0,0]}}",
                   8, PASM_ERR_FORMAT, "tensor 'w': shape has too many elements", NULL);
    expect_corrupt("notobj.st", "{\"w\":[1,2]}", 0, PASM_ERR_FORMAT,
                   "tensor 'w': header entry is not an object", NULL);
    expect_corrupt("twice.st",
                   "{\"w\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
                   "\"w\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1,2]}}",
                   8, PASM_ERR_FORMAT, "tensor 'w' appears twice", NULL);
    char header[400];
    snprintf(header, sizeof header, "{\"%0120d\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}", 7);
    expect_corrupt("longname.st", header, 8, PASM_ERR_FORMAT, "is longer than 95 bytes", NULL);
}

static void test_metadata_errors(void **state) {
    (void)state;
    expect_corrupt("metaval.st", "{\"__metadata__\":{\"epoch\":3}}", 0, PASM_ERR_FORMAT,
                   "__metadata__ value for 'epoch' is not a string", NULL);
    expect_corrupt("metaobj.st", "{\"__metadata__\":[\"a\"]}", 0, PASM_ERR_FORMAT,
                   "__metadata__ is not an object", NULL);
    expect_corrupt("metakey.st", "{\"__metadata__\":{\"a\":\"1\",\"b\":\"2\",\"a\":\"3\"}}", 0,
                   PASM_ERR_FORMAT, "__metadata__ key 'a' appears twice", NULL);
    expect_corrupt("metatwice.st", "{\"__metadata__\":{},\"__metadata__\":{}}", 0,
                   PASM_ERR_FORMAT, "__metadata__ appears twice", NULL);
}

static void test_write_rejects_bad_input(void **state) {
    (void)state;
    pasm_tensor t[2] = {{.name = "a", .dtype = PASM_F32, .ndim = 1, .shape = {2}, .data = weights},
                        {.name = "a", .dtype = PASM_F32, .ndim = 1, .shape = {2}, .data = weights}};
    const char *path = scratch_path("bad-write.safetensors");
    assert_int_equal(pasm_safetensors_write(path, t, 2, NULL, NULL, 0), PASM_ERR_INVALID);
    assert_error_has("tensor 'a' given twice");
    t[1].shape[0] = -3;
    strcpy(t[1].name, "b");
    assert_int_equal(pasm_safetensors_write(path, t, 2, NULL, NULL, 0), PASM_ERR_INVALID);
    assert_error_has("tensor 'b': bad shape");
    assert_int_equal(access(path, F_OK), -1); /* nothing written */
}

/* ---------------------------------------------------------- atomic writes */

static int count_temp_files(const char *folder) {
    DIR *d = opendir(folder);
    assert_non_null(d);
    int count = 0;
    for (struct dirent *e; (e = readdir(d));)
        if (strstr(e->d_name, ".tmp.")) count++;
    closedir(d);
    return count;
}

/* The file at path holds exactly the n bytes of want. */
static void expect_file(const char *path, const char *want, size_t n) {
    unsigned char *data;
    size_t size;
    assert_int_equal(pasm_read_file(path, &data, &size), PASM_OK);
    assert_int_equal(size, n);
    if (n) assert_memory_equal(data, want, n);
    free(data);
}

static void test_atomic_overwrite(void **state) {
    (void)state;
    const char *path = scratch_path("atomic.txt");
    assert_int_equal(pasm_write_file_atomic(path, "old contents", 12), PASM_OK);
    assert_int_equal(pasm_write_file_atomic(path, "new", 3), PASM_OK);
    expect_file(path, "new", 3);
    assert_int_equal(count_temp_files(scratch), 0);
}

/* A file written in parts is their concatenation; empty parts (NULL or
 * not) add nothing, no parts make an empty file, and a NULL part with bytes
 * is refused before anything is written. */
static void test_atomic_parts(void **state) {
    (void)state;
    const char *path = scratch_path("parts.txt");
    const void *part[] = {"ab", NULL, "", "cde", "f"};
    const size_t size[] = {2, 0, 0, 3, 1};
    assert_int_equal(pasm_write_file_atomic_parts(path, 5, part, size), PASM_OK);
    expect_file(path, "abcdef", 6);
    assert_int_equal(pasm_write_file_atomic_parts(path, 0, NULL, NULL), PASM_OK);
    expect_file(path, "", 0);
    const void *bad[] = {"new", NULL};
    const size_t bad_size[] = {3, 4};
    assert_int_equal(pasm_write_file_atomic(path, "kept", 4), PASM_OK);
    assert_int_equal(pasm_write_file_atomic_parts(path, 2, bad, bad_size), PASM_ERR_INVALID);
    assert_error_has("part 1");
    assert_int_equal(pasm_write_file_atomic_parts(path, -1, bad, bad_size), PASM_ERR_INVALID);
    expect_file(path, "kept", 4);
    assert_int_equal(count_temp_files(scratch), 0);
}

static void test_atomic_failure_keeps_old(void **state) {
    (void)state;
    /* A folder that does not exist: nothing can be created. */
    char missing[256];
    snprintf(missing, sizeof missing, "%s/no-such-folder/out.safetensors", scratch);
    assert_int_equal(pasm_write_file_atomic(missing, "x", 1), PASM_ERR_IO);
    assert_error_has(missing);
    assert_error_has("No such file or directory");

    /* The target is a folder: the temporary file is written, the rename
     * fails, and the temporary file must be gone afterwards. */
    const char *target = scratch_path("a-folder");
    assert_int_equal(mkdir(target, 0755), 0);
    assert_int_equal(pasm_write_file_atomic(target, "data", 4), PASM_ERR_IO);
    assert_error_has(target);
    assert_error_has("cannot rename");
    struct stat info;
    assert_int_equal(stat(target, &info), 0);
    assert_true(S_ISDIR(info.st_mode));
    assert_int_equal(count_temp_files(scratch), 0);
    assert_int_equal(rmdir(target), 0);

    /* A failed safetensors write leaves the previous file byte for byte. */
    const char *path = scratch_path("keep.safetensors");
    pasm_tensor good = {.name = "w", .dtype = PASM_F32, .ndim = 1, .shape = {2}, .data = weights};
    assert_int_equal(pasm_safetensors_write(path, &good, 1, NULL, NULL, 0), PASM_OK);
    unsigned char *before, *after;
    size_t before_size, after_size;
    assert_int_equal(pasm_read_file(path, &before, &before_size), PASM_OK);
    pasm_tensor bad = good;
    bad.data = NULL;
    assert_int_equal(pasm_safetensors_write(path, &bad, 1, NULL, NULL, 0), PASM_ERR_INVALID);
    assert_int_equal(pasm_read_file(path, &after, &after_size), PASM_OK);
    assert_int_equal(before_size, after_size);
    assert_memory_equal(before, after, before_size);
    free(before);
    free(after);

    assert_int_equal(pasm_read_file(scratch, &before, &before_size), PASM_ERR_IO);
    assert_error_has("not a regular file");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_exact_header_text),
        cmocka_unit_test(test_empty_and_zero_sized),
        cmocka_unit_test(test_misaligned_tensor_is_realigned),
        cmocka_unit_test(test_truncated_and_bad_lengths),
        cmocka_unit_test(test_every_truncation_fails),
        cmocka_unit_test(test_bad_json),
        cmocka_unit_test(test_offsets_outside),
        cmocka_unit_test(test_overlap),
        cmocka_unit_test(test_dtype_and_shape_errors),
        cmocka_unit_test(test_metadata_errors),
        cmocka_unit_test(test_write_rejects_bad_input),
        cmocka_unit_test(test_atomic_overwrite),
        cmocka_unit_test(test_atomic_parts),
        cmocka_unit_test(test_atomic_failure_keeps_old),
    };
    return cmocka_run_group_tests(tests, make_scratch, remove_scratch);
}
