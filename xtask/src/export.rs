//! `cargo xtask export`: the trained models, evaluation subsets, Hessian
//! eigenpairs and steered parameter vectors as NumPy `.npy` files and/or one
//! safetensors file, with a JSON index, so anyone can recompute the same
//! Hessians in numpy / JAX / PyTorch and check our numbers.
//!
//! Layout of `DIR/export/` (`--format npy`, the default; `safetensors`;
//! `both`):
//! * `index.json` — every array: dtype, shape, axis order, meaning, and where
//!   it is: `file` (the `.npy` path, when `.npy` files were written) and
//!   `safetensors.{file, tensor}` (when the safetensors file was written);
//!   plus each model's architecture and the loss definition;
//! * `<model>/<block>.npy` — one array per named parameter block, in the
//!   model's row-major block shape (conv weights `[out, in, kh, kw]`, linear
//!   weights `[out, in]` acting as `y = x Wᵀ + b`, embedding `[p, d]`);
//! * `data/<set>_images.npy` (`[n, 1, 28, 28]`, f32 in [0, 1]) and
//!   `data/<set>_labels.npy` (i64) — the exact subsets the Hessians use;
//!   `data/modadd_train_{a,b,labels}.npy` (i64);
//! * `hessian/<set>_eigenvalues.npy` (f64, `[k]`, largest first) and
//!   `hessian/<set>_eigenvectors.npy` (f32, `[k, n_params]`, rows are unit
//!   vectors in the flat parameter order = blocks concatenated in index order);
//! * `steered/<model>_<scenario>_<dir>.npy` (f32, `[n_params]`) — each
//!   steering scenario's parameters at its chosen operating point;
//! * `gensplit.safetensors` — every array above in one file, the tensor name
//!   being the `.npy` path without `.npy` (`cnn_pretrained/conv1.weight`).
//!
//! `.npy` is format version 1.0 (little-endian, C order). The safetensors
//! file is written by hand: an 8-byte little-endian header length, a JSON
//! header (`dtype` F32/F64/I64, `shape`, `data_offsets`, `__metadata__`)
//! padded with spaces to a multiple of 8 bytes, then the little-endian
//! tensors back to back in index order.

use crate::artifact::write_atomic;
use crate::config::ReproConfig;
use crate::pipeline::Outputs;
use anyhow::{Context, Result};
use gensplit_models::Model;
use serde_json::json;
use std::io::Write as _;
use std::path::Path;

/// The safetensors file inside `export/`.
pub const SAFETENSORS_FILE: &str = "gensplit.safetensors";

/// Which files `cargo xtask export` writes (the index is always written).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// One `.npy` file per array.
    #[default]
    Npy,
    /// Every array in one `gensplit.safetensors`.
    Safetensors,
    /// Both.
    Both,
}

impl Format {
    fn npy(self) -> bool {
        matches!(self, Format::Npy | Format::Both)
    }
    fn safetensors(self) -> bool {
        matches!(self, Format::Safetensors | Format::Both)
    }
}

/// An element type `.npy` and safetensors can hold here.
pub trait NpyElem: Copy {
    /// NumPy dtype string.
    const DESCR: &'static str;
    /// safetensors dtype tag.
    const SAFETENSORS: &'static str;
    /// Little-endian bytes.
    fn le(self, out: &mut Vec<u8>);
}
impl NpyElem for f32 {
    const DESCR: &'static str = "<f4";
    const SAFETENSORS: &'static str = "F32";
    fn le(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes())
    }
}
impl NpyElem for f64 {
    const DESCR: &'static str = "<f8";
    const SAFETENSORS: &'static str = "F64";
    fn le(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes())
    }
}
impl NpyElem for i64 {
    const DESCR: &'static str = "<i8";
    const SAFETENSORS: &'static str = "I64";
    fn le(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes())
    }
}

fn check_shape(shape: &[usize], len: usize) -> Result<()> {
    anyhow::ensure!(
        shape.iter().product::<usize>() == len,
        "npy: shape {shape:?} does not hold {len} elements"
    );
    Ok(())
}

/// The `.npy` v1.0 header (magic, version, length, dict, padding).
fn npy_header(descr: &str, shape: &[usize]) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let shape_txt = if shape.len() == 1 {
        format!("({},)", dims[0])
    } else {
        format!("({})", dims.join(", "))
    };
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape_txt}, }}");
    // magic(6) + version(2) + len(2) + header + '\n' is a multiple of 64
    let total = 10 + header.len() + 1;
    header.push_str(&" ".repeat((64 - total % 64) % 64));
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len());
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out
}

/// Encodes an array as `.npy` v1.0 bytes. `data.len()` must equal the
/// product of `shape`.
pub fn npy_bytes<T: NpyElem>(data: &[T], shape: &[usize]) -> Result<Vec<u8>> {
    check_shape(shape, data.len())?;
    let mut out = npy_header(T::DESCR, shape);
    out.reserve(data.len() * 8);
    for &v in data {
        v.le(&mut out);
    }
    Ok(out)
}

/// One exported array: its raw little-endian bytes and what it means.
#[derive(Clone, Debug)]
pub struct Array {
    /// Name: the path inside `export/` without `.npy`, and the tensor name
    /// in the safetensors file.
    pub name: String,
    /// NumPy dtype string (`<f4`, `<f8`, `<i8`).
    pub descr: &'static str,
    /// safetensors dtype tag (`F32`, `F64`, `I64`).
    pub dtype: &'static str,
    /// Row-major shape.
    pub shape: Vec<usize>,
    /// Little-endian element bytes.
    pub data: Vec<u8>,
    /// Axis names.
    pub axes: String,
    /// Meaning.
    pub description: String,
}

impl Array {
    /// An array named `name` (no extension).
    pub fn new<T: NpyElem>(name: &str, data: &[T], shape: &[usize], axes: &str, what: &str) -> Result<Self> {
        check_shape(shape, data.len())?;
        let mut bytes = Vec::with_capacity(std::mem::size_of_val(data));
        for &v in data {
            v.le(&mut bytes);
        }
        Ok(Self {
            name: name.to_string(),
            descr: T::DESCR,
            dtype: T::SAFETENSORS,
            shape: shape.to_vec(),
            data: bytes,
            axes: axes.to_string(),
            description: what.to_string(),
        })
    }

    /// The `.npy` path (relative to the export directory).
    pub fn npy_file(&self) -> String {
        format!("{}.npy", self.name)
    }

    /// The whole `.npy` file.
    pub fn npy(&self) -> Vec<u8> {
        let mut out = npy_header(self.descr, &self.shape);
        out.extend_from_slice(&self.data);
        out
    }

    /// Its `index.json` entry: `file` when the `.npy` exists,
    /// `safetensors.{file, tensor}` when the safetensors file does.
    fn index_entry(&self, npy: bool, safetensors: bool) -> serde_json::Value {
        let mut e = json!({
            "dtype": self.descr,
            "shape": self.shape,
            "axes": self.axes,
            "description": self.description,
        });
        if npy {
            e["file"] = json!(self.npy_file());
        }
        if safetensors {
            e["safetensors"] = json!({"file": SAFETENSORS_FILE, "tensor": self.name, "dtype": self.dtype});
        }
        e
    }
}

/// The safetensors header: the 8-byte little-endian length, then the JSON
/// (tensors with `data_offsets` in the order of `arrays`, back to back, and
/// `__metadata__`) padded with spaces to a multiple of 8 bytes.
pub fn safetensors_header(arrays: &[Array], metadata: &[(&str, &str)]) -> Result<Vec<u8>> {
    let mut header = serde_json::Map::new();
    let meta: serde_json::Map<String, serde_json::Value> =
        metadata.iter().map(|(k, v)| (k.to_string(), json!(v))).collect();
    header.insert("__metadata__".into(), serde_json::Value::Object(meta));
    let mut offset = 0usize;
    for a in arrays {
        let end = offset + a.data.len();
        let prev = header.insert(
            a.name.clone(),
            json!({"dtype": a.dtype, "shape": a.shape, "data_offsets": [offset, end]}),
        );
        anyhow::ensure!(
            prev.is_none() && a.name != "__metadata__",
            "safetensors: duplicate tensor name `{}`",
            a.name
        );
        offset = end;
    }
    let mut text = serde_json::to_string(&header)?;
    text.push_str(&" ".repeat((8 - text.len() % 8) % 8));
    let mut out = Vec::with_capacity(8 + text.len());
    out.extend_from_slice(&(text.len() as u64).to_le_bytes());
    out.extend_from_slice(text.as_bytes());
    Ok(out)
}

/// Writes `arrays` as one safetensors file (under a temporary name, then
/// renamed).
pub fn write_safetensors(path: &Path, arrays: &[Array], metadata: &[(&str, &str)]) -> Result<()> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let file = std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    let mut w = std::io::BufWriter::new(file);
    w.write_all(&safetensors_header(arrays, metadata)?)?;
    for a in arrays {
        w.write_all(&a.data)?;
    }
    w.into_inner()
        .map_err(|e| e.into_error())
        .and_then(|f| f.sync_all())
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))?;
    Ok(())
}

/// Collects the arrays of one export; [`Writer::finish`] writes them.
struct Writer {
    arrays: Vec<Array>,
}

impl Writer {
    fn new() -> Self {
        Self { arrays: Vec::new() }
    }

    /// Adds an array; `rel` is its `.npy` path.
    fn put<T: NpyElem>(&mut self, rel: &str, data: &[T], shape: &[usize], axes: &str, what: &str) -> Result<()> {
        let name = rel.strip_suffix(".npy").unwrap_or(rel);
        self.arrays.push(Array::new(name, data, shape, axes, what)?);
        Ok(())
    }

    /// Writes the arrays into `dir` in `format` and returns their index
    /// entries.
    fn finish(self, dir: &Path, format: Format) -> Result<Vec<serde_json::Value>> {
        if format.npy() {
            for a in &self.arrays {
                let path = dir.join(a.npy_file());
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
                }
                write_atomic(&path, &a.npy())?;
            }
        }
        if format.safetensors() {
            write_safetensors(
                &dir.join(SAFETENSORS_FILE),
                &self.arrays,
                &[
                    ("format", "gensplit export v1"),
                    ("index", "index.json"),
                    (
                        "names",
                        "tensor names are the arrays of index.json (the .npy path without .npy)",
                    ),
                ],
            )?;
        }
        Ok(self
            .arrays
            .iter()
            .map(|a| a.index_entry(format.npy(), format.safetensors()))
            .collect())
    }
}

/// Runs (or loads from `out/artifacts`) every stage of `cfg`, then writes
/// `out/export/` in `format` (what `cargo xtask export` does;
/// [`crate::export()`] is this with [`Format::Npy`]).
pub fn run(
    cfg: &ReproConfig,
    out: &Path,
    force: bool,
    digits: &crate::stages::DigitSource,
    format: Format,
) -> Result<()> {
    let (outputs, _) = crate::run_stages(cfg, out, force, digits)?;
    write_as(out, cfg, &outputs, format)
        .with_context(|| format!("writing the export to {}", out.join("export").display()))
}

/// Writes `dir/export/` from the pipeline outputs as `.npy` files.
pub fn write(dir: &Path, cfg: &ReproConfig, out: &Outputs) -> Result<()> {
    write_as(dir, cfg, out, Format::Npy)
}

/// Writes `dir/export/` from the pipeline outputs in `format`.
pub fn write_as(dir: &Path, cfg: &ReproConfig, out: &Outputs, format: Format) -> Result<()> {
    let images = &out.images;
    let dir = dir.join("export");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut w = Writer::new();
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
    let arrays = w.finish(&dir, format)?;
    let index = json!({
        "format": "gensplit export v1",
        "npy": format.npy(),
        "safetensors": format.safetensors().then_some(SAFETENSORS_FILE),
        "loss": "mean softmax cross-entropy in nats over the listed samples; no weight-decay term; hessian of digits/patterns/mixed uses model cnn_pretrained, of modadd uses model modadd on its training pairs",
        "flat_parameter_order": "blocks concatenated in the order listed under models.<name>.blocks, each row-major",
        "models": models,
        "arrays": arrays,
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
    let mut w = Writer::new();
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
    let arrays = w.finish(&tmp, Format::Npy)?;
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
        "arrays": arrays,
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
