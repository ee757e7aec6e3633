/*
 * fuzz.h - what the fuzz harnesses (tests/fuzz/fuzz_*.c, `make fuzz`) share: the input as a
 * C string, split in two at its first newline, and as a file the parsers can open.
 *
 * Each harness feeds one parser that takes outside bytes; libFuzzer (clang, with ASan and
 * UBSan) drives it. A harness asserts the parser's own promises (an error leaves its output
 * untouched, a success is well formed) with FUZZ_CHECK, which aborts so libFuzzer keeps the
 * input as a crash.
 */
#ifndef AIOS_FUZZ_H
#define AIOS_FUZZ_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define FUZZ_CHECK(cond) \
    do { \
        if (!(cond)) { \
            fprintf(stderr, "%s:%d: property failed: %s\n", __FILE__, __LINE__, #cond); \
            abort(); \
        } \
    } while (0)

/* data as a NUL-terminated copy (caller frees); NULL when out of memory. */
static inline char *fuzz_str(const uint8_t *data, size_t size) {
    char *s = malloc(size + 1);
    if (s) {
        memcpy(s, data, size);
        s[size] = 0;
    }
    return s;
}

/* s split at its first newline: *second points after it ("" when there is none). */
static inline void fuzz_split(char *s, char **second) {
    char *nl = strchr(s, '\n');
    if (nl) *nl = 0;
    *second = nl ? nl + 1 : s + strlen(s);
}

/* data in an anonymous file, its path as /proc/self/fd/N into path; the fd (close it), or -1. */
static inline int fuzz_file(const uint8_t *data, size_t size, char *path, size_t cap) {
    int fd = memfd_create("fuzz", 0);
    if (fd < 0) return -1;
    if (write(fd, data, size) != (ssize_t)size) {
        close(fd);
        return -1;
    }
    lseek(fd, 0, SEEK_SET);
    snprintf(path, cap, "/proc/self/fd/%d", fd);
    return fd;
}

#endif
