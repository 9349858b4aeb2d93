"""JAX's counterpart of gensplit's cached operator product: the peer's exact
HVP with the primal work done once, via `jax.linearize(jax.grad(loss), θ)`
(jit-compiled), timed next to the peer's own gradient and HVP.

Usage: python scripts/jax_linearized_hvp.py PEER_SCRIPT [batch] [f32|f64]
  PEER_SCRIPT is scripts/jax_hvp.py, run as-is via runpy (it prints its
  gradient/HVP line first). Prints one more line: the linearized HVP's median
  time and its ratio to the peer's gradient. Needs jax. Not used by CI.
"""
import sys, runpy
import numpy as np
import jax

peer = sys.argv[1]
sys.argv = [peer] + (sys.argv[2:] or ["1024", "f32"])
g = runpy.run_path(peer, run_name="peer")
params, v, loss, timeit = g["params"], g["v"], g["loss"], g["timeit"]
_, hvp_lin = jax.linearize(jax.grad(loss), params)
hvp_lin = jax.jit(hvp_lin)
# Same check as the product: the linearized map gives the peer's H·v.
ref = jax.flatten_util.ravel_pytree(g["hvp"](params, v))[0]
lin = jax.flatten_util.ravel_pytree(hvp_lin(v))[0]
rel = float(np.linalg.norm(np.asarray(ref) - np.asarray(lin)) / np.linalg.norm(np.asarray(ref)))
tg = timeit(lambda: g["grad"](params))
tl = timeit(lambda: hvp_lin(v))
print(f"linearized: grad_ms={tg*1e3:.2f} hvp_linearized_ms={tl*1e3:.2f} "
      f"hvp_linearized/grad={tl/tg:.2f} rel_diff_vs_hvp={rel:.1e}")
