"""Independent check of gensplit's Hessian eigenpairs in JAX.

Usage: python scripts/check_export.py DIR/export
Needs: jax, numpy (e.g. `pip install jax`). Not used by CI.

For every exported Hessian it rebuilds the model from index.json and the .npy
files, recomputes H·u for each exported eigenvector u by JAX's own
jvp-of-grad on the exported data, and prints the relative residual
‖Hu − λu‖ / max|λ| and the Rayleigh quotient uᵀHu next to gensplit's λ.
"""
import json, sys, pathlib
import numpy as np
import jax, jax.numpy as jnp
from jax import lax

jax.config.update("jax_enable_x64", True)
root = pathlib.Path(sys.argv[1])
index = json.loads((root / "index.json").read_text())
load = lambda rel: np.load(root / rel)

def params_of(name):
    blocks = index["models"][name]["blocks"]
    return [(b["name"], jnp.asarray(load(f"{name}/{b['name']}.npy"), jnp.float64)) for b in blocks]

def cnn_logits(p, x):
    h = x
    for i, s in zip((1, 2, 3), (1, 2, 2)):
        w, b = p[f"conv{i}.weight"], p[f"conv{i}.bias"]
        h = jax.nn.relu(lax.conv_general_dilated(h, w, (s, s), ((1, 1), (1, 1))) + b[None, :, None, None])
    h = h.reshape(h.shape[0], -1)
    h = jax.nn.relu(h @ p["fc1.weight"].T + p["fc1.bias"])
    return h @ p["fc2.weight"].T + p["fc2.bias"]

def mlp_logits(p, ab):
    a, b = ab
    e = p["embed"]
    x = jnp.concatenate([e[a], e[b]], axis=1)
    h = jax.nn.relu(x @ p["fc1.weight"].T + p["fc1.bias"])
    return h @ p["fc2.weight"].T + p["fc2.bias"]

def check(set_name, model, logits, inputs, labels):
    named = params_of(model)
    names = [n for n, _ in named]
    shapes = [a.shape for _, a in named]
    sizes = [int(np.prod(s)) for s in shapes]
    flat = jnp.concatenate([a.ravel() for _, a in named])
    def unflat(t):
        out, o = {}, 0
        for n, s, k in zip(names, shapes, sizes):
            out[n] = t[o:o + k].reshape(s); o += k
        return out
    y = jnp.asarray(labels)
    def loss(t):
        z = logits(unflat(t), inputs)
        return -jnp.mean(jax.nn.log_softmax(z)[jnp.arange(z.shape[0]), y])
    hvp = jax.jit(lambda u: jax.jvp(jax.grad(loss), (flat,), (u,))[1])
    lam = load(f"hessian/{set_name}_eigenvalues.npy")
    vecs = load(f"hessian/{set_name}_eigenvectors.npy").astype(np.float64)
    scale = np.max(np.abs(lam))
    print(f"{set_name}: loss {float(loss(flat)):.6f}, {len(lam)} eigenpairs")
    worst = 0.0
    for i, (l, u) in enumerate(zip(lam, vecs)):
        u = u / np.linalg.norm(u)
        hu = np.asarray(hvp(jnp.asarray(u)))
        res = np.linalg.norm(hu - l * u) / scale
        worst = max(worst, res)
        if i < 5:
            print(f"  λ{i+1}: gensplit {l:.6g}  JAX uᵀHu {float(u @ hu):.6g}  rel. residual {res:.2e}")
    print(f"  worst rel. residual over all pairs: {worst:.2e}")

for set_name in ("digits", "patterns", "mixed"):
    x = jnp.asarray(load(f"data/{set_name}_images.npy"), jnp.float64)
    check(set_name, "cnn_pretrained", cnn_logits, x, load(f"data/{set_name}_labels.npy"))
ab = (jnp.asarray(load("data/modadd_train_a.npy")), jnp.asarray(load("data/modadd_train_b.npy")))
check("modadd", "modadd", mlp_logits, ab, load("data/modadd_train_labels.npy"))
