/*
 * vector.cpp - the C shim over hnswlib (vector.h). The only C++ in the kernel: it keeps
 * hnswlib's exceptions and templates on this side of an extern "C" API, turning every
 * exception into a result code. Inner-product space on normalised vectors = cosine.
 *
 * hnswlib 0.6 cannot reuse the slots of deleted points, so once more than half of the
 * graph is deleted (and it is big enough to matter) the shim rebuilds it from the live
 * vectors, which bounds memory under churn.
 */
#include <hnswlib/hnswlib.h>
#include <cmath>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <vector>
#include "vector.h"
#include "aios/result.h"

struct vec_index {
    vec_index_params p;
    std::unique_ptr<hnswlib::InnerProductSpace> space;
    std::unique_ptr<hnswlib::HierarchicalNSW<float>> hnsw;
    size_t live = 0, deleted = 0;
    mutable std::shared_mutex mu;
};

extern "C" vec_index_params vec_index_default_params(int dim) {
    vec_index_params p;
    p.dim = dim;
    p.m = 16;
    p.ef_construction = 200;
    p.ef_search = 96;
    p.exact_below = 2048;
    p.capacity = 1024;
    return p;
}

static std::unique_ptr<hnswlib::HierarchicalNSW<float>> make_graph(vec_index *ix, size_t cap) {
    auto g =
        std::make_unique<hnswlib::HierarchicalNSW<float>>(ix->space.get(), cap, (size_t)ix->p.m, (size_t)ix->p.ef_construction);
    g->setEf((size_t)ix->p.ef_search);
    return g;
}

extern "C" vec_index *vec_index_new(const vec_index_params *p) {
    try {
        auto ix = new vec_index;
        ix->p = *p;
        if (ix->p.capacity < 16) ix->p.capacity = 16;
        ix->space = std::make_unique<hnswlib::InnerProductSpace>((size_t)p->dim);
        ix->hnsw = make_graph(ix, ix->p.capacity);
        return ix;
    } catch (...) {
        return nullptr;
    }
}

extern "C" void vec_index_free(vec_index *ix) { delete ix; }

/* The label lookups below run under ix->mu (writes are exclusive), which is all the
 * locking hnswlib 0.6's label table needs. */
static bool has_label(const hnswlib::HierarchicalNSW<float> &g, uint64_t label) {
    return g.label_lookup_.count((hnswlib::labeltype)label) > 0;
}

static bool is_live(const hnswlib::HierarchicalNSW<float> &g, uint64_t label) {
    auto it = g.label_lookup_.find((hnswlib::labeltype)label);
    return it != g.label_lookup_.end() && !g.isMarkedDeleted(it->second);
}

/* Rebuilds the graph from its live points (caller holds the write lock). */
static void compact(vec_index *ix) {
    auto &old = *ix->hnsw;
    size_t cap = ix->live * 2 > ix->p.capacity ? ix->live * 2 : ix->p.capacity;
    auto g = make_graph(ix, cap);
    for (size_t i = 0; i < old.cur_element_count; i++)
        if (!old.isMarkedDeleted((hnswlib::tableint)i))
            g->addPoint(old.getDataByInternalId((hnswlib::tableint)i), old.getExternalLabel((hnswlib::tableint)i));
    ix->hnsw = std::move(g);
    ix->deleted = 0;
}

extern "C" int vec_index_put(vec_index *ix, uint64_t label, const float *v) {
    std::unique_lock<std::shared_mutex> lk(ix->mu);
    try {
        bool existed = has_label(*ix->hnsw, label), was_live = existed && is_live(*ix->hnsw, label);
        if (!existed && ix->hnsw->cur_element_count >= ix->hnsw->max_elements_)
            ix->hnsw->resizeIndex(ix->hnsw->max_elements_ * 2);
        ix->hnsw->addPoint(v, (hnswlib::labeltype)label);
        if (!was_live) ix->live++;
        if (existed && !was_live) ix->deleted--;
        return AIOS_OK;
    } catch (...) {
        return AIOS_ERR_NOMEM;
    }
}

extern "C" int vec_index_remove(vec_index *ix, uint64_t label) {
    std::unique_lock<std::shared_mutex> lk(ix->mu);
    if (!is_live(*ix->hnsw, label)) return AIOS_ERR_NOT_FOUND;
    try {
        ix->hnsw->markDelete((hnswlib::labeltype)label);
        ix->live--;
        ix->deleted++;
        if (ix->deleted > 4096 && ix->deleted > ix->live) compact(ix);
        return AIOS_OK;
    } catch (...) {
        return AIOS_ERR_NOMEM;
    }
}

extern "C" size_t vec_index_count(const vec_index *ix) {
    std::shared_lock<std::shared_mutex> lk(ix->mu);
    return ix->live;
}

typedef std::priority_queue<std::pair<float, hnswlib::labeltype>> knn_heap; /* max-heap by distance */

static knn_heap scan(const vec_index *ix, const float *q, size_t k) {
    const auto &g = *ix->hnsw;
    knn_heap top;
    for (size_t i = 0; i < g.cur_element_count; i++) {
        if (g.isMarkedDeleted((hnswlib::tableint)i)) continue;
        float d = g.fstdistfunc_(q, g.getDataByInternalId((hnswlib::tableint)i), g.dist_func_param_);
        if (top.size() < k) top.emplace(d, g.getExternalLabel((hnswlib::tableint)i));
        else if (d < top.top().first) {
            top.pop();
            top.emplace(d, g.getExternalLabel((hnswlib::tableint)i));
        }
    }
    return top;
}

extern "C" int vec_index_search(vec_index *ix, const float *q, int k, bool exact, uint64_t *labels, float *scores) {
    if (k <= 0) return 0;
    std::shared_lock<std::shared_mutex> lk(ix->mu);
    try {
        knn_heap top;
        if (exact || ix->live < (size_t)ix->p.exact_below) {
            top = scan(ix, q, (size_t)k);
        } else {
            top = ix->hnsw->searchKnn(q, (size_t)k);
        }
        int n = (int)top.size();
        for (int i = n - 1; i >= 0; i--) { /* the heap pops worst first */
            if (labels) labels[i] = (uint64_t)top.top().second;
            if (scores) scores[i] = 1.0f - top.top().first;
            top.pop();
        }
        return n;
    } catch (...) {
        return 0;
    }
}

extern "C" void vec_normalize(float *v, int dim) {
    double s = 0;
    for (int i = 0; i < dim; i++) s += (double)v[i] * v[i];
    if (s <= 0) return;
    float inv = (float)(1.0 / std::sqrt(s));
    for (int i = 0; i < dim; i++) v[i] *= inv;
}
