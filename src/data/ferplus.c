/* FER+ labels (Barsoum et al. 2016, fer2013new.csv): per FER2013 row, ten
 * annotators' votes over neutral, happiness, surprise, sadness, anger,
 * disgust, fear, contempt, unknown and NF (not a face). The label is the
 * plurality vote with ties to the lowest column (numpy.argmax, as FER+'s
 * own majority mode picks its peak); rows whose plurality is unknown or NF,
 * or without any vote, are dropped (label -1). */
#include <stdlib.h>
#include <string.h>

#include "data/data_internal.h"

#define N_VOTES 10
#define MAX_COLUMNS 64

static const char *const vote_names[N_VOTES] = {"neutral", "happiness", "surprise", "sadness",
                                                "anger",   "disgust",   "fear",     "contempt",
                                                "unknown", "NF"};

typedef struct {
    const char *name;
    int n_cols, col_usage, col_vote[N_VOTES];
    size_t cap;
    csv_field fields[MAX_COLUMNS + 1];
} ferplus_state;

static pasm_status parse_header(ferplus_state *s, const char *line, size_t len, long line_no) {
    if (len >= 3 && memcmp(line, "\xEF\xBB\xBF", 3) == 0) line += 3, len -= 3;
    int nf = csv_split(line, len, s->fields, MAX_COLUMNS);
    if (nf < 0 || nf > MAX_COLUMNS)
        return pasm_errorf(PASM_ERR_FORMAT, "%s:%ld: malformed header", s->name, line_no);
    s->n_cols = nf;
    s->col_usage = -1;
    for (int v = 0; v < N_VOTES; v++)
        s->col_vote[v] = -1;
    for (int i = 0; i < nf; i++) {
        if (csv_field_is(&s->fields[i], "usage")) s->col_usage = i;
        for (int v = 0; v < N_VOTES; v++)
            if (csv_field_is(&s->fields[i], vote_names[v])) s->col_vote[v] = i;
    }
    for (int v = 0; v < N_VOTES; v++)
        if (s->col_vote[v] < 0)
            return pasm_errorf(PASM_ERR_FORMAT,
                               "%s:%ld: FER+ header has no '%s' column (expected Usage,Image "
                               "name,neutral,happiness,surprise,sadness,anger,disgust,fear,"
                               "contempt,unknown,NF)",
                               s->name, line_no, vote_names[v]);
    return PASM_OK;
}

static pasm_status parse_votes(const ferplus_state *s, long line_no, int *votes) {
    for (int v = 0; v < N_VOTES; v++) {
        const csv_field *f = &s->fields[s->col_vote[v]];
        const char *p = f->ptr, *end = p + f->len;
        while (p < end && *p == ' ')
            p++;
        while (end > p && end[-1] == ' ')
            end--;
        long value = 0;
        for (const char *q = p; q < end && value <= 1000000; q++) {
            if (*q < '0' || *q > '9') {
                value = -1;
                break;
            }
            value = value * 10 + (*q - '0');
        }
        if (p == end || value < 0 || value > 1000000) {
            char shown[32];
            return pasm_errorf(PASM_ERR_FORMAT, "%s:%ld: %s votes '%s' is not a count 0..1000000",
                               s->name, line_no, vote_names[v],
                               csv_field_show(f, shown, sizeof shown));
        }
        votes[v] = (int)value;
    }
    return PASM_OK;
}

static int plurality(const int *votes) {
    int best = 0;
    for (int v = 1; v < N_VOTES; v++)
        if (votes[v] > votes[best]) best = v;
    return votes[best] == 0 || best >= 8 ? -1 : best;
}

static pasm_status append(ferplus_state *s, ferplus_labels *out, int label, unsigned usage,
                          long line_no) {
    if ((size_t)out->n_rows == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 4096;
        int8_t *labels = realloc(out->label, cap);
        if (labels) out->label = labels;
        uint8_t *usages = labels ? realloc(out->usage, cap) : NULL;
        if (usages) out->usage = usages;
        if (!usages) return pasm_errorf(PASM_ERR_NOMEM, "%s:%ld: out of memory", s->name, line_no);
        s->cap = cap;
    }
    out->label[out->n_rows] = (int8_t)label;
    out->usage[out->n_rows] = (uint8_t)usage;
    out->n_rows++;
    return PASM_OK;
}

static pasm_status parse_row(ferplus_state *s, ferplus_labels *out, const char *line, size_t len,
                             long line_no) {
    int nf = csv_split(line, len, s->fields, s->n_cols);
    if (nf != s->n_cols)
        return pasm_errorf(PASM_ERR_FORMAT, "%s:%ld: %s (the header has %d columns)", s->name,
                           line_no,
                           nf < 0           ? "malformed quoting"
                           : nf > s->n_cols ? "too many columns"
                                            : "missing columns",
                           s->n_cols);
    unsigned usage = 0;
    if (s->col_usage >= 0) {
        const csv_field *f = &s->fields[s->col_usage];
        usage = csv_field_is(f, "Training")      ? PASM_SPLIT_TRAINING
                : csv_field_is(f, "PublicTest")  ? PASM_SPLIT_PUBLIC_TEST
                : csv_field_is(f, "PrivateTest") ? PASM_SPLIT_PRIVATE_TEST
                                                 : 0;
        if (!usage) {
            char shown[32];
            return pasm_errorf(PASM_ERR_FORMAT,
                               "%s:%ld: Usage '%s' is not Training, PublicTest or PrivateTest",
                               s->name, line_no, csv_field_show(f, shown, sizeof shown));
        }
    }
    int votes[N_VOTES];
    pasm_status st = parse_votes(s, line_no, votes);
    if (st != PASM_OK) return st;
    return append(s, out, plurality(votes), usage, line_no);
}

pasm_status ferplus_parse(line_reader *r, ferplus_labels *out) {
    ferplus_state s;
    memset(&s, 0, sizeof s);
    memset(out, 0, sizeof *out);
    s.name = r->name;
    const char *line;
    size_t len;
    int got = 0, header_seen = 0;
    pasm_status st = PASM_OK;
    while (st == PASM_OK && (got = line_reader_next(r, &line, &len)) == 1) {
        if (len == 0) continue;
        st = header_seen ? parse_row(&s, out, line, len, r->line_no)
                         : parse_header(&s, line, len, r->line_no);
        header_seen = 1;
    }
    if (st == PASM_OK && got < 0) st = r->error;
    if (st == PASM_OK && !header_seen) st = pasm_errorf(PASM_ERR_FORMAT, "%s: empty file", s.name);
    out->has_usage = s.col_usage >= 0;
    if (st != PASM_OK) ferplus_free(out);
    return st;
}

pasm_status ferplus_read(const char *path, ferplus_labels *out) {
    line_reader r;
    memset(out, 0, sizeof *out);
    pasm_status st = line_reader_open_file(&r, path);
    if (st != PASM_OK) return st;
    st = ferplus_parse(&r, out);
    line_reader_close(&r);
    return st;
}

void ferplus_free(ferplus_labels *f) {
    free(f->label);
    free(f->usage);
    memset(f, 0, sizeof *f);
}
