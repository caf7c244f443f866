/*
 * philox.h - the Philox 4x32-10 block function and the rules that turn its output into
 * the values of the random family, shared by rng.c (randperm, lunar.philox) and every
 * backend's random kernel. The OpenCL kernel repeats these few lines word for word in
 * kernels/random.cl (a kernel cannot include this header: change the two together), so the
 * CPU and the GPU draw the same stream.
 *
 * Philox: Salmon, Moraes, Dror, Shaw, "Parallel random numbers: as easy as 1, 2, 3",
 * SC'11, section 4.2 (the multipliers and Weyl constants are table 2's for Philox-4x32).
 *
 * The stream contract: a generator is (seed, offset). The key is the seed's low and high
 * 32-bit words; the counter of block j is {lo32(offset + j), hi32(offset + j), 0, 0}.
 * A draw of 32 bits takes one lane, a draw of 64 bits takes lanes (0, 1) or (2, 3) (low
 * word first), so a block gives per = 4 or 2 elements and element i of a tensor reads
 * block i / per at lane(s) i % per. Normals pair their draws for Box-Muller: the pair's
 * first element is r cos(theta), its second r sin(theta). Either way element i depends only
 * on (seed, offset, i), and a draw of n elements moves the offset by ceil(n / per).
 */
#ifndef LUNAR_PHILOX_H
#define LUNAR_PHILOX_H

#include <stdint.h>

#define PHILOX_M0 0xD2511F53u
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u
#define PHILOX_W1 0xBB67AE85u

/* The distributions of the backend's random entry. */
enum { LUNAR_RANDOM_UNIFORM, LUNAR_RANDOM_NORMAL, LUNAR_RANDOM_INTEGER, LUNAR_RANDOM_BERNOULLI };

/* out = Philox4x32-10(ctr, key). */
static inline void philox4x32_10(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4]) {
    uint32_t c0 = ctr[0], c1 = ctr[1], c2 = ctr[2], c3 = ctr[3];
    uint32_t k0 = key[0], k1 = key[1];
    for (int r = 0; r < 10; r++) {
        if (r > 0) { /* the key schedule bumps the key before every round but the first */
            k0 += PHILOX_W0;
            k1 += PHILOX_W1;
        }
        uint64_t p0 = (uint64_t)PHILOX_M0 * c0, p1 = (uint64_t)PHILOX_M1 * c2;
        uint32_t hi0 = (uint32_t)(p0 >> 32), lo0 = (uint32_t)p0;
        uint32_t hi1 = (uint32_t)(p1 >> 32), lo1 = (uint32_t)p1;
        c0 = hi1 ^ c1 ^ k0;
        c1 = lo1;
        c2 = hi0 ^ c3 ^ k1;
        c3 = lo0;
    }
    out[0] = c0, out[1] = c1, out[2] = c2, out[3] = c3;
}

/* The block at counter `offset + j` under `seed`. */
static inline void philox_block(uint64_t seed, uint64_t offset, uint64_t j, uint32_t out[4]) {
    uint64_t c = offset + j;
    const uint32_t ctr[4] = {(uint32_t)c, (uint32_t)(c >> 32), 0, 0};
    const uint32_t key[2] = {(uint32_t)seed, (uint32_t)(seed >> 32)};
    philox4x32_10(ctr, key, out);
}

/* The 64-bit draw k (0 or 1) of a block. */
static inline uint64_t philox_u64(const uint32_t x[4], int k) {
    return (uint64_t)x[2 * k] | (uint64_t)x[2 * k + 1] << 32;
}

/* The high 64 bits of a * b: multiply-shift maps a 64-bit draw to [0, r) with a bias
 * below r / 2^64 (Lemire, "Fast random integer generation in an interval", 2019), without
 * the rejection loop that would break the one-element-one-block contract. */
static inline uint64_t philox_mulhi64(uint64_t a, uint64_t b) {
    uint64_t a0 = (uint32_t)a, a1 = a >> 32, b0 = (uint32_t)b, b1 = b >> 32;
    uint64_t p00 = a0 * b0, p01 = a0 * b1, p10 = a1 * b0, p11 = a1 * b1;
    uint64_t mid = (p00 >> 32) + (uint32_t)p01 + (uint32_t)p10;
    return p11 + (p01 >> 32) + (p10 >> 32) + (mid >> 32);
}

/* Uniforms in [0, 1) with every value a multiple of 2^-24 (float) or 2^-53 (double), so
 * the conversion is exact and 1 is never reached. */
static inline double philox_unit24(uint32_t x) { return (double)(x >> 8) * 0x1p-24; }
static inline double philox_unit53(uint64_t x) { return (double)(x >> 11) * 0x1p-53; }

/* Elements per block: 4 for the draws of 32 bits (float32 uniform and normal), 2 for
 * those of 64 bits (float64 uniform and normal, integers, bernoulli). */
static inline int philox_per_block(int dist, int is_double) {
    return (dist == LUNAR_RANDOM_UNIFORM || dist == LUNAR_RANDOM_NORMAL) && !is_double ? 4 : 2;
}

#endif
