/*
 * torture.c - allocation-failure injection for the torture tier (`make torture`; issue 15,
 * part 2; docs/testing.md), after curl's torture runs and SQLite's malloc fault injection.
 *
 * Only in a build with -DAIOS_TORTURE, linked with -Wl,--wrap=malloc,calloc,realloc,strdup,
 * strndup: every allocation the kernel's own code makes (and cJSON's, through the hooks in
 * util.c) goes through the wrappers below. A thread armed with torture_arm(n) gets NULL from
 * its n-th allocation from then on, once (one-shot: what follows succeeds, so the failure's
 * handling itself can answer). The HTTP server arms the thread serving the request that
 * follows a POST /admin/torture (server.c), so each route's answer path runs with its n-th
 * allocation failing, for every n, until a run makes fewer than n allocations.
 *
 * In every other build this file compiles to nothing and the kernel never fails an
 * allocation on purpose.
 */
#include "kernel.h"

#ifdef AIOS_TORTURE
#include <stdlib.h>
#include <string.h>

static _Thread_local long t_countdown; /* > 0: allocations left before the one that fails */
static _Thread_local bool t_injected;

void torture_arm(long n) {
    t_countdown = n > 0 ? n : 0;
    t_injected = false;
}

long torture_disarm(bool *injected) {
    long left = t_countdown;
    if (injected) *injected = t_injected;
    t_countdown = 0;
    return left;
}

static bool fail_now(void) {
    if (t_countdown <= 0 || --t_countdown) return false;
    t_injected = true;
    return true;
}

void *__real_malloc(size_t n);
void *__real_calloc(size_t k, size_t n);
void *__real_realloc(void *p, size_t n);
char *__real_strdup(const char *s);
char *__real_strndup(const char *s, size_t n);

void *__wrap_malloc(size_t n) { return fail_now() ? NULL : __real_malloc(n); }
void *__wrap_calloc(size_t k, size_t n) { return fail_now() ? NULL : __real_calloc(k, n); }
void *__wrap_realloc(void *p, size_t n) { return fail_now() ? NULL : __real_realloc(p, n); }
char *__wrap_strdup(const char *s) { return fail_now() ? NULL : __real_strdup(s); }
char *__wrap_strndup(const char *s, size_t n) { return fail_now() ? NULL : __real_strndup(s, n); }
#else
typedef int torture_not_built; /* (ISO C wants a declaration in every translation unit) */
#endif
