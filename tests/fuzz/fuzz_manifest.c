/*
 * fuzz_manifest.c - tool manifests (src/tools/manifest.c): JSON files in tools.dir, written
 * by whoever installs a tool. Properties: no crash or leak; a refused manifest says why; a
 * loaded one has a valid name and a schema the linter accepts.
 */
#include <cjson/cJSON.h>
#include "fuzz.h"
#include "aios/result.h"
#include "tools/schema.h"
#include "tools/tools_internal.h"

static aios_config *cfg;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!cfg) {
        if (!(cfg = malloc(sizeof *cfg))) return 0;
        config_defaults(cfg);
    }
    char path[64], err[1024] = "";
    int fd = fuzz_file(data, size, path, sizeof path);
    if (fd < 0) return 0;
    tool_def *d = manifest_load(path, cfg, err, sizeof err);
    if (d) FUZZ_CHECK(tool_name_ok(d->name) && (!d->schema || tool_schema_lint(d->schema, err, sizeof err) == AIOS_OK));
    else FUZZ_CHECK(err[0] != 0);
    tool_def_unref(d);
    close(fd);
    return 0;
}
