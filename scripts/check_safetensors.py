"""Independent check of gensplit's safetensors export.

Usage: python scripts/check_safetensors.py DIR/export
       (after `cargo xtask export --format safetensors` or `--format both`)
Needs: numpy, safetensors (`pip install numpy safetensors`). Not used by CI.

Loads DIR/export/gensplit.safetensors with the safetensors package, checks
that every array listed in index.json is there with the listed shape and
dtype (and that the file holds nothing else), and, where index.json names a
.npy file too, that both hold exactly the same values.
"""
import json
import pathlib
import sys

import numpy as np
from safetensors.numpy import load_file

DTYPES = {"<f4": np.float32, "<f8": np.float64, "<i8": np.int64}
TAGS = {"F32": np.float32, "F64": np.float64, "I64": np.int64}

root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "export")
index = json.loads((root / "index.json").read_text())
arrays = index["arrays"]
files = {a["safetensors"]["file"] for a in arrays if "safetensors" in a}
if not files:
    sys.exit(f"{root}/index.json lists no safetensors tensors: run `cargo xtask export --format safetensors`")
tensors = {}
for f in sorted(files):
    tensors.update(load_file(str(root / f)))

failures, compared = [], 0
listed = set()
for a in arrays:
    st = a.get("safetensors")
    if st is None:
        failures.append(f"{a.get('file')}: not in the safetensors file")
        continue
    name = st["tensor"]
    listed.add(name)
    if name not in tensors:
        failures.append(f"{name}: missing from {st['file']}")
        continue
    t = tensors[name]
    shape, dtype = tuple(a["shape"]), np.dtype(DTYPES[a["dtype"]])
    if t.shape != shape:
        failures.append(f"{name}: shape {t.shape}, index says {shape}")
    if t.dtype != dtype or t.dtype != np.dtype(TAGS[st["dtype"]]):
        failures.append(f"{name}: dtype {t.dtype}, index says {a['dtype']} / {st['dtype']}")
    if "file" in a:
        npy = np.load(root / a["file"])
        compared += 1
        if npy.dtype != t.dtype or npy.shape != t.shape or not np.array_equal(npy, t):
            failures.append(f"{name}: differs from {a['file']}")
extra = set(tensors) - listed
if extra:
    failures.append(f"tensors not in index.json: {sorted(extra)}")

kinds = {}
for name in tensors:
    kinds[name.split("/")[0]] = kinds.get(name.split("/")[0], 0) + 1
print(f"{len(tensors)} tensors in {', '.join(sorted(files))}: "
      + ", ".join(f"{k} {n}" for k, n in sorted(kinds.items())))
print(f"{compared} compared with their .npy files")
if failures:
    print("FAILED:")
    for f in failures:
        print("  " + f)
    sys.exit(1)
print("OK: every indexed array has the right shape and dtype"
      + (" and equals its .npy file" if compared else ""))
