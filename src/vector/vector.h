/*
 * vector.h - the vector index the memory and storage managers retrieve with: cosine
 * similarity over L2-normalised float vectors, keyed by a 64-bit label.
 *
 * Approximate search is hnswlib's HNSW graph (Debian's libhnswlib-dev, header-only C++,
 * behind the thin shim in vector.cpp); exact search scans every live vector with
 * hnswlib's own SIMD distance and is the reference the benchmark measures recall against.
 * Below `exact_below` live vectors a search is always exact: it is both cheaper and
 * perfect there. Thread-safe: searches run concurrently, writes are exclusive.
 */
#ifndef AIOS_VECTOR_H
#define AIOS_VECTOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct vec_index vec_index;

typedef struct vec_index_params {
    int dim;             /* vector length */
    int m;               /* HNSW links per node (16) */
    int ef_construction; /* HNSW build beam (200) */
    int ef_search;       /* HNSW search beam (raised to k when k is larger) */
    int exact_below;     /* live vectors under which every search is exact */
    size_t capacity;     /* initial capacity; the index doubles when full */
} vec_index_params;

vec_index_params vec_index_default_params(int dim);
/* NULL on allocation failure. */
vec_index *vec_index_new(const vec_index_params *p);
void vec_index_free(vec_index *ix); /* accepts NULL */
/* Inserts or replaces the vector of `label` (v has dim floats, normalised by the caller).
 * AIOS_OK or AIOS_ERR_NOMEM. */
int vec_index_put(vec_index *ix, uint64_t label, const float *v);
/* Removes `label`; AIOS_ERR_NOT_FOUND when absent. */
int vec_index_remove(vec_index *ix, uint64_t label);
size_t vec_index_count(const vec_index *ix);
/* Up to k nearest labels to q, best first, with cosine similarity in scores (either
 * output may be NULL). exact=true forces the full scan. Returns how many were found. */
int vec_index_search(vec_index *ix, const float *q, int k, bool exact, uint64_t *labels, float *scores);
/* L2-normalises v in place (a zero vector stays zero). */
void vec_normalize(float *v, int dim);

#ifdef __cplusplus
}
#endif
#endif
