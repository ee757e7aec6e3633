#!/usr/bin/env python3
# Converts a sentence-transformers BERT model directory (config.json, model.safetensors,
# tokenizer.json or vocab.txt, modules.json + 1_Pooling/config.json) into an F16 GGUF
# that llama.cpp loads as arch "bert" (embeddings only, pooling type from 1_Pooling).
#
# Why not llama.cpp's convert_hf_to_gguf.py: it imports torch and transformers (a ~5 GB
# venv), too heavy for CI machines. This script writes the same file with numpy + PyYAML
# and the gguf-py package from the pinned llama.cpp source tree: it mirrors the BertModel
# path of convert_hf_to_gguf.py (conversion/bert.py + conversion/base.py) step by step, so
# metadata, tensor names/order/types and bytes match its `--outtype f16` output.
#
# usage: bert-to-gguf.py MODEL_DIR OUT.gguf [--gguf-py DIR]   (or GGUF_PY=DIR in the env)
import argparse
import json
import logging
import os
import sys
from pathlib import Path

import numpy as np

ap = argparse.ArgumentParser()
ap.add_argument("model_dir", type=Path)
ap.add_argument("outfile", type=Path)
ap.add_argument("--gguf-py", default=os.environ.get("GGUF_PY"),
                help="llama.cpp's gguf-py directory (default: $GGUF_PY)")
# convert_hf_to_gguf.py hashes the HF tokenizer's output on a test string to name the
# pre-tokenizer; the uncased BERT WordPiece vocab hashes to "jina-v2-en". llama.cpp ignores
# this key for tokenizer model "bert" (WPM), it is written only to match byte for byte.
ap.add_argument("--tokenizer-pre", default="jina-v2-en")
args = ap.parse_args()
if args.gguf_py:
    sys.path.insert(0, args.gguf_py)
import gguf  # noqa: E402

logging.basicConfig(level=logging.ERROR)
d: Path = args.model_dir
hp = json.loads((d / "config.json").read_text(encoding="utf-8"))
arch = gguf.MODEL_ARCH.BERT
tmap = gguf.get_tensor_name_map(arch, hp["num_hidden_layers"])
w = gguf.GGUFWriter(path=None, arch=gguf.MODEL_ARCH_NAMES[arch])

# --- tensors (ModelBase.prepare_tensors with BertModel.filter_tensors), in name order ---
F32_ALWAYS = {gguf.TENSOR_NAMES[k] + ".weight" for k in (gguf.MODEL_TENSOR.POS_EMBD, gguf.MODEL_TENSOR.TOKEN_TYPES)}
SKIP = ("embeddings.position_ids", "pooler.dense.weight", "pooler.dense.bias")
NP_DTYPE = {"F64": np.float64, "F32": np.float32, "F16": np.float16, "BF16": np.uint16}
with gguf.utility.SafetensorsLocal(d / "model.safetensors") as tensors:  # sorted by name
    for name, t in tensors.items():
        name = name.removeprefix("bert.")
        if name.endswith(".gamma"):
            name = name[:-6] + ".weight"
        if name.endswith(".beta"):
            name = name[:-5] + ".bias"
        if name in SKIP or name.startswith(("cls.predictions", "cls.seq_relationship")):
            continue
        data = t.mmap_bytes().view(NP_DTYPE[t.dtype]).reshape(t.shape)
        if t.dtype == "BF16":  # bf16 -> f32 is exact: the high half of an f32
            data = (data.astype(np.uint32) << 16).view(np.float32)
        if data.dtype not in (np.float16, np.float32):
            data = data.astype(np.float32)
        new_name = tmap.get_name(name, try_suffixes=(".weight", ".bias"))
        if new_name is None:
            sys.exit(f"error: can not map tensor {name!r}")
        # 1-D tensors, norms, biases and position/token-type embeddings stay F32
        keep_f32 = data.ndim <= 1 or new_name.endswith("_norm.weight") or new_name in F32_ALWAYS \
            or not new_name.endswith(".weight")
        qtype = gguf.GGMLQuantizationType.F32 if keep_f32 else gguf.GGMLQuantizationType.F16
        w.add_tensor(new_name, gguf.quants.quantize(data, qtype), raw_dtype=qtype)

# --- general.* metadata from README.md / config.json (ModelBase.prepare_metadata) ---
total, shared, expert, n_expert = w.get_total_parameter_count()
meta = gguf.Metadata.load(None, d, None, total)
if meta.name is None:
    meta.name = d.name
if meta.size_label is None and total > 0:
    meta.size_label = gguf.size_label(total, shared, expert, n_expert)
w.add_type(gguf.GGUFType.MODEL)
meta.set_gguf_meta_model(w)

# --- hyperparameters (TextModel.set_gguf_parameters + BertModel.set_gguf_parameters) ---
w.add_block_count(hp["num_hidden_layers"])
w.add_context_length(hp["max_position_embeddings"])
w.add_embedding_length(hp["hidden_size"])
w.add_feed_forward_length(hp["intermediate_size"])
w.add_head_count(hp["num_attention_heads"])
w.add_layer_norm_eps(hp["layer_norm_eps"])
w.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
w.add_causal_attention(False)
modules = json.loads((d / "modules.json").read_text(encoding="utf-8")) if (d / "modules.json").is_file() else []
pool_dir = next((m["path"] for m in modules if m["type"].endswith("Pooling")), None)
if pool_dir is not None:
    pool = json.loads((d / pool_dir / "config.json").read_text(encoding="utf-8"))
    modes = {"mean": gguf.PoolingType.MEAN, "cls": gguf.PoolingType.CLS, "lasttoken": gguf.PoolingType.LAST}
    if pool.get("pooling_mode_mean_tokens"):
        w.add_pooling_type(gguf.PoolingType.MEAN)
    elif pool.get("pooling_mode_cls_token"):
        w.add_pooling_type(gguf.PoolingType.CLS)
    elif pool.get("pooling_mode_lasttoken"):
        w.add_pooling_type(gguf.PoolingType.LAST)
    elif pool.get("pooling_mode") in modes:
        w.add_pooling_type(modes[pool["pooling_mode"]])
    else:
        sys.exit("error: only MEAN, CLS and LAST pooling are supported")
w.add_quantization_version(gguf.GGML_QUANT_VERSION)

# --- WordPiece vocab (TextModel.get_vocab_base + BertModel.set_vocab) ---
if (d / "tokenizer.json").is_file():
    tj = json.loads((d / "tokenizer.json").read_text(encoding="utf-8"))
    vocab = dict(tj["model"]["vocab"])
    added = {a["content"]: a["special"] for a in tj.get("added_tokens", [])}
    vocab.update({a["content"]: a["id"] for a in tj.get("added_tokens", [])})
else:
    lines = (d / "vocab.txt").read_text(encoding="utf-8").splitlines()
    vocab = {tok: i for i, tok in enumerate(lines)}
    stm = d / "special_tokens_map.json"
    specials = json.loads(stm.read_text(encoding="utf-8")).values() if stm.is_file() else []
    added = {s if isinstance(s, str) else s["content"]: True for s in specials}
by_id = {i: tok for tok, i in vocab.items()}
tokens, toktypes = [], []
for i in range(hp.get("vocab_size", len(vocab))):
    tok = by_id.get(i)
    if tok is None:
        tokens.append(f"[PAD{i}]")
        toktypes.append(gguf.TokenType.UNUSED)
        continue
    if tok in added and added[tok]:
        toktypes.append(gguf.TokenType.CONTROL)
    elif tok in added:
        toktypes.append(gguf.TokenType.USER_DEFINED)
        tok = tok.replace("\u2581", " ")
    else:
        toktypes.append(gguf.TokenType.NORMAL)
    # llama.cpp's WPM tokenizer wants "phantom space" form: word starts get U+2581, "##" goes
    tokens.append(tok if toktypes[-1] == gguf.TokenType.CONTROL
                  else tok[2:] if tok.startswith("##") else "\u2581" + tok)
w.add_token_type_count(hp.get("type_vocab_size", 1))
w.add_tokenizer_model("bert")
w.add_tokenizer_pre(args.tokenizer_pre)
w.add_token_list(tokens)
w.add_token_types(toktypes)
gguf.SpecialVocab(d, n_vocab=len(tokens)).add_to_gguf(w)  # bos/eos/unk/sep/pad/mask, add_*, lowercase

n_tensors = len(w.tensors[0])
w.write_header_to_file(path=args.outfile)
w.write_kv_data_to_file()
w.write_tensors_to_file(progress=False)
w.close()
print(f"wrote {args.outfile}: {n_tensors} tensors, {total / 1e6:.1f}M params, "
      f"{len(tokens)} tokens")
