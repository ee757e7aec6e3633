/*
 * ctx.c - snapshot store: RAM up to a budget, then spill files, oldest first (ctx.h).
 * Snapshots sit on one list in put order; a spill walks it from the oldest RAM snapshot.
 * Spill files are named by a store-wide counter and removed when their snapshot is freed.
 * Freed snapshot buffers are kept (a few, within what the RAM budget leaves free) and
 * reused: a fresh multi-megabyte malloc is an mmap whose page faults cost more than the
 * copy of the KV itself.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "ctx.h"

struct ctx_snap {
    ctx_store *st;
    void *data;                 /* in RAM, or NULL when spilled */
    size_t n, cap;              /* bytes used, bytes allocated */
    unsigned long long file_id; /* spill file, 0 = none */
    struct ctx_snap *prev, *next;
};

#define CTX_SPARES 4
#define CTX_SPARE_MAX_BYTES ((size_t)256 << 20)

struct ctx_store {
    pthread_mutex_t mu;
    char dir[AIOS_PATH_MAX];
    size_t ram_budget, disk_budget;
    ctx_snap *head, *tail; /* put order */
    struct {
        void *p;
        size_t cap;
    } spare[CTX_SPARES]; /* freed buffers kept for reuse */
    int n_spare;
    size_t spare_bytes;
    unsigned long long next_file;
    ctx_store_stats st;
    atomic_int refs;
};

ctx_store_params ctx_store_default_params(void) {
    return (ctx_store_params){.dir = NULL, .ram_budget = (size_t)1024 << 20, .disk_budget = (size_t)8192 << 20};
}

static int mkdirs(const char *path) {
    char tmp[AIOS_PATH_MAX];
    snprintf(tmp, sizeof tmp, "%s", path);
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/') continue;
        *p = 0;
        if (mkdir(tmp, 0700) && errno != EEXIST) return -1;
        *p = '/';
    }
    return mkdir(tmp, 0700) && errno != EEXIST ? -1 : 0;
}

/* Removes dir's spill files, then dir itself. */
static void remove_spill_dir(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *de;
    char path[AIOS_PATH_MAX + 300];
    while ((de = readdir(d))) {
        size_t l = strlen(de->d_name);
        if (strncmp(de->d_name, "snap-", 5) || l < 4 || strcmp(de->d_name + l - 3, ".kv")) continue;
        snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
        unlink(path);
    }
    closedir(d);
    rmdir(dir);
}

/* Each process spills under parent/<pid>; the directories of processes that are gone
 * (killed before they could clean up) hold dead snapshots and are removed. */
static void remove_dead_siblings(const char *parent) {
    DIR *d = opendir(parent);
    if (!d) return;
    struct dirent *de;
    char path[AIOS_PATH_MAX + 300];
    while ((de = readdir(d))) {
        char *end;
        long pid = strtol(de->d_name, &end, 10);
        if (end == de->d_name || *end || pid <= 0 || pid == (long)getpid()) continue;
        if (kill((pid_t)pid, 0) == 0 || errno != ESRCH) continue;
        snprintf(path, sizeof path, "%s/%s", parent, de->d_name);
        remove_spill_dir(path);
    }
    closedir(d);
}

ctx_store *ctx_store_new(const ctx_store_params *p, char *err, size_t errlen) {
    if (!p->dir || !*p->dir || strlen(p->dir) >= AIOS_PATH_MAX - 64) {
        snprintf(err, errlen, "context: a data directory is needed for snapshot files");
        return NULL;
    }
    char dir[AIOS_PATH_MAX];
    snprintf(dir, sizeof dir, "%s/%ld", p->dir, (long)getpid());
    if (mkdirs(dir)) {
        snprintf(err, errlen, "context: cannot create %s: %s", dir, strerror(errno));
        return NULL;
    }
    remove_dead_siblings(p->dir);
    ctx_store *st = calloc(1, sizeof *st);
    if (!st) return NULL;
    snprintf(st->dir, sizeof st->dir, "%s", dir);
    st->ram_budget = p->ram_budget;
    st->disk_budget = p->disk_budget;
    pthread_mutex_init(&st->mu, NULL);
    atomic_init(&st->refs, 1);
    return st;
}

static void store_unref(ctx_store *st) {
    if (atomic_fetch_sub(&st->refs, 1) != 1) return;
    remove_spill_dir(st->dir);
    for (int i = 0; i < st->n_spare; i++) free(st->spare[i].p);
    pthread_mutex_destroy(&st->mu);
    free(st);
}

void ctx_store_release(ctx_store *st) {
    if (st) store_unref(st);
}

static void file_path(const ctx_store *st, unsigned long long id, char *out, size_t outlen) {
    snprintf(out, outlen, "%s/snap-%llu.kv", st->dir, id);
}

static int write_all(int fd, const void *buf, size_t n) {
    const char *p = buf;
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Keeps a freed buffer for reuse if a place is free and the RAM budget has room for it
 * next to the snapshots, else frees it; mu held. */
static void recycle_locked(ctx_store *st, void *p, size_t cap) {
    if (!p) return;
    if (st->n_spare == CTX_SPARES || st->spare_bytes + cap > CTX_SPARE_MAX_BYTES ||
        st->st.ram_bytes + st->spare_bytes + cap > st->ram_budget) {
        free(p);
        return;
    }
    st->spare[st->n_spare].p = p;
    st->spare[st->n_spare++].cap = cap;
    st->spare_bytes += cap;
}

void *ctx_buf_alloc(ctx_store *st, size_t n, size_t *cap) {
    pthread_mutex_lock(&st->mu);
    int best = -1;
    for (int i = 0; i < st->n_spare; i++)
        if (st->spare[i].cap >= n && (best < 0 || st->spare[i].cap < st->spare[best].cap)) best = i;
    void *p = NULL;
    if (best >= 0) {
        p = st->spare[best].p;
        *cap = st->spare[best].cap;
        st->spare_bytes -= *cap;
        st->spare[best] = st->spare[--st->n_spare];
    }
    pthread_mutex_unlock(&st->mu);
    if (!p) { /* with headroom: the next snapshot of a growing sequence still fits it */
        size_t want = (n + n / 4 + ((size_t)1 << 20)) & ~(((size_t)1 << 20) - 1);
        p = malloc(want);
        *cap = want;
    }
    return p;
}

void ctx_buf_free(ctx_store *st, void *buf, size_t cap) {
    pthread_mutex_lock(&st->mu);
    recycle_locked(st, buf, cap);
    pthread_mutex_unlock(&st->mu);
}

/* Moves sn's bytes to a new spill file; mu held. */
static int spill_locked(ctx_store *st, ctx_snap *sn) {
    if (st->st.disk_bytes + sn->n > st->disk_budget) return AIOS_ERR_NOMEM;
    char path[AIOS_PATH_MAX + 64];
    unsigned long long id = ++st->next_file;
    file_path(st, id, path, sizeof path);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        log_warn("context: cannot create %s: %s", path, strerror(errno));
        return AIOS_ERR_IO;
    }
    int bad = write_all(fd, sn->data, sn->n);
    if (close(fd)) bad = -1;
    if (bad) {
        log_warn("context: cannot write %s: %s", path, strerror(errno));
        unlink(path);
        return AIOS_ERR_IO;
    }
    recycle_locked(st, sn->data, sn->cap);
    sn->data = NULL;
    sn->file_id = id;
    st->st.ram_bytes -= sn->n;
    st->st.ram_count--;
    st->st.disk_bytes += sn->n;
    st->st.disk_count++;
    st->st.spills++;
    return AIOS_OK;
}

/* Spills the oldest RAM snapshots until `need` more bytes fit the RAM budget; mu held. */
static int make_ram_room(ctx_store *st, size_t need) {
    for (ctx_snap *sn = st->head; sn && st->st.ram_bytes + need > st->ram_budget; sn = sn->next)
        if (sn->data && spill_locked(st, sn)) return AIOS_ERR_NOMEM;
    return st->st.ram_bytes + need > st->ram_budget ? AIOS_ERR_NOMEM : AIOS_OK;
}

int ctx_snap_put(ctx_store *st, void *data, size_t n, size_t cap, ctx_snap **out) {
    ctx_snap *sn = calloc(1, sizeof *sn);
    if (!sn) return AIOS_ERR_NOMEM;
    sn->st = st;
    sn->data = data;
    sn->n = n;
    sn->cap = cap;
    pthread_mutex_lock(&st->mu);
    int rc = AIOS_OK;
    bool in_ram = n <= st->ram_budget && make_ram_room(st, n) == AIOS_OK;
    st->st.ram_bytes += n; /* counted in RAM first; a direct spill moves it */
    st->st.ram_count++;
    if (!in_ram) rc = spill_locked(st, sn);
    if (rc) {
        st->st.ram_bytes -= n;
        st->st.ram_count--;
        st->st.refused++;
        pthread_mutex_unlock(&st->mu);
        free(sn);
        return AIOS_ERR_NOMEM;
    }
    sn->prev = st->tail;
    if (st->tail) st->tail->next = sn;
    else st->head = sn;
    st->tail = sn;
    st->st.puts++;
    st->st.put_bytes += n;
    atomic_fetch_add(&st->refs, 1);
    pthread_mutex_unlock(&st->mu);
    *out = sn;
    return AIOS_OK;
}

int ctx_snap_read(ctx_snap *sn, const void **data, size_t *n, void **to_free) {
    ctx_store *st = sn->st;
    *to_free = NULL;
    *n = sn->n;
    pthread_mutex_lock(&st->mu);
    if (sn->data) {
        *data = sn->data;
        pthread_mutex_unlock(&st->mu);
        return AIOS_OK;
    }
    char path[AIOS_PATH_MAX + 64];
    file_path(st, sn->file_id, path, sizeof path);
    st->st.disk_reads++;
    pthread_mutex_unlock(&st->mu);
    void *buf = malloc(sn->n ? sn->n : 1);
    if (!buf) return AIOS_ERR_NOMEM;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    size_t got = 0;
    while (fd >= 0 && got < sn->n) {
        ssize_t r = pread(fd, (char *)buf + got, sn->n - got, (off_t)got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        got += (size_t)r;
    }
    if (fd >= 0) close(fd);
    if (got != sn->n) {
        log_error("context: cannot read snapshot %s back (%zu of %zu bytes)", path, got, sn->n);
        free(buf);
        return AIOS_ERR_IO;
    }
    *data = buf;
    *to_free = buf;
    return AIOS_OK;
}

size_t ctx_snap_size(const ctx_snap *sn) { return sn->n; }

void ctx_snap_free(ctx_snap *sn) {
    if (!sn) return;
    ctx_store *st = sn->st;
    pthread_mutex_lock(&st->mu);
    if (sn->prev) sn->prev->next = sn->next;
    else st->head = sn->next;
    if (sn->next) sn->next->prev = sn->prev;
    else st->tail = sn->prev;
    if (sn->data) {
        st->st.ram_bytes -= sn->n;
        st->st.ram_count--;
        recycle_locked(st, sn->data, sn->cap);
        sn->data = NULL;
    } else {
        char path[AIOS_PATH_MAX + 64];
        file_path(st, sn->file_id, path, sizeof path);
        unlink(path);
        st->st.disk_bytes -= sn->n;
        st->st.disk_count--;
    }
    pthread_mutex_unlock(&st->mu);
    free(sn);
    store_unref(st);
}

void ctx_store_get_stats(ctx_store *st, ctx_store_stats *o) {
    pthread_mutex_lock(&st->mu);
    *o = st->st;
    o->ram_budget = st->ram_budget;
    pthread_mutex_unlock(&st->mu);
}
