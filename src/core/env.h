/* Switches read from the environment once. */
#ifndef PASM_CORE_ENV_H
#define PASM_CORE_ENV_H

#include <stdlib.h>
#include <string.h>

/* 1 unless the environment variable name is "0" (a switch that is on by
 * default), read at the first call into *cache, which starts at -1. Threads
 * may race to the first read: each stores the same answer. */
static inline int pasm_env_on(const char *name, int *cache) {
    int v = __atomic_load_n(cache, __ATOMIC_RELAXED);
    if (v < 0) {
        const char *env = getenv(name);
        v = !(env && strcmp(env, "0") == 0);
        __atomic_store_n(cache, v, __ATOMIC_RELAXED);
    }
    return v;
}

#endif
