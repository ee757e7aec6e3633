/*
 * maps.c - two small open-addressing hash maps the managers index their objects with
 * (kernel.h): u64map (integer keys, e.g. memory row ids) and strmap (string keys, e.g.
 * agent names). Linear probing with backward-shift deletion, so there are no tombstones
 * and lookups stay short however many deletes happen; the table doubles at 70% load.
 * Neither map owns its values; strmap owns a copy of each key.
 */
#include <stdlib.h>
#include <string.h>
#include "kernel.h"

static uint64_t mix64(uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    return x ^ (x >> 33);
}

static uint64_t str_hash(const char *s) {
    uint64_t h = 1469598103934665603ULL;
    while (*s) h = (h ^ (unsigned char)*s++) * 1099511628211ULL;
    return mix64(h);
}

/* ---- shared probing over a slot array: slot i is used when used[i] ---- */

typedef struct probe_ops {
    uint64_t (*hash_at)(const void *map, size_t i);
    void (*move)(void *map, size_t to, size_t from);
} probe_ops;

/* Backward-shift delete of slot i in a table of `cap` slots (cap a power of two). */
static void shift_delete(void *map, bool *used, size_t cap, size_t i, const probe_ops *ops) {
    size_t mask = cap - 1, j = i;
    used[i] = false;
    for (;;) {
        j = (j + 1) & mask;
        if (!used[j]) return;
        size_t home = ops->hash_at(map, j) & mask;
        /* can the entry at j move back to i?  yes unless its home lies cyclically in (i, j] */
        bool stays = i <= j ? (home > i && home <= j) : (home > i || home <= j);
        if (stays) continue;
        ops->move(map, i, j);
        used[i] = true;
        used[j] = false;
        i = j;
    }
}

/* ---------- u64map ---------- */

static uint64_t u64_hash_at(const void *m, size_t i) { return mix64(((const u64map *)m)->keys[i]); }
static void u64_move(void *mp, size_t to, size_t from) {
    u64map *m = mp;
    m->keys[to] = m->keys[from];
    m->vals[to] = m->vals[from];
}
static const probe_ops U64_OPS = {u64_hash_at, u64_move};

void u64map_init(u64map *m) { memset(m, 0, sizeof *m); }

void u64map_free(u64map *m) {
    free(m->keys);
    free(m->vals);
    free(m->used);
    memset(m, 0, sizeof *m);
}

static size_t u64_find(const u64map *m, uint64_t key, bool *found) {
    size_t mask = m->cap - 1, i = mix64(key) & mask;
    while (m->used[i] && m->keys[i] != key) i = (i + 1) & mask;
    *found = m->used[i];
    return i;
}

void *u64map_get(const u64map *m, uint64_t key) {
    if (!m->cap) return NULL;
    bool found;
    size_t i = u64_find(m, key, &found);
    return found ? m->vals[i] : NULL;
}

static int u64_grow(u64map *m) {
    u64map n = {0};
    n.cap = m->cap ? m->cap * 2 : 16;
    n.keys = malloc(n.cap * sizeof *n.keys);
    n.vals = malloc(n.cap * sizeof *n.vals);
    n.used = calloc(n.cap, sizeof *n.used);
    if (!n.keys || !n.vals || !n.used) {
        u64map_free(&n);
        return AIOS_ERR_NOMEM;
    }
    for (size_t i = 0; i < m->cap; i++)
        if (m->used[i]) u64map_put(&n, m->keys[i], m->vals[i]);
    u64map_free(m);
    *m = n;
    return AIOS_OK;
}

int u64map_put(u64map *m, uint64_t key, void *val) {
    if ((m->len + 1) * 10 > m->cap * 7 && u64_grow(m)) return AIOS_ERR_NOMEM;
    bool found;
    size_t i = u64_find(m, key, &found);
    if (!found) m->len++;
    m->used[i] = true;
    m->keys[i] = key;
    m->vals[i] = val;
    return AIOS_OK;
}

void *u64map_del(u64map *m, uint64_t key) {
    if (!m->cap) return NULL;
    bool found;
    size_t i = u64_find(m, key, &found);
    if (!found) return NULL;
    void *v = m->vals[i];
    shift_delete(m, m->used, m->cap, i, &U64_OPS);
    m->len--;
    return v;
}

/* ---------- strmap ---------- */

static uint64_t str_hash_at(const void *m, size_t i) { return ((const strmap *)m)->hashes[i]; }
static void str_move(void *mp, size_t to, size_t from) {
    strmap *m = mp;
    m->keys[to] = m->keys[from];
    m->vals[to] = m->vals[from];
    m->hashes[to] = m->hashes[from];
}
static const probe_ops STR_OPS = {str_hash_at, str_move};

void strmap_init(strmap *m) { memset(m, 0, sizeof *m); }

void strmap_free(strmap *m) {
    for (size_t i = 0; i < m->cap; i++)
        if (m->used && m->used[i]) free(m->keys[i]); /* (a half-made map: see str_grow) */
    free(m->keys);
    free(m->vals);
    free(m->hashes);
    free(m->used);
    memset(m, 0, sizeof *m);
}

static size_t str_find(const strmap *m, const char *key, uint64_t h, bool *found) {
    size_t mask = m->cap - 1, i = h & mask;
    while (m->used[i] && (m->hashes[i] != h || strcmp(m->keys[i], key))) i = (i + 1) & mask;
    *found = m->used[i];
    return i;
}

void *strmap_get(const strmap *m, const char *key) {
    if (!m->cap) return NULL;
    bool found;
    size_t i = str_find(m, key, str_hash(key), &found);
    return found ? m->vals[i] : NULL;
}

static int str_grow(strmap *m) {
    strmap n = {0};
    n.cap = m->cap ? m->cap * 2 : 16;
    n.keys = malloc(n.cap * sizeof *n.keys);
    n.vals = malloc(n.cap * sizeof *n.vals);
    n.hashes = malloc(n.cap * sizeof *n.hashes);
    n.used = calloc(n.cap, sizeof *n.used);
    if (!n.keys || !n.vals || !n.hashes || !n.used) {
        strmap_free(&n);
        return AIOS_ERR_NOMEM;
    }
    size_t mask = n.cap - 1;
    for (size_t i = 0; i < m->cap; i++) {
        if (!m->used[i]) continue;
        size_t j = m->hashes[i] & mask;
        while (n.used[j]) j = (j + 1) & mask;
        n.used[j] = true;
        n.keys[j] = m->keys[i];
        n.vals[j] = m->vals[i];
        n.hashes[j] = m->hashes[i];
    }
    n.len = m->len;
    free(m->keys);
    free(m->vals);
    free(m->hashes);
    free(m->used);
    *m = n;
    return AIOS_OK;
}

int strmap_put(strmap *m, const char *key, void *val) {
    if ((m->len + 1) * 10 > m->cap * 7 && str_grow(m)) return AIOS_ERR_NOMEM;
    uint64_t h = str_hash(key);
    bool found;
    size_t i = str_find(m, key, h, &found);
    if (!found) {
        char *k = strdup(key);
        if (!k) return AIOS_ERR_NOMEM;
        m->keys[i] = k;
        m->hashes[i] = h;
        m->used[i] = true;
        m->len++;
    }
    m->vals[i] = val;
    return AIOS_OK;
}

void *strmap_del(strmap *m, const char *key) {
    if (!m->cap) return NULL;
    bool found;
    size_t i = str_find(m, key, str_hash(key), &found);
    if (!found) return NULL;
    void *v = m->vals[i];
    free(m->keys[i]);
    shift_delete(m, m->used, m->cap, i, &STR_OPS);
    m->len--;
    return v;
}

void strmap_foreach(const strmap *m, void (*fn)(const char *key, void *val, void *ctx), void *ctx) {
    for (size_t i = 0; i < m->cap; i++)
        if (m->used[i]) fn(m->keys[i], m->vals[i], ctx);
}
