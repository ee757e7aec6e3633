/*
 * util.c - clocks, logging, the bounded string buffer, UTF-8 checks and the process's memory
 * figures for /metrics (kernel.h).
 * Logging goes to stderr, one line per message with a wall-clock stamp and level, and
 * is safe from any thread (a single fprintf per line; stdio locks the stream).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <dirent.h>
#include <fcntl.h>
#include <malloc.h>
#include <time.h>
#include <unistd.h>
#include <cjson/cJSON.h>
#include "kernel.h"

double kern_now_mono(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

double kern_now_wall(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static _Thread_local bool t_json_oom;

static void *kern_json_malloc(size_t n) {
    void *p = malloc(n);
    if (!p) t_json_oom = true;
    return p;
}

void kern_json_init(void) { cJSON_InitHooks(&(cJSON_Hooks){.malloc_fn = kern_json_malloc, .free_fn = free}); }
/* Items whose parent could not be made: freed at the thread's next sweep. Past the cap (a
 * thread that built that many orphans between sweeps) one is freed to make room: the oldest,
 * which its builder has had the longest to stop using. */
#define KERN_JSON_ORPHANS 256
static _Thread_local cJSON *t_orphans[KERN_JSON_ORPHANS];
static _Thread_local int t_n_orphans, t_next_orphan;

static void orphan(cJSON *item) {
    if (t_n_orphans < KERN_JSON_ORPHANS) {
        t_orphans[t_n_orphans++] = item;
        return;
    }
    cJSON_Delete(t_orphans[t_next_orphan]);
    t_orphans[t_next_orphan] = item;
    t_next_orphan = (t_next_orphan + 1) % KERN_JSON_ORPHANS;
}

void kern_json_sweep(void) {
    for (int i = 0; i < t_n_orphans; i++) cJSON_Delete(t_orphans[i]);
    t_n_orphans = t_next_orphan = 0;
}

void kern_json_oom_clear(void) { t_json_oom = false; }

const char *kern_json_str(const cJSON *o, const char *key) {
    const char *s = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, key));
    return s ? s : "";
}

bool kern_json_add(cJSON *obj, const char *key, cJSON *item) {
    if (!item) return false;
    if (!obj) {
        orphan(item);
        return false;
    }
    if (cJSON_AddItemToObject(obj, key, item)) return true;
    t_json_oom = true;
    cJSON_AddItemToObjectCS(obj, "", item); /* (a constant key: no allocation, cannot fail) */
    return false;
}

bool kern_json_push(cJSON *arr, cJSON *item) {
    if (!item) return false;
    if (arr && cJSON_AddItemToArray(arr, item)) return true;
    orphan(item);
    return false;
}
bool kern_json_oom(void) { return t_json_oom; }

void kern_deadline(struct timespec *ts, long ms) {
    clock_gettime(CLOCK_REALTIME, ts);
    ts->tv_sec += ms / 1000;
    ts->tv_nsec += (ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) ts->tv_sec++, ts->tv_nsec -= 1000000000L;
}

int kern_wait_zero(pthread_cond_t *cv, pthread_mutex_t *mu, const int *count, int timeout_ms, double t0) {
    if (timeout_ms <= 0) {
        while (*count) pthread_cond_wait(cv, mu);
        return AIOS_OK;
    }
    while (*count) {
        long left = (long)((t0 + timeout_ms / 1000.0 - kern_now_mono()) * 1000.0);
        if (left <= 0) return AIOS_ERR_DEADLINE;
        struct timespec ts;
        kern_deadline(&ts, left);
        pthread_cond_timedwait(cv, mu, &ts);
    }
    return AIOS_OK;
}

static log_level g_level = LOG_LEVEL_INFO;
static const char *const LEVEL_NAMES[] = {"debug", "info", "warn", "error"};

void log_set_level(log_level lvl) { g_level = lvl; }

int log_parse_level(const char *s, log_level *out) {
    for (int i = 0; i <= LOG_LEVEL_ERROR; i++)
        if (strcasecmp(s, LEVEL_NAMES[i]) == 0) {
            *out = (log_level)i;
            return AIOS_OK;
        }
    return AIOS_ERR_INVALID;
}

void log_msg(log_level lvl, const char *fmt, ...) {
    if (lvl < g_level) return;
    char line[2048], stamp[32];
    time_t now = time(NULL);
    struct tm tm;
    localtime_r(&now, &tm);
    strftime(stamp, sizeof stamp, "%Y-%m-%d %H:%M:%S", &tm);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    fprintf(stderr, "%s [%s] %s\n", stamp, LEVEL_NAMES[lvl], line);
}

void sb_init(strbuf *sb, size_t cap) {
    sb->data = NULL;
    sb->len = sb->alloc = 0;
    sb->cap = cap;
    sb->oom = false;
}

void sb_free(strbuf *sb) {
    if (!sb) return;
    free(sb->data);
    sb->data = NULL;
    sb->len = sb->alloc = 0;
    sb->oom = false;
}

void sb_reset(strbuf *sb) {
    sb->len = 0;
    if (sb->data) sb->data[0] = 0;
}

static int sb_reserve(strbuf *sb, size_t extra) {
    size_t need = sb->len + extra + 1;
    if (sb->cap && sb->len + extra > sb->cap) return AIOS_ERR_TOO_LARGE;
    if (need <= sb->alloc) return AIOS_OK;
    size_t n = sb->alloc ? sb->alloc : 64;
    while (n < need) n *= 2;
    char *p = realloc(sb->data, n);
    if (!p) {
        sb->oom = true;
        return AIOS_ERR_NOMEM;
    }
    sb->data = p;
    sb->alloc = n;
    return AIOS_OK;
}

int sb_append(strbuf *sb, const char *s, size_t n) {
    int rc = sb_reserve(sb, n);
    if (rc) return rc;
    if (n) memcpy(sb->data + sb->len, s, n);
    sb->len += n;
    sb->data[sb->len] = 0;
    return AIOS_OK;
}

int sb_puts(strbuf *sb, const char *s) { return sb_append(sb, s, strlen(s)); }

int sb_printf(strbuf *sb, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) return AIOS_ERR_INVALID;
    int rc = sb_reserve(sb, (size_t)n);
    if (rc) return rc;
    va_start(ap, fmt);
    vsnprintf(sb->data + sb->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    sb->len += (size_t)n;
    return AIOS_OK;
}

char *sb_steal(strbuf *sb) {
    char *p = sb->data ? sb->data : strdup("");
    sb->data = NULL;
    sb->len = sb->alloc = 0;
    return p;
}

bool sb_append_file_tail(strbuf *sb, const char *path, size_t max) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return false;
    off_t size = lseek(fd, 0, SEEK_END), from = size > (off_t)max ? size - (off_t)max : 0;
    char buf[65536];
    ssize_t r;
    for (off_t at = from; at < size && (r = pread(fd, buf, sizeof buf, at)) > 0; at += r)
        if (sb_append(sb, buf, (size_t)r)) break;
    close(fd);
    return from > 0;
}

/* ---------- UTF-8 ---------- */

int kern_utf8_len(const unsigned char *s, size_t n) {
    unsigned c = s[0];
    int len;
    unsigned lo = 0x80, hi = 0xBF; /* bounds of the second byte */
    if (c < 0x80) return 1;
    if (c < 0xC2) return 0; /* continuation byte, or an overlong 2-byte lead */
    if (c < 0xE0) len = 2;
    else if (c < 0xF0) {
        len = 3;
        if (c == 0xE0) lo = 0xA0;      /* overlong */
        else if (c == 0xED) hi = 0x9F; /* UTF-16 surrogates (CESU-8) */
    } else if (c < 0xF5) {
        len = 4;
        if (c == 0xF0) lo = 0x90;      /* overlong */
        else if (c == 0xF4) hi = 0x8F; /* past U+10FFFF */
    } else return 0;                   /* F5..FF: 5- and 6-byte forms, past U+10FFFF */
    for (int k = 1; k < len; k++) {
        if ((size_t)k >= n) return -1;
        unsigned b = s[k];
        if (b < (k == 1 ? lo : 0x80) || b > (k == 1 ? hi : 0xBF)) return 0;
    }
    return len;
}

bool kern_utf8_valid(const char *s, size_t n) {
    const unsigned char *p = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        int k = kern_utf8_len(p + i, n - i);
        if (k <= 0) return false;
        i += (size_t)k;
    }
    return true;
}

void kern_utf8_sanitize(char *s) {
    unsigned char *p = (unsigned char *)s;
    size_t n = strlen(s);
    for (size_t i = 0; i < n;) {
        int k = kern_utf8_len(p + i, n - i);
        if (k > 0) i += (size_t)k;
        else p[i++] = '?';
    }
}

/* ---------- the process's memory ---------- */

void kern_mem_stats_get(kern_mem_stats *out) {
    *out = (kern_mem_stats){0};
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long size, pages;
    if (f && fscanf(f, "%lu %lu", &size, &pages) == 2) out->resident = (size_t)pages * (size_t)sysconf(_SC_PAGESIZE);
    if (f) fclose(f);
    struct mallinfo2 mi = mallinfo2();
    out->heap_live = mi.uordblks + mi.hblkhd;
    out->heap_free = mi.fordblks;
    DIR *d = opendir("/proc/self/fd");
    if (!d) return;
    for (struct dirent *e; (e = readdir(d));) out->fds += e->d_name[0] != '.';
    out->fds--; /* the directory's own descriptor */
    closedir(d);
}

void kern_hist_init(kern_hist *h, const double *le, int n) {
    memset(h, 0, sizeof *h);
    h->le = le;
    h->n = n < KERN_HIST_MAX ? n : KERN_HIST_MAX;
}

void kern_hist_add(kern_hist *h, double v) {
    for (int i = h->n - 1; i >= 0 && v <= h->le[i]; i--) h->bucket[i]++;
    h->count++;
    h->sum += v;
}
