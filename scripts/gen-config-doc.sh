#!/usr/bin/env bash
# Regenerates docs/config.md from the kernel's own key table (aiosd --print-config-doc),
# so the reference always matches the code.
set -euo pipefail
cd "$(dirname "$0")/.."
aiosd="${1:-build/aiosd}"
{
cat <<'MD'
# Configuration reference

`aiosd` reads its settings in layers, each overriding the one before:

1. built-in defaults (below) — a zero-config start serves the default model on 127.0.0.1:8000;
2. a YAML file: `aiosd --config aios.yaml` (or `AIOS_CONFIG=aios.yaml`), sections named as in AIOS's `config.yaml`;
3. environment variables `AIOS_<SECTION>_<KEY>` (column "environment"), plus the shorthands
   `AIOS_MODEL` (path of the first model), `AIOS_HOST`, `AIOS_PORT`, `AIOS_DATA_DIR`;
4. flags: `--host`, `--port`, `--model PATH`, `--data-dir DIR`, `--log-level L`, and `--set section.key=value` for any key.

An unknown key, a value of the wrong type or out of range, an unknown policy or backend stops
the kernel at start with one line naming the key (and the file and line for YAML). The sections
`memory`, `storage`, `tools`, `access`, `agents` belong to later subsystems: they are accepted and
reported as unused by this version. `aiosd --check-config` validates and exits.

Example:

```yaml
server:
  host: 127.0.0.1
  port: 8000
  max_body_bytes: 1048576
llms:
  default_model: smollm2
  models:
    - name: smollm2
      backend: llamacpp
      path: /path/to/model.gguf
      ctx_size: 4096
      kv_size: 32768
scheduler:
  policy: fifo
  max_active: 16
```

## Keys

MD
"$aiosd" --print-config-doc
} > docs/config.md
echo "docs/config.md written"
