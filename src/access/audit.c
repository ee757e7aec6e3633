/*
 * audit.c - the append-only audit log: one JSON object per line, written with a single
 * write(2) on an O_APPEND descriptor (a line is never interleaved with another, and a
 * killed kernel loses none it wrote). When the file passes access.audit_max_bytes it is
 * renamed to .1 (.1 to .2, ... up to access.audit_keep) and a new one is started.
 * Parameters are never logged, only their SHA-256, so secrets in them stay out of the log.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <openssl/evp.h>
#include "access_internal.h"

void access_sha256_hex(const void *data, size_t len, char out[65]) {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    if (!EVP_Digest(data, len, md, &n, EVP_sha256(), NULL)) n = 0;
    for (unsigned i = 0; i < n && i < 32; i++) snprintf(out + 2 * i, 3, "%02x", md[i]);
    out[n ? 64 : 0] = 0;
}

static int open_fd(audit_log *a) {
    a->fd = open(a->path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (a->fd < 0) return AIOS_ERR_IO;
    struct stat st;
    a->size = fstat(a->fd, &st) == 0 ? (long)st.st_size : 0;
    return AIOS_OK;
}

int audit_open(audit_log *a, const char *path, long max_bytes, int keep, char *err, size_t errlen) {
    memset(a, 0, sizeof *a);
    pthread_mutex_init(&a->mu, NULL);
    snprintf(a->path, sizeof a->path, "%s", path);
    a->max_bytes = max_bytes;
    a->keep = keep;
    if (open_fd(a)) {
        snprintf(err, errlen, "access.audit_file: cannot open %s: %s", path, strerror(errno));
        return AIOS_ERR_IO;
    }
    a->open = true;
    return AIOS_OK;
}

void audit_close(audit_log *a) {
    if (!a->open) return;
    close(a->fd);
    pthread_mutex_destroy(&a->mu);
    a->open = false;
}

/* With a->mu held: audit.log.(keep-1) -> .keep, ..., audit.log -> .1, new audit.log. */
static void rotate(audit_log *a) {
    char from[AIOS_PATH_MAX + 16], to[AIOS_PATH_MAX + 16];
    for (int i = a->keep - 1; i >= 1; i--) {
        snprintf(from, sizeof from, "%s.%d", a->path, i);
        snprintf(to, sizeof to, "%s.%d", a->path, i + 1);
        rename(from, to);
    }
    snprintf(to, sizeof to, "%s.1", a->path);
    rename(a->path, to);
    close(a->fd);
    if (open_fd(a)) log_error("audit: cannot reopen %s after rotation: %s", a->path, strerror(errno));
}

void audit_write(audit_log *a, const char *agent, const char *resource, const char *action, const char *decision,
                 const char *params, const char *outcome, double ms) {
    if (!a->open) return;
    char ts[40], hash[65] = "";
    double now = kern_now_wall();
    time_t t = (time_t)now;
    struct tm tm;
    gmtime_r(&t, &tm);
    size_t n = strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(ts + n, sizeof ts - n, ".%03dZ", (int)((now - (double)t) * 1000));
    if (params) access_sha256_hex(params, strlen(params), hash);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "time", ts);
    cJSON_AddStringToObject(o, "agent", agent ? agent : "");
    cJSON_AddStringToObject(o, "resource", resource);
    cJSON_AddStringToObject(o, "action", action);
    cJSON_AddStringToObject(o, "decision", decision);
    if (params) cJSON_AddStringToObject(o, "params_sha256", hash);
    if (outcome) cJSON_AddStringToObject(o, "outcome", outcome);
    if (ms >= 0) cJSON_AddNumberToObject(o, "ms", (double)(long)(ms * 1000) / 1000);
    char *line = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (!line) return;
    size_t len = strlen(line);
    line[len] = '\n'; /* replaces the NUL; written with its length */
    pthread_mutex_lock(&a->mu);
    if (a->fd >= 0 && write(a->fd, line, len + 1) == (ssize_t)(len + 1)) a->size += (long)len + 1;
    else log_warn("audit: cannot write %s: %s", a->path, strerror(errno));
    if (a->size >= a->max_bytes) rotate(a);
    pthread_mutex_unlock(&a->mu);
    free(line);
}
