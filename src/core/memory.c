/* Aligned, zeroed allocation with a counter (tests check that training steps
 * allocate nothing), the arena that networks plan their memory in, and
 * small helpers (monotonic clock). */
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "pasm/core.h"

static atomic_uint_fast64_t alloc_count;

/* The bytes of a block for a request: whole cache lines, at least one (the
 * huge pages' padding beyond them is not part of it). */
static size_t block_bytes(size_t bytes) { return bytes ? (bytes + 63) / 64 * 64 : 64; }

void *pasm_alloc_uninit(size_t bytes, const char *what) {
    const size_t huge = (size_t)2 << 20;
    const size_t rounded = block_bytes(bytes);
    void *p = NULL;
    if (bytes > SIZE_MAX - huge) { /* no rounding up past the end */
    } else if (rounded >= 2 * huge) {
        /* Large blocks (a network's parameters, activations, workspace, a
         * checkpoint read whole) on transparent huge pages where the
         * kernel offers them on request: 512x fewer page faults when first
         * touched, fewer TLB misses after. */
        const size_t whole = (rounded + huge - 1) / huge * huge;
        p = aligned_alloc(huge, whole);
        if (p) madvise(p, whole, MADV_HUGEPAGE); /* advice only */
    } else {
        p = aligned_alloc(64, rounded);
    }
    if (!p)
        pasm_errorf(PASM_ERR_NOMEM, "out of memory allocating %zu bytes for %s", bytes,
                    what ? what : "buffer");
    return p;
}

void *pasm_alloc(size_t bytes, const char *what) {
    void *p = pasm_alloc_uninit(bytes, what);
    if (!p) return NULL;
    memset(p, 0, block_bytes(bytes)); /* not the huge pages' padding */
    atomic_fetch_add(&alloc_count, 1);
    return p;
}

void pasm_free(void *p) { free(p); }

uint64_t pasm_alloc_count(void) { return atomic_load(&alloc_count); }

pasm_status pasm_arena_init(pasm_arena *a, size_t bytes, const char *what) {
    a->used = 0;
    a->size = bytes;
    a->base = pasm_alloc(bytes, what);
    return a->base ? PASM_OK : PASM_ERR_NOMEM;
}

void *pasm_arena_take(pasm_arena *a, size_t bytes) {
    size_t rounded = (bytes + 63) / 64 * 64;
    if (a->used + rounded > a->size) {
        pasm_errorf(PASM_ERR_NOMEM, "arena plan too small: %zu of %zu bytes used, %zu more asked",
                    a->used, a->size, rounded);
        return NULL;
    }
    void *p = a->base + a->used;
    a->used += rounded;
    return p;
}

void pasm_arena_free(pasm_arena *a) {
    pasm_free(a->base);
    a->base = NULL;
    a->size = a->used = 0;
}

double pasm_now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
