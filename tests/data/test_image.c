/* Image decoding, conversion and resizing against Pillow (the fixture
 * tests/fixtures/data_pil.bin, made by make_data_fixtures.py, holds what
 * Pillow 13 produced), PNG writing round trips, and corrupt or truncated
 * images, which must be errors that name the file. */
#include "data/data_test_util.h"

#define FIXTURE "tests/fixtures/data_pil.bin"

typedef struct {
    char name[128];
    const unsigned char *data;
    uint32_t size;
} record;

static unsigned char *fixture;
static size_t fixture_size;
static record records[64];
static int n_records;

static int setup(void **state) {
    (void)state;
    fixture = read_bytes(FIXTURE, &fixture_size);
    size_t pos = 0;
    while (pos + 8 <= fixture_size && n_records < 64) {
        uint32_t name_len, size;
        memcpy(&name_len, fixture + pos, 4);
        record *r = &records[n_records++];
        snprintf(r->name, sizeof r->name, "%.*s", (int)name_len, (const char *)fixture + pos + 4);
        memcpy(&size, fixture + pos + 4 + name_len, 4);
        r->data = fixture + pos + 8 + name_len;
        r->size = size;
        pos += 8 + name_len + size;
    }
    return pos == fixture_size ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    free(fixture);
    return 0;
}

static const record *find(const char *name) {
    for (int i = 0; i < n_records; i++)
        if (strcmp(records[i].name, name) == 0) return &records[i];
    fail_msg("fixture record '%s' missing", name);
    return NULL;
}

/* Byte-exact: the resizer is PIL's algorithm with PIL's fixed-point rounding. */
static void test_resize_matches_pil(void **state) {
    (void)state;
    int cases = 0;
    for (int i = 0; i < n_records; i++) {
        int w, h, ow, oh;
        if (sscanf(records[i].name, "resize %d %d %d %d", &w, &h, &ow, &oh) != 4) continue;
        assert_int_equal(records[i].size, w * h + ow * oh);
        pasm_image img = {w, h, 1, (uint8_t *)records[i].data};
        uint8_t *out = malloc((size_t)ow * oh);
        assert_int_equal(pasm_image_resize(&img, ow, oh, out), PASM_OK);
        int diffs = 0;
        for (int k = 0; k < ow * oh; k++)
            diffs += out[k] != records[i].data[w * h + k];
        printf("  resize %dx%d -> %dx%d: %d of %d pixels differ from PIL\n", w, h, ow, oh, diffs,
               ow * oh);
        assert_int_equal(diffs, 0);
        free(out);
        cases++;
    }
    assert_true(cases >= 8);
}

static void test_rgb_to_grey_matches_pil(void **state) {
    (void)state;
    const record *r = find("rgb2l 31 24");
    int n = 31 * 24;
    /* Through a PNG the decoder converts: write the RGB, read it back as grey. */
    char dir[256];
    test_tmpdir(dir, sizeof dir);
    const char *path = scratch_path(dir, "rgb.png");
    assert_int_equal(pasm_png_write_rgb(path, 31, 24, r->data), PASM_OK);
    pasm_image img;
    assert_int_equal(pasm_image_read(path, 1, &img), PASM_OK);
    assert_int_equal(img.channels, 1);
    assert_memory_equal(img.pixels, r->data + 3 * n, (size_t)n);
    pasm_image_free(&img);
    test_rmdir(dir);
}

/* Every fixture file decodes to exactly PIL's convert("L") and convert("RGB"). */
static void test_decode_matches_pil(void **state) {
    (void)state;
    int files = 0;
    for (int i = 0; i < n_records; i++) {
        if (strncmp(records[i].name, "file ", 5) != 0) continue;
        const char *name = records[i].name + 5;
        char key[160];
        snprintf(key, sizeof key, "L %s", name);
        const record *grey = find(key);
        snprintf(key, sizeof key, "RGB %s", name);
        const record *rgb = find(key);
        pasm_image g, c, native;
        assert_int_equal(pasm_image_decode(records[i].data, records[i].size, name, 1, &g), PASM_OK);
        assert_int_equal(pasm_image_decode(records[i].data, records[i].size, name, 3, &c), PASM_OK);
        assert_int_equal(pasm_image_decode(records[i].data, records[i].size, name, 0, &native),
                         PASM_OK);
        assert_int_equal(g.width, 40);
        assert_int_equal(g.height, 30);
        int dl = 0, dc = 0;
        for (int k = 0; k < 1200; k++)
            dl += g.pixels[k] != grey->data[k];
        for (int k = 0; k < 3600; k++)
            dc += c.pixels[k] != rgb->data[k];
        printf("  %-22s native %d channel(s); pixels unlike PIL: L %d, RGB %d\n", name,
               native.channels, dl, dc);
        assert_int_equal(dl, 0);
        assert_int_equal(dc, 0);
        int grey_file = strstr(name, "grey") || strstr(name, "la.") || strstr(name, "bilevel");
        assert_int_equal(native.channels, grey_file ? 1 : 3);
        pasm_image_free(&g), pasm_image_free(&c), pasm_image_free(&native);
        files++;
    }
    assert_int_equal(files, 10);
}

static void test_png_round_trip(void **state) {
    (void)state;
    char dir[256];
    test_tmpdir(dir, sizeof dir);
    uint8_t planar[3 * 5 * 4], grey[5 * 4];
    for (int i = 0; i < 60; i++)
        planar[i] = (uint8_t)(i * 4 + 1);
    for (int i = 0; i < 20; i++)
        grey[i] = (uint8_t)(255 - i * 9);
    const char *gp = scratch_path(dir, "g.png"), *cp = scratch_path(dir, "c.png"),
               *pp = scratch_path(dir, "p1.png");
    assert_int_equal(pasm_png_write_gray(gp, 5, 4, grey), PASM_OK);
    assert_int_equal(pasm_png_write_planar(cp, 3, 5, 4, planar), PASM_OK);
    assert_int_equal(pasm_png_write_planar(pp, 1, 5, 4, grey), PASM_OK);
    pasm_image img;
    assert_int_equal(pasm_image_read(gp, 0, &img), PASM_OK);
    assert_int_equal(img.channels, 1);
    assert_memory_equal(img.pixels, grey, 20);
    pasm_image_free(&img);
    assert_int_equal(pasm_image_read(pp, 1, &img), PASM_OK);
    assert_memory_equal(img.pixels, grey, 20);
    pasm_image_free(&img);
    assert_int_equal(pasm_image_read(cp, 3, &img), PASM_OK);
    assert_int_equal(img.width, 5);
    assert_int_equal(img.height, 4);
    assert_memory_equal(img.pixels, planar, 60);
    pasm_image_free(&img);
    assert_int_equal(pasm_png_write_gray(scratch_path(dir, "no/such/dir.png"), 5, 4, grey),
                     PASM_ERR_IO);
    assert_error_has("no/such/dir.png");
    assert_int_equal(pasm_png_write_gray(gp, 0, 4, grey), PASM_ERR_INVALID);
    assert_int_equal(pasm_png_write_planar(gp, 2, 5, 4, grey), PASM_ERR_INVALID);
    test_rmdir(dir);
}

static void expect_corrupt(const unsigned char *data, size_t size, const char *name,
                           const char *what) {
    pasm_image img;
    assert_int_equal(pasm_image_decode(data, size, name, 1, &img), PASM_ERR_FORMAT);
    assert_null(img.pixels);
    assert_error_has(name, what);
}

static void test_corrupt_images(void **state) {
    (void)state;
    const record *png = find("file rgb.png"), *jpg = find("file rgb.jpg"),
                 *prog = find("file rgb_progressive.jpg");
    expect_corrupt(png->data, png->size / 2, "half.png", "unexpected end of data");
    expect_corrupt(jpg->data, jpg->size / 2, "half.jpg", "corrupt or unreadable JPEG");
    expect_corrupt(prog->data, prog->size / 3, "third.jpg", "corrupt or unreadable JPEG");
    expect_corrupt(jpg->data, 3, "tiny.jpg", "JPEG");
    expect_corrupt(png->data, 8, "sig.png", "PNG");
    expect_corrupt((const unsigned char *)"GIF89a......", 12, "x.gif", "not a PNG or JPEG image");
    expect_corrupt((const unsigned char *)"", 0, "empty.png", "not a PNG or JPEG image");
    /* A flipped byte in the IHDR chunk breaks its CRC. */
    unsigned char *bad = malloc(png->size);
    memcpy(bad, png->data, png->size);
    bad[20] ^= 0x01;
    expect_corrupt(bad, png->size, "crc.png", "corrupt or unreadable PNG");
    /* A huge declared size (60000 x 60000, CRC fixed) is refused before any
     * pixel memory is taken. IHDR's data starts at byte 16, its CRC at 29. */
    memcpy(bad, png->data, png->size);
    const unsigned char dims[8] = {0, 0, 0xEA, 0x60, 0, 0, 0xEA, 0x60};
    memcpy(bad + 16, dims, 8);
    uLong crc = crc32(0, bad + 12, 17);
    unsigned char crc_be[4] = {(unsigned char)(crc >> 24), (unsigned char)(crc >> 16),
                               (unsigned char)(crc >> 8), (unsigned char)crc};
    memcpy(bad + 29, crc_be, 4);
    expect_corrupt(bad, png->size, "huge.png",
                   "60000x60000 image is over the 67108864-pixel limit");
    pasm_image img;
    assert_int_equal(pasm_image_decode(png->data, png->size, "ok.png", 4, &img), PASM_ERR_INVALID);
    free(bad);
    assert_int_equal(pasm_image_read("/nonexistent/face.png", 1, &img), PASM_ERR_IO);
    assert_error_has("/nonexistent/face.png");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_resize_matches_pil), cmocka_unit_test(test_rgb_to_grey_matches_pil),
        cmocka_unit_test(test_decode_matches_pil), cmocka_unit_test(test_png_round_trip),
        cmocka_unit_test(test_corrupt_images),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
