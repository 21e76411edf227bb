/* Writing a synthetic face set to disk: the split/class folder tree of PNGs,
 * regions.csv (the five evidence boxes of every face) and faces.csv (what
 * else each face holds). Formats are documented in docs/formats.md. */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "data/synth_internal.h"

/* mkdir -p: creates every missing folder on the way to path. */
static pasm_status make_dirs(const char *path) {
    char buf[PATH_MAX];
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf)
        return pasm_errorf(PASM_ERR_INVALID, "%s: path too long", path);
    for (char *p = buf + 1;; p++) {
        if (*p != '/' && *p != '\0') continue;
        char saved = *p;
        *p = '\0';
        if (mkdir(buf, 0777) != 0 && errno != EEXIST)
            return pasm_errorf(PASM_ERR_IO, "%s: cannot create folder: %s", buf, strerror(errno));
        *p = saved;
        if (saved == '\0') break;
    }
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode))
        return pasm_errorf(PASM_ERR_IO, "%s: not a folder", path);
    return PASM_OK;
}

/* A set must not mix with the files of an older one. */
static pasm_status check_empty(const char *path) {
    DIR *d = opendir(path);
    if (!d) {
        if (errno == ENOENT) return PASM_OK;
        return pasm_errorf(PASM_ERR_IO, "%s: cannot open folder: %s", path, strerror(errno));
    }
    struct dirent *e;
    int empty = 1;
    while (empty && (e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) empty = 0;
    closedir(d);
    if (!empty)
        return pasm_errorf(PASM_ERR_INVALID,
                           "%s: folder exists and is not empty (choose a new folder or remove it)",
                           path);
    return PASM_OK;
}

static pasm_status make_tree(const char *out_dir) {
    char path[PATH_MAX];
    for (int s = 0; s < 3; s++)
        for (int c = 0; c < PASM_SYNTH_N_CLASSES; c++) {
            if (snprintf(path, sizeof path, "%s/%s/%s", out_dir, pasm_synth_split_name(s),
                         pasm_synth_class_name(c)) >= (int)sizeof path)
                return pasm_errorf(PASM_ERR_INVALID, "%s: path too long", out_dir);
            pasm_status st = make_dirs(path);
            if (st != PASM_OK) return st;
        }
    return PASM_OK;
}

static pasm_status open_csv(const char *out_dir, const char *name, const char *header, FILE **out) {
    char path[PATH_MAX];
    if (snprintf(path, sizeof path, "%s/%s", out_dir, name) >= (int)sizeof path)
        return pasm_errorf(PASM_ERR_INVALID, "%s: path too long", out_dir);
    *out = fopen(path, "w");
    if (!*out) return pasm_errorf(PASM_ERR_IO, "%s: cannot create: %s", path, strerror(errno));
    fputs(header, *out);
    return PASM_OK;
}

static void write_rows(FILE *regions_csv, FILE *faces_csv, const char *split, const char *rel,
                       int cls, const pasm_synth_regions *r) {
    const char *name = pasm_synth_class_name(cls);
    for (int k = 0; k < PASM_SYNTH_N_REGIONS; k++) {
        const pasm_synth_box *b = &r->box[k];
        fprintf(regions_csv, "%s,%s,%s,%s,%d,%d,%d,%d\n", split, rel, name,
                pasm_synth_region_name(k), b->x0, b->y0, b->x1, b->y1);
    }
    fprintf(faces_csv, "%s,%s,%s,%s,%.3f,%d,%d\n", split, rel, name,
            r->blend_class >= 0 ? pasm_synth_class_name(r->blend_class) : "",
            (double)r->blend_weight, r->glasses, r->hand);
}

static pasm_status close_csv(FILE *f, const char *out_dir, const char *name) {
    int failed = ferror(f);
    if (fclose(f) != 0) failed = 1;
    if (failed) return pasm_errorf(PASM_ERR_IO, "%s/%s: write failed", out_dir, name);
    return PASM_OK;
}

static pasm_status check_write_options(const char *out_dir, const pasm_synth_options *o) {
    if (!out_dir || !*out_dir || !o)
        return pasm_errorf(PASM_ERR_INVALID, "synth: output folder or options missing");
    if (o->count < 1 || o->count > PASM_SYNTH_MAX_COUNT)
        return pasm_errorf(PASM_ERR_INVALID, "synth: count must be 1..%d, got %d",
                           PASM_SYNTH_MAX_COUNT, o->count);
    return synth_check_options(o);
}

/* One face of the set, drawn and written by whichever thread gets it. */
typedef struct {
    int split, cls;
    char rel[64]; /* path relative to the set's folder */
    pasm_synth_regions regions;
} face_job;

static pasm_status make_face(const char *out_dir, const pasm_synth_options *o, int index,
                             face_job *job) {
    char path[PATH_MAX];
    pasm_status st = pasm_synth_assign(o->count, index, &job->split, &job->cls);
    if (st != PASM_OK) return st;
    snprintf(job->rel, sizeof job->rel, "%s/%s/%06d.png", pasm_synth_split_name(job->split),
             pasm_synth_class_name(job->cls), index);
    if (snprintf(path, sizeof path, "%s/%s", out_dir, job->rel) >= (int)sizeof path)
        return pasm_errorf(PASM_ERR_INVALID, "%s: path too long", out_dir);
    uint8_t *pixels = pasm_alloc((size_t)o->size * (size_t)o->size, "synthetic face pixels");
    if (!pixels) return PASM_ERR_NOMEM;
    st = pasm_synth_face_opts(o, (uint64_t)index, job->cls, pixels, &job->regions);
    if (st == PASM_OK) st = pasm_png_write(path, o->size, o->size, 1, pixels);
    pasm_free(pixels);
    return st;
}

enum { CHUNK = 256 };

/* Draws and writes faces [first, first + n) in parallel. Faces depend only on
 * their index, so the set is the same whatever the thread count; on failure
 * the lowest failing index's error is reported, also whatever the schedule. */
static pasm_status make_chunk(const char *out_dir, const pasm_synth_options *o, int first, int n,
                              face_job *jobs) {
    pasm_status failed = PASM_OK;
    int failed_at = n;
    char message[1024] = "";
#pragma omp parallel for schedule(dynamic, 8)
    for (int k = 0; k < n; k++) {
        pasm_status st = make_face(out_dir, o, first + k, &jobs[k]);
        if (st != PASM_OK) {
#pragma omp critical(synth_chunk_error)
            if (k < failed_at) {
                failed_at = k, failed = st;
                snprintf(message, sizeof message, "%s", pasm_last_error());
            }
        }
    }
    return failed == PASM_OK ? PASM_OK : pasm_errorf(failed, "%s", message);
}

static void count_face(pasm_synth_stats *s, const face_job *job) {
    s->count[job->split]++;
    s->per_class[job->split][job->cls]++;
    s->ambiguous += job->regions.blend_class >= 0;
    s->glasses += job->regions.glasses != 0;
    s->hands += job->regions.hand != 0;
}

pasm_status pasm_synth_write(const char *out_dir, const pasm_synth_options *o,
                             pasm_synth_stats *stats) {
    pasm_status st = check_write_options(out_dir, o);
    if (st != PASM_OK) return st;
    double start = pasm_now_seconds();
    pasm_synth_stats local;
    memset(&local, 0, sizeof local);
    FILE *regions_csv = NULL, *faces_csv = NULL;
    face_job *jobs = NULL;
    if ((st = check_empty(out_dir)) != PASM_OK || (st = make_dirs(out_dir)) != PASM_OK ||
        (st = make_tree(out_dir)) != PASM_OK)
        goto done;
    if (!(jobs = pasm_alloc(CHUNK * sizeof *jobs, "synthetic face jobs"))) {
        st = PASM_ERR_NOMEM;
        goto done;
    }
    if ((st = open_csv(out_dir, "regions.csv", "split,path,class,region,x0,y0,x1,y1\n",
                       &regions_csv)) != PASM_OK ||
        (st = open_csv(out_dir, "faces.csv",
                       "split,path,class,blend_class,blend_weight,glasses,hand\n", &faces_csv)) !=
            PASM_OK)
        goto done;
    for (int first = 0; first < o->count; first += CHUNK) {
        int n = o->count - first < CHUNK ? o->count - first : CHUNK;
        if ((st = make_chunk(out_dir, o, first, n, jobs)) != PASM_OK) goto done;
        /* Rows in index order, written by this thread alone. */
        for (int k = 0; k < n; k++) {
            write_rows(regions_csv, faces_csv, pasm_synth_split_name(jobs[k].split), jobs[k].rel,
                       jobs[k].cls, &jobs[k].regions);
            count_face(&local, &jobs[k]);
        }
    }
done:
    if (regions_csv) {
        pasm_status cst = close_csv(regions_csv, out_dir, "regions.csv");
        if (st == PASM_OK) st = cst;
    }
    if (faces_csv) {
        pasm_status cst = close_csv(faces_csv, out_dir, "faces.csv");
        if (st == PASM_OK) st = cst;
    }
    pasm_free(jobs);
    local.seconds = pasm_now_seconds() - start;
    if (stats) *stats = local;
    return st;
}
