/*
 * alloc.c - the host caching allocator and live-byte accounting.
 *
 * Freed blocks go to a free list per size class (powers of two from 64 bytes), so the
 * steady state of a training loop allocates nothing from the system. Live bytes count
 * what tensors hold; the Lua binding reads them to decide when to run the collector,
 * because Lua's GC cannot see memory behind a userdata pointer.
 */
#include "lunar-impl.h"

#include <stdlib.h>
#include <string.h>

#define N_CLASSES 48
#define CACHE_LIMIT ((int64_t)1 << 30) /* bytes kept in the free lists at most */

typedef struct block {
    struct block *next;
} block;

static block *free_lists[N_CLASSES];
static int64_t live_bytes, cached_bytes;

void (*lunar_oom_handler)(void);

static int size_class(size_t n, size_t *rounded) {
    int c = 0;
    size_t s = 64;
    while (s < n) {
        s <<= 1;
        c++;
    }
    *rounded = s;
    return c;
}

static void *system_alloc(size_t n) {
    void *p = aligned_alloc(64, n);
    if (!p && lunar_oom_handler) {
        lunar_empty_cache();
        lunar_oom_handler();
        p = aligned_alloc(64, n);
    }
    return p;
}

void *lunar_host_alloc(size_t nbytes) {
    size_t rounded;
    if (nbytes == 0) nbytes = 1;
    int c = size_class(nbytes, &rounded);
    void *p;
    if (c < N_CLASSES && free_lists[c]) {
        block *b = free_lists[c];
        free_lists[c] = b->next;
        cached_bytes -= (int64_t)rounded;
        p = b;
    } else {
        p = system_alloc(rounded);
        if (!p) return NULL;
    }
    live_bytes += (int64_t)rounded;
    return p;
}

void lunar_host_free(void *p, size_t nbytes) {
    if (!p) return;
    size_t rounded;
    if (nbytes == 0) nbytes = 1;
    int c = size_class(nbytes, &rounded);
    live_bytes -= (int64_t)rounded;
#ifdef LUNAR_SANITIZE
    /* no reuse under the sanitizers: a use after free must reach ASan */
    if (0) {
#else
    if (c < N_CLASSES && cached_bytes + (int64_t)rounded <= CACHE_LIMIT) {
#endif
        block *b = p;
        b->next = free_lists[c];
        free_lists[c] = b;
        cached_bytes += (int64_t)rounded;
    } else {
        free(p);
    }
}

void lunar_empty_cache(void) {
    for (int c = 0; c < N_CLASSES; c++) {
        while (free_lists[c]) {
            block *b = free_lists[c];
            free_lists[c] = b->next;
            free(b);
        }
    }
    cached_bytes = 0;
}

void lunar_live_bytes_add(int64_t delta) { live_bytes += delta; }
int64_t lunar_live_bytes(void) { return live_bytes; }
int64_t lunar_cached_bytes(void) { return cached_bytes; }
