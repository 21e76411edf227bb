/* CSV field splitting (RFC 4180 quoting) and split-name parsing shared by the
 * FER2013 and FER+ readers. Fields point into the line; nothing is copied. */
#include <string.h>
#include <strings.h>

#include "data/data_internal.h"

/* A quoted field: from just after the opening quote to its closing quote. */
static int split_quoted(const char *line, size_t len, size_t *i, csv_field *f) {
    size_t start = ++*i;
    for (;;) {
        const char *q = memchr(line + *i, '"', len - *i);
        if (!q) return -1;
        *i = (size_t)(q - line);
        if (*i + 1 < len && line[*i + 1] == '"') {
            *i += 2;
            continue;
        }
        break;
    }
    f->ptr = line + start;
    f->len = *i - start;
    ++*i;
    return 0;
}

int csv_split(const char *line, size_t len, csv_field *fields, int max) {
    size_t i = 0;
    int n = 0;
    for (;;) {
        if (n == max) return max + 1;
        if (i < len && line[i] == '"') {
            if (split_quoted(line, len, &i, &fields[n]) < 0) return -1;
            n++;
            if (i == len) return n;
            if (line[i] != ',') return -1;
            i++;
            continue;
        }
        const char *comma = memchr(line + i, ',', len - i);
        size_t end = comma ? (size_t)(comma - line) : len;
        fields[n].ptr = line + i;
        fields[n].len = end - i;
        n++;
        if (!comma) return n;
        i = end + 1;
    }
}

static void trim(const char **p, size_t *len) {
    while (*len > 0 && (**p == ' ' || **p == '\t'))
        (*p)++, (*len)--;
    while (*len > 0 && ((*p)[*len - 1] == ' ' || (*p)[*len - 1] == '\t'))
        (*len)--;
}

int csv_field_is(const csv_field *f, const char *word) {
    const char *p = f->ptr;
    size_t len = f->len;
    trim(&p, &len);
    return strlen(word) == len && strncasecmp(p, word, len) == 0;
}

const char *csv_field_show(const csv_field *f, char *out, size_t cap) {
    size_t n = f->len;
    const char *dots = "";
    if (n + 1 > cap) {
        n = cap > 4 ? cap - 4 : 0;
        dots = "...";
    }
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)f->ptr[i];
        out[k++] = (c >= 32 && c < 127) ? (char)c : '?'; /* keep messages printable */
    }
    out[k] = '\0';
    strncat(out, dots, cap - k - 1);
    return out;
}

unsigned split_token_mask(const char *name, size_t len) {
    static const struct {
        const char *name;
        unsigned mask;
    } names[] = {
        {"training", PASM_SPLIT_TRAINING},
        {"train", PASM_SPLIT_TRAINING},
        {"publictest", PASM_SPLIT_PUBLIC_TEST},
        {"val", PASM_SPLIT_PUBLIC_TEST},
        {"validation", PASM_SPLIT_PUBLIC_TEST},
        {"privatetest", PASM_SPLIT_PRIVATE_TEST},
        {"test", PASM_SPLIT_PRIVATE_TEST},
        {"all", PASM_SPLIT_TRAINING | PASM_SPLIT_PUBLIC_TEST | PASM_SPLIT_PRIVATE_TEST},
    };
    csv_field f = {name, len};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (csv_field_is(&f, names[i].name)) return names[i].mask;
    return 0;
}

pasm_status pasm_split_parse(const char *split, unsigned *mask) {
    *mask = PASM_SPLIT_TRAINING | PASM_SPLIT_PUBLIC_TEST | PASM_SPLIT_PRIVATE_TEST;
    if (!split || !*split) return PASM_OK;
    unsigned m = 0;
    const char *p = split;
    for (;;) {
        const char *plus = strchr(p, '+');
        size_t len = plus ? (size_t)(plus - p) : strlen(p);
        unsigned bit = split_token_mask(p, len);
        if (!bit)
            return pasm_errorf(PASM_ERR_INVALID,
                               "unknown split '%.*s' in '%s' (expected Training, PublicTest, "
                               "PrivateTest or all, several joined with '+')",
                               (int)len, p, split);
        m |= bit;
        if (!plus) break;
        p = plus + 1;
    }
    *mask = m;
    return PASM_OK;
}
