//! Per-layer curvature of a trained model: for each layer (weight and bias
//! together, e.g. `conv1.*`), the top eigenvalue and the Hutchinson trace of
//! the Hessian restricted to that layer's parameters, and the share of each
//! full top eigenvector's squared norm that lies in the layer.
//!
//! With A a layer's coordinates in θ and `E_A` their zero-padding embedding,
//! the layer's block is `H_AA = E_Aᵀ H E_A` (see [`gensplit_hvp::blocks`]);
//! each of its products costs one full Hessian-vector product (f32 or f64 as
//! the Hessian stages, streamed in batches, one shared operator, so the
//! primal cache is recorded once for all layers). By Cauchy interlacing a
//! block's top eigenvalue is at most H's top eigenvalue, and the block
//! traces add up to `tr H`. In a ReLU network
//! the logits are piecewise linear in any single layer's parameters, so on
//! these diagonal blocks the Hessian equals the Gauss–Newton matrix (the
//! residual term `Σ (s − y) ∇²z` vanishes there): every number of the table
//! is the same for both; H and G differ only across layers.
//!
//! Units: eigenvalues and traces in nats per unit θ²; shares in [0, 1], and
//! over all rows each top eigenvector's shares sum to 1.

use anyhow::{ensure, Context, Result};
use gensplit_eigen::{hutchinson, lanczos, LanczosParams, NoObserver, StopReason, Which};
use gensplit_hvp::{BlockOperator, BlockSelection, Curvature, HessianOperator};
use gensplit_models::{AnyModel, Dataset, Model};
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;

/// Lanczos tolerance of a block's top eigenvalue (relative residual).
pub const LANCZOS_TOL: f64 = 1e-4;

/// Matvec budget of one block's Lanczos run.
pub const LANCZOS_MAX_MATVECS: usize = 300;

/// Curvature of one layer's parameter block.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BlockRow {
    /// The layer, as the pattern that selects it (`conv1.*`, `fc2.*`; a
    /// block name for a single-block layer such as `embed`).
    pub block: String,
    /// Parameters in the layer (the block's dimension |A|).
    pub params: usize,
    /// Largest eigenvalue of the restricted Hessian `H_AA` (Lanczos,
    /// relative residual [`LANCZOS_TOL`] unless the budget ran out, which is
    /// logged).
    pub top_eigenvalue: f64,
    /// Hutchinson estimate of `tr H_AA`.
    pub trace: f64,
    /// Standard error of [`Self::trace`] (sample standard deviation of the
    /// probe values over √probes).
    pub trace_std: f64,
    /// For each of the first `k_top` full top eigenvectors u, `‖u_A‖² / ‖u‖²`.
    pub top_vector_share: Vec<f64>,
}

/// The per-layer table of `model` at `theta` on `data` (mean cross-entropy,
/// batches of `batch_size`, `0` = one batch): one [`BlockRow`] per layer in
/// θ order ([`BlockSelection::layers`]).
///
/// `top_vectors` are full top Hessian eigenvectors (θ's length; the first
/// `k_top` are used, fewer if fewer are given); `probes` (≥ 2) Rademacher
/// probes per layer for Hutchinson; `seed` seeds Lanczos' start vectors and
/// the probes (each layer gets its own stream).
///
/// Cost: per layer, Lanczos' products (at most [`LANCZOS_MAX_MATVECS`]) plus
/// `probes`, each one full Hessian-vector product (the first one also
/// records the operator's primal cache, shared by all layers), in f64 when
/// `f64` is set and in f32 otherwise (Lanczos and Hutchinson run in f64).
#[allow(clippy::too_many_arguments)] // the report stage passes each piece separately
pub fn per_block(
    model: &AnyModel,
    theta: &[f32],
    data: &Dataset,
    batch_size: usize,
    top_vectors: &[Vec<f32>],
    k_top: usize,
    probes: usize,
    seed: u64,
    f64: bool,
) -> Result<Vec<BlockRow>> {
    if f64 {
        per_block_in::<f64>(model, theta, data, batch_size, top_vectors, k_top, probes, seed)
    } else {
        per_block_in::<f32>(model, theta, data, batch_size, top_vectors, k_top, probes, seed)
    }
}

#[allow(clippy::too_many_arguments)]
fn per_block_in<E: gensplit_models::Float>(
    model: &AnyModel,
    theta: &[f32],
    data: &Dataset,
    batch_size: usize,
    top_vectors: &[Vec<f32>],
    k_top: usize,
    probes: usize,
    seed: u64,
) -> Result<Vec<BlockRow>>
where
    gensplit_models::Dev: dfdx::prelude::Device<E>,
{
    let layout = model.layout();
    let n = layout.len();
    ensure!(
        theta.len() == n,
        "θ has {} entries, the model has {n} parameters",
        theta.len()
    );
    ensure!(
        probes >= 2,
        "per-block traces need at least 2 Hutchinson probes, got {probes}"
    );
    let top = &top_vectors[..k_top.min(top_vectors.len())];
    for (j, u) in top.iter().enumerate() {
        ensure!(
            u.len() == n,
            "top eigenvector {j} has {} entries, the model has {n} parameters",
            u.len()
        );
    }
    let theta: Vec<E> = theta.iter().map(|&t| E::of(f64::from(t))).collect();
    let op = HessianOperator::<_, E>::new(model, theta, data, batch_size, Curvature::Hessian)
        .context("building the Hessian operator for the per-block table")?;
    let mut rows = Vec::new();
    for (i, (label, sel)) in BlockSelection::layers(layout).into_iter().enumerate() {
        let layer_seed = seed ^ (0xb10c_u64 << 16) ^ i as u64;
        let params = sel.len();
        let top_vector_share = top.iter().map(|u| sel.norm_share(u)).collect();
        let block = BlockOperator::new(&op, sel).with_context(|| format!("restricting H to {label}"))?;
        let before = op.matvecs();
        let eig = lanczos(
            &block,
            &LanczosParams {
                k: 1,
                which: Which::LargestAlgebraic,
                tol: LANCZOS_TOL,
                max_matvecs: LANCZOS_MAX_MATVECS,
                seed: layer_seed,
                ..Default::default()
            },
            &mut NoObserver,
        )
        .with_context(|| format!("Lanczos on the {label} block"))?;
        let top_eigenvalue = eig.values[0];
        let rel_residual = eig.residuals[0] / top_eigenvalue.abs().max(f64::MIN_POSITIVE);
        if eig.stop == StopReason::MaxMatvecs {
            tracing::warn!(block = %label, rel_residual, "block Lanczos ran out of its {LANCZOS_MAX_MATVECS} HVPs");
        }
        let t = hutchinson(&block, probes, layer_seed.rotate_left(32))
            .with_context(|| format!("Hutchinson trace of the {label} block"))?;
        tracing::info!(
            block = %label,
            params,
            top_eigenvalue,
            rel_residual,
            lanczos_hvps = eig.matvecs,
            trace = t.estimate,
            trace_std = t.std_error,
            hvps = op.matvecs() - before,
            "per-block curvature"
        );
        rows.push(BlockRow {
            block: label,
            params,
            top_eigenvalue,
            trace: t.estimate,
            trace_std: t.std_error,
            top_vector_share,
        });
    }
    Ok(rows)
}

/// Renders `rows` as a Markdown table: layer, parameters, top eigenvalue,
/// trace ± standard error, and one column per top eigenvector with its norm
/// share in percent (`u1`, `u2`, …; blank where a row has fewer).
pub fn markdown_table(rows: &[BlockRow]) -> String {
    let k = rows.iter().map(|r| r.top_vector_share.len()).max().unwrap_or(0);
    let mut s = String::from("| layer | params | top eigenvalue | trace (Hutchinson) |");
    for j in 1..=k {
        let _ = write!(s, " u{j} share |");
    }
    s.push_str("\n| --- | ---: | ---: | ---: |");
    s.push_str(&" ---: |".repeat(k));
    s.push('\n');
    for r in rows {
        let _ = write!(
            s,
            "| `{}` | {} | {:.4} | {:.4} ± {:.2} |",
            r.block, r.params, r.top_eigenvalue, r.trace, r.trace_std
        );
        for j in 0..k {
            match r.top_vector_share.get(j) {
                Some(v) => {
                    let _ = write!(s, " {:.1}% |", 100.0 * v);
                }
                None => s.push_str(" |"),
            }
        }
        s.push('\n');
    }
    s
}
