/*
 * fuzz_config.c - the YAML configuration file and `--set KEY=VALUE` (src/kernel/config.c):
 * an operator's file can be anything, and AIOS's own config.yaml is read through the same
 * mapping. Input: a `--set` line, newline, a YAML file. Properties: no crash; a refused file
 * or setting says why; what loads either validates or is refused with a reason.
 */
#include "fuzz.h"
#include "aios/result.h"
#include "kernel/kernel.h"

static aios_config *cfg;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!cfg && !(cfg = malloc(sizeof *cfg))) return 0;
    char *set = fuzz_str(data, size), *yaml, err[1024], path[64];
    if (!set) return 0;
    fuzz_split(set, &yaml);
    config_defaults(cfg);
    char *eq = strchr(set, '=');
    if (eq) {
        *eq = 0;
        err[0] = 0;
        if (config_set(cfg, set, eq + 1, err, sizeof err) != AIOS_OK) FUZZ_CHECK(err[0] != 0);
    }
    int fd = fuzz_file((const uint8_t *)yaml, strlen(yaml), path, sizeof path);
    if (fd >= 0) {
        err[0] = 0;
        int rc = config_load_file(cfg, path, err, sizeof err);
        if (rc != AIOS_OK) FUZZ_CHECK(err[0] != 0);
        else if (config_validate(cfg, err, sizeof err) != AIOS_OK) FUZZ_CHECK(err[0] != 0);
        close(fd);
    }
    free(set);
    return 0;
}
