/* The mined-points file: a CSV of one row per attacked image (index, label,
 * row, col, fooled, p_true_before, p_true_after, queries) and a JSON sidecar
 * with the settings it was mined with and whether it is complete. Rows are
 * appended and fsynced chunk by chunk, so a killed mining leaves every
 * finished row on disk; reopening with the same settings continues after the
 * last complete line. */
#include <cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pasm/io.h"
#include "pasm/pasm_method.h"

static const char HEADER[] = "index,label,row,col,fooled,p_true_before,p_true_after,queries\n";

void pasm_mined_sidecar_path(const char *csv_path, char *buf, size_t len) {
    size_t n = strlen(csv_path);
    if (n >= 4 && !strcmp(csv_path + n - 4, ".csv")) n -= 4;
    snprintf(buf, len, "%.*s.json", (int)n, csv_path);
}

void pasm_mined_free(pasm_mined *m) {
    free(m->index);
    free(m->label);
    free(m->row);
    free(m->col);
    free(m->fooled);
    free(m->p_before);
    free(m->p_after);
    free(m->queries);
    memset(m, 0, sizeof *m);
}

static pasm_status grow(pasm_mined *m, int cap) {
#define GROW(field) \
    do { \
        void *p = realloc(m->field, (size_t)cap * sizeof *m->field); \
        if (!p) return pasm_errorf(PASM_ERR_NOMEM, "out of memory reading mined points"); \
        m->field = p; \
    } while (0)
    GROW(index);
    GROW(label);
    GROW(row);
    GROW(col);
    GROW(fooled);
    GROW(p_before);
    GROW(p_after);
    GROW(queries);
#undef GROW
    return PASM_OK;
}

static pasm_status parse_line(const char *path, int line_no, const char *line, pasm_mined *m) {
    int i = m->n;
    long long q;
    int used = 0;
    if (sscanf(line, "%d,%d,%d,%d,%d,%f,%f,%lld%n", &m->index[i], &m->label[i], &m->row[i],
               &m->col[i], &m->fooled[i], &m->p_before[i], &m->p_after[i], &q, &used) != 8 ||
        (line[used] != '\n' && line[used] != '\r' && line[used] != 0))
        return pasm_errorf(PASM_ERR_FORMAT, "%s:%d: not a mined-points row: '%.60s'", path,
                           line_no, line);
    m->queries[i] = q;
    m->n++;
    return PASM_OK;
}

pasm_status pasm_mined_read(const char *csv_path, int allow_missing, pasm_mined *m,
                            long *valid_bytes) {
    memset(m, 0, sizeof *m);
    if (valid_bytes) *valid_bytes = 0;
    FILE *f = fopen(csv_path, "rb");
    if (!f) {
        if (allow_missing && errno == ENOENT) return PASM_OK;
        return pasm_errorf(PASM_ERR_IO, "%s: cannot open: %s", csv_path, strerror(errno));
    }
    char line[512];
    pasm_status st = PASM_OK;
    int cap = 0, line_no = 0;
    long good = 0;
    while (fgets(line, sizeof line, f)) {
        line_no++;
        size_t len = strlen(line);
        if (len == 0 || line[len - 1] != '\n') break; /* a torn last line */
        if (line_no == 1) {
            if (strcmp(line, HEADER)) {
                st = pasm_errorf(PASM_ERR_FORMAT, "%s:1: not a mined-points CSV (header '%.60s')",
                                 csv_path, line);
                break;
            }
        } else {
            if (m->n == cap && (st = grow(m, cap = cap ? 2 * cap : 1024))) break;
            if ((st = parse_line(csv_path, line_no, line, m))) break;
        }
        good += (long)len;
    }
    fclose(f);
    if (st) pasm_mined_free(m);
    else if (valid_bytes) *valid_bytes = good;
    return st;
}

/* ---- sidecar ---- */

static pasm_status sidecar_write(const char *csv_path, const cJSON *settings, int complete) {
    char path[4096];
    pasm_mined_sidecar_path(csv_path, path, sizeof path);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "format", "pasm-mined");
    cJSON_AddNumberToObject(o, "format_version", 1);
    cJSON_AddItemToObject(o, "settings", cJSON_Duplicate(settings, 1));
    cJSON_AddBoolToObject(o, "complete", complete);
    char *text = cJSON_Print(o);
    cJSON_Delete(o);
    if (!text) return pasm_errorf(PASM_ERR_NOMEM, "%s: out of memory", path);
    size_t n = strlen(text);
    text[n] = '\n'; /* cJSON's buffer has room: its terminating zero */
    pasm_status st = pasm_write_file_atomic(path, text, n + 1);
    free(text);
    return st;
}

pasm_status pasm_mined_sidecar_read(const char *csv_path, char **settings_json, int *complete) {
    char path[4096];
    pasm_mined_sidecar_path(csv_path, path, sizeof path);
    unsigned char *data;
    size_t size;
    pasm_status st = pasm_read_file(path, &data, &size);
    if (st) return st;
    cJSON *o = cJSON_ParseWithLength((const char *)data, size);
    free(data);
    const cJSON *settings = cJSON_GetObjectItemCaseSensitive(o, "settings");
    const cJSON *done = cJSON_GetObjectItemCaseSensitive(o, "complete");
    if (!cJSON_IsObject(settings) || !cJSON_IsBool(done)) {
        cJSON_Delete(o);
        return pasm_errorf(PASM_ERR_FORMAT, "%s: not a mined-points sidecar (needs settings "
                                            "and complete)",
                           path);
    }
    if (settings_json) *settings_json = cJSON_PrintUnformatted(settings);
    if (complete) *complete = cJSON_IsTrue(done);
    cJSON_Delete(o);
    return PASM_OK;
}

/* ---- the writer ---- */

struct pasm_mined_writer {
    FILE *f;
    char *csv_path;
    cJSON *settings;
};

void pasm_mined_writer_close(pasm_mined_writer *w) {
    if (!w) return;
    if (w->f) fclose(w->f);
    free(w->csv_path);
    cJSON_Delete(w->settings);
    free(w);
}

/* 1 when the sidecar exists and its settings equal `settings`. */
static pasm_status same_settings(const char *csv_path, const cJSON *settings, int *exists,
                                 int *same) {
    char path[4096];
    pasm_mined_sidecar_path(csv_path, path, sizeof path);
    *exists = access(path, F_OK) == 0;
    *same = 0;
    if (!*exists) return PASM_OK;
    char *old = NULL;
    pasm_status st = pasm_mined_sidecar_read(csv_path, &old, NULL);
    if (st) return st;
    cJSON *o = cJSON_Parse(old);
    free(old);
    *same = cJSON_Compare(o, settings, 1);
    cJSON_Delete(o);
    return PASM_OK;
}

static pasm_status open_fresh(pasm_mined_writer *w) {
    pasm_status st = sidecar_write(w->csv_path, w->settings, 0);
    if (st) return st;
    w->f = fopen(w->csv_path, "wb");
    if (!w->f) return pasm_errorf(PASM_ERR_IO, "%s: cannot create: %s", w->csv_path, strerror(errno));
    if (fputs(HEADER, w->f) < 0 || fflush(w->f) || fsync(fileno(w->f)))
        return pasm_errorf(PASM_ERR_IO, "%s: write failed: %s", w->csv_path, strerror(errno));
    return PASM_OK;
}

/* Continues after the last complete row (a torn line is cut off). */
static pasm_status open_resume(pasm_mined_writer *w, int *done) {
    pasm_mined m;
    long valid = 0;
    pasm_status st = pasm_mined_read(w->csv_path, 1, &m, &valid);
    if (st) return st;
    *done = m.n;
    for (int i = 0; i < m.n && !st; i++)
        if (m.index[i] != i)
            st = pasm_errorf(PASM_ERR_FORMAT, "%s: row %d has index %d; expected %d (rows in "
                                              "index order)",
                             w->csv_path, i + 2, m.index[i], i);
    pasm_mined_free(&m);
    if (st) return st;
    if (valid == 0) return open_fresh(w); /* not even the header made it */
    if (truncate(w->csv_path, valid))
        return pasm_errorf(PASM_ERR_IO, "%s: cannot cut a torn last line: %s", w->csv_path,
                           strerror(errno));
    w->f = fopen(w->csv_path, "ab");
    if (!w->f) return pasm_errorf(PASM_ERR_IO, "%s: cannot append: %s", w->csv_path, strerror(errno));
    return PASM_OK;
}

pasm_status pasm_mined_writer_open(pasm_mined_writer **out, const char *csv_path,
                                   const char *settings_json, int overwrite, int *done) {
    *out = NULL;
    *done = 0;
    pasm_mined_writer *w = calloc(1, sizeof *w);
    if (!w) return pasm_errorf(PASM_ERR_NOMEM, "out of memory");
    w->csv_path = strdup(csv_path);
    w->settings = cJSON_Parse(settings_json);
    pasm_status st = PASM_OK;
    int exists = 0, same = 0;
    if (!w->csv_path || !cJSON_IsObject(w->settings))
        st = pasm_errorf(PASM_ERR_INVALID, "mined points: settings must be a JSON object");
    if (!st) st = same_settings(csv_path, w->settings, &exists, &same);
    if (!st && exists && !same && !overwrite)
        st = pasm_errorf(PASM_ERR_INVALID, "%s exists, mined with other settings (teacher, data "
                                           "or attack); delete it or choose another --out",
                         csv_path);
    if (!st) st = exists && same ? open_resume(w, done) : open_fresh(w);
    if (st) {
        pasm_mined_writer_close(w);
        return st;
    }
    *out = w;
    return PASM_OK;
}

pasm_status pasm_mined_writer_append(pasm_mined_writer *w, const int64_t *index,
                                     const int32_t *labels, const pasm_point *points, int n) {
    for (int i = 0; i < n; i++) {
        const pasm_point *p = &points[i];
        if (fprintf(w->f, "%lld,%d,%d,%d,%d,%.6f,%.6f,%lld\n", (long long)index[i], labels[i],
                    p->row, p->col, p->fooled, (double)p->p_true_before, (double)p->p_true_after,
                    (long long)p->queries) < 0)
            return pasm_errorf(PASM_ERR_IO, "%s: write failed: %s", w->csv_path, strerror(errno));
    }
    if (fflush(w->f) || fsync(fileno(w->f)))
        return pasm_errorf(PASM_ERR_IO, "%s: write failed: %s", w->csv_path, strerror(errno));
    return PASM_OK;
}

pasm_status pasm_mined_writer_finish(pasm_mined_writer *w) {
    pasm_status st = PASM_OK;
    if (fclose(w->f)) st = pasm_errorf(PASM_ERR_IO, "%s: close failed", w->csv_path);
    w->f = NULL;
    if (!st) st = sidecar_write(w->csv_path, w->settings, 1);
    pasm_mined_writer_close(w);
    return st;
}
