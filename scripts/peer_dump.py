"""Dump the peer measurement's exact CNN parameters and batch, and run ARPACK
on them, so gensplit's Lanczos can be compared on the *same* Hessian.

Usage: python scripts/peer_dump.py PEER_SCRIPT OUT_DIR [batch] [f32|f64]
  PEER_SCRIPT is scripts/jax_hvp.py (run as-is via runpy: it prints its
  gradient/HVP timings and, with --eigsh, ARPACK's matvec counts).
Writes OUT_DIR/{c1w,c1b,...,f2b,x,y}.npy. Then:
  cargo run --release -p gensplit-hvp --features examples --example arpack_matvecs -- --peer OUT_DIR
Needs jax, scipy. Not used by CI.
"""
import sys, runpy, pathlib
import numpy as np

peer, out = sys.argv[1], pathlib.Path(sys.argv[2])
rest = sys.argv[3:] or ["256", "f32"]
sys.argv = [peer] + rest + ["--eigsh"]
g = runpy.run_path(peer, run_name="peer")
out.mkdir(parents=True, exist_ok=True)
for k, v in g["params"].items():
    np.save(out / f"{k}.npy", np.asarray(v, np.float64))
np.save(out / "x.npy", np.asarray(g["x"], np.float64))
np.save(out / "y.npy", np.asarray(g["y"], np.int64))
print(f"dumped {len(g['params'])} parameter arrays and the batch to {out}")
