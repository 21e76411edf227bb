/* Status codes and the thread-local error message that carries context
 * (file, line, tensor) from the failing function up to the CLI. */
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
