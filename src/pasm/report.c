/* What mining found, for people: the gallery PNG (faces with their mined
 * squares, per-class heat maps of the points) and, on synthetic faces, the
 * share of points that land in the expression regions regions.csv records
 * (the ground truth no public data set gives), beside the share random
 * points get. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pasm/pasm_method.h"
#include "pasm/synth.h"

/* ---- gallery ---- */

static void put(uint8_t *rgb, int w, int x, int y, const uint8_t c[3]) {
    memcpy(rgb + ((size_t)y * w + x) * 3, c, 3);
}

static void draw_face(uint8_t *rgb, int w, int x0, int y0, int scale, const pasm_dataset *ds,
                      int i) {
    const int S = ds->size, C = ds->channels;
    const uint8_t *img = ds->images + (size_t)i * C * S * S;
    for (int y = 0; y < S * scale; y++)
        for (int x = 0; x < S * scale; x++) {
            int p = (y / scale) * S + x / scale;
            uint8_t c[3];
            for (int k = 0; k < 3; k++) c[k] = img[(size_t)(C == 3 ? k : 0) * S * S + p];
            put(rgb, w, x0 + x, y0 + y, c);
        }
}

static void draw_box(uint8_t *rgb, int w, int x0, int y0, int scale, int r0, int r1, int c0,
                     int c1, const uint8_t color[3]) {
    if (r1 <= r0 || c1 <= c0) return;
    int top = y0 + r0 * scale, bottom = y0 + r1 * scale - 1;
    int left = x0 + c0 * scale, right = x0 + c1 * scale - 1;
    for (int x = left; x <= right; x++) put(rgb, w, x, top, color), put(rgb, w, x, bottom, color);
    for (int y = top; y <= bottom; y++) put(rgb, w, left, y, color), put(rgb, w, right, y, color);
}

/* The class's heat map over its mean face. */
static void draw_heat(uint8_t *rgb, int w, int x0, int y0, int scale, const pasm_dataset *ds,
                      const pasm_mined *m, int cls, double *mean, double *count, double *smooth) {
    const int S = ds->size, C = ds->channels, plane = S * S;
    memset(mean, 0, (size_t)plane * sizeof *mean);
    memset(count, 0, (size_t)plane * sizeof *count);
    int n = 0;
    for (int i = 0; i < ds->n && i < m->n; i++) {
        if (ds->labels[i] != cls) continue;
        n++;
        for (int p = 0; p < plane; p++) mean[p] += ds->images[(size_t)i * C * plane + p];
        if (m->row[i] >= 0 && m->row[i] < S && m->col[i] >= 0 && m->col[i] < S)
            count[m->row[i] * S + m->col[i]] += 1;
    }
    double top = 0;
    for (int y = 0; y < S; y++)
        for (int x = 0; x < S; x++) {
            double s = 0;
            for (int dy = -1; dy <= 1; dy++)
                for (int dx = -1; dx <= 1; dx++)
                    if (y + dy >= 0 && y + dy < S && x + dx >= 0 && x + dx < S)
                        s += count[(y + dy) * S + x + dx];
            smooth[y * S + x] = s;
            if (s > top) top = s;
        }
    for (int y = 0; y < S * scale; y++)
        for (int x = 0; x < S * scale; x++) {
            int p = (y / scale) * S + x / scale;
            double grey = n ? mean[p] / n : 0, h = top > 0 ? smooth[p] / top : 0;
            double a = 0.75 * h;
            uint8_t c[3] = {(uint8_t)(grey * (1 - a) + 255 * a),
                            (uint8_t)(grey * (1 - a) + 255 * h * a), (uint8_t)(grey * (1 - a))};
            put(rgb, w, x0 + x, y0 + y, c);
        }
}

pasm_status pasm_gallery_write(const char *path, const pasm_dataset *ds, const pasm_mined *m,
                               int side, int max_faces) {
    const int S = ds->size, scale = S < 64 ? 2 : 1, cell = S * scale, gap = 2, per_row = 8;
    int faces = ds->n < m->n ? ds->n : m->n;
    if (faces > max_faces) faces = max_faces;
    int face_rows = (faces + per_row - 1) / per_row;
    int k = ds->n_classes > 0 ? ds->n_classes : 1;
    int cols = per_row > k ? per_row : k;
    int w = gap + cols * (cell + gap), h = gap + (face_rows + 1) * (cell + gap) + gap;
    uint8_t *rgb = calloc((size_t)w * h, 3);
    double *buf = malloc((size_t)3 * S * S * sizeof(double));
    if (!rgb || !buf) {
        free(rgb);
        free(buf);
        return pasm_errorf(PASM_ERR_NOMEM, "out of memory for the gallery");
    }
    memset(rgb, 32, (size_t)w * h * 3);
    static const uint8_t fooled[3] = {0, 220, 0}, held[3] = {230, 0, 0};
    for (int f = 0; f < faces; f++) {
        int i = (int)((int64_t)f * (ds->n < m->n ? ds->n : m->n) / faces);
        int x0 = gap + (f % per_row) * (cell + gap), y0 = gap + (f / per_row) * (cell + gap);
        draw_face(rgb, w, x0, y0, scale, ds, i);
        int r0, r1, c0, c1;
        pasm_square_bounds(S, side, m->row[i], m->col[i], &r0, &r1, &c0, &c1);
        draw_box(rgb, w, x0, y0, scale, r0, r1, c0, c1, m->fooled[i] ? fooled : held);
    }
    int y0 = gap + face_rows * (cell + gap) + gap;
    for (int c = 0; c < ds->n_classes; c++)
        draw_heat(rgb, w, gap + c * (cell + gap), y0, scale, ds, m, c, buf, buf + S * S,
                  buf + 2 * S * S);
    pasm_status st = pasm_png_write_rgb(path, w, h, rgb);
    free(rgb);
    free(buf);
    return st;
}

/* ---- region hits on synthetic faces ---- */

typedef struct {
    char *path;
    int box[5][4]; /* x0, y0, x1, y1 per region */
    int n_boxes;
} face_regions;

static int cmp_face(const void *a, const void *b) {
    return strcmp(((const face_regions *)a)->path, ((const face_regions *)b)->path);
}

static void faces_free(face_regions *f, int n) {
    for (int i = 0; i < n; i++) free(f[i].path);
    free(f);
}

/* Reads regions.csv into faces sorted by path. */
static pasm_status read_regions(const char *file, face_regions **out, int *n_out) {
    FILE *f = fopen(file, "r");
    *out = NULL;
    *n_out = 0;
    if (!f) return pasm_errorf(PASM_ERR_IO, "%s: cannot open", file);
    char line[1024], split[32], path[600], cls[64], region[32];
    int n = 0, cap = 0, line_no = 0;
    face_regions *faces = NULL;
    pasm_status st = PASM_OK;
    while (fgets(line, sizeof line, f)) {
        if (++line_no == 1) continue;
        int b[4];
        if (sscanf(line, "%31[^,],%599[^,],%63[^,],%31[^,],%d,%d,%d,%d", split, path, cls, region,
                   &b[0], &b[1], &b[2], &b[3]) != 8) {
            st = pasm_errorf(PASM_ERR_FORMAT, "%s:%d: not a regions row", file, line_no);
            break;
        }
        if (n == 0 || strcmp(faces[n - 1].path, path)) {
            if (n == cap) {
                void *p = realloc(faces, (size_t)(cap = cap ? 2 * cap : 256) * sizeof *faces);
                if (!p) {
                    st = pasm_errorf(PASM_ERR_NOMEM, "out of memory reading %s", file);
                    break;
                }
                faces = p;
            }
            faces[n] = (face_regions){.path = strdup(path)};
            n++;
        }
        face_regions *fr = &faces[n - 1];
        if (fr->n_boxes < 5) memcpy(fr->box[fr->n_boxes++], b, sizeof b);
    }
    fclose(f);
    if (st) {
        faces_free(faces, n);
        return st;
    }
    qsort(faces, (size_t)n, sizeof *faces, cmp_face);
    *out = faces;
    *n_out = n;
    return PASM_OK;
}

/* "root/train/angry/000000.png" -> its entry, by its last three components. */
static const face_regions *find_face(const face_regions *faces, int n, const char *path) {
    const char *p = path + strlen(path);
    for (int slashes = 0; p > path; p--)
        if (p[-1] == '/' && ++slashes == 3) break;
    face_regions key = {.path = (char *)p};
    return bsearch(&key, faces, (size_t)n, sizeof *faces, cmp_face);
}

static int inside(const face_regions *fr, double x, double y) {
    for (int b = 0; b < fr->n_boxes; b++)
        if (x >= fr->box[b][0] && x < fr->box[b][2] && y >= fr->box[b][1] && y < fr->box[b][3])
            return 1;
    return 0;
}

pasm_status pasm_region_hits(const char *root, const pasm_dataset *ds, const pasm_mined *m,
                             double *share_points, double *share_random, int *matched) {
    *share_points = *share_random = 0;
    *matched = 0;
    char file[4096];
    snprintf(file, sizeof file, "%s/regions.csv", root);
    FILE *probe = fopen(file, "r");
    if (!probe || !ds->paths) {
        if (probe) fclose(probe);
        return PASM_OK;
    }
    fclose(probe);
    face_regions *faces;
    int n_faces;
    pasm_status st = read_regions(file, &faces, &n_faces);
    if (st) return st;
    /* the written images' side: regions are in their pixels */
    pasm_image first = {0};
    if (ds->n > 0 && (st = pasm_image_read(ds->paths[0], 0, &first))) {
        faces_free(faces, n_faces);
        return st;
    }
    const double scale = (double)first.width / ds->size;
    pasm_image_free(&first);
    double hits = 0, area = 0;
    int count = 0;
    for (int i = 0; i < ds->n && i < m->n; i++) {
        const face_regions *fr = ds->paths[i] ? find_face(faces, n_faces, ds->paths[i]) : NULL;
        if (!fr) continue;
        count++;
        hits += inside(fr, (m->col[i] + 0.5) * scale, (m->row[i] + 0.5) * scale);
        int in = 0;
        for (int r = 0; r < ds->size; r++)
            for (int c = 0; c < ds->size; c++) in += inside(fr, (c + 0.5) * scale, (r + 0.5) * scale);
        area += (double)in / ((double)ds->size * ds->size);
    }
    faces_free(faces, n_faces);
    *matched = count;
    if (count) {
        *share_points = hits / count;
        *share_random = area / count;
    }
    return PASM_OK;
}
