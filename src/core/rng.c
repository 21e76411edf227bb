/* Counter-based random numbers: Philox4x32-10 (Salmon et al., 2011).
 * A stream is keyed by (seed, purpose) and positioned by a 128-bit counter
 * whose upper half is (a, b) (e.g. epoch, sample index), so every sample's
 * randomness is fixed regardless of thread scheduling. */
#include <math.h>

#include "pasm/core.h"

#define PHILOX_M0 0xD2511F53u
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u
#define PHILOX_W1 0xBB67AE85u

static void philox_round(uint32_t ctr[4], const uint32_t key[2]) {
    uint64_t p0 = (uint64_t)PHILOX_M0 * ctr[0];
    uint64_t p1 = (uint64_t)PHILOX_M1 * ctr[2];
    uint32_t hi0 = (uint32_t)(p0 >> 32), lo0 = (uint32_t)p0;
    uint32_t hi1 = (uint32_t)(p1 >> 32), lo1 = (uint32_t)p1;
    uint32_t c0 = hi1 ^ ctr[1] ^ key[0];
    uint32_t c2 = hi0 ^ ctr[3] ^ key[1];
    ctr[0] = c0;
    ctr[1] = lo1;
    ctr[2] = c2;
    ctr[3] = lo0;
}

static void philox10(const uint32_t in[4], const uint32_t key_in[2], uint32_t out[4]) {
    uint32_t ctr[4] = {in[0], in[1], in[2], in[3]};
    uint32_t key[2] = {key_in[0], key_in[1]};
    for (int i = 0; i < 10; i++) {
        philox_round(ctr, key);
        key[0] += PHILOX_W0;
        key[1] += PHILOX_W1;
    }
    for (int i = 0; i < 4; i++) out[i] = ctr[i];
}

/* splitmix64 mixes (seed, purpose) into the 64-bit key. */
static uint64_t mix64(uint64_t x) {
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

void pasm_rng_init(pasm_rng *r, uint64_t seed, uint32_t purpose, uint64_t a, uint64_t b) {
    uint64_t k = mix64(seed ^ mix64((uint64_t)purpose));
    r->key[0] = (uint32_t)k;
    r->key[1] = (uint32_t)(k >> 32);
    /* ctr[0] counts blocks within the stream; ctr[1..3] hold (a, b). */
    uint64_t ab = mix64(a) ^ b;
    r->ctr[0] = 0;
    r->ctr[1] = (uint32_t)b;
    r->ctr[2] = (uint32_t)ab;
    r->ctr[3] = (uint32_t)(a ^ (ab >> 32));
    r->used = 4;
}

uint32_t pasm_rng_u32(pasm_rng *r) {
    if (r->used >= 4) {
        philox10(r->ctr, r->key, r->buf);
        r->ctr[0]++;
        r->used = 0;
    }
    return r->buf[r->used++];
}

float pasm_rng_uniform(pasm_rng *r) { return (float)(pasm_rng_u32(r) >> 8) * (1.0f / 16777216.0f); }

double pasm_rng_uniform_double(pasm_rng *r) {
    uint64_t hi = pasm_rng_u32(r) >> 5, lo = pasm_rng_u32(r) >> 6;
    return ((double)hi * 67108864.0 + (double)lo) * (1.0 / 9007199254740992.0);
}

uint32_t pasm_rng_below(pasm_rng *r, uint32_t n) {
    /* Lemire's method with rejection: unbiased. */
    uint64_t m = (uint64_t)pasm_rng_u32(r) * n;
    uint32_t low = (uint32_t)m;
    if (low < n) {
        uint32_t threshold = (uint32_t)(-n) % n;
        while (low < threshold) {
            m = (uint64_t)pasm_rng_u32(r) * n;
            low = (uint32_t)m;
        }
    }
    return (uint32_t)(m >> 32);
}

float pasm_rng_normal(pasm_rng *r) {
    double u1 = pasm_rng_uniform_double(r), u2 = pasm_rng_uniform_double(r);
    if (u1 < 1e-300) u1 = 1e-300;
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}
