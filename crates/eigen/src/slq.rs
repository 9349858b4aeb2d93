//! Stochastic Lanczos quadrature (SLQ): spectral density estimation.
//!
//! For a unit probe `v = z/√n` (`z` Rademacher), `m` Lanczos steps give
//! `T_m = Y Θ Y^T`; the Gauss quadrature rule with nodes `θ_j` and weights
//! `τ_j = (e_1^T y_j)^2` satisfies
//!
//! ```text
//! v^T f(A) v ≈ Σ_j τ_j f(θ_j)      (exact for polynomials of degree < 2m)
//! ```
//!
//! and `E[v^T f(A) v] = tr f(A) / n`. Averaging the rules of `n_probes`
//! probes (each with weights summing to 1) estimates the spectral density
//! `φ(t) = (1/n) Σ_i δ(t − λ_i)`; broadening every node by a Gaussian of width
//! `σ` gives a smooth density (as in PyHessian). Lanczos vectors are fully
//! reorthogonalized so the nodes are free of ghost copies; the recurrence is
//! the one [`lanczos()`](crate::lanczos()) runs, and probes are mapped into
//! the operator's domain ([`LinearOperator::constrain`]) as its start
//! vectors are, so a [`crate::Projected`] operator's artificial zero
//! eigenvalues on `span(Q)` get no weight.

use crate::dense::{sym_eig, DenseError};
use crate::operator::LinearOperator;
use crate::util::{lanczos_step, norm, rademacher, scale};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// Parameters of [`slq()`].
#[derive(Debug, Clone, PartialEq)]
pub struct SlqParams {
    /// Number of Rademacher probes (`≥ 1`).
    pub n_probes: usize,
    /// Lanczos steps per probe (`≥ 1`, capped by `n`).
    pub steps: usize,
    /// Seed of the ChaCha8 generator for the probes.
    pub seed: u64,
}

impl Default for SlqParams {
    fn default() -> Self {
        Self {
            n_probes: 10,
            steps: 90,
            seed: 0,
        }
    }
}

/// A quadrature rule (nodes and nonnegative weights).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct QuadratureRule {
    /// Nodes (Ritz values), ascending within each probe.
    pub nodes: Vec<f64>,
    /// Weights (sum to 1 for a single probe and for the pooled rule).
    pub weights: Vec<f64>,
}

impl QuadratureRule {
    /// `Σ_j w_j f(θ_j)`.
    pub fn integrate(&self, f: impl Fn(f64) -> f64) -> f64 {
        self.nodes.iter().zip(&self.weights).map(|(&t, &w)| w * f(t)).sum()
    }

    /// Gaussian-broadened density on `grid`:
    /// `φ(t) = Σ_j w_j exp(−(t − θ_j)² / 2σ²) / (σ √(2π))`.
    pub fn density(&self, grid: &[f64], sigma: f64) -> Vec<f64> {
        gaussian_density(&self.nodes, &self.weights, grid, sigma)
    }
}

/// Result of [`slq()`].
#[derive(Debug, Clone, PartialEq)]
pub struct SlqResult {
    /// One rule per probe (weights sum to 1 each).
    pub probes: Vec<QuadratureRule>,
    /// All probes pooled, weights divided by the number of probes.
    pub pooled: QuadratureRule,
    /// Dimension `n` of the operator.
    pub dim: usize,
    /// Total operator applications.
    pub matvecs: usize,
}

impl SlqResult {
    /// Gaussian-broadened spectral density on `grid` (integrates to ≈ 1 when
    /// the grid covers the nodes with a margin of a few `sigma`).
    pub fn density(&self, grid: &[f64], sigma: f64) -> Vec<f64> {
        self.pooled.density(grid, sigma)
    }

    /// Estimate of `tr f(A) = n · mean_probes Σ_j τ_j f(θ_j)`.
    pub fn trace_of(&self, f: impl Fn(f64) -> f64) -> f64 {
        self.dim as f64 * self.pooled.integrate(f)
    }

    /// Smallest and largest node.
    pub fn range(&self) -> (f64, f64) {
        self.pooled
            .nodes
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &x| {
                (lo.min(x), hi.max(x))
            })
    }

    /// A uniform grid of `points` points over the node range padded by
    /// `pad_sigmas · sigma` on both sides, and the density on it.
    pub fn density_on_grid(&self, points: usize, sigma: f64, pad_sigmas: f64) -> (Vec<f64>, Vec<f64>) {
        let (lo, hi) = self.range();
        let g = linspace(lo - pad_sigmas * sigma, hi + pad_sigmas * sigma, points);
        let d = self.density(&g, sigma);
        (g, d)
    }
}

/// `points` equally spaced values from `lo` to `hi` (inclusive).
pub fn linspace(lo: f64, hi: f64, points: usize) -> Vec<f64> {
    match points {
        0 => vec![],
        1 => vec![lo],
        _ => (0..points)
            .map(|i| lo + (hi - lo) * i as f64 / (points - 1) as f64)
            .collect(),
    }
}

/// Gaussian-broadened density of a weighted point set on `grid`.
pub fn gaussian_density(nodes: &[f64], weights: &[f64], grid: &[f64], sigma: f64) -> Vec<f64> {
    let c = 1.0 / (sigma * (2.0 * std::f64::consts::PI).sqrt());
    grid.iter()
        .map(|&t| {
            nodes
                .iter()
                .zip(weights)
                .map(|(&x, &w)| w * (-(t - x) * (t - x) / (2.0 * sigma * sigma)).exp())
                .sum::<f64>()
                * c
        })
        .collect()
}

/// Errors of [`slq()`].
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SlqError {
    /// The operator has dimension 0.
    #[error("operator has dimension 0")]
    EmptyOperator,
    /// `n_probes == 0` or `steps == 0`.
    #[error("n_probes and steps must be positive")]
    InvalidParams,
    /// The operator returned NaN or an infinity.
    #[error("operator returned a non-finite value at matvec {matvec}")]
    NonFinite {
        /// 1-based index of the offending operator application.
        matvec: usize,
    },
    /// A probe lies (numerically) outside the operator's domain
    /// ([`LinearOperator::constrain`] maps it to ~0).
    #[error("probe {probe} lies outside the operator's domain (constrained to ~0)")]
    ProbeOutsideDomain {
        /// 0-based index of the probe.
        probe: usize,
    },
    /// The small dense eigenproblem failed.
    #[error(transparent)]
    Dense(#[from] DenseError),
}

/// Runs stochastic Lanczos quadrature (see the [module docs](self)).
///
/// Each probe costs at most `min(steps, n)` matvecs (fewer if its Krylov
/// space becomes invariant, in which case the rule is exact).
///
/// ```
/// use gensplit_eigen::{slq::{slq, SlqParams}, Diagonal};
/// let a = Diagonal { diag: (0..100).map(|i| i as f64).collect() };
/// let r = slq(&a, &SlqParams { n_probes: 4, steps: 20, seed: 1 }).unwrap();
/// // The pooled rule's mean is (z^T A z / n) averaged: exactly tr(A)/n here.
/// assert!((r.pooled.integrate(|t| t) - 49.5).abs() < 1e-9);
/// ```
pub fn slq<A: LinearOperator + ?Sized>(op: &A, params: &SlqParams) -> Result<SlqResult, SlqError> {
    // One compiled body for every operator type (see `lanczos`).
    slq_dyn(&op, params)
}

fn slq_dyn(op: &dyn LinearOperator, params: &SlqParams) -> Result<SlqResult, SlqError> {
    let n = op.dim();
    if n == 0 {
        return Err(SlqError::EmptyOperator);
    }
    if params.n_probes == 0 || params.steps == 0 {
        return Err(SlqError::InvalidParams);
    }
    let m_max = params.steps.min(n);
    let mut rng = ChaCha8Rng::seed_from_u64(params.seed);
    let mut probes = Vec::with_capacity(params.n_probes);
    let mut matvecs = 0;
    let mut v = vec![0.0; n * m_max];
    let mut av = vec![0.0; n];
    let mut w = vec![0.0; n];
    for probe in 0..params.n_probes {
        let mut z = rademacher(&mut rng, n);
        scale(1.0 / (n as f64).sqrt(), &mut z);
        // Honour the operator's domain as `lanczos` does (a `Projected`
        // operator acts on span(Q)^⊥ only); an unchanged probe keeps its
        // exact 1/√n entries.
        let before = z.clone();
        op.constrain(&mut z);
        if z != before {
            let nz = norm(&z);
            if nz.is_nan() || nz <= 1e-8 {
                return Err(SlqError::ProbeOutsideDomain { probe });
            }
            scale(1.0 / nz, &mut z);
        }
        v[..n].copy_from_slice(&z);
        let mut alpha = Vec::with_capacity(m_max);
        let mut beta: Vec<f64> = Vec::with_capacity(m_max);
        let mut anorm = 0.0f64;
        for j in 0..m_max {
            let h = lanczos_step(op, &v, n, j, &[], 0, &mut av, &mut w, &mut matvecs)
                .map_err(|matvec| SlqError::NonFinite { matvec })?;
            alpha.push(h[j]);
            let b = norm(&w);
            anorm = anorm.max(h[j].abs()).max(b);
            if j + 1 == m_max || b <= 1e3 * f64::EPSILON * anorm {
                break;
            }
            beta.push(b);
            scale(1.0 / b, &mut w);
            v[(j + 1) * n..(j + 2) * n].copy_from_slice(&w);
        }
        let m = alpha.len();
        let mut t = vec![0.0; m * m];
        for i in 0..m {
            t[i * m + i] = alpha[i];
            if i + 1 < m {
                t[i * m + i + 1] = beta[i];
                t[(i + 1) * m + i] = beta[i];
            }
        }
        let (nodes, y) = sym_eig(&t, m)?;
        let weights = (0..m).map(|j| y[j * m].powi(2)).collect();
        probes.push(QuadratureRule { nodes, weights });
    }
    let np = probes.len() as f64;
    let mut pooled = QuadratureRule::default();
    for p in &probes {
        pooled.nodes.extend_from_slice(&p.nodes);
        pooled.weights.extend(p.weights.iter().map(|w| w / np));
    }
    Ok(SlqResult {
        probes,
        pooled,
        dim: n,
        matvecs,
    })
}
