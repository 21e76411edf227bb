/* Status codes and the thread-local error message that carries context
 * (file, line, tensor) from the failing function up to the CLI; notes, what
 * the library says without failing. */
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "pasm/core.h"

static _Thread_local char error_message[1024];

pasm_status pasm_errorf(pasm_status code, const char *fmt, ...) {
    /* formatted aside first: an argument may be the message itself (a
     * context added to pasm_last_error()) */
    char text[sizeof error_message];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    memcpy(error_message, text, sizeof text);
    return code;
}

pasm_status pasm_error_prefix(pasm_status code, const char *fmt, ...) {
    char prefix[512], old[sizeof error_message];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, error_message, sizeof old);
    snprintf(error_message, sizeof error_message, "%s: %s", prefix, old);
    return code;
}

/* The note handler and its context, set together under a lock so a note
 * never pairs one handler with another's context. */
static pthread_mutex_t note_lock = PTHREAD_MUTEX_INITIALIZER;
static pasm_note_handler note_handler;
static void *note_ctx;

void pasm_set_note_handler(pasm_note_handler handler, void *ctx) {
    pthread_mutex_lock(&note_lock);
    note_handler = handler;
    note_ctx = ctx;
    pthread_mutex_unlock(&note_lock);
}

void pasm_note(const char *fmt, ...) {
    char text[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    pthread_mutex_lock(&note_lock);
    pasm_note_handler handler = note_handler;
    void *ctx = note_ctx;
    pthread_mutex_unlock(&note_lock);
    if (handler)
        handler(text, ctx);
    else
        fprintf(stderr, "pasm: note: %s\n", text);
}

const char *pasm_last_error(void) { return error_message; }

void pasm_clear_error(void) { error_message[0] = '\0'; }

const char *pasm_status_name(pasm_status code) {
    switch (code) {
    case PASM_OK: return "ok";
    case PASM_ERR_INVALID: return "invalid argument";
    case PASM_ERR_IO: return "I/O error";
    case PASM_ERR_FORMAT: return "format error";
    case PASM_ERR_SHAPE: return "shape mismatch";
    case PASM_ERR_NOMEM: return "out of memory";
    case PASM_ERR_NUMERIC: return "numeric error";
    case PASM_ERR_INTERRUPTED: return "interrupted";
    case PASM_ERR_UNSUPPORTED: return "unsupported";
    }
    return "unknown status";
}
