//! # gensplit-hvp
//!
//! Exact Hessian-vector products (and generalized Gauss–Newton products) of
//! a model's mean cross-entropy with respect to its flat parameter vector θ,
//! by reverse-over-forward on dfdx — first-order autodiff only, no finite
//! differences.
//!
//! ```
//! use gensplit_eigen::{lanczos, LanczosParams, NoObserver, Which};
//! use gensplit_hvp::{Curvature, HessianOperator};
//! use gensplit_models::{DataInputs, Dataset, Model, ModMlp, ModMlpConfig};
//!
//! // A small modular-addition MLP and all (a, b) pairs mod 5.
//! let model = ModMlp::new(&ModMlpConfig { p: 5, embed: 3, hidden: 8 }).unwrap();
//! let theta: Vec<f64> = model.init(0);
//! let (a, b): (Vec<u32>, Vec<u32>) = (0..25).map(|i| (i / 5, i % 5)).unzip();
//! let labels = a.iter().zip(&b).map(|(x, y)| (x + y) % 5).collect();
//! let data = Dataset { inputs: DataInputs::Tokens { a, b }, labels };
//!
//! // H·v of the mean loss over the dataset, in batches of 10.
//! let h = HessianOperator::new(&model, theta.clone(), &data, 10, Curvature::Hessian).unwrap();
//! let v = vec![0.01; theta.len()];
//! let hv = h.hvp(&v).unwrap();
//! assert_eq!(hv.len(), theta.len());
//!
//! // Top-3 eigenpairs by Lanczos (the operator is a `LinearOperator`).
//! let params = LanczosParams { k: 3, which: Which::LargestAlgebraic, tol: 1e-8, ..Default::default() };
//! let eig = lanczos(&h, &params, &mut NoObserver).unwrap();
//! assert!(eig.values[0] >= eig.values[1] && eig.values[1] >= eig.values[2]);
//! assert_eq!(eig.matvecs, h.matvecs() - 1);
//! ```
//!
//! ## The math
//!
//! θ ∈ ℝⁿ, logits `zₙ = f(θ; xₙ)` (`[N, K]`), `sₙ = softmax(zₙ)`, one-hot
//! targets `yₙ`, loss `L(θ) = −(1/N) Σₙ log sₙ[yₙ]` in nats; the gradient
//! `∇L = (1/N) Σₙ Jₙᵀ (sₙ − yₙ)` with `Jₙ = ∂zₙ/∂θ`.
//!
//! 1. **Forward with tangent.** [`Dual`] runs the model's single forward
//!    pass (the [`gensplit_models::Ops`] trait) on (primal, tangent) pairs,
//!    the tangent being the directional derivative `ż = J v` along a fixed
//!    `v`: linear `ż = ẋ Wᵀ + x Vᵀ + c`, conv
//!    `ż = conv(ẋ, W, 0) + conv(x, V, c)`, ReLU `ȧ = 1[z > 0] · ż` (mask
//!    from the primal values, a constant: ReLU's second derivative is zero
//!    almost everywhere), embedding `[V_E(a) ; V_E(b)]`, input tangent 0,
//!    where `(V, c)` is v's block at `(W, b)`'s place in θ.
//! 2. **Hessian.** `L̇(θ) = ∇L·v = (1/N) Σₙ Σₖ (sₙₖ − yₙₖ) żₙₖ` is built as
//!    a differentiable scalar of θ (softmax taped through z, ż taped through
//!    the tangent branch, v constant); reverse mode gives
//!    `∇θ L̇ = H v` exactly. Units: `H v` has units of loss (nats) per unit
//!    θ², per unit of `v`; an eigenvalue λ means `L(θ + εu) ≈ L + ε∇L·u +
//!    ½λε²` along its unit eigenvector `u`.
//! 3. **Gauss–Newton.** `G v = (1/N) Σₙ Jₙᵀ (diag(sₙ) − sₙ sₙᵀ) Jₙ v`: the
//!    same forward gives `ż = J v` (untaped), `u = diag(s)ż − s(sᵀż)` is
//!    formed as a constant, and reverse mode on `(1/N) Σ u · z` through the
//!    primal logits gives `Jᵀ u / N`. G is symmetric positive semidefinite;
//!    `H = G + (1/N) Σₙₖ (sₙₖ − yₙₖ) ∇²zₙₖ`.
//! 4. **Streaming.** [`HessianOperator`] sums per-batch products weighted by
//!    `batch size / N`, so the result is the product for the mean over all N
//!    samples whatever the batch size, with at most two batches' graphs in
//!    memory (two batches run side by side).
//! 5. **Primal cache.** At a fixed θ, the primal forward and the gradient
//!    that reaches every tangent activation (`∂L̇/∂ż` at every layer: `L̇`
//!    is linear in the tangents with coefficients `(s − y)/N`, so this is
//!    the ordinary backprop gradient) do not depend on `v`. The operator's
//!    first product records them per batch for the conv layers
//!    ([`PrimalCache`]), and later products reuse them.
//!
//! For the reference CNN, one cold product ([`curvature_vector`]) measured
//! 1.8–2.2 gradients (the tangent branch repeats layer work of the forward
//! and backward passes), and an operator product from the cache 1.4–1.7
//! (docs/performance.md).
//!
//! ## Modules
//!
//! * [`dual`]: the [`Dual`] forward-with-tangent implementation of `Ops`.
//! * [`batch`]: curvature-vector products on one batch.
//! * [`operator`]: [`HessianOperator`] over a dataset, the
//!   [`gensplit_eigen::LinearOperator`] impl, and [`dense_hessian`].
//! * [`blocks`]: per-block curvature — the operator restricted to named
//!   parameter blocks ([`BlockSelection`], [`BlockOperator`]) and the
//!   off-diagonal block between two sets ([`OffDiagonal`]).

pub mod batch;
pub mod blocks;
pub mod dual;
pub mod operator;

pub use batch::curvature_vector;
pub use blocks::{BlockError, BlockOperator, BlockSelection, OffDiagonal};
pub use dual::{Dual, DualAct, PrimalCache};
pub use operator::{dense_hessian, HessianOperator, DEFAULT_CACHE_BYTES, DENSE_MAX_PARAMS};

use gensplit_models::{ModelError, ParamLayout};

/// `Err(`[`HvpError::NonFinite`]`)` naming the first block of `layout`
/// where the product `hv` is NaN or infinite.
pub(crate) fn check_finite<E: gensplit_models::Float>(layout: &ParamLayout, hv: &[E]) -> Result<(), HvpError> {
    match hv.iter().position(|x| !x.is_finite()) {
        None => Ok(()),
        Some(index) => Err(HvpError::NonFinite {
            block: layout
                .blocks()
                .iter()
                .find(|b| b.range().contains(&index))
                .map_or_else(|| "(outside the layout)".to_string(), |b| b.name.clone()),
            index,
        }),
    }
}

/// Which curvature matrix a product uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Curvature {
    /// The exact Hessian `H = ∇²L` (symmetric, indefinite in general).
    #[default]
    Hessian,
    /// The generalized Gauss–Newton matrix `G = Jᵀ H_CE J / N` (symmetric
    /// positive semidefinite).
    GaussNewton,
}

/// Errors of the curvature products.
#[derive(Clone, Debug, thiserror::Error, PartialEq)]
pub enum HvpError {
    /// The direction `v` does not have θ's length.
    #[error("direction has {got} entries, the model has {expected} parameters")]
    DirectionLength {
        /// Number of parameters.
        expected: usize,
        /// Given length.
        got: usize,
    },
    /// θ, the inputs or the labels do not fit the model.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// The dataset has no samples.
    #[error("the dataset is empty")]
    EmptyDataset,
    /// A curvature-vector product came out NaN or infinite (overflow in
    /// the model, or a non-finite θ or direction).
    #[error("the curvature-vector product is non-finite in parameter block `{block}` (entry {index})")]
    NonFinite {
        /// Name of the first parameter block holding a non-finite entry.
        block: String,
        /// Index of that entry in the flat vector.
        index: usize,
    },
    /// A primal cache does not belong to this pass (recorded for another
    /// batch, model or call site).
    #[error("primal cache of conv call {conv} does not fit this pass: {reason}")]
    CacheMismatch {
        /// Index of the conv call in forward order.
        conv: usize,
        /// What differs.
        reason: String,
    },
    /// A dense matrix was requested for too many parameters.
    #[error("a dense {n} x {n} curvature matrix exceeds the limit of {max} parameters")]
    TooLarge {
        /// Number of parameters.
        n: usize,
        /// The limit.
        max: usize,
    },
}
