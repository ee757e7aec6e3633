/*
 * access_internal.h - internal to the access module: the audit log writer (audit.c).
 */
#ifndef AIOS_ACCESS_INTERNAL_H
#define AIOS_ACCESS_INTERNAL_H

#include <pthread.h>
#include "access.h"

typedef struct audit_log {
    pthread_mutex_t mu;
    int fd;
    char path[AIOS_PATH_MAX];
    long size, max_bytes;
    int keep;
    bool open;
} audit_log;

int audit_open(audit_log *a, const char *path, long max_bytes, int keep, char *err, size_t errlen);
void audit_close(audit_log *a);
void audit_write(audit_log *a, const char *agent, const char *resource, const char *action, const char *decision,
                 const char *params, const char *outcome, double ms);

#endif
