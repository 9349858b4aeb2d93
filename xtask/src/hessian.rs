//! The `hessian_*` stages: top-k Hessian eigenpairs (Lanczos on exact HVPs)
//! and a stochastic-Lanczos-quadrature spectral density, for the pretrained
//! CNN on held-out digits, patterns and mixed images, and for the modular
//! MLP on its training pairs.
//!
//! Loss: mean softmax cross-entropy (nats) over the subset, without any
//! weight-decay term. Eigenvalues are in nats per unit θ²; eigenvectors are
//! unit vectors in the model's flat parameter coordinates.

use crate::stages::Trained;
use anyhow::{Context, Result};
use gensplit_eigen::{lanczos, slq, LanczosParams, SlqParams, StepInfo, Which};
use gensplit_hvp::{Curvature, HessianOperator};
use gensplit_models::{Dataset, Model};
use serde::{Deserialize, Serialize};

/// Settings of one Hessian stage.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HessianConfig {
    /// Number of top (largest algebraic) eigenpairs.
    pub k: usize,
    /// Lanczos tolerance: stop when every residual ‖Hv − λv‖ ≤ tol·max|λ|.
    pub tol: f64,
    /// Matvec budget of one Lanczos run.
    pub max_matvecs: usize,
    /// Held-out samples per image set (the first of each test set).
    pub subset: usize,
    /// Mini-batch size of the streamed HVP.
    pub batch_size: usize,
    /// Lanczos start-vector seed.
    pub seed: u64,
    /// SLQ probes (0 = no density).
    pub slq_probes: usize,
    /// SLQ Lanczos steps per probe.
    pub slq_steps: usize,
    /// Samples used for the SLQ density (a prefix of the subset; cheaper).
    pub slq_subset: usize,
    /// Compute HVPs in f64 (f32 otherwise). At a saturated minimum (tiny
    /// loss, the modular MLP) f32 products are too noisy for a residual of
    /// 1e-4; at the CNN minima f32 products reach 1e-6.
    pub f64: bool,
}

/// Result of one Hessian stage.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct HessianResult {
    /// Set name (`digits`, `patterns`, `mixed`, `modadd`).
    pub set: String,
    /// Samples in the loss.
    pub samples: usize,
    /// Loss at θ (nats).
    pub loss: f64,
    /// Top eigenvalues, largest first.
    pub values: Vec<f64>,
    /// ‖Hv − λv‖ of each pair.
    pub residuals: Vec<f64>,
    /// Unit eigenvectors (flat θ coordinates), stored as f32.
    pub vectors: Vec<Vec<f32>>,
    /// HVPs Lanczos used.
    pub matvecs: usize,
    /// Why Lanczos stopped.
    pub stop: String,
    /// SLQ quadrature nodes (eigenvalue axis) and weights, pooled over probes.
    pub slq_nodes: Vec<f64>,
    /// Weights of the pooled rule (sum to 1).
    pub slq_weights: Vec<f64>,
    /// HVPs SLQ used (on the SLQ subset).
    pub slq_matvecs: usize,
}

impl HessianResult {
    /// Whether Lanczos met its tolerance for every pair. `false` when it
    /// stopped on its matvec budget (`stop == "MaxMatvecs"`): the pairs are
    /// then the best found, with the residuals reported. Derived from
    /// `stop`, so artifacts cached before this field existed keep loading.
    pub fn converged(&self) -> bool {
        self.stop != format!("{:?}", gensplit_eigen::StopReason::MaxMatvecs)
    }

    /// max residual / max |λ|.
    pub fn max_rel_residual(&self) -> f64 {
        let scale = self
            .values
            .iter()
            .fold(0.0f64, |a, v| a.max(v.abs()))
            .max(f64::MIN_POSITIVE);
        self.residuals.iter().fold(0.0f64, |a, &r| a.max(r)) / scale
    }
}

/// Computes the top-k eigenpairs and SLQ density of the loss of `trained`
/// on `data` (HVPs in f32 or f64 per `cfg.f64`; Lanczos itself runs in f64).
pub fn run(set: &str, trained: &Trained, data: &Dataset, cfg: &HessianConfig) -> Result<HessianResult> {
    if cfg.f64 {
        run_in::<f64>(set, trained, data, cfg)
    } else {
        run_in::<f32>(set, trained, data, cfg)
    }
}

fn run_in<E: gensplit_models::Float>(
    set: &str,
    trained: &Trained,
    data: &Dataset,
    cfg: &HessianConfig,
) -> Result<HessianResult>
where
    gensplit_models::Dev: dfdx::prelude::Device<E>,
{
    let model = &trained.model;
    let theta: Vec<E> = trained.theta.iter().map(|&t| E::of(t as f64)).collect();
    let op = HessianOperator::<_, E>::new(model, theta.clone(), data, cfg.batch_size, Curvature::Hessian)
        .with_context(|| format!("building the Hessian operator on {set}"))?;
    let (loss, _) = op.loss_grad()?;
    let params = LanczosParams {
        k: cfg.k.min(model.layout().len()),
        which: Which::LargestAlgebraic,
        tol: cfg.tol,
        max_matvecs: cfg.max_matvecs,
        seed: cfg.seed,
        ..Default::default()
    };
    let pb = crate::progress::bar(
        cfg.max_matvecs as u64,
        "{prefix:>22} {pos} HVPs {msg} [{elapsed}]",
        &format!("hessian {set}"),
    );
    let mut observer = |s: &StepInfo<'_>| {
        pb.set_position(s.matvecs as u64);
        pb.set_message(format!(
            "{}/{} converged, max residual {:.1e}",
            s.converged, s.wanted, s.max_residual
        ));
    };
    let eig = lanczos(&op, &params, &mut observer).with_context(|| format!("Lanczos on {set}"))?;
    crate::progress::finish(&pb);
    tracing::info!(
        set,
        matvecs = eig.matvecs,
        stop = ?eig.stop,
        cached_batches = op.cached_batches(),
        cache_mb = op.cache_bytes() as f64 / 1e6,
        "top eigenvalues {:?}",
        eig.values.iter().take(5).map(|v| format!("{v:.3e}")).collect::<Vec<_>>()
    );
    if !eig.converged {
        tracing::warn!(
            set,
            matvecs = eig.matvecs,
            "Lanczos stopped on its budget of {} HVPs without converging (max relative residual {:.1e} > tol {:.0e})",
            cfg.max_matvecs,
            eig.residuals.iter().fold(0.0f64, |a, &r| a.max(r))
                / eig.values.iter().fold(f64::MIN_POSITIVE, |a, v| a.max(v.abs())),
            cfg.tol
        );
    }
    // Free the operator's primal cache before SLQ records its own.
    drop(op);
    let (mut slq_nodes, mut slq_weights, mut slq_matvecs) = (Vec::new(), Vec::new(), 0);
    if cfg.slq_probes > 0 {
        let sub = data.gather(&(0..cfg.slq_subset.min(data.len())).collect::<Vec<_>>());
        let op = HessianOperator::<_, E>::new(model, theta, &sub, cfg.batch_size, Curvature::Hessian)?;
        let r = slq(
            &op,
            &SlqParams {
                n_probes: cfg.slq_probes,
                steps: cfg.slq_steps,
                seed: cfg.seed ^ 0x51,
            },
        )
        .with_context(|| format!("SLQ on {set}"))?;
        slq_nodes = r.pooled.nodes;
        slq_weights = r.pooled.weights;
        slq_matvecs = r.matvecs;
    }
    Ok(HessianResult {
        set: set.to_string(),
        samples: data.len(),
        loss,
        values: eig.values,
        residuals: eig.residuals,
        vectors: eig
            .vectors
            .iter()
            .map(|v| v.iter().map(|&x| x as f32).collect())
            .collect(),
        matvecs: eig.matvecs,
        stop: format!("{:?}", eig.stop),
        slq_nodes,
        slq_weights,
        slq_matvecs,
    })
}
