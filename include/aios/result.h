/*
 * aios/result.h - the one table of result codes shared by the kernel, the SDK and the CLI.
 *
 * 0 is success, negatives are errors. Each row carries the HTTP status the API answers with
 * and the stable machine-readable code that goes into {"error":{"code":...}}, so the wire
 * format, aios_strerror() and the HTTP mapping can never drift apart (redis-style X-macro).
 */
#ifndef AIOS_RESULT_H
#define AIOS_RESULT_H

/*        name                     value http  code string             message */
#define AIOS_RESULT_TABLE(X) \
    X(AIOS_OK, 0, 200, "ok", "success") \
    X(AIOS_ERR_NOMEM, -1, 500, "out_of_memory", "out of memory") \
    X(AIOS_ERR_INVALID, -2, 400, "invalid_request", "invalid request") \
    X(AIOS_ERR_NOT_FOUND, -3, 404, "not_found", "not found") \
    X(AIOS_ERR_TOO_LARGE, -4, 413, "payload_too_large", "payload too large") \
    X(AIOS_ERR_CONTEXT, -5, 400, "context_length_exceeded", "context length exceeded") \
    X(AIOS_ERR_BUSY, -6, 503, "overloaded", "queue full, retry later") \
    X(AIOS_ERR_CANCELLED, -7, 499, "cancelled", "request cancelled") \
    X(AIOS_ERR_INTERNAL, -8, 500, "internal_error", "internal error") \
    X(AIOS_ERR_MODEL, -9, 500, "model_error", "model error") \
    X(AIOS_ERR_CONFIG, -10, 500, "config_error", "bad configuration") \
    X(AIOS_ERR_IO, -11, 500, "io_error", "i/o error") \
    X(AIOS_ERR_UNSUPPORTED, -12, 400, "unsupported", "unsupported") \
    X(AIOS_ERR_METHOD, -13, 405, "method_not_allowed", "method not allowed") \
    X(AIOS_ERR_SHUTDOWN, -14, 503, "shutting_down", "kernel is shutting down") \
    X(AIOS_ERR_TRANSPORT, -15, 502, "transport_error", "cannot reach the kernel") \
    X(AIOS_ERR_NOT_IMPLEMENTED, -16, 501, "not_implemented", "not implemented in this kernel version") \
    X(AIOS_ERR_EXISTS, -17, 409, "conflict", "already exists") \
    X(AIOS_ERR_FORBIDDEN, -18, 403, "forbidden", "forbidden") \
    X(AIOS_ERR_QUOTA, -19, 507, "quota_exceeded", "storage quota exceeded") \
    X(AIOS_ERR_UNAUTHORIZED, -20, 401, "unauthorized", "missing or invalid token") \
    X(AIOS_ERR_TIMEOUT, -21, 408, "timeout", "timed out") \
    X(AIOS_ERR_TOOL_FAILED, -22, 502, "tool_failed", "the tool failed") \
    X(AIOS_ERR_DEADLINE, -23, 504, "deadline_exceeded", "not served within its deadline") \
    X(AIOS_ERR_RATE_LIMITED, -24, 429, "rate_limited", "too many requests, retry later") \
    X(AIOS_ERR_LOADING, -25, 503, "loading", "the models are still loading") \
    X(AIOS_ERR_UPSTREAM, -26, 502, "upstream_error", "the upstream model server failed") \
    X(AIOS_ERR_UPSTREAM_TIMEOUT, -27, 504, "upstream_timeout", "the upstream model server did not answer in time") \
    X(AIOS_ERR_MODEL_DOWN, -28, 503, "model_unavailable", "the model is down")

typedef enum aios_result {
#define AIOS_X_ENUM(name, value, http, code, msg) name = value,
    AIOS_RESULT_TABLE(AIOS_X_ENUM)
#undef AIOS_X_ENUM
} aios_result;

/* Human-readable message for a result code; never NULL. */
const char *aios_strerror(int rc);
/* Stable snake_case code used in JSON errors; never NULL. */
const char *aios_errcode(int rc);
/* HTTP status the API answers with for this result code. */
int aios_http_status(int rc);

#endif
