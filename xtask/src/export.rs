//! `cargo xtask export`: the trained models, evaluation subsets and Hessian
//! eigenpairs as NumPy `.npy` files with a JSON index, so anyone can
//! recompute the same Hessians in numpy / JAX / PyTorch and check our numbers.
//!
//! Layout of `DIR/export/`:
//! * `index.json` — every array: file, dtype, shape, axis order, meaning;
//!   plus each model's architecture and the loss definition;
//! * `<model>/<block>.npy` — one array per named parameter block, in the
//!   model's row-major block shape (conv weights `[out, in, kh, kw]`, linear
//!   weights `[out, in]` acting as `y = x Wᵀ + b`, embedding `[p, d]`);
//! * `data/<set>_images.npy` (`[n, 1, 28, 28]`, f32 in [0, 1]) and
//!   `data/<set>_labels.npy` (i64) — the exact subsets the Hessians use;
//!   `data/modadd_train_{a,b,labels}.npy` (i64);
//! * `hessian/<set>_eigenvalues.npy` (f64, `[k]`, largest first) and
//!   `hessian/<set>_eigenvectors.npy` (f32, `[k, n_params]`, rows are unit
//!   vectors in the flat parameter order = blocks concatenated in index order).
//!
//! `.npy` is format version 1.0 (little-endian, C order).

use crate::artifact::write_atomic;
use crate::config::ReproConfig;
use crate::stages::Outputs;
use anyhow::{Context, Result};
use gensplit_models::Model;
use serde_json::json;
use std::path::Path;

/// An element type `.npy` can hold here.
pub trait NpyElem: Copy {
    /// NumPy dtype string.
    const DESCR: &'static str;
    /// Little-endian bytes.
    fn le(self, out: &mut Vec<u8>);
}
impl NpyElem for f32 {
    const DESCR: &'static str = "<f4";
    fn le(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes())
    }
}
impl NpyElem for f64 {
    const DESCR: &'static str = "<f8";
    fn le(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes())
    }
}
impl NpyElem for i64 {
    const DESCR: &'static str = "<i8";
    fn le(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes())
    }
}

/// Encodes an array as `.npy` v1.0 bytes. `data.len()` must equal the
/// product of `shape`.
pub fn npy_bytes<T: NpyElem>(data: &[T], shape: &[usize]) -> Result<Vec<u8>> {
    anyhow::ensure!(
        shape.iter().product::<usize>() == data.len(),
        "npy: shape {shape:?} does not hold {} elements",
        data.len()
    );
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let shape_txt = if shape.len() == 1 {
        format!("({},)", dims[0])
    } else {
        format!("({})", dims.join(", "))
    };
    let mut header = format!(
        "{{'descr': '{}', 'fortran_order': False, 'shape': {shape_txt}, }}",
        T::DESCR
    );
    // magic(6) + version(2) + len(2) + header + '\n' is a multiple of 64
    let total = 10 + header.len() + 1;
    header.push_str(&" ".repeat((64 - total % 64) % 64));
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + data.len() * 8);
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for &v in data {
        v.le(&mut out);
    }
    Ok(out)
}

struct Writer<'a> {
    dir: &'a Path,
    index: Vec<serde_json::Value>,
}

impl Writer<'_> {
    fn put<T: NpyElem>(&mut self, rel: &str, data: &[T], shape: &[usize], axes: &str, what: &str) -> Result<()> {
        let path = self.dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        }
        write_atomic(&path, &npy_bytes(data, shape)?)?;
        self.index
            .push(json!({"file": rel, "dtype": T::DESCR, "shape": shape, "axes": axes, "description": what}));
        Ok(())
    }
}

/// Writes `dir/export/` from the pipeline outputs.
pub fn write(dir: &Path, cfg: &ReproConfig, out: &Outputs) -> Result<()> {
    let images = &out.images;
    let dir = dir.join("export");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut w = Writer {
        dir: &dir,
        index: Vec::new(),
    };
    let mut models = serde_json::Map::new();
    for (name, t) in [
        ("cnn_mixed_only", &out.cnn_mixed_only),
        ("cnn_pretrained", &out.cnn_pretrained),
        ("modadd", &out.modadd.trained),
    ] {
        let layout = t.model.layout();
        for b in layout.blocks() {
            let axes = match (b.name.starts_with("conv"), b.shape.len()) {
                (true, 4) => "out_channels, in_channels, kernel_h, kernel_w",
                (_, 2) if b.name == "embed" => "token, embedding_dim",
                (_, 2) => "out_features, in_features (y = x W^T + b)",
                _ => "features",
            };
            w.put(
                &format!("{name}/{}.npy", b.name),
                &t.theta[b.range()],
                &b.shape,
                axes,
                &format!("{name} parameter block {} (flat offset {})", b.name, b.offset),
            )?;
        }
        models.insert(
            name.into(),
            json!({"architecture": t.model, "n_params": layout.len(), "blocks": layout.blocks()}),
        );
    }
    let hc = &cfg.hessian_images;
    for (set, imgs) in [
        ("digits", &images.test_digits),
        ("patterns", &images.test_patterns),
        ("mixed", &images.test_mixed),
    ] {
        let sub = imgs.first(hc.subset);
        w.put(
            &format!("data/{set}_images.npy"),
            &sub.images,
            &[sub.len(), 1, 28, 28],
            "sample, channel, row, col",
            &format!(
                "held-out {set} images used for hessian_{set} (first {} of the test set)",
                sub.len()
            ),
        )?;
        let labels: Vec<i64> = sub.labels.iter().map(|&l| l as i64).collect();
        w.put(
            &format!("data/{set}_labels.npy"),
            &labels,
            &[labels.len()],
            "sample",
            &format!("labels of data/{set}_images.npy"),
        )?;
    }
    let md = gensplit_data::modular::generate(&cfg.modadd.data)?;
    for (field, v) in [("a", &md.train.a), ("b", &md.train.b), ("labels", &md.train.labels)] {
        let v: Vec<i64> = v.iter().map(|&x| x as i64).collect();
        w.put(
            &format!("data/modadd_train_{field}.npy"),
            &v,
            &[v.len()],
            "sample",
            &format!("modular-addition training pairs: {field} (label = (a + b) mod p)"),
        )?;
    }
    for h in &out.hessian {
        w.put(
            &format!("hessian/{}_eigenvalues.npy", h.set),
            &h.values,
            &[h.values.len()],
            "eigenpair (largest first)",
            &format!(
                "top Hessian eigenvalues of the mean cross-entropy on {} ({} samples)",
                h.set, h.samples
            ),
        )?;
        let n = h.vectors.first().map(|v| v.len()).unwrap_or(0);
        let flat: Vec<f32> = h.vectors.iter().flatten().copied().collect();
        w.put(
            &format!("hessian/{}_eigenvectors.npy", h.set),
            &flat,
            &[h.vectors.len(), n],
            "eigenpair, parameter (flat order)",
            "unit eigenvectors in the model's flat parameter order",
        )?;
    }
    // steered parameter vectors: each scenario's best operating point
    for r in [&out.steer_pretrained, &out.steer_mixed_only] {
        for d in &r.directions {
            if let (Some(th), Some(m)) = (&d.best_theta, &d.best) {
                w.put(
                    &format!("steered/{}_{}_{}.npy", r.model, d.scenario, d.dir),
                    th,
                    &[th.len()],
                    "parameter (flat order of cnn_{model})",
                    &format!(
                        "cnn_{} steered by `{m}` ({} {}, operating point chosen on the calibration split)",
                        r.model, d.scenario, d.dir
                    ),
                )?;
            }
        }
    }
    let index = json!({
        "format": "gensplit export v1",
        "loss": "mean softmax cross-entropy in nats over the listed samples; no weight-decay term; hessian of digits/patterns/mixed uses model cnn_pretrained, of modadd uses model modadd on its training pairs",
        "flat_parameter_order": "blocks concatenated in the order listed under models.<name>.blocks, each row-major",
        "models": models,
        "arrays": w.index,
    });
    write_atomic(
        &dir.join("index.json"),
        serde_json::to_string_pretty(&index)?.as_bytes(),
    )?;
    tracing::info!("export written to {}", dir.display());
    Ok(())
}

/// Writes one steered model to `dir/steered/<name>/` (see [`crate::steer`]):
/// `theta.npy` (flat f32), one `.npy` per block, and `index.json` with the
/// request, α, the architecture and the held-out accuracies of the steered
/// and the unsteered model. The directory is built under a temporary name
/// and renamed, so it never exists half-written.
pub fn write_steered(
    dir: &Path,
    cfg: &ReproConfig,
    out: &Outputs,
    trained: &crate::stages::Trained,
    req: &crate::steer::SteerRequest,
    theta: &[f32],
    alpha: f64,
) -> Result<std::path::PathBuf> {
    let name = format!(
        "{}-{}-ablate_{}-{}-a{:+.4}",
        req.model, req.scenario, req.ablate, req.method, alpha
    );
    let root = dir.join("steered");
    let final_dir = root.join(&name);
    let tmp = root.join(format!(".{name}.tmp"));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    let mut w = Writer {
        dir: &tmp,
        index: Vec::new(),
    };
    w.put(
        "theta.npy",
        theta,
        &[theta.len()],
        "parameter (flat order)",
        "steered parameters",
    )?;
    let layout = trained.model.layout();
    for b in layout.blocks() {
        w.put(
            &format!("{}.npy", b.name),
            &theta[b.range()],
            &b.shape,
            "as in export/index.json",
            &format!("block {} (flat offset {})", b.name, b.offset),
        )?;
    }
    let sc = if req.model == "mixed_only" {
        &cfg.steer_mixed_only
    } else {
        &cfg.steer
    };
    let mut accs = serde_json::Map::new();
    for (set, imgs) in [
        ("digits", &out.images.test_digits),
        ("patterns", &out.images.test_patterns),
        ("mixed", &out.images.test_mixed),
    ] {
        let idx: Vec<usize> = (sc.heldout_start..(sc.heldout_start + sc.heldout_size).min(imgs.len())).collect();
        let data = gensplit_models::Dataset::from_images(&imgs.subset(&idx));
        let steered = gensplit_models::evaluate(&trained.model, theta, &data, 1024)?;
        let base = gensplit_models::evaluate(&trained.model, &trained.theta, &data, 1024)?;
        accs.insert(set.into(), json!({"steered": steered.acc, "unsteered": base.acc}));
    }
    let index = json!({
        "format": "gensplit steered v1",
        "model": format!("cnn_{}", req.model),
        "scenario": req.scenario,
        "ablate": req.ablate,
        "method": req.method,
        "alpha": alpha,
        "architecture": trained.model,
        "blocks": layout.blocks(),
        "heldout_acc": accs,
        "heldout_images": format!("test images {}..{}", sc.heldout_start, sc.heldout_start + sc.heldout_size),
        "arrays": w.index,
    });
    write_atomic(
        &tmp.join("index.json"),
        serde_json::to_string_pretty(&index)?.as_bytes(),
    )?;
    let _ = std::fs::remove_dir_all(&final_dir);
    std::fs::rename(&tmp, &final_dir)
        .with_context(|| format!("renaming {} to {}", tmp.display(), final_dir.display()))?;
    Ok(final_dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn npy_header_is_aligned_and_parsable() {
        let b = npy_bytes(&[1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3]).unwrap();
        assert_eq!(&b[..8], b"\x93NUMPY\x01\x00");
        let hlen = u16::from_le_bytes([b[8], b[9]]) as usize;
        assert_eq!((10 + hlen) % 64, 0);
        let header = std::str::from_utf8(&b[10..10 + hlen]).unwrap();
        assert!(
            header.contains("'descr': '<f4'") && header.contains("'shape': (2, 3)"),
            "{header}"
        );
        assert!(header.ends_with('\n'));
        assert_eq!(b.len(), 10 + hlen + 24);
        assert_eq!(
            f32::from_le_bytes(b[10 + hlen + 4..10 + hlen + 8].try_into().unwrap()),
            2.0
        );
        let one = npy_bytes(&[7i64], &[1]).unwrap();
        assert!(std::str::from_utf8(&one[10..]).unwrap().contains("'shape': (1,)"));
        assert!(npy_bytes(&[1.0f64], &[2]).is_err());
    }
}
