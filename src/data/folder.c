/* The image-folder loader: ROOT/<class>/<image files>, optionally under
 * train/, val/ (or validation/), test/ split folders, or a flat folder of
 * unlabelled images. Listing, class naming and ordering happen first (all
 * sorted, so a face's index is stable); the images are then decoded,
 * converted and resized in parallel, and the first failing file in dataset
 * order is the one reported. */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "data/data_internal.h"

enum { ENTRY_OTHER = 0, ENTRY_DIR = 1, ENTRY_IMAGE = 2 };

typedef struct {
    char *name;
    int kind;
} dir_entry;

typedef struct {
    dir_entry *entries;
    int n;
} dir_list;

typedef struct {
    char **path;
    int *label;
    int n, cap;
} item_list;

typedef struct {
    int n_raw;
    char **raw; /* class folder names seen in any split folder, sorted */
    int *label; /* label of raw[i] */
    int n_classes;
    const char *const *names; /* FER2013's, or raw itself */
    int fer;
} class_table;

static int has_image_extension(const char *name) {
    const char *dot = strrchr(name, '.');
    return dot && (strcasecmp(dot, ".png") == 0 || strcasecmp(dot, ".jpg") == 0 ||
                   strcasecmp(dot, ".jpeg") == 0);
}

static int compare_entries(const void *a, const void *b) {
    return strcmp(((const dir_entry *)a)->name, ((const dir_entry *)b)->name);
}

static void dir_list_free(dir_list *l) {
    for (int i = 0; i < l->n; i++)
        free(l->entries[i].name);
    free(l->entries);
    memset(l, 0, sizeof *l);
}

static char *join(const char *dir, const char *name) {
    return data_sprintf("%s/%s", dir, name);
}

static int entry_kind(const char *dir, const char *name) {
    char *path = join(dir, name);
    struct stat sb;
    int kind = ENTRY_OTHER;
    if (path && stat(path, &sb) == 0) {
        if (S_ISDIR(sb.st_mode))
            kind = ENTRY_DIR;
        else if (S_ISREG(sb.st_mode) && has_image_extension(name))
            kind = ENTRY_IMAGE;
    }
    free(path);
    return kind;
}

/* The folder's visible entries (no dot-files), sorted by name (strcmp). */
static pasm_status list_dir(const char *path, dir_list *out) {
    memset(out, 0, sizeof *out);
    DIR *d = opendir(path);
    if (!d) return pasm_errorf(PASM_ERR_IO, "cannot open folder %s: %s", path, strerror(errno));
    int cap = 0;
    pasm_status st = PASM_OK;
    struct dirent *e;
    while (st == PASM_OK && (e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue;
        if (out->n == cap) {
            cap = cap ? cap * 2 : 64;
            dir_entry *bigger = realloc(out->entries, (size_t)cap * sizeof *bigger);
            if (!bigger) {
                st = pasm_errorf(PASM_ERR_NOMEM, "out of memory listing %s", path);
                break;
            }
            out->entries = bigger;
        }
        dir_entry *entry = &out->entries[out->n];
        entry->name = data_strdup(e->d_name);
        if (!entry->name)
            st = pasm_errorf(PASM_ERR_NOMEM, "out of memory listing %s", path);
        else
            entry->kind = entry_kind(path, e->d_name), out->n++;
    }
    closedir(d);
    if (st != PASM_OK)
        dir_list_free(out);
    else if (out->n > 1)
        qsort(out->entries, (size_t)out->n, sizeof *out->entries, compare_entries);
    return st;
}

static int count_kind(const dir_list *l, int kind) {
    int n = 0;
    for (int i = 0; i < l->n; i++)
        n += l->entries[i].kind == kind;
    return n;
}

/* ---- split folders ---- */

typedef struct {
    char *train, *val, *test; /* names as found under the root, or NULL */
} split_dirs;

static void find_split_dirs(const dir_list *root, split_dirs *s) {
    memset(s, 0, sizeof *s);
    for (int i = 0; i < root->n; i++) {
        const dir_entry *e = &root->entries[i];
        if (e->kind != ENTRY_DIR) continue;
        if (!s->train && strcasecmp(e->name, "train") == 0) s->train = e->name;
        if (!s->val && (strcasecmp(e->name, "val") == 0 || strcasecmp(e->name, "validation") == 0))
            s->val = e->name;
        if (!s->test && strcasecmp(e->name, "test") == 0) s->test = e->name;
    }
}

/* A list of distinct folder names (pointers into the root listing). */
typedef struct {
    const char *names[16];
    int n;
} folder_set;

static void folder_add(folder_set *f, const char *name) {
    for (int i = 0; i < f->n; i++)
        if (f->names[i] == name) return;
    if (name && f->n < 16) f->names[f->n++] = name;
}

static const char *folder_named(const dir_list *root, const char *name, size_t len) {
    for (int i = 0; i < root->n; i++)
        if (root->entries[i].kind == ENTRY_DIR && strlen(root->entries[i].name) == len &&
            strncasecmp(root->entries[i].name, name, len) == 0)
            return root->entries[i].name;
    return NULL;
}

static pasm_status split_folders(const char *root_path, const dir_list *root, const split_dirs *s,
                                 const char *split, folder_set *out) {
    memset(out, 0, sizeof *out);
    const char *p = split && *split ? split : "all";
    for (;;) {
        const char *plus = strchr(p, '+');
        size_t len = plus ? (size_t)(plus - p) : strlen(p);
        unsigned mask = split_token_mask(p, len);
        const char *named = folder_named(root, p, len);
        if (mask == (PASM_SPLIT_TRAINING | PASM_SPLIT_PUBLIC_TEST | PASM_SPLIT_PRIVATE_TEST)) {
            folder_add(out, s->train), folder_add(out, s->val), folder_add(out, s->test);
        } else if (named && !mask) {
            folder_add(out, named);
        } else {
            const char *dir = mask == PASM_SPLIT_TRAINING       ? s->train
                              : mask == PASM_SPLIT_PUBLIC_TEST  ? (s->val ? s->val : s->test)
                              : mask == PASM_SPLIT_PRIVATE_TEST ? s->test
                                                                : NULL;
            if (!dir)
                return pasm_errorf(PASM_ERR_INVALID,
                                   "%s has no folder for split '%.*s' (it has%s%s%s)", root_path,
                                   (int)len, p, s->train ? " train/" : "", s->val ? " val/" : "",
                                   s->test ? " test/" : "");
            folder_add(out, dir);
        }
        if (!plus) break;
        p = plus + 1;
    }
    return PASM_OK;
}

/* ---- classes ---- */

static void class_table_free(class_table *ct) {
    for (int i = 0; i < ct->n_raw; i++)
        free(ct->raw[i]);
    free(ct->raw);
    free(ct->label);
    memset(ct, 0, sizeof *ct);
}

static int raw_index(const class_table *ct, const char *name) {
    for (int i = 0; i < ct->n_raw; i++)
        if (strcmp(ct->raw[i], name) == 0) return i;
    return -1;
}

static pasm_status add_raw(class_table *ct, const char *name) {
    if (raw_index(ct, name) >= 0) return PASM_OK;
    char **raw = realloc(ct->raw, (size_t)(ct->n_raw + 1) * sizeof *raw);
    if (!raw) return pasm_errorf(PASM_ERR_NOMEM, "out of memory for class names");
    ct->raw = raw;
    if (!(ct->raw[ct->n_raw] = data_strdup(name)))
        return pasm_errorf(PASM_ERR_NOMEM, "out of memory");
    ct->n_raw++;
    return PASM_OK;
}

static int compare_strings(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Two class folders of one split folder that mean the same FER2013 class. */
static pasm_status check_synonyms(const char *dir, const dir_list *l) {
    for (int i = 0; i < l->n; i++)
        for (int j = i + 1; j < l->n; j++) {
            int ci = pasm_class_canonical(l->entries[i].name);
            if (l->entries[i].kind == ENTRY_DIR && l->entries[j].kind == ENTRY_DIR && ci >= 0 &&
                ci == pasm_class_canonical(l->entries[j].name))
                return pasm_errorf(PASM_ERR_FORMAT, "%s: class folders '%s' and '%s' both mean %s",
                                   dir, l->entries[i].name, l->entries[j].name,
                                   pasm_fer2013_classes[ci]);
        }
    return PASM_OK;
}

/* Labels every class folder name: FER2013's order when all are FER2013
 * classes (Contempt 7 when present), else sorted order. */
static void assign_labels(class_table *ct) {
    int all_fer = ct->n_raw > 0, contempt = 0;
    for (int i = 0; i < ct->n_raw; i++) {
        int c = pasm_class_canonical(ct->raw[i]);
        all_fer &= c >= 0;
        contempt |= c == 7;
    }
    if (ct->n_raw > 1) qsort(ct->raw, (size_t)ct->n_raw, sizeof *ct->raw, compare_strings);
    for (int i = 0; i < ct->n_raw; i++)
        ct->label[i] = all_fer ? pasm_class_canonical(ct->raw[i]) : i;
    ct->fer = all_fer;
    ct->n_classes = all_fer ? (contempt ? 8 : 7) : ct->n_raw;
    ct->names = all_fer ? pasm_fer2013_classes : (const char *const *)ct->raw;
}

static pasm_status collect_classes(char **dirs, int n_dirs, class_table *ct) {
    memset(ct, 0, sizeof *ct);
    pasm_status st = PASM_OK;
    for (int d = 0; d < n_dirs && st == PASM_OK; d++) {
        dir_list l;
        st = list_dir(dirs[d], &l);
        if (st != PASM_OK) break;
        st = check_synonyms(dirs[d], &l);
        for (int i = 0; i < l.n && st == PASM_OK; i++)
            if (l.entries[i].kind == ENTRY_DIR) st = add_raw(ct, l.entries[i].name);
        dir_list_free(&l);
    }
    if (st == PASM_OK) {
        ct->label = malloc((size_t)ct->n_raw * sizeof *ct->label + 1);
        if (!ct->label)
            st = pasm_errorf(PASM_ERR_NOMEM, "out of memory for classes");
        else
            assign_labels(ct);
    }
    if (st != PASM_OK) class_table_free(ct);
    return st;
}

/* ---- items ---- */

static void items_free(item_list *it) {
    for (int i = 0; it->path && i < it->n; i++)
        free(it->path[i]);
    free(it->path);
    free(it->label);
    memset(it, 0, sizeof *it);
}

static pasm_status items_add(item_list *it, char *path, int label) {
    if (!path) return pasm_errorf(PASM_ERR_NOMEM, "out of memory for file names");
    if (it->n == it->cap) {
        int cap = it->cap ? it->cap * 2 : 256;
        char **paths = cap > 0 ? realloc(it->path, (size_t)cap * sizeof *paths) : NULL;
        if (paths) it->path = paths;
        int *labels = paths ? realloc(it->label, (size_t)cap * sizeof *labels) : NULL;
        if (labels) it->label = labels;
        if (!labels) {
            free(path);
            return pasm_errorf(PASM_ERR_NOMEM, "out of memory for file names");
        }
        it->cap = cap;
    }
    it->path[it->n] = path;
    it->label[it->n++] = label;
    return PASM_OK;
}

/* Adds a folder's image files (sorted by name) with one label. */
static pasm_status add_images(item_list *it, const char *dir, int label, int must_have) {
    dir_list l;
    pasm_status st = list_dir(dir, &l);
    if (st != PASM_OK) return st;
    if (must_have && count_kind(&l, ENTRY_IMAGE) == 0)
        st =
            pasm_errorf(PASM_ERR_FORMAT, "%s: class folder has no images (.png, .jpg, .jpeg)", dir);
    for (int i = 0; i < l.n && st == PASM_OK; i++)
        if (l.entries[i].kind == ENTRY_IMAGE)
            st = items_add(it, join(dir, l.entries[i].name), label);
    dir_list_free(&l);
    return st;
}

typedef struct {
    int label;
    const char *name;
} labelled_dir;

static int compare_labelled(const void *a, const void *b) {
    const labelled_dir *x = a, *y = b;
    if (x->label != y->label) return x->label < y->label ? -1 : 1;
    return strcmp(x->name, y->name);
}

/* One split folder's class folders, in label order, then its images. */
static pasm_status add_split(item_list *it, const char *dir, const class_table *ct) {
    dir_list l;
    pasm_status st = list_dir(dir, &l);
    if (st != PASM_OK) return st;
    labelled_dir *order = malloc((size_t)l.n * sizeof *order + 1);
    int n = 0;
    if (!order) st = pasm_errorf(PASM_ERR_NOMEM, "out of memory");
    for (int i = 0; st == PASM_OK && i < l.n; i++)
        if (l.entries[i].kind == ENTRY_DIR)
            order[n++] =
                (labelled_dir){ct->label[raw_index(ct, l.entries[i].name)], l.entries[i].name};
    if (st == PASM_OK && n == 0) st = pasm_errorf(PASM_ERR_FORMAT, "%s: no class folders", dir);
    if (st == PASM_OK) qsort(order, (size_t)n, sizeof *order, compare_labelled);
    for (int i = 0; st == PASM_OK && i < n; i++) {
        char *class_dir = join(dir, order[i].name);
        st = class_dir ? add_images(it, class_dir, order[i].label, 1)
                       : pasm_errorf(PASM_ERR_NOMEM, "out of memory");
        free(class_dir);
    }
    free(order);
    dir_list_free(&l);
    return st;
}

/* ---- decoding ---- */

static pasm_status load_one(const char *path, int channels, int size, uint8_t *dst) {
    pasm_image img;
    pasm_status st = pasm_image_read(path, channels, &img);
    if (st != PASM_OK) return st;
    if (img.width == size && img.height == size)
        memcpy(dst, img.pixels, (size_t)channels * size * size);
    else
        st = pasm_image_resize(&img, size, size, dst);
    pasm_image_free(&img);
    return st;
}

/* Decodes every item into ds in parallel; reports the first bad file in order. */
static pasm_status decode_all(pasm_dataset *ds) {
    size_t image_bytes = (size_t)ds->channels * ds->size * ds->size;
    int first_bad = INT_MAX;
    pasm_status bad_status = PASM_OK;
    char bad_message[1024] = "";
#pragma omp parallel for schedule(dynamic, 8)
    for (int i = 0; i < ds->n; i++) {
        int skip;
#pragma omp atomic read
        skip = first_bad;
        if (i > skip) continue;
        pasm_status st =
            load_one(ds->paths[i], ds->channels, ds->size, ds->images + i * image_bytes);
        if (st == PASM_OK) continue;
#pragma omp critical(pasm_folder_error)
        if (i < first_bad) {
            /* The message is thread-local: copy it out of this worker thread. */
            snprintf(bad_message, sizeof bad_message, "%s", pasm_last_error());
            bad_status = st;
#pragma omp atomic write
            first_bad = i;
        }
    }
    if (first_bad == INT_MAX) return PASM_OK;
    return pasm_errorf(bad_status, "%s", bad_message);
}

static pasm_status build(const pasm_load_spec *spec, item_list *it, const class_table *ct,
                         pasm_dataset *out) {
    int size = spec->input_size ? spec->input_size : 48;
    int channels = spec->channels ? spec->channels : 1;
    char *source =
        data_sprintf("%s (%s)", spec->path, spec->split && *spec->split ? spec->split : "all");
    pasm_status st = pasm_dataset_alloc(out, it->n, channels, size, source ? source : spec->path);
    free(source);
    if (st != PASM_OK) return st;
    out->paths = it->path; /* the dataset takes the file names */
    it->path = NULL;
    for (int i = 0; i < it->n; i++)
        out->labels[i] = it->label[i];
    out->labelled = ct->n_classes > 0;
    if (out->labelled) st = pasm_dataset_set_classes(out, ct->names, ct->n_classes);
    if (st == PASM_OK) st = decode_all(out);
    if (st != PASM_OK) pasm_dataset_free(out);
    return st;
}

static pasm_status check_spec(const pasm_load_spec *spec) {
    if (spec->input_size < 0 || spec->input_size > 4096)
        return pasm_errorf(PASM_ERR_INVALID, "input size %d outside 1..4096", spec->input_size);
    if (spec->channels != 0 && spec->channels != 1 && spec->channels != 3)
        return pasm_errorf(PASM_ERR_INVALID, "channels %d: need 1 or 3", spec->channels);
    return PASM_OK;
}

/* Paths of the split folders to read, and of all split folders (for classes). */
static pasm_status plan_folders(const pasm_load_spec *spec, const dir_list *root, char ***read_dirs,
                                int *n_read, char ***all_dirs, int *n_all) {
    split_dirs s;
    find_split_dirs(root, &s);
    folder_set want = {{0}, 0}, all = {{0}, 0};
    if (s.train || s.val || s.test) {
        pasm_status st = split_folders(spec->path, root, &s, spec->split, &want);
        if (st != PASM_OK) return st;
        folder_add(&all, s.train), folder_add(&all, s.val), folder_add(&all, s.test);
        for (int i = 0; i < want.n; i++)
            folder_add(&all, want.names[i]);
    }
    *n_read = want.n ? want.n : 1;
    *n_all = all.n ? all.n : 1;
    *read_dirs = calloc((size_t)*n_read, sizeof **read_dirs);
    *all_dirs = calloc((size_t)*n_all, sizeof **all_dirs);
    if (!*read_dirs || !*all_dirs) return pasm_errorf(PASM_ERR_NOMEM, "out of memory");
    for (int i = 0; i < *n_read; i++)
        if (!((*read_dirs)[i] = want.n ? join(spec->path, want.names[i]) : data_strdup(spec->path)))
            return pasm_errorf(PASM_ERR_NOMEM, "out of memory");
    for (int i = 0; i < *n_all; i++)
        if (!((*all_dirs)[i] = all.n ? join(spec->path, all.names[i]) : data_strdup(spec->path)))
            return pasm_errorf(PASM_ERR_NOMEM, "out of memory");
    return PASM_OK;
}

static void free_dirs(char **dirs, int n) {
    for (int i = 0; dirs && i < n; i++)
        free(dirs[i]);
    free(dirs);
}

static pasm_status collect_items(char **read_dirs, int n_read, const class_table *ct,
                                 item_list *it) {
    pasm_status st = PASM_OK;
    for (int d = 0; d < n_read && st == PASM_OK; d++)
        st = ct->n_raw ? add_split(it, read_dirs[d], ct) : add_images(it, read_dirs[d], -1, 0);
    if (st == PASM_OK && it->n == 0)
        st = pasm_errorf(PASM_ERR_FORMAT, "%s: no images (.png, .jpg, .jpeg) and no class folders",
                         read_dirs[0]);
    return st;
}

pasm_status folder_load(const pasm_load_spec *spec, pasm_dataset *out) {
    memset(out, 0, sizeof *out);
    dir_list root = {0};
    char **read_dirs = NULL, **all_dirs = NULL;
    int n_read = 0, n_all = 0;
    class_table ct = {0};
    item_list it = {0};
    pasm_status st = check_spec(spec);
    if (st == PASM_OK) st = list_dir(spec->path, &root);
    if (st == PASM_OK) st = plan_folders(spec, &root, &read_dirs, &n_read, &all_dirs, &n_all);
    if (st == PASM_OK) st = collect_classes(all_dirs, n_all, &ct);
    if (st == PASM_OK) st = collect_items(read_dirs, n_read, &ct, &it);
    if (st == PASM_OK) st = build(spec, &it, &ct, out);
    items_free(&it);
    class_table_free(&ct);
    free_dirs(read_dirs, n_read);
    free_dirs(all_dirs, n_all);
    dir_list_free(&root);
    return st;
}

pasm_status single_image_load(const pasm_load_spec *spec, pasm_dataset *out) {
    memset(out, 0, sizeof *out);
    item_list it = {0};
    class_table ct = {0};
    pasm_status st = check_spec(spec);
    if (st == PASM_OK) st = items_add(&it, data_strdup(spec->path), -1);
    if (st == PASM_OK) st = build(spec, &it, &ct, out);
    items_free(&it);
    return st;
}
