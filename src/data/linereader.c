/* The chunked line reader under the CSV loaders: reads a file or a memory
 * buffer in large chunks, inflating gzip (detected by its magic bytes, with
 * multi-member streams), and hands out one line at a time without copying
 * or allocating per line. Inflating a gzip file takes longer than parsing
 * it, so it runs on a thread of its own that fills two chunks in turn while
 * the caller parses: loading costs about the inflate time alone. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "data/data_internal.h"

#define TEXT_CHUNK ((size_t)4 << 20)
#define GZ_CHUNK ((size_t)1 << 20)

static pasm_status start_pipe(line_reader *r);
static void stop_pipe(line_reader *r);

static int is_gzip(const unsigned char *p, size_t n) {
    return n >= 2 && p[0] == 0x1f && p[1] == 0x8b;
}

static int fail(line_reader *r, pasm_status code) {
    r->error = code;
    return -1;
}

static pasm_status start_inflate(line_reader *r, const unsigned char *in, size_t n) {
    memset(&r->zs, 0, sizeof r->zs);
    /* 16 + MAX_WBITS: expect a gzip wrapper and check its CRC and length. */
    if (inflateInit2(&r->zs, 16 + MAX_WBITS) != Z_OK)
        return pasm_errorf(PASM_ERR_NOMEM, "%s: cannot start zlib", r->name);
    r->zs_ready = 1;
    r->gz = 1;
    r->zs.next_in = (unsigned char *)in;
    r->zs.avail_in = (uInt)n;
    return PASM_OK;
}

pasm_status line_reader_open_file(line_reader *r, const char *path) {
    memset(r, 0, sizeof *r);
    r->name = path;
    r->fd = open(path, O_RDONLY);
    if (r->fd < 0) return pasm_errorf(PASM_ERR_IO, "cannot open %s: %s", path, strerror(errno));
    r->zin_cap = GZ_CHUNK;
    r->cap = TEXT_CHUNK;
    r->zin = malloc(r->zin_cap);
    r->buf = malloc(r->cap);
    if (!r->zin || !r->buf) {
        line_reader_close(r);
        return pasm_errorf(PASM_ERR_NOMEM, "%s: out of memory for read buffers", path);
    }
    /* The first chunk decides: gzip magic bytes, or plain text. */
    ssize_t n = read(r->fd, r->zin, r->zin_cap);
    if (n < 0) {
        pasm_status st = pasm_errorf(PASM_ERR_IO, "cannot read %s: %s", path, strerror(errno));
        line_reader_close(r);
        return st;
    }
    if (is_gzip(r->zin, (size_t)n)) {
        pasm_status st = start_inflate(r, r->zin, (size_t)n);
        if (st == PASM_OK) st = start_pipe(r);
        if (st != PASM_OK) line_reader_close(r);
        return st;
    }
    memcpy(r->buf, r->zin, (size_t)n);
    r->end = (size_t)n;
    if (n == 0) r->src_done = 1;
    return PASM_OK;
}

pasm_status line_reader_open_memory(line_reader *r, const char *name, const void *data,
                                    size_t size) {
    memset(r, 0, sizeof *r);
    r->name = name;
    r->fd = -1;
    r->mem = data;
    r->mem_size = size;
    if (!is_gzip(data, size)) {
        /* Plain text in memory: lines point straight into the caller's buffer. */
        r->buf = (char *)data;
        r->cap = r->end = size;
        r->borrowed = 1;
        r->src_done = 1;
        return PASM_OK;
    }
    if (size > UINT_MAX) return pasm_errorf(PASM_ERR_INVALID, "%s: gzip buffer over 4 GiB", name);
    r->cap = TEXT_CHUNK;
    r->buf = malloc(r->cap);
    if (!r->buf) return pasm_errorf(PASM_ERR_NOMEM, "%s: out of memory for read buffer", name);
    r->input_done = 1; /* all compressed input is already in zs */
    pasm_status st = start_inflate(r, data, size);
    if (st != PASM_OK) line_reader_close(r);
    return st;
}

void line_reader_close(line_reader *r) {
    stop_pipe(r);
    if (r->zs_ready) inflateEnd(&r->zs);
    if (r->fd >= 0) close(r->fd);
    free(r->zin);
    if (!r->borrowed) free(r->buf);
    memset(r, 0, sizeof *r);
    r->fd = -1;
}

/* Tops up the compressed input from the file when it has run out. */
static int refill_input(line_reader *r) {
    if (r->zs.avail_in > 0 || r->input_done) return 0;
    ssize_t n = read(r->fd, r->zin, r->zin_cap);
    if (n < 0) {
        pasm_errorf(PASM_ERR_IO, "cannot read %s: %s", r->name, strerror(errno));
        return fail(r, PASM_ERR_IO);
    }
    if (n == 0) r->input_done = 1;
    r->zs.next_in = r->zin;
    r->zs.avail_in = (uInt)n;
    return 0;
}

/* Inflates up to cap bytes into out; sets *got to the bytes produced
 * (0 only at the end of the data). */
static int inflate_into(line_reader *r, unsigned char *out, size_t cap, size_t *got) {
    r->zs.next_out = out;
    r->zs.avail_out = (uInt)cap;
    while (r->zs.avail_out > 0 && !r->gz_done) {
        if (refill_input(r) < 0) return -1;
        if (r->zs.avail_in == 0) {
            if (r->member_ended) {
                r->gz_done = 1;
                break;
            }
            pasm_errorf(PASM_ERR_FORMAT, "%s: gzip stream is truncated (unexpected end of file)",
                        r->name);
            return fail(r, PASM_ERR_FORMAT);
        }
        if (r->member_ended) {
            /* Another gzip member may follow (as gzip -c a b > c makes); anything else is not ours.
             */
            if (r->zs.next_in[0] != 0x1f) {
                pasm_errorf(PASM_ERR_FORMAT, "%s: unexpected data after the gzip stream", r->name);
                return fail(r, PASM_ERR_FORMAT);
            }
            inflateReset(&r->zs);
            r->member_ended = 0;
        }
        int ret = inflate(&r->zs, Z_NO_FLUSH);
        if (ret == Z_STREAM_END) {
            r->member_ended = 1;
        } else if (ret == Z_MEM_ERROR) {
            pasm_errorf(PASM_ERR_NOMEM, "%s: out of memory inflating", r->name);
            return fail(r, PASM_ERR_NOMEM);
        } else if (ret != Z_OK && ret != Z_BUF_ERROR) {
            pasm_errorf(PASM_ERR_FORMAT, "%s: corrupt gzip data (%s)", r->name,
                        r->zs.msg ? r->zs.msg : "inflate failed");
            return fail(r, PASM_ERR_FORMAT);
        }
    }
    *got = cap - r->zs.avail_out;
    return 0;
}

/* ---- the inflate thread (gzip files) ---- */

#define PIPE_SLOTS 2

struct inflate_pipe {
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    unsigned char *chunk[PIPE_SLOTS];
    size_t len[PIPE_SLOTS];
    int full[PIPE_SLOTS];
    int produce, consume; /* next slot of each side */
    size_t offset;        /* consumed bytes of chunk[consume] */
    int done, stop;       /* producer finished; consumer leaving */
    pasm_status status;   /* the producer's error, with its message copied */
    char message[1024];
};

static void *inflate_thread(void *arg) {
    line_reader *r = arg;
    struct inflate_pipe *p = r->pipe;
    for (;;) {
        pthread_mutex_lock(&p->mu);
        while (p->full[p->produce] && !p->stop)
            pthread_cond_wait(&p->cv, &p->mu);
        int stop = p->stop, slot = p->produce;
        pthread_mutex_unlock(&p->mu);
        if (stop) return NULL;
        size_t got = 0;
        int bad = inflate_into(r, p->chunk[slot], TEXT_CHUNK, &got) < 0;
        pthread_mutex_lock(&p->mu);
        if (bad) {
            /* Error messages are thread-local: hand the text to the reader's thread. */
            p->status = r->error;
            snprintf(p->message, sizeof p->message, "%s", pasm_last_error());
        }
        if (got > 0) {
            p->len[slot] = got;
            p->full[slot] = 1;
            p->produce = (slot + 1) % PIPE_SLOTS;
        }
        if (bad || got == 0) p->done = 1;
        pthread_cond_broadcast(&p->cv);
        pthread_mutex_unlock(&p->mu);
        if (bad || got == 0) return NULL;
    }
}

static pasm_status start_pipe(line_reader *r) {
    struct inflate_pipe *p = calloc(1, sizeof *p);
    if (!p) return pasm_errorf(PASM_ERR_NOMEM, "%s: out of memory", r->name);
    for (int i = 0; i < PIPE_SLOTS; i++)
        if (!(p->chunk[i] = malloc(TEXT_CHUNK))) {
            for (int j = 0; j < i; j++)
                free(p->chunk[j]);
            free(p);
            return pasm_errorf(PASM_ERR_NOMEM, "%s: out of memory", r->name);
        }
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    r->pipe = p;
    if (pthread_create(&p->thread, NULL, inflate_thread, r) != 0) {
        /* No thread to be had: inflate on the caller's thread instead. */
        r->pipe = NULL;
        pthread_mutex_destroy(&p->mu);
        pthread_cond_destroy(&p->cv);
        for (int i = 0; i < PIPE_SLOTS; i++)
            free(p->chunk[i]);
        free(p);
    }
    return PASM_OK;
}

static void stop_pipe(line_reader *r) {
    struct inflate_pipe *p = r->pipe;
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    p->stop = 1;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    pthread_join(p->thread, NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    for (int i = 0; i < PIPE_SLOTS; i++)
        free(p->chunk[i]);
    free(p);
    r->pipe = NULL;
}

/* Copies inflated text from the thread's next full chunk into buf[end..cap). */
static int take_from_pipe(line_reader *r, size_t *got) {
    struct inflate_pipe *p = r->pipe;
    pthread_mutex_lock(&p->mu);
    while (!p->full[p->consume] && !p->done)
        pthread_cond_wait(&p->cv, &p->mu);
    int slot = p->consume, have = p->full[slot];
    pasm_status status = p->status;
    pthread_mutex_unlock(&p->mu);
    *got = 0;
    if (!have) {
        if (status != PASM_OK) {
            pasm_errorf(status, "%s", p->message);
            return fail(r, status);
        }
        r->src_done = 1;
        return 0;
    }
    size_t n = p->len[slot] - p->offset;
    if (n > r->cap - r->end) n = r->cap - r->end;
    memcpy(r->buf + r->end, p->chunk[slot] + p->offset, n);
    p->offset += n;
    *got = n;
    if (p->offset == p->len[slot]) {
        pthread_mutex_lock(&p->mu);
        p->full[slot] = 0;
        p->offset = 0;
        p->consume = (slot + 1) % PIPE_SLOTS;
        pthread_cond_broadcast(&p->cv);
        pthread_mutex_unlock(&p->mu);
    }
    return 0;
}

/* Makes room at the end of buf: drops consumed bytes, grows for long lines. */
static int make_room(line_reader *r) {
    if (r->begin > 0) {
        memmove(r->buf, r->buf + r->begin, r->end - r->begin);
        r->end -= r->begin;
        r->scan -= r->begin;
        r->begin = 0;
    }
    if (r->end < r->cap) return 0;
    if (r->cap >= LINE_READER_MAX_LINE) {
        pasm_errorf(PASM_ERR_FORMAT, "%s:%ld: line longer than %zu MiB", r->name, r->line_no + 1,
                    LINE_READER_MAX_LINE >> 20);
        return fail(r, PASM_ERR_FORMAT);
    }
    char *bigger = realloc(r->buf, r->cap * 2);
    if (!bigger) {
        pasm_errorf(PASM_ERR_NOMEM, "%s:%ld: out of memory for a long line", r->name,
                    r->line_no + 1);
        return fail(r, PASM_ERR_NOMEM);
    }
    r->buf = bigger;
    r->cap *= 2;
    return 0;
}

/* Reads more text after end. Returns 1 when bytes came, 0 at the end, -1 on error. */
static int fill(line_reader *r) {
    while (!r->src_done) {
        if (make_room(r) < 0) return -1;
        size_t got = 0;
        if (r->pipe) {
            if (take_from_pipe(r, &got) < 0) return -1;
        } else if (r->gz) {
            if (inflate_into(r, (unsigned char *)r->buf + r->end, r->cap - r->end, &got) < 0)
                return -1;
            if (r->gz_done) r->src_done = 1;
        } else {
            ssize_t n = read(r->fd, r->buf + r->end, r->cap - r->end);
            if (n < 0) {
                pasm_errorf(PASM_ERR_IO, "cannot read %s: %s", r->name, strerror(errno));
                return fail(r, PASM_ERR_IO);
            }
            if (n == 0) r->src_done = 1;
            got = (size_t)n;
        }
        r->end += got;
        if (got > 0) return 1;
    }
    return 0;
}

static void hand_out(line_reader *r, size_t line_end, size_t next, const char **line, size_t *len) {
    size_t n = line_end - r->begin;
    if (n > 0 && r->buf[r->begin + n - 1] == '\r') n--;
    *line = r->buf + r->begin;
    *len = n;
    r->begin = r->scan = next;
    r->line_no++;
}

int line_reader_next(line_reader *r, const char **line, size_t *len) {
    for (;;) {
        char *nl = memchr(r->buf + r->scan, '\n', r->end - r->scan);
        if (nl) {
            size_t at = (size_t)(nl - r->buf);
            r->unterminated = 0;
            hand_out(r, at, at + 1, line, len);
            return 1;
        }
        r->scan = r->end;
        int more = fill(r);
        if (more < 0) return -1;
        if (more == 0) {
            if (r->begin == r->end) return 0;
            r->unterminated = 1;
            hand_out(r, r->end, r->end, line, len);
            return 1;
        }
    }
}
