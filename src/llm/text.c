/*
 * text.c - deciding how much generated text may be released to a client.
 *
 * Tokens end in the middle of UTF-8 characters and stop strings span tokens, so the engine
 * keeps a pending buffer and releases only the prefix that can no longer change: complete
 * UTF-8 characters that cannot be the start of a stop string. Pure functions, unit-tested.
 */
#include <string.h>
#include "llm.h"

/* Length of the longest prefix of buf[0..len) that ends on a UTF-8 character boundary. */
static size_t utf8_complete(const char *buf, size_t len) {
    size_t i = len;
    int back = 0;
    while (i > 0 && back < 4) {
        unsigned char c = (unsigned char)buf[i - 1];
        if ((c & 0xC0) != 0x80) { /* a lead byte or ASCII */
            size_t need = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 1;
            return (len - (i - 1) >= need) ? len : i - 1;
        }
        i--;
        back++;
    }
    return len; /* stray continuation bytes: release them as they are */
}

size_t llm_text_releasable(const char *buf, size_t len, const char *const *stop, int n_stop, long *stop_at) {
    *stop_at = -1;
    long first = -1;
    for (int s = 0; s < n_stop; s++) {
        size_t sl = strlen(stop[s]);
        if (!sl || sl > len) continue;
        for (size_t i = 0; i + sl <= len; i++)
            if (memcmp(buf + i, stop[s], sl) == 0) {
                if (first < 0 || (long)i < first) first = (long)i;
                break;
            }
    }
    if (first >= 0) {
        *stop_at = first;
        return (size_t)first;
    }
    size_t keep = len;
    /* hold back a suffix that is a proper prefix of some stop string */
    for (int s = 0; s < n_stop; s++) {
        size_t sl = strlen(stop[s]);
        if (!sl) continue;
        for (size_t k = sl > len ? len : sl - 1; k > 0; k--)
            if (memcmp(buf + len - k, stop[s], k) == 0) {
                if (len - k < keep) keep = len - k;
                break;
            }
    }
    return utf8_complete(buf, keep);
}
