/* Switches read from the environment. */
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

/* 1 when the environment variable name starts with "1" (a switch that is
 * off by default), read at each call. */
static inline int pasm_env_flag(const char *name) {
    const char *env = getenv(name);
    return env && env[0] == '1';
}

#endif
