/* Tests of the synthetic faces: determinism, regions inside the image and
 * where the expression was drawn (classes of one identity differ only inside
 * their five boxes), the classes meaning what they say, the split/class
 * assignment, the folder a set is written to, and bad arguments. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <ftw.h>
#include <math.h>
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "pasm/synth.h"

enum { MAX_SIDE = 128 };

static void draw(const pasm_synth_options *o, int index, int cls, uint8_t *px,
                 pasm_synth_regions *r) {
    assert_int_equal(pasm_synth_face_opts(o, (uint64_t)index, cls, px, r), PASM_OK);
}

static pasm_synth_options options(uint64_t seed, int size) {
    pasm_synth_options o;
    pasm_synth_options_default(&o);
    o.seed = seed;
    o.size = size;
    return o;
}

static int count_differences(const uint8_t *a, const uint8_t *b, int n) {
    int d = 0;
    for (int i = 0; i < n; i++) d += a[i] != b[i];
    return d;
}

static int in_box(const pasm_synth_box *b, int x, int y) {
    return x >= b->x0 && x < b->x1 && y >= b->y0 && y < b->y1;
}

static void test_deterministic(void **state) {
    (void)state;
    uint8_t a[48 * 48], b[48 * 48];
    pasm_synth_regions ra, rb;
    assert_int_equal(pasm_synth_face(7, 3, PASM_SYNTH_HAPPY, 48, a, &ra), PASM_OK);
    assert_int_equal(pasm_synth_face(7, 3, PASM_SYNTH_HAPPY, 48, b, &rb), PASM_OK);
    assert_memory_equal(a, b, sizeof a);
    assert_memory_equal(&ra, &rb, sizeof ra);
    /* Another seed or another index is another face: most pixels change. */
    assert_int_equal(pasm_synth_face(8, 3, PASM_SYNTH_HAPPY, 48, b, NULL), PASM_OK);
    assert_true(count_differences(a, b, 48 * 48) > 48 * 48 / 2);
    assert_int_equal(pasm_synth_face(7, 4, PASM_SYNTH_HAPPY, 48, b, NULL), PASM_OK);
    assert_true(count_differences(a, b, 48 * 48) > 48 * 48 / 2);
}

/* Every box is non-empty, inside the image, small, and in its place on the
 * face: brows above eyes, eyes above the mouth, left left of right. */
static void test_regions_inside_and_placed(void **state) {
    (void)state;
    static const int sizes[] = {32, 48, 64, 97};
    uint8_t px[MAX_SIDE * MAX_SIDE];
    for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++) {
        int n = sizes[s];
        pasm_synth_options o = options(11, n);
        for (int i = 0; i < 40; i++) {
            pasm_synth_regions r;
            draw(&o, i, i % PASM_SYNTH_N_CLASSES, px, &r);
            float cx[PASM_SYNTH_N_REGIONS], cy[PASM_SYNTH_N_REGIONS];
            for (int k = 0; k < PASM_SYNTH_N_REGIONS; k++) {
                const pasm_synth_box *b = &r.box[k];
                assert_true(b->x0 >= 0 && b->y0 >= 0 && b->x1 <= n && b->y1 <= n);
                assert_true(b->x0 < b->x1 && b->y0 < b->y1);
                assert_true((b->x1 - b->x0) * (b->y1 - b->y0) < n * n / 6);
                cx[k] = 0.5f * (float)(b->x0 + b->x1), cy[k] = 0.5f * (float)(b->y0 + b->y1);
            }
            assert_true(cx[PASM_SYNTH_LEFT_EYE] < cx[PASM_SYNTH_RIGHT_EYE]);
            assert_true(cx[PASM_SYNTH_LEFT_BROW] < cx[PASM_SYNTH_RIGHT_BROW]);
            assert_true(cy[PASM_SYNTH_LEFT_BROW] < cy[PASM_SYNTH_LEFT_EYE]);
            assert_true(cy[PASM_SYNTH_RIGHT_BROW] < cy[PASM_SYNTH_RIGHT_EYE]);
            assert_true(cy[PASM_SYNTH_LEFT_EYE] < cy[PASM_SYNTH_MOUTH]);
            assert_true(cy[PASM_SYNTH_RIGHT_EYE] < cy[PASM_SYNTH_MOUTH]);
        }
    }
}

/* The heart of the ground truth: for one identity, any two classes differ
 * only inside the union of their boxes, and do differ inside them. */
static void test_expression_only_in_regions(void **state) {
    (void)state;
    enum { N = 48, IDS = 24 };
    pasm_synth_options o = options(5, N);
    o.hand_fraction = 0.3f; /* occluders too must not depend on the class */
    o.glasses_fraction = 0.5f;
    static uint8_t px[PASM_SYNTH_N_CLASSES][N * N];
    pasm_synth_regions r[PASM_SYNTH_N_CLASSES];
    int mouth_differs = 0, pairs = 0;
    for (int id = 0; id < IDS; id++) {
        for (int c = 0; c < PASM_SYNTH_N_CLASSES; c++) draw(&o, 1000 + id, c, px[c], &r[c]);
        for (int a = 0; a < PASM_SYNTH_N_CLASSES; a++)
            for (int b = a + 1; b < PASM_SYNTH_N_CLASSES; b++) {
                int outside = 0;
                for (int y = 0; y < N; y++)
                    for (int x = 0; x < N; x++) {
                        int inside = 0;
                        for (int k = 0; k < PASM_SYNTH_N_REGIONS; k++)
                            inside |= in_box(&r[a].box[k], x, y) | in_box(&r[b].box[k], x, y);
                        if (!inside) outside += px[a][y * N + x] != px[b][y * N + x];
                    }
                assert_int_equal(outside, 0);
            }
        /* Happy and sad: the mouth box holds a real difference. */
        const pasm_synth_box *m = &r[PASM_SYNTH_HAPPY].box[PASM_SYNTH_MOUTH];
        int differ = 0;
        for (int y = m->y0; y < m->y1; y++)
            for (int x = m->x0; x < m->x1; x++)
                differ += abs(px[PASM_SYNTH_HAPPY][y * N + x] - px[PASM_SYNTH_SAD][y * N + x]) > 10;
        mouth_differs += differ >= 4;
        pairs++;
    }
    assert_int_equal(mouth_differs, pairs);
}

static int box_height(const pasm_synth_box *b) { return b->y1 - b->y0; }

/* Darkness-weighted mean row of columns [x0, x1) of the mouth box. */
static float dark_row(const uint8_t *px, int n, const pasm_synth_box *b, int x0, int x1) {
    int brightest = 0;
    for (int y = b->y0; y < b->y1; y++)
        for (int x = b->x0; x < b->x1; x++)
            if (px[y * n + x] > brightest) brightest = px[y * n + x];
    double sum = 0.0, weight = 0.0;
    for (int y = b->y0; y < b->y1; y++)
        for (int x = x0; x < x1; x++) {
            double w = brightest - px[y * n + x];
            w = w * w; /* the lip line, not the noise, should dominate */
            sum += w * y, weight += w;
        }
    return weight > 0.0 ? (float)(sum / weight) : 0.5f * (float)(b->y0 + b->y1);
}

/* Mouth corners minus mouth centre, in rows: < 0 when the corners are higher. */
static float corner_lift(const uint8_t *px, int n, const pasm_synth_box *b) {
    int w = b->x1 - b->x0, q = w / 4 > 1 ? w / 4 : 1;
    float left = dark_row(px, n, b, b->x0, b->x0 + q), right = dark_row(px, n, b, b->x1 - q, b->x1);
    float centre = dark_row(px, n, b, b->x0 + w / 2 - q / 2, b->x0 + w / 2 + q / 2 + 1);
    return 0.5f * (left + right) - centre;
}

/* The classes mean what their names say, compared pairwise on one identity:
 * surprise opens the mouth and eyes and raises the brows over angry and
 * neutral; happy lifts the mouth corners where sad drops them. No blends, no
 * hands, so every face shows its class; a few identities may still disagree
 * through the per-face noise, hence the 90% bar. */
static void test_classes_look_like_their_names(void **state) {
    (void)state;
    enum { N = 64, IDS = 40 };
    pasm_synth_options o = options(3, N);
    o.ambiguous_fraction = 0.0f;
    o.hand_fraction = 0.0f;
    static uint8_t happy[N * N], sad[N * N], surprise[N * N], angry[N * N], neutral[N * N];
    int mouth_open = 0, eyes_open = 0, brows_up = 0, smile = 0;
    for (int id = 0; id < IDS; id++) {
        pasm_synth_regions rh, rs, ru, ra, rn;
        draw(&o, id, PASM_SYNTH_HAPPY, happy, &rh);
        draw(&o, id, PASM_SYNTH_SAD, sad, &rs);
        draw(&o, id, PASM_SYNTH_SURPRISE, surprise, &ru);
        draw(&o, id, PASM_SYNTH_ANGRY, angry, &ra);
        draw(&o, id, PASM_SYNTH_NEUTRAL, neutral, &rn);
        mouth_open += box_height(&ru.box[PASM_SYNTH_MOUTH]) > box_height(&rn.box[PASM_SYNTH_MOUTH]);
        eyes_open +=
            box_height(&ru.box[PASM_SYNTH_LEFT_EYE]) > box_height(&ra.box[PASM_SYNTH_LEFT_EYE]) &&
            box_height(&ru.box[PASM_SYNTH_RIGHT_EYE]) > box_height(&ra.box[PASM_SYNTH_RIGHT_EYE]);
        brows_up += ru.box[PASM_SYNTH_LEFT_BROW].y0 < ra.box[PASM_SYNTH_LEFT_BROW].y0 &&
                    ru.box[PASM_SYNTH_RIGHT_BROW].y0 < ra.box[PASM_SYNTH_RIGHT_BROW].y0;
        smile += corner_lift(happy, N, &rh.box[PASM_SYNTH_MOUTH]) <
                 corner_lift(sad, N, &rs.box[PASM_SYNTH_MOUTH]) - 0.5f;
    }
    int bar = IDS * 9 / 10;
    print_message(
        "surprise vs neutral mouth open %d/%d, eyes %d/%d, brows %d/%d, happy vs sad %d/%d\n",
        mouth_open, IDS, eyes_open, IDS, brows_up, IDS, smile, IDS);
    assert_true(mouth_open >= bar);
    assert_true(eyes_open >= bar);
    assert_true(brows_up >= bar);
    assert_true(smile >= bar);
}

/* A face is a face: varied grey levels, not a flat or saturated square. */
static void test_faces_have_contrast(void **state) {
    (void)state;
    uint8_t px[48 * 48];
    for (int i = 0; i < 20; i++) {
        assert_int_equal(pasm_synth_face(2, (uint64_t)i, i % 7, 48, px, NULL), PASM_OK);
        double mean = 0.0, var = 0.0;
        for (int k = 0; k < 48 * 48; k++) mean += px[k];
        mean /= 48 * 48;
        for (int k = 0; k < 48 * 48; k++) var += (px[k] - mean) * (px[k] - mean);
        assert_true(sqrt(var / (48 * 48)) > 8.0);
    }
}

static void test_blends_and_occluders(void **state) {
    (void)state;
    uint8_t px[32 * 32];
    pasm_synth_options o = options(9, 32);
    o.ambiguous_fraction = 1.0f, o.glasses_fraction = 1.0f, o.hand_fraction = 1.0f;
    for (int i = 0; i < 30; i++) {
        pasm_synth_regions r;
        draw(&o, i, i % 7, px, &r);
        assert_true(r.blend_class >= 0 && r.blend_class < 7 && r.blend_class != i % 7);
        assert_true(r.blend_weight >= 0.2f && r.blend_weight < 0.5f);
        assert_true(r.glasses >= 1 && r.hand == 1);
    }
    o.ambiguous_fraction = 0.0f, o.glasses_fraction = 0.0f, o.hand_fraction = 0.0f;
    for (int i = 0; i < 30; i++) {
        pasm_synth_regions r;
        draw(&o, i, i % 7, px, &r);
        assert_true(r.blend_class == -1 && r.blend_weight == 0.0f && !r.glasses && !r.hand);
    }
    /* The default fraction of blends (0.12) over 700 faces: within 4 points. */
    pasm_synth_options_default(&o);
    o.size = 32;
    int blended = 0;
    for (int i = 0; i < 700; i++) {
        pasm_synth_regions r;
        draw(&o, i, i % 7, px, &r);
        blended += r.blend_class >= 0;
    }
    assert_true(blended > 700 * 8 / 100 && blended < 700 * 16 / 100);
}

static void test_assign_balanced(void **state) {
    (void)state;
    static const int counts[] = {2100, 100, 7, 1};
    static const int expect[][3] = {{1470, 315, 315}, {70, 15, 15}, {5, 1, 1}, {1, 0, 0}};
    for (int t = 0; t < 4; t++) {
        int per[3][7] = {{0}}, n[3] = {0}, last_split = 0;
        for (int i = 0; i < counts[t]; i++) {
            int split, cls;
            assert_int_equal(pasm_synth_assign(counts[t], i, &split, &cls), PASM_OK);
            assert_true(split >= last_split); /* train, then val, then test */
            last_split = split;
            per[split][cls]++, n[split]++;
        }
        for (int s = 0; s < 3; s++) {
            assert_int_equal(n[s], expect[t][s]);
            for (int c = 0; c < 7; c++) {
                assert_true(per[s][c] >= n[s] / 7 && per[s][c] <= (n[s] + 6) / 7);
            }
        }
    }
}

static void test_bad_arguments(void **state) {
    (void)state;
    uint8_t px[64 * 64];
    assert_int_equal(pasm_synth_face(1, 0, 0, 31, px, NULL), PASM_ERR_INVALID);
    assert_non_null(strstr(pasm_last_error(), "size"));
    assert_int_equal(pasm_synth_face(1, 0, 0, PASM_SYNTH_MAX_SIZE + 1, px, NULL), PASM_ERR_INVALID);
    assert_int_equal(pasm_synth_face(1, 0, -1, 48, px, NULL), PASM_ERR_INVALID);
    assert_int_equal(pasm_synth_face(1, 0, 7, 48, px, NULL), PASM_ERR_INVALID);
    assert_non_null(strstr(pasm_last_error(), "class"));
    assert_int_equal(pasm_synth_face(1, 0, 0, 48, NULL, NULL), PASM_ERR_INVALID);
    pasm_synth_options o = options(1, 48);
    o.hand_fraction = -0.1f;
    assert_int_equal(pasm_synth_face_opts(&o, 0, 0, px, NULL), PASM_ERR_INVALID);
    assert_non_null(strstr(pasm_last_error(), "hand"));
    o.hand_fraction = 0.1f, o.ambiguous_fraction = NAN;
    assert_int_equal(pasm_synth_face_opts(&o, 0, 0, px, NULL), PASM_ERR_INVALID);
    o.ambiguous_fraction = 1.5f;
    assert_int_equal(pasm_synth_face_opts(&o, 0, 0, px, NULL), PASM_ERR_INVALID);
    assert_int_equal(pasm_synth_face_opts(NULL, 0, 0, px, NULL), PASM_ERR_INVALID);
    int split, cls;
    assert_int_equal(pasm_synth_assign(10, 10, &split, &cls), PASM_ERR_INVALID);
    assert_int_equal(pasm_synth_assign(0, 0, &split, &cls), PASM_ERR_INVALID);
    assert_int_equal(pasm_synth_assign(10, -1, &split, &cls), PASM_ERR_INVALID);
    assert_null(pasm_synth_class_name(7));
    assert_null(pasm_synth_region_name(-1));
    assert_null(pasm_synth_split_name(3));
    assert_string_equal(pasm_synth_class_name(PASM_SYNTH_SURPRISE), "surprise");
    assert_string_equal(pasm_synth_region_name(PASM_SYNTH_RIGHT_BROW), "right_brow");
}

/* ---- writing a set ---- */

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

static void remove_tree(const char *path) { nftw(path, remove_entry, 16, FTW_DEPTH | FTW_PHYS); }

static char *make_temp_dir(void) {
    char *dir = strdup("/tmp/pasm-test-synth-XXXXXX");
    assert_non_null(dir);
    assert_non_null(mkdtemp(dir));
    return dir;
}

static int read_png_grey(const char *path, int *w, int *h, uint8_t *out, size_t cap) {
    png_image img;
    memset(&img, 0, sizeof img);
    img.version = PNG_IMAGE_VERSION;
    if (!png_image_begin_read_from_file(&img, path)) return 0;
    int grey8 = img.format == PNG_FORMAT_GRAY;
    img.format = PNG_FORMAT_GRAY;
    if (PNG_IMAGE_SIZE(img) > cap) {
        png_image_free(&img);
        return 0;
    }
    *w = (int)img.width, *h = (int)img.height;
    return png_image_finish_read(&img, NULL, out, 0, NULL) && grey8;
}

static int count_lines(const char *path, char *first, size_t first_len) {
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    char line[512];
    int n = 0;
    while (fgets(line, sizeof line, f)) {
        if (n == 0) snprintf(first, first_len, "%s", line);
        n++;
    }
    fclose(f);
    return n;
}

/* Every regions.csv row: a written face's path whose folders agree with its
 * class, a known region, a box inside the image; rows come 5 per face. */
static void check_regions_csv(const char *dir, int count, int size) {
    char path[1024], line[512];
    snprintf(path, sizeof path, "%s/regions.csv", dir);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    assert_non_null(fgets(line, sizeof line, f));
    assert_string_equal(line, "split,path,class,region,x0,y0,x1,y1\n");
    int rows = 0;
    while (fgets(line, sizeof line, f)) {
        char split[16], rel[128], cls[16], region[16];
        int x0, y0, x1, y1;
        assert_int_equal(sscanf(line, "%15[^,],%127[^,],%15[^,],%15[^,],%d,%d,%d,%d", split, rel,
                                cls, region, &x0, &y0, &x1, &y1),
                         8);
        assert_string_equal(region, pasm_synth_region_name(rows % PASM_SYNTH_N_REGIONS));
        char expect_prefix[64];
        snprintf(expect_prefix, sizeof expect_prefix, "%s/%s/", split, cls);
        assert_int_equal(strncmp(rel, expect_prefix, strlen(expect_prefix)), 0);
        int index = atoi(rel + strlen(expect_prefix)), s, c;
        assert_int_equal(index, rows / PASM_SYNTH_N_REGIONS);
        assert_int_equal(pasm_synth_assign(count, index, &s, &c), PASM_OK);
        assert_string_equal(split, pasm_synth_split_name(s));
        assert_string_equal(cls, pasm_synth_class_name(c));
        assert_true(0 <= x0 && x0 < x1 && x1 <= size && 0 <= y0 && y0 < y1 && y1 <= size);
        snprintf(path, sizeof path, "%s/%s", dir, rel);
        assert_int_equal(access(path, R_OK), 0);
        rows++;
    }
    fclose(f);
    assert_int_equal(rows, count * PASM_SYNTH_N_REGIONS);
}

static void test_write_layout(void **state) {
    (void)state;
    enum { COUNT = 35, SIZE = 32 };
    char *tmp = make_temp_dir(), dir[256], path[512], first[512];
    snprintf(dir, sizeof dir, "%s/set/nested", tmp); /* missing parents are made */
    pasm_synth_options o = options(21, SIZE);
    o.count = COUNT;
    pasm_synth_stats stats;
    assert_int_equal(pasm_synth_write(dir, &o, &stats), PASM_OK);
    assert_int_equal(stats.count[0], 25);
    assert_int_equal(stats.count[1], 5);
    assert_int_equal(stats.count[2], 5);
    int seen = 0;
    for (int i = 0; i < COUNT; i++) {
        int s, c, w = 0, h = 0;
        assert_int_equal(pasm_synth_assign(COUNT, i, &s, &c), PASM_OK);
        snprintf(path, sizeof path, "%s/%s/%s/%06d.png", dir, pasm_synth_split_name(s),
                 pasm_synth_class_name(c), i);
        uint8_t got[SIZE * SIZE], want[SIZE * SIZE];
        assert_true(read_png_grey(path, &w, &h, got, sizeof got));
        assert_int_equal(w, SIZE);
        assert_int_equal(h, SIZE);
        draw(&o, i, c, want, NULL);
        assert_memory_equal(got, want, sizeof got);
        seen++;
    }
    assert_int_equal(seen, COUNT);
    /* Every class folder exists, even one a small split leaves empty. */
    struct stat st;
    snprintf(path, sizeof path, "%s/test/neutral", dir);
    assert_int_equal(stat(path, &st), 0);
    assert_true(S_ISDIR(st.st_mode));
    check_regions_csv(dir, COUNT, SIZE);
    snprintf(path, sizeof path, "%s/faces.csv", dir);
    assert_int_equal(count_lines(path, first, sizeof first), COUNT + 1);
    assert_string_equal(first, "split,path,class,blend_class,blend_weight,glasses,hand\n");
    /* A second write into the same folder is refused, and leaves it alone. */
    assert_int_equal(pasm_synth_write(dir, &o, NULL), PASM_ERR_INVALID);
    assert_non_null(strstr(pasm_last_error(), "not empty"));
    snprintf(path, sizeof path, "%s/regions.csv", dir);
    assert_int_equal(count_lines(path, first, sizeof first), COUNT * 5 + 1);
    remove_tree(tmp);
    free(tmp);
}

static void test_write_bad_arguments(void **state) {
    (void)state;
    char *tmp = make_temp_dir(), path[512];
    pasm_synth_options o = options(1, 32);
    o.count = 0;
    snprintf(path, sizeof path, "%s/a", tmp);
    assert_int_equal(pasm_synth_write(path, &o, NULL), PASM_ERR_INVALID);
    assert_non_null(strstr(pasm_last_error(), "count"));
    o.count = 3, o.size = 16;
    assert_int_equal(pasm_synth_write(path, &o, NULL), PASM_ERR_INVALID);
    assert_int_equal(access(path, F_OK), -1); /* nothing made on a bad option */
    o.size = 32;
    assert_int_equal(pasm_synth_write(NULL, &o, NULL), PASM_ERR_INVALID);
    assert_int_equal(pasm_synth_write("", &o, NULL), PASM_ERR_INVALID);
    /* A file where the folder should be. */
    snprintf(path, sizeof path, "%s/file", tmp);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fclose(f);
    assert_int_equal(pasm_synth_write(path, &o, NULL), PASM_ERR_IO);
    remove_tree(tmp);
    free(tmp);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_deterministic),
        cmocka_unit_test(test_regions_inside_and_placed),
        cmocka_unit_test(test_expression_only_in_regions),
        cmocka_unit_test(test_classes_look_like_their_names),
        cmocka_unit_test(test_faces_have_contrast),
        cmocka_unit_test(test_blends_and_occluders),
        cmocka_unit_test(test_assign_balanced),
        cmocka_unit_test(test_bad_arguments),
        cmocka_unit_test(test_write_layout),
        cmocka_unit_test(test_write_bad_arguments),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
