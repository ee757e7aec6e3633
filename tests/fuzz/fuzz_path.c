/*
 * fuzz_path.c - storage path normalisation (src/storage/path.c): the file paths agents send
 * to storage syscalls, under a mount root. Input: root, newline, path. Properties: a
 * normalised path is relative, has no empty, "." or ".." component, and fits max_len.
 */
#include "fuzz.h"
#include "aios/result.h"
#include "storage/storage.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *root = fuzz_str(data, size), *path, out[512], err[256];
    if (!root) return 0;
    fuzz_split(root, &path);
    enum { MAX = 200 };
    if (storage_path_norm(root, path, MAX, out, sizeof out, err, sizeof err) == AIOS_OK) {
        FUZZ_CHECK(strlen(out) <= MAX && out[0] != '/');
        for (char *c = out, *next; *c; c = next) {
            next = strchr(c, '/');
            size_t n = next ? (size_t)(next - c) : strlen(c);
            FUZZ_CHECK(n > 0 && !(n == 1 && c[0] == '.') && !(n == 2 && c[0] == '.' && c[1] == '.'));
            next = next ? next + 1 : c + n;
        }
    }
    free(root);
    return 0;
}
