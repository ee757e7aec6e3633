/*
 * test_vector.c - unit tests of the vector index shim: exact search order and scores,
 * replace and remove in both forms (flat and graph), growth past the initial capacity, the
 * flat form becoming a graph at exact_below and flat again under half of it with every
 * vector kept, compaction under churn, and HNSW recall@10 against the exact scan on random
 * unit vectors.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "vector/vector.h"
#include "aios/result.h"

#define DIM 32

static void rand_vec(float *v, unsigned *seed) {
    for (int i = 0; i < DIM; i++) v[i] = (float)rand_r(seed) / (float)RAND_MAX - 0.5f;
    vec_normalize(v, DIM);
}

static void exact_basics(int exact_below) {
    vec_index_params p = vec_index_default_params(DIM);
    p.capacity = 16;
    p.exact_below = exact_below;
    vec_index *ix = vec_index_new(&p);
    assert_non_null(ix);
    float v[DIM] = {0}, q[DIM] = {0};
    for (int i = 0; i < 100; i++) { /* past the capacity: the index grows */
        memset(v, 0, sizeof v);
        v[i % DIM] = 1.0f;
        v[(i + 1) % DIM] = (float)i / 100.0f;
        vec_normalize(v, DIM);
        assert_int_equal(vec_index_put(ix, (uint64_t)i + 1, v), AIOS_OK);
    }
    assert_int_equal(vec_index_count(ix), 100);
    q[0] = 1.0f;
    uint64_t labels[100];
    float scores[100];
    int n = vec_index_search(ix, q, 5, true, labels, scores);
    assert_int_equal(n, 5);
    assert_int_equal(labels[0], 1); /* i = 0: v = e0 exactly */
    assert_true(fabsf(scores[0] - 1.0f) < 1e-5f);
    for (int i = 1; i < n; i++) assert_true(scores[i] <= scores[i - 1]);
    /* replace label 1 by something far, then remove the next best */
    memset(v, 0, sizeof v);
    v[20] = 1.0f;
    assert_int_equal(vec_index_put(ix, 1, v), AIOS_OK);
    assert_int_equal(vec_index_count(ix), 100);
    n = vec_index_search(ix, q, 1, true, labels, scores);
    assert_int_equal(n, 1);
    assert_int_not_equal(labels[0], 1);
    uint64_t second = labels[0];
    assert_int_equal(vec_index_remove(ix, second), AIOS_OK);
    assert_int_equal(vec_index_remove(ix, second), AIOS_ERR_NOT_FOUND);
    assert_int_equal(vec_index_count(ix), 99);
    n = vec_index_search(ix, q, 100, true, labels, NULL);
    assert_int_equal(n, 99);
    for (int i = 0; i < n; i++) assert_int_not_equal(labels[i], second);
    vec_index_free(ix);
}

static void test_exact_basics_flat(void **st) {
    (void)st;
    exact_basics(2048);
}

static void test_exact_basics_graph(void **st) {
    (void)st;
    exact_basics(0);
}

/* The label nearest to q among labels [lo, hi) of vecs, by brute force. */
static uint64_t nearest(float vecs[][DIM], int lo, int hi, const float *q) {
    uint64_t best = 0;
    float bd = -2;
    for (int i = lo; i < hi; i++) {
        float d = 0;
        for (int j = 0; j < DIM; j++) d += vecs[i][j] * q[j];
        if (d > bd) bd = d, best = (uint64_t)i;
    }
    return best;
}

static void test_flat_to_graph_and_back(void **st) {
    (void)st;
    enum { N = 200, BELOW = 64, Q = 20 };
    static float vecs[N][DIM];
    vec_index_params p = vec_index_default_params(DIM);
    p.exact_below = BELOW;
    vec_index *ix = vec_index_new(&p);
    assert_non_null(ix);
    unsigned seed = 11;
    for (int i = 0; i < N; i++) { /* the graph is built at the 64th */
        rand_vec(vecs[i], &seed);
        assert_int_equal(vec_index_put(ix, (uint64_t)i, vecs[i]), AIOS_OK);
    }
    assert_int_equal(vec_index_count(ix), N);
    float q[DIM];
    uint64_t l[N];
    for (int qi = 0; qi < Q; qi++) {
        rand_vec(q, &seed);
        assert_int_equal(vec_index_search(ix, q, 1, true, l, NULL), 1);
        assert_int_equal(l[0], nearest(vecs, 0, N, q));
    }
    assert_int_equal(vec_index_search(ix, vecs[5], 1, false, l, NULL), 1); /* the graph finds a point itself */
    assert_int_equal(l[0], 5);
    /* down to 20 live (under half of 64: flat again); the rest stay whole and findable */
    for (int i = 0; i < N - 20; i++) assert_int_equal(vec_index_remove(ix, (uint64_t)i), AIOS_OK);
    assert_int_equal(vec_index_count(ix), 20);
    assert_int_equal(vec_index_remove(ix, 0), AIOS_ERR_NOT_FOUND);
    assert_int_equal(vec_index_search(ix, q, N, false, l, NULL), 20);
    for (int i = 0; i < 20; i++) assert_true(l[i] >= N - 20);
    for (int qi = 0; qi < Q; qi++) {
        rand_vec(q, &seed);
        assert_int_equal(vec_index_search(ix, q, 1, false, l, NULL), 1);
        assert_int_equal(l[0], nearest(vecs, N - 20, N, q));
    }
    /* replacing in the flat form keeps the count and moves the vector */
    assert_int_equal(vec_index_put(ix, N - 1, vecs[0]), AIOS_OK);
    assert_int_equal(vec_index_count(ix), 20);
    assert_int_equal(vec_index_search(ix, vecs[0], 1, false, l, NULL), 1);
    assert_int_equal(l[0], N - 1);
    /* and up again past 64: a graph with all of them */
    for (int i = 0; i < 100; i++) assert_int_equal(vec_index_put(ix, (uint64_t)i, vecs[i]), AIOS_OK);
    assert_int_equal(vec_index_count(ix), 120);
    assert_int_equal(vec_index_search(ix, vecs[42], 1, false, l, NULL), 1);
    assert_int_equal(l[0], 42);
    vec_index_free(ix);
}

static void test_hnsw_recall_and_churn(void **st) {
    (void)st;
    vec_index_params p = vec_index_default_params(DIM);
    p.exact_below = 0; /* always the graph */
    vec_index *ix = vec_index_new(&p);
    unsigned seed = 7;
    float v[DIM];
    enum { N = 5000, Q = 50, K = 10 };
    for (int i = 0; i < N; i++) {
        rand_vec(v, &seed);
        assert_int_equal(vec_index_put(ix, (uint64_t)i, v), AIOS_OK);
    }
    /* churn: remove 4500 (compaction kicks in), the rest must stay findable */
    for (int i = 0; i < 4500; i++) assert_int_equal(vec_index_remove(ix, (uint64_t)i), AIOS_OK);
    assert_int_equal(vec_index_count(ix), 500);
    for (int i = 5000; i < 9500; i++) {
        rand_vec(v, &seed);
        assert_int_equal(vec_index_put(ix, (uint64_t)i, v), AIOS_OK);
    }
    assert_int_equal(vec_index_count(ix), 5000);
    int hit = 0;
    for (int qi = 0; qi < Q; qi++) {
        rand_vec(v, &seed);
        uint64_t a[K], b[K];
        int na = vec_index_search(ix, v, K, false, a, NULL);
        int nb = vec_index_search(ix, v, K, true, b, NULL);
        assert_int_equal(na, K);
        assert_int_equal(nb, K);
        for (int i = 0; i < K; i++) {
            assert_true(b[i] >= 4500);
            for (int j = 0; j < K; j++) hit += a[i] == b[j];
        }
    }
    double recall = (double)hit / (Q * K);
    print_message("hnsw recall@10 on 5000 random %d-d vectors after churn: %.3f\n", DIM, recall);
    assert_true(recall >= 0.9);
    vec_index_free(ix);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exact_basics_flat),
        cmocka_unit_test(test_exact_basics_graph),
        cmocka_unit_test(test_flat_to_graph_and_back),
        cmocka_unit_test(test_hnsw_recall_and_churn),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
