/*
 * vector.cpp - the C shim over hnswlib (vector.h). The only C++ in the kernel: it keeps
 * hnswlib's exceptions and templates on this side of an extern "C" API, turning every
 * exception into a result code. Inner-product space on normalised vectors = cosine.
 *
 * An index starts flat: its vectors in one array, searched by a full scan with hnswlib's
 * SIMD distance. Only when it reaches `exact_below` live vectors, where a scan stops being
 * the cheaper search, is the HNSW graph built from them. A graph costs ~2.6 MB before its
 * first point (hnswlib allocates 65,536 update locks) and an ef_construction beam per
 * insert, which thousands of agents with a few memories each would pay for nothing: the
 * search below `exact_below` is the scan anyway. A graph whose live vectors fall under
 * half of `exact_below` turns flat again.
 *
 * hnswlib 0.6 cannot reuse the slots of deleted points, so once more than half of the
 * graph is deleted (and it is big enough to matter) the shim rebuilds it from the live
 * vectors, which bounds memory under churn.
 */
#include <hnswlib/hnswlib.h>
#include <algorithm>
#include <cmath>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <unordered_map>
#include <vector>
#include "vector.h"
#include "aios/result.h"

typedef hnswlib::HierarchicalNSW<float> graph;

/* The flat form: vectors packed in slot order, a slot per label (removal moves the last
 * slot into the hole). */
struct flat_set {
    std::vector<float> data;
    std::vector<uint64_t> labels;
    std::unordered_map<uint64_t, size_t> slot;
};

struct vec_index {
    vec_index_params p;
    std::unique_ptr<hnswlib::InnerProductSpace> space;
    std::unique_ptr<graph> hnsw; /* NULL while flat */
    flat_set flat;
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

static std::unique_ptr<graph> make_graph(vec_index *ix, size_t cap) {
    auto g = std::make_unique<graph>(ix->space.get(), cap, (size_t)ix->p.m, (size_t)ix->p.ef_construction);
    g->setEf((size_t)ix->p.ef_search);
    return g;
}

static bool wants_graph(const vec_index *ix, size_t live) { return live >= (size_t)ix->p.exact_below; }

extern "C" vec_index *vec_index_new(const vec_index_params *p) {
    try {
        auto ix = new vec_index;
        ix->p = *p;
        if (ix->p.capacity < 16) ix->p.capacity = 16;
        if (ix->p.exact_below < 0) ix->p.exact_below = 0;
        ix->space = std::make_unique<hnswlib::InnerProductSpace>((size_t)p->dim);
        if (wants_graph(ix, 0)) ix->hnsw = make_graph(ix, ix->p.capacity);
        return ix;
    } catch (...) {
        return nullptr;
    }
}

extern "C" void vec_index_free(vec_index *ix) { delete ix; }

/* ---------- flat form (the caller holds the write lock for changes) ---------- */

static const float *flat_at(const vec_index *ix, size_t i) { return ix->flat.data.data() + i * (size_t)ix->p.dim; }

/* Appends label's vector in a new slot (f has room reserved for it). */
static void flat_append(flat_set &f, uint64_t label, const float *v, size_t dim) {
    f.slot.emplace(label, f.labels.size());
    f.data.insert(f.data.end(), v, v + dim);
    f.labels.push_back(label);
}

static void flat_put(vec_index *ix, uint64_t label, const float *v) {
    flat_set &f = ix->flat;
    size_t dim = (size_t)ix->p.dim;
    auto it = f.slot.find(label);
    if (it != f.slot.end()) {
        std::copy(v, v + dim, f.data.begin() + (std::ptrdiff_t)(it->second * dim));
        return;
    }
    if (f.labels.size() == f.labels.capacity()) { /* grows by doubling; every throw comes before a change */
        size_t n = f.labels.empty() ? 16 : f.labels.size() * 2;
        f.data.reserve(n * dim);
        f.labels.reserve(n);
    }
    flat_append(f, label, v, dim);
    ix->live++;
}

static bool flat_remove(vec_index *ix, uint64_t label) {
    flat_set &f = ix->flat;
    auto it = f.slot.find(label);
    if (it == f.slot.end()) return false;
    size_t i = it->second, last = f.labels.size() - 1, dim = (size_t)ix->p.dim;
    f.slot.erase(it);
    if (i != last) {
        std::copy(f.data.begin() + (std::ptrdiff_t)(last * dim), f.data.end(), f.data.begin() + (std::ptrdiff_t)(i * dim));
        f.labels[i] = f.labels[last];
        f.slot[f.labels[i]] = i;
    }
    f.data.resize(last * dim);
    f.labels.pop_back();
    ix->live--;
    return true;
}

/* ---------- graph form ---------- */

/* The label lookups below run under ix->mu (writes are exclusive), which is all the
 * locking hnswlib 0.6's label table needs. */
static bool has_label(const graph &g, uint64_t label) { return g.label_lookup_.count((hnswlib::labeltype)label) > 0; }

static bool is_live(const graph &g, uint64_t label) {
    auto it = g.label_lookup_.find((hnswlib::labeltype)label);
    return it != g.label_lookup_.end() && !g.isMarkedDeleted(it->second);
}

/* Calls fn(vector, label) for every live vector, in either form. */
template <typename Fn> static void each_live(const vec_index *ix, Fn fn) {
    if (!ix->hnsw) {
        for (size_t i = 0; i < ix->flat.labels.size(); i++) fn(flat_at(ix, i), ix->flat.labels[i]);
        return;
    }
    const graph &g = *ix->hnsw;
    for (size_t i = 0; i < g.cur_element_count; i++)
        if (!g.isMarkedDeleted((hnswlib::tableint)i))
            fn((const float *)g.getDataByInternalId((hnswlib::tableint)i), (uint64_t)g.getExternalLabel((hnswlib::tableint)i));
}

/* Rebuilds the index from its live vectors: a fresh graph, or the flat form when few are
 * left (caller holds the write lock). Out of memory, the index stays as it was (still
 * whole and searchable) and the next change tries again. */
static void rebuild_as(vec_index *ix, bool as_graph) {
    if (as_graph) {
        size_t cap = ix->live * 2 > ix->p.capacity ? ix->live * 2 : ix->p.capacity;
        auto g = make_graph(ix, cap);
        each_live(ix, [&](const float *v, uint64_t label) { g->addPoint(v, (hnswlib::labeltype)label); });
        ix->hnsw = std::move(g);
        ix->flat = flat_set();
    } else {
        flat_set f;
        f.data.reserve(ix->live * (size_t)ix->p.dim);
        f.labels.reserve(ix->live);
        each_live(ix, [&](const float *v, uint64_t label) { flat_append(f, label, v, (size_t)ix->p.dim); });
        ix->flat = std::move(f);
        ix->hnsw.reset();
    }
    ix->deleted = 0;
}

static void rebuild(vec_index *ix, bool as_graph) noexcept {
    try {
        rebuild_as(ix, as_graph);
    } catch (...) {}
}

static void graph_put(vec_index *ix, uint64_t label, const float *v) {
    graph &g = *ix->hnsw;
    bool existed = has_label(g, label), was_live = existed && is_live(g, label);
    if (!existed && g.cur_element_count >= g.max_elements_) g.resizeIndex(g.max_elements_ * 2);
    g.addPoint(v, (hnswlib::labeltype)label);
    if (!was_live) ix->live++;
    if (existed && !was_live) ix->deleted--;
}

static bool graph_remove(vec_index *ix, uint64_t label) {
    if (!is_live(*ix->hnsw, label)) return false;
    ix->hnsw->markDelete((hnswlib::labeltype)label);
    ix->live--;
    ix->deleted++;
    if (ix->live * 2 < (size_t)ix->p.exact_below) rebuild(ix, false);
    else if (ix->deleted > 4096 && ix->deleted > ix->live) rebuild(ix, true);
    return true;
}

extern "C" int vec_index_put(vec_index *ix, uint64_t label, const float *v) {
    std::unique_lock<std::shared_mutex> lk(ix->mu);
    try {
        if (ix->hnsw) {
            graph_put(ix, label, v);
            return AIOS_OK;
        }
        flat_put(ix, label, v);
        if (wants_graph(ix, ix->live)) rebuild(ix, true);
        return AIOS_OK;
    } catch (...) {
        return AIOS_ERR_NOMEM;
    }
}

extern "C" int vec_index_remove(vec_index *ix, uint64_t label) {
    std::unique_lock<std::shared_mutex> lk(ix->mu);
    try {
        bool found = ix->hnsw ? graph_remove(ix, label) : flat_remove(ix, label);
        return found ? AIOS_OK : AIOS_ERR_NOT_FOUND;
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
    auto dist = ix->space->get_dist_func();
    void *param = ix->space->get_dist_func_param();
    knn_heap top;
    each_live(ix, [&](const float *v, uint64_t label) {
        float d = dist(q, v, param);
        if (top.size() < k) top.emplace(d, (hnswlib::labeltype)label);
        else if (d < top.top().first) {
            top.pop();
            top.emplace(d, (hnswlib::labeltype)label);
        }
    });
    return top;
}

extern "C" int vec_index_search(vec_index *ix, const float *q, int k, bool exact, uint64_t *labels, float *scores) {
    if (k <= 0) return 0;
    std::shared_lock<std::shared_mutex> lk(ix->mu);
    try {
        knn_heap top;
        if (exact || !ix->hnsw || ix->live < (size_t)ix->p.exact_below) {
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
