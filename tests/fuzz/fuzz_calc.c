/*
 * fuzz_calc.c - the calculator tool's expression parser (src/tools/calc.c): model output,
 * so untrusted. Properties: it never crashes or recurses without bound, a success is a finite
 * number, an error leaves the result untouched and says why.
 */
#include <math.h>
#include "fuzz.h"
#include "aios/result.h"
#include "tools/calc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *expr = fuzz_str(data, size), err[256];
    if (!expr) return 0;
    double v = 12345.0;
    int rc = tool_calc_eval(expr, &v, err, sizeof err);
    if (rc == AIOS_OK) FUZZ_CHECK(isfinite(v) && err[0] == 0);
    else FUZZ_CHECK(v == 12345.0 && err[0] != 0);
    free(expr);
    return 0;
}
