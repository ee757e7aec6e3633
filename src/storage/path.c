/*
 * path.c - confinement of storage paths to an agent's namespace (storage.h). Pure string
 * work: the namespace is virtual, so a path is checked and normalised once, here, and
 * nothing is ever resolved against the host file system.
 */
#include <stdio.h>
#include <string.h>
#include "storage.h"

/* Appends the components of p to out (at *len), checking each. */
static int add_components(const char *p, char *out, size_t outlen, size_t *len, size_t max_len, char *err, size_t errlen) {
    if (p[0] == '/') {
        snprintf(err, errlen, "path '%.80s' is absolute; paths are relative to the agent's namespace", p);
        return AIOS_ERR_INVALID;
    }
    for (const unsigned char *c = (const unsigned char *)p; *c; c++) {
        if (*c < 0x20 || *c == 0x7f || *c == '\\') {
            snprintf(err, errlen, "path '%.80s' contains a %s", p, *c == '\\' ? "backslash" : "control byte");
            return AIOS_ERR_INVALID;
        }
    }
    const char *s = p;
    while (*s) {
        const char *e = strchr(s, '/');
        size_t n = e ? (size_t)(e - s) : strlen(s);
        if (n == 2 && s[0] == '.' && s[1] == '.') {
            snprintf(err, errlen, "path '%.80s' contains '..'; paths cannot leave the agent's namespace", p);
            return AIOS_ERR_INVALID;
        }
        if (n && !(n == 1 && s[0] == '.')) {
            size_t need = *len + (*len ? 1 : 0) + n;
            if (need > max_len || need + 1 > outlen) {
                snprintf(err, errlen, "path '%.80s...' is longer than storage.max_path_bytes (%zu)", p, max_len);
                return AIOS_ERR_INVALID;
            }
            if (*len) out[(*len)++] = '/';
            memcpy(out + *len, s, n);
            *len += n;
            out[*len] = 0;
        }
        s += n;
        if (*s == '/') s++;
    }
    return AIOS_OK;
}

int storage_path_norm(const char *root, const char *path, size_t max_len, char *out, size_t outlen, char *err, size_t errlen) {
    size_t len = 0;
    out[0] = 0;
    int rc = add_components(root ? root : "", out, outlen, &len, max_len, err, errlen);
    if (!rc) rc = add_components(path ? path : "", out, outlen, &len, max_len, err, errlen);
    return rc;
}
