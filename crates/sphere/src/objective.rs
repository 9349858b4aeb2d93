//! Objectives: a loss of the logits, differentiated through any model
//! written over [`gensplit_models::Ops`].
//!
//! With logits `zₙ = f(θ; xₙ)` over the `N` samples of the training set:
//!
//! * [`LogitLoss::CrossEntropy`] with temperature `T`:
//!   `L = (1/N) Σₙ [logsumexp(zₙ/T) − zₙ,yₙ/T]`. `T = 1` is the training
//!   loss; `T > 1` "tempers" a saturated minimum (the loss is no longer
//!   dominated by the few smallest margins).
//! * [`LogitLoss::Margin`] with margin `κ`: `L = (1/N) Σₙ softplus(κ − mₙ)`
//!   with `mₙ = zₙ,yₙ − max_{c≠yₙ} zₙ,c`: a fixed-margin loss that does not
//!   reward scaling the logits up once every margin exceeds κ.
//!
//! The gradient is one vector–Jacobian product: the host computes
//! `G = ∂L/∂z` (an `[N, classes]` array), then reverse mode runs through
//! `Σ z ⊙ G` with `G` held constant, giving `Jᵀ G = ∂L/∂θ`.

use crate::SphereError;
use dfdx::prelude::*;
use gensplit_models::{host_vec, Dataset, Dev, Model, Primal, Taped};
use serde::{Deserialize, Serialize};

/// A loss of the logits (labels come from the training set; nothing else).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum LogitLoss {
    /// Softmax cross-entropy of `z / temperature`.
    CrossEntropy {
        /// Temperature T > 0 (1 = the training loss).
        temperature: f64,
    },
    /// `softplus(κ − margin)`, margin = correct logit minus the best other.
    Margin {
        /// κ, in logit units.
        margin: f64,
    },
}

impl LogitLoss {
    /// The training cross-entropy.
    pub const CE: LogitLoss = LogitLoss::CrossEntropy { temperature: 1.0 };

    /// Mean loss over the rows of `z` (`[n, classes]`) and `∂L/∂z`.
    pub fn value_grad(&self, z: &[f64], labels: &[u32], classes: usize) -> (f64, Vec<f64>) {
        let n = labels.len().max(1) as f64;
        let mut g = vec![0.0; z.len()];
        let mut total = 0.0;
        for ((row, grow), &y) in z.chunks(classes).zip(g.chunks_mut(classes)).zip(labels) {
            let y = y as usize;
            match *self {
                LogitLoss::CrossEntropy { temperature: t } => {
                    let m = row.iter().fold(f64::NEG_INFINITY, |a, &v| a.max(v / t));
                    let s: f64 = row.iter().map(|&v| (v / t - m).exp()).sum();
                    total += m + s.ln() - row[y] / t;
                    for (gc, &v) in grow.iter_mut().zip(row) {
                        *gc = (v / t - m).exp() / s / (t * n);
                    }
                    grow[y] -= 1.0 / (t * n);
                }
                LogitLoss::Margin { margin } => {
                    let (mut best, mut arg) = (f64::NEG_INFINITY, 0);
                    for (c, &v) in row.iter().enumerate() {
                        if c != y && v > best {
                            best = v;
                            arg = c;
                        }
                    }
                    let x = margin - (row[y] - best);
                    // softplus(x) and its derivative σ(x), stable both ways
                    let sp = if x > 0.0 {
                        x + (-x).exp().ln_1p()
                    } else {
                        x.exp().ln_1p()
                    };
                    let sig = 1.0 / (1.0 + (-x).exp());
                    total += sp;
                    grow[y] -= sig / n;
                    grow[arg] += sig / n;
                }
            }
        }
        (total / n, g)
    }
}

/// Something the sphere search can minimise: a scalar of θ and its gradient.
/// `Sync`: the search evaluates its starts in parallel.
pub trait Objective: Sync {
    /// Number of parameters.
    fn dim(&self) -> usize;
    /// `L(θ)`, writing `∇L(θ)` into `grad`.
    fn value_grad(&self, theta: &[f64], grad: &mut [f64]) -> Result<f64, SphereError>;
}

/// A [`LogitLoss`] of a model on a dataset (full batch, or streamed in
/// chunks of `batch` samples; the value and gradient are the full means).
pub struct ModelObjective<'a, M: Model + ?Sized> {
    model: &'a M,
    data: &'a Dataset,
    loss: LogitLoss,
    batch: usize,
}

impl<'a, M: Model + ?Sized> ModelObjective<'a, M> {
    /// `batch = 0` means the whole set at once.
    pub fn new(model: &'a M, data: &'a Dataset, loss: LogitLoss, batch: usize) -> Result<Self, SphereError> {
        if data.is_empty() {
            return Err(SphereError::Param {
                field: "data",
                reason: "the dataset is empty".into(),
            });
        }
        match loss {
            LogitLoss::CrossEntropy { temperature } if !(temperature > 0.0 && temperature.is_finite()) => {
                return Err(SphereError::Param {
                    field: "temperature",
                    reason: format!("must be finite and > 0, got {temperature}"),
                })
            }
            LogitLoss::Margin { margin } if !margin.is_finite() => {
                return Err(SphereError::Param {
                    field: "margin",
                    reason: format!("must be finite, got {margin}"),
                })
            }
            _ => {}
        }
        Ok(Self {
            model,
            data,
            loss,
            batch,
        })
    }
    /// The loss.
    pub fn loss(&self) -> LogitLoss {
        self.loss
    }
}

impl<M: Model + ?Sized> Objective for ModelObjective<'_, M> {
    fn dim(&self) -> usize {
        self.model.layout().len()
    }
    fn value_grad(&self, theta: &[f64], grad: &mut [f64]) -> Result<f64, SphereError> {
        let n = self.data.len();
        if theta.len() != self.dim() || grad.len() != self.dim() {
            return Err(SphereError::Length {
                what: "θ or gradient",
                expected: self.dim(),
                got: if theta.len() != self.dim() {
                    theta.len()
                } else {
                    grad.len()
                },
            });
        }
        let bs = if self.batch == 0 { n } else { self.batch.min(n) };
        let classes = self.model.classes();
        grad.iter_mut().for_each(|g| *g = 0.0);
        let dev = Dev::default();
        let mut total = 0.0;
        let mut lo = 0;
        while lo < n {
            let hi = (lo + bs).min(n);
            let (inputs, labels) = self.data.rows(lo, hi);
            gensplit_models::ops::check_batch(self.model, theta, &inputs, labels)?;
            let th = dev.tensor_from_vec(theta.to_vec(), (theta.len(),));
            let mut ops: Primal<f64, Taped<f64>> = Primal::new(self.model.layout(), th.clone());
            let logits = self.model.forward(&mut ops, &inputs)?;
            let z = host_vec(&logits);
            let (l, mut gz) = self.loss.value_grad(&z, labels, classes);
            // chunk means → full mean
            let w = (hi - lo) as f64 / n as f64;
            total += w * l;
            gz.iter_mut().for_each(|g| *g *= w);
            let gt = dev.tensor_from_vec(gz, (hi - lo, classes));
            let s = (logits * gt).sum();
            let grads = s.backward();
            let g = host_vec(&grads.get(&th));
            grad.iter_mut().zip(&g).for_each(|(a, b)| *a += b);
            lo = hi;
        }
        Ok(total)
    }
}
