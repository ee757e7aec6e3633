/*
 * result.c - lookups generated from AIOS_RESULT_TABLE (include/aios/result.h).
 * Shared by the kernel, the SDK and the CLI so every layer reports errors the same way.
 */
#include "aios/result.h"

#define AIOS_X_LOOKUP(field_idx) \
    switch (rc) { \
        AIOS_RESULT_TABLE(AIOS_X_CASE) \
        default: break; \
    }

const char *aios_strerror(int rc) {
#define AIOS_X_CASE(name, value, http, code, msg) \
    case name: return msg;
    AIOS_X_LOOKUP(0)
#undef AIOS_X_CASE
    return "unknown error";
}

const char *aios_errcode(int rc) {
#define AIOS_X_CASE(name, value, http, code, msg) \
    case name: return code;
    AIOS_X_LOOKUP(0)
#undef AIOS_X_CASE
    return "unknown_error";
}

int aios_http_status(int rc) {
#define AIOS_X_CASE(name, value, http, code, msg) \
    case name: return http;
    AIOS_X_LOOKUP(0)
#undef AIOS_X_CASE
    return 500;
}
