//! [`HessianOperator`]: curvature-vector products of the mean loss over a
//! whole dataset, streamed in minibatches, as a
//! [`gensplit_eigen::LinearOperator`].
//!
//! The dataset is cut into consecutive batches of at most `batch_size`
//! samples (the last one may be smaller); batch `b` with `n_b` samples
//! contributes its mean-loss product with weight `n_b / N`, so the sum is
//! exactly the product of the mean loss over all `N` samples
//! (`(1/N) Σₙ ∂²ℓₙ/∂θ² · v`). Batches run two at a time side by side (each
//! batch's serial stretches — dfdx's small ops, buffer copies — then overlap
//! with the other's parallel GEMMs), so at most two batches' graphs are alive
//! and memory is bounded by twice the batch size. Every kernel is
//! deterministic and the per-batch products are added in batch order, so
//! results are bit-reproducible. Products are accumulated over batches in
//! f64 whatever the element type `E`.
//!
//! **Primal cache.** θ is fixed for the operator's lifetime, so everything
//! in a product that does not depend on `v` is the same in every product:
//! the primal forward and, for the Hessian, the backprop gradient that
//! reaches every tangent (see [`gensplit_models::conv::DualConvCache`]).
//! The operator's first product records, per batch and conv layer, the
//! layer's output, its ReLU mask, the im2col of its input and `∂L/∂ẋ`
//! (computing exactly what an uncached product computes). Every later
//! product skips the `W·cols` GEMM and the im2col of `x` in each conv
//! layer's forward and backward, and the `Wᵀ·Ġ` GEMM with its col2im: a
//! stride-2 conv layer costs 6 GEMM units instead of 8, against 3 for a
//! gradient. All products read the same recording, so they stay
//! deterministic; in the tests they also give the same bits as the
//! recording product and as an operator without cache. The cache is capped
//! at [`HessianOperator::with_cache_limit`] bytes (default
//! [`DEFAULT_CACHE_BYTES`]; the reference CNN in f64 takes about 390 KB per
//! sample, so 2048 samples take about 800 MB; f32 half that): batches past
//! the cap run uncached, and the cap can be overshot by the two batches
//! being recorded when it is reached. Models without conv layers record
//! nothing and run uncached.

use crate::batch::{check_batch, curvature_vector_scaled};
use crate::dual::PrimalCache;
use crate::{Curvature, HvpError};
use dfdx::prelude::Device;
use gensplit_eigen::LinearOperator;
use gensplit_models::{loss_and_grad, Dataset, Dev, Float, Inputs, Model};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::OnceLock;

/// Default cap on the primal cache of one [`HessianOperator`]: 1 GiB.
pub const DEFAULT_CACHE_BYTES: usize = 1 << 30;

/// Largest parameter count [`dense_hessian`] accepts (the matrix has n²
/// entries and costs n curvature-vector products).
pub const DENSE_MAX_PARAMS: usize = 4096;

/// Curvature (Hessian or Gauss–Newton) of the mean cross-entropy of `model`
/// at `theta` over `data`, as a matrix-free operator.
#[derive(Debug)]
pub struct HessianOperator<'a, M: Model + ?Sized, E: Float = f64> {
    model: &'a M,
    theta: Vec<E>,
    data: &'a Dataset,
    batch_size: usize,
    kind: Curvature,
    matvecs: AtomicUsize,
    cache_limit: usize,
    /// One entry per batch; `None` for a batch that runs uncached.
    caches: OnceLock<Vec<Option<PrimalCache<E>>>>,
}

impl<'a, M: Model + ?Sized, E: Float> HessianOperator<'a, M, E>
where
    Dev: Device<E>,
{
    /// Validates θ and the whole dataset against the model and builds the
    /// operator. `batch_size = 0` (or ≥ the dataset size) means one batch.
    ///
    /// Errors: [`HvpError::EmptyDataset`], or [`HvpError::Model`] for a wrong
    /// θ length, inputs the model cannot take, or bad labels.
    pub fn new(
        model: &'a M,
        theta: Vec<E>,
        data: &'a Dataset,
        batch_size: usize,
        kind: Curvature,
    ) -> Result<Self, HvpError> {
        if data.is_empty() {
            return Err(HvpError::EmptyDataset);
        }
        check_batch(model, &theta, &data.inputs(), &data.labels)?;
        let n = data.len();
        let batch_size = if batch_size == 0 || batch_size > n {
            n
        } else {
            batch_size
        };
        Ok(Self {
            model,
            theta,
            data,
            batch_size,
            kind,
            matvecs: AtomicUsize::new(0),
            cache_limit: DEFAULT_CACHE_BYTES,
            caches: OnceLock::new(),
        })
    }

    /// Caps the primal cache at `bytes` (0 turns it off; see the module
    /// docs). Drops any recording made so far.
    pub fn with_cache_limit(mut self, bytes: usize) -> Self {
        self.cache_limit = bytes;
        self.caches = OnceLock::new();
        self
    }

    /// Bytes the primal cache holds (0 before the first product).
    pub fn cache_bytes(&self) -> usize {
        self.caches
            .get()
            .map_or(0, |c| c.iter().flatten().map(PrimalCache::bytes).sum())
    }

    /// Number of batches whose products run from the primal cache (0
    /// before the first product).
    pub fn cached_batches(&self) -> usize {
        self.caches.get().map_or(0, |c| c.iter().flatten().count())
    }

    /// Number of parameters n (the operator is n × n).
    pub fn dim(&self) -> usize {
        self.theta.len()
    }
    /// The point θ.
    pub fn theta(&self) -> &[E] {
        &self.theta
    }
    /// Which curvature this operator applies.
    pub fn kind(&self) -> Curvature {
        self.kind
    }
    /// Samples per batch (after resolving `0` to the dataset size).
    pub fn batch_size(&self) -> usize {
        self.batch_size
    }
    /// The model.
    pub fn model(&self) -> &M {
        self.model
    }
    /// The dataset.
    pub fn data(&self) -> &Dataset {
        self.data
    }
    /// Curvature-vector products computed so far ([`Self::hvp`] calls and
    /// [`LinearOperator::apply`] calls alike).
    pub fn matvecs(&self) -> usize {
        self.matvecs.load(Ordering::Relaxed)
    }
    /// Resets the product counter to zero.
    pub fn reset_matvecs(&self) {
        self.matvecs.store(0, Ordering::Relaxed)
    }

    /// Batch boundaries `(lo, hi)`.
    fn batches(&self) -> impl Iterator<Item = (usize, usize)> + '_ {
        let n = self.data.len();
        (0..n)
            .step_by(self.batch_size)
            .map(move |lo| (lo, (lo + self.batch_size).min(n)))
    }

    /// Runs `f(batch index, inputs, labels)` on every batch, two batches
    /// side by side, and hands the results to `sink` in batch order (so
    /// sums are order-fixed).
    fn for_each_batch<T: Send>(
        &self,
        f: impl Fn(usize, &Inputs<'_>, &[u32]) -> Result<T, HvpError> + Sync,
        mut sink: impl FnMut((usize, usize), T),
    ) -> Result<(), HvpError> {
        let run = |&(i, (lo, hi)): &(usize, (usize, usize))| {
            let (inputs, labels) = self.data.rows(lo, hi);
            f(i, &inputs, labels)
        };
        let batches: Vec<(usize, (usize, usize))> = self.batches().enumerate().collect();
        for pair in batches.chunks(2) {
            match pair {
                [x, y] => {
                    let (a, b) = rayon::join(|| run(x), || run(y));
                    sink(x.1, a?);
                    sink(y.1, b?);
                }
                _ => sink(pair[0].1, run(&pair[0])?),
            }
        }
        Ok(())
    }

    /// `H v` (or `G v`) of the mean loss over the dataset, in f64.
    fn product_f64(&self, v: &[E]) -> Result<Vec<f64>, HvpError> {
        if v.len() != self.dim() {
            return Err(HvpError::DirectionLength {
                expected: self.dim(),
                got: v.len(),
            });
        }
        let scale = 1.0 / self.data.len() as f64;
        let mut acc = vec![0.0f64; self.dim()];
        let mut add = |part: Vec<E>| acc.iter_mut().zip(part).for_each(|(a, p)| *a += p.f64());
        let product = |inputs: &Inputs<'_>, labels: &[u32], cache: Option<&PrimalCache<E>>| {
            curvature_vector_scaled(self.model, &self.theta, inputs, labels, v, self.kind, scale, cache)
        };
        match self.caches.get() {
            Some(caches) => self.for_each_batch(
                |i, inputs, labels| product(inputs, labels, caches[i].as_ref()),
                |_, part| add(part),
            )?,
            None => {
                // The first product records each batch's cache as it goes
                // (the recorded parts do not depend on v), keeping batches
                // while the total stays within the cap. Which batches record
                // is decided per pair, so it is deterministic.
                let record = AtomicBool::new(self.cache_limit > 0);
                let mut kept: Vec<Option<PrimalCache<E>>> = self.batches().map(|_| None).collect();
                let mut total = 0usize;
                self.for_each_batch(
                    |_, inputs, labels| {
                        let cache = record.load(Ordering::Relaxed).then(PrimalCache::new);
                        Ok((product(inputs, labels, cache.as_ref())?, cache))
                    },
                    |(lo, _), (part, cache)| {
                        add(part);
                        if let Some(cache) = cache {
                            let bytes = cache.bytes();
                            total += bytes;
                            // Nothing recorded (no conv layers), or over the cap.
                            if bytes == 0 || total > self.cache_limit {
                                record.store(false, Ordering::Relaxed);
                            } else {
                                kept[lo / self.batch_size] = Some(cache);
                            }
                        }
                    },
                )?;
                let _ = self.caches.set(kept);
            }
        }
        self.matvecs.fetch_add(1, Ordering::Relaxed);
        Ok(acc)
    }

    /// The curvature-vector product `H v` (or `G v`) of the mean loss over
    /// the whole dataset. Errors: [`HvpError::DirectionLength`] when
    /// `v.len() != self.dim()`, [`HvpError::NonFinite`] (naming the block)
    /// when the product is NaN or infinite.
    pub fn hvp(&self, v: &[E]) -> Result<Vec<E>, HvpError> {
        let hv: Vec<E> = self.product_f64(v)?.into_iter().map(E::of).collect();
        crate::check_finite(self.model.layout(), &hv)?;
        Ok(hv)
    }

    /// `y = H x` (or `G x`) like [`LinearOperator::apply`], but checked:
    /// [`HvpError::DirectionLength`] when `x` or `y` does not have length
    /// [`Self::dim`], [`HvpError::NonFinite`] when the product is NaN or
    /// infinite (`y` then holds it).
    pub fn try_apply(&self, x: &[f64], y: &mut [f64]) -> Result<(), HvpError> {
        for len in [x.len(), y.len()] {
            if len != self.dim() {
                return Err(HvpError::DirectionLength {
                    expected: self.dim(),
                    got: len,
                });
            }
        }
        let v: Vec<E> = x.iter().map(|&a| E::of(a)).collect();
        y.copy_from_slice(&self.product_f64(&v)?);
        crate::check_finite(self.model.layout(), y)
    }

    /// Mean loss (nats) and its gradient over the whole dataset, streamed in
    /// the same batches.
    pub fn loss_grad(&self) -> Result<(f64, Vec<E>), HvpError> {
        let n = self.data.len() as f64;
        let (mut loss, mut grad) = (0.0, vec![0.0f64; self.dim()]);
        self.for_each_batch(
            |_, inputs, labels| Ok(loss_and_grad(self.model, &self.theta, inputs, labels)?),
            |(lo, hi), g| {
                let w = (hi - lo) as f64 / n;
                loss += w * g.loss;
                grad.iter_mut().zip(g.grad).for_each(|(a, b)| *a += w * b.f64());
            },
        )?;
        Ok((loss, grad.into_iter().map(E::of).collect()))
    }

    /// The dense n × n curvature matrix (row-major), column `j` being the
    /// product with the unit vector `e_j`; n products. Not symmetrized, so
    /// its asymmetry measures the rounding error.
    /// Error: [`HvpError::TooLarge`] beyond [`DENSE_MAX_PARAMS`].
    pub fn dense(&self) -> Result<Vec<f64>, HvpError> {
        let n = self.dim();
        if n > DENSE_MAX_PARAMS {
            return Err(HvpError::TooLarge {
                n,
                max: DENSE_MAX_PARAMS,
            });
        }
        let mut a = vec![0.0; n * n];
        let mut e = vec![E::zero(); n];
        for j in 0..n {
            e[j] = E::one();
            let col = self.product_f64(&e)?;
            e[j] = E::zero();
            for (i, c) in col.into_iter().enumerate() {
                a[i * n + j] = c;
            }
        }
        Ok(a)
    }
}

impl<M: Model + ?Sized, E: Float> LinearOperator for HessianOperator<'_, M, E>
where
    Dev: Device<E>,
{
    fn dim(&self) -> usize {
        self.theta.len()
    }

    /// `y = H x` (or `G x`), converting through `E`. A non-finite product
    /// is written as it is (the solvers of `gensplit_eigen` check every
    /// product and fail with their `NonFinite` error).
    ///
    /// # Panics
    /// When `x` or `y` does not have length [`Self::dim`] (the trait's
    /// contract), or when the model's forward fails (a model that takes a
    /// parameter block twice, [`gensplit_models::ModelError::BlockReused`]);
    /// [`HessianOperator::try_apply`] and
    /// [`HessianOperator::hvp`] are the checked alternatives.
    fn apply(&self, x: &[f64], y: &mut [f64]) {
        match self.try_apply(x, y) {
            Ok(()) | Err(HvpError::NonFinite { .. }) => {}
            Err(e) => panic!("HessianOperator::apply: {e}"),
        }
    }
}

/// Dense curvature matrix (row-major n × n) of the mean loss of `model` at
/// `theta` over `data`, built column by column from products with unit
/// vectors (batches of `batch_size`, `0` = one batch). For small models
/// (at most [`DENSE_MAX_PARAMS`] parameters), tests and oracles.
pub fn dense_hessian<M: Model + ?Sized, E: Float>(
    model: &M,
    theta: &[E],
    data: &Dataset,
    batch_size: usize,
    kind: Curvature,
) -> Result<Vec<f64>, HvpError>
where
    Dev: Device<E>,
{
    HessianOperator::new(model, theta.to_vec(), data, batch_size, kind)?.dense()
}
