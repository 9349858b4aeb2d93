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

use crate::batch::{check_batch, curvature_vector_scaled};
use crate::{Curvature, HvpError};
use dfdx::prelude::Device;
use gensplit_eigen::LinearOperator;
use gensplit_models::{loss_and_grad, Dataset, Dev, Float, Inputs, Model};
use std::sync::atomic::{AtomicUsize, Ordering};

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
        })
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

    /// Runs `f` on every batch, two batches side by side, and hands the
    /// results to `sink` in batch order (so sums are order-fixed).
    fn for_each_batch<T: Send>(
        &self,
        f: impl Fn(&Inputs<'_>, &[u32]) -> Result<T, HvpError> + Sync,
        mut sink: impl FnMut((usize, usize), T),
    ) -> Result<(), HvpError> {
        let run = |&(lo, hi): &(usize, usize)| {
            let (inputs, labels) = self.data.rows(lo, hi);
            f(&inputs, labels)
        };
        let batches: Vec<(usize, usize)> = self.batches().collect();
        for pair in batches.chunks(2) {
            match pair {
                [x, y] => {
                    let (a, b) = rayon::join(|| run(x), || run(y));
                    sink(*x, a?);
                    sink(*y, b?);
                }
                _ => sink(pair[0], run(&pair[0])?),
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
        self.for_each_batch(
            |inputs, labels| curvature_vector_scaled(self.model, &self.theta, inputs, labels, v, self.kind, scale),
            |_, part| acc.iter_mut().zip(part).for_each(|(a, p)| *a += p.f64()),
        )?;
        self.matvecs.fetch_add(1, Ordering::Relaxed);
        Ok(acc)
    }

    /// The curvature-vector product `H v` (or `G v`) of the mean loss over
    /// the whole dataset. Error: [`HvpError::DirectionLength`] when
    /// `v.len() != self.dim()`.
    pub fn hvp(&self, v: &[E]) -> Result<Vec<E>, HvpError> {
        Ok(self.product_f64(v)?.into_iter().map(E::of).collect())
    }

    /// Mean loss (nats) and its gradient over the whole dataset, streamed in
    /// the same batches.
    pub fn loss_grad(&self) -> Result<(f64, Vec<E>), HvpError> {
        let n = self.data.len() as f64;
        let (mut loss, mut grad) = (0.0, vec![0.0f64; self.dim()]);
        self.for_each_batch(
            |inputs, labels| Ok(loss_and_grad(self.model, &self.theta, inputs, labels)?),
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

    /// `y = H x` (or `G x`), converting through `E`.
    ///
    /// # Panics
    /// When `x` or `y` does not have length [`Self::dim`] (the trait's
    /// contract; use [`HessianOperator::hvp`] for a checked product).
    fn apply(&self, x: &[f64], y: &mut [f64]) {
        assert_eq!(
            x.len(),
            self.theta.len(),
            "HessianOperator::apply: x has the wrong length"
        );
        assert_eq!(
            y.len(),
            self.theta.len(),
            "HessianOperator::apply: y has the wrong length"
        );
        let v: Vec<E> = x.iter().map(|&a| E::of(a)).collect();
        let r = self.product_f64(&v).expect("length checked above");
        y.copy_from_slice(&r);
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
