//! Datasets as model inputs, AdamW on the flat parameter vector, evaluation
//! and the minibatch training loop.
//!
//! AdamW (Loshchilov & Hutter), per coordinate, step t ≥ 1:
//! `m ← β₁m + (1−β₁)g`, `v ← β₂v + (1−β₂)g²`,
//! `θ ← θ − lr·(m/(1−β₁ᵗ)) / (√(v/(1−β₂ᵗ)) + ε) − lr·λ·θ`.
//! With λ = 0 this is Adam. With [`Schedule::Cosine`] the learning rate of
//! step t of T is `lr · ½(1 + cos(π (t−1)/T))`. Shuffling uses a ChaCha8 stream seeded by
//! `(seed, epoch)`, so a run is bit-reproducible.

use crate::model::{Inputs, Model, ModelError};
use crate::ops::{ce_and_correct, evaluate_logits, loss_and_grad};
use crate::{Dev, Float};
use dfdx::prelude::Device;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

/// Owned network inputs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum DataInputs {
    /// Images `[n, 784]`, values in `[0, 1]`.
    Images(Vec<f32>),
    /// Token pairs.
    Tokens {
        /// First operands.
        a: Vec<u32>,
        /// Second operands.
        b: Vec<u32>,
    },
}

/// A labelled dataset a model can consume.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Dataset {
    /// Inputs.
    pub inputs: DataInputs,
    /// Class labels.
    pub labels: Vec<u32>,
}

impl Dataset {
    /// From an image set of `gensplit-data`.
    pub fn from_images(set: &gensplit_data::ImageSet) -> Self {
        Self {
            inputs: DataInputs::Images(set.images.clone()),
            labels: set.labels.iter().map(|&l| l as u32).collect(),
        }
    }
    /// From one split of modular-addition data.
    pub fn from_modadd(split: &gensplit_data::modular::ModAddSplit) -> Self {
        Self {
            inputs: DataInputs::Tokens {
                a: split.a.clone(),
                b: split.b.clone(),
            },
            labels: split.labels.clone(),
        }
    }
    /// Number of samples.
    pub fn len(&self) -> usize {
        self.labels.len()
    }
    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
    /// Borrowed view for the model.
    pub fn inputs(&self) -> Inputs<'_> {
        match &self.inputs {
            DataInputs::Images(p) => Inputs::Images { pixels: p },
            DataInputs::Tokens { a, b } => Inputs::Tokens { a, b },
        }
    }
    /// Rows `lo..hi` as a borrowed view, with their labels.
    ///
    /// # Panics
    /// When `lo > hi` or `hi > self.len()` (like slice indexing);
    /// [`Dataset::try_rows`] is the checked alternative.
    pub fn rows(&self, lo: usize, hi: usize) -> (Inputs<'_>, &[u32]) {
        match self.try_rows(lo, hi) {
            Ok(r) => r,
            Err(e) => panic!("Dataset::rows: {e}"),
        }
    }
    /// Rows `lo..hi` as a borrowed view, with their labels;
    /// [`ModelError::Rows`] when the range is not within the dataset (or the
    /// inputs are shorter than the labels).
    pub fn try_rows(&self, lo: usize, hi: usize) -> Result<(Inputs<'_>, &[u32]), ModelError> {
        let n = self.len();
        let inputs_ok = match &self.inputs {
            DataInputs::Images(p) => p.len() >= hi.saturating_mul(784),
            DataInputs::Tokens { a, b } => a.len() >= hi && b.len() >= hi,
        };
        if lo > hi || hi > n || !inputs_ok {
            return Err(ModelError::Rows { lo, hi, len: n });
        }
        let f = match &self.inputs {
            DataInputs::Images(_) => 784,
            DataInputs::Tokens { .. } => 1,
        };
        Ok((self.inputs().rows(lo, hi, f), &self.labels[lo..hi]))
    }
    /// The samples at `idx`, in that order; [`ModelError::Rows`] for an
    /// index past the end.
    pub fn try_gather(&self, idx: &[usize]) -> Result<Dataset, ModelError> {
        if let Some(&i) = idx.iter().find(|&&i| i >= self.len()) {
            return Err(ModelError::Rows {
                lo: i,
                hi: i + 1,
                len: self.len(),
            });
        }
        self.try_rows(0, self.len())?;
        Ok(self.gather(idx))
    }
    /// The samples at `idx`, in that order.
    ///
    /// # Panics
    /// When an index is out of range; [`Dataset::try_gather`] is the checked
    /// alternative.
    pub fn gather(&self, idx: &[usize]) -> Dataset {
        let inputs = match &self.inputs {
            DataInputs::Images(p) => {
                let mut v = Vec::with_capacity(idx.len() * 784);
                for &i in idx {
                    v.extend_from_slice(&p[i * 784..(i + 1) * 784]);
                }
                DataInputs::Images(v)
            }
            DataInputs::Tokens { a, b } => DataInputs::Tokens {
                a: idx.iter().map(|&i| a[i]).collect(),
                b: idx.iter().map(|&i| b[i]).collect(),
            },
        };
        Dataset {
            inputs,
            labels: idx.iter().map(|&i| self.labels[i]).collect(),
        }
    }
    /// Concatenation of two datasets of the same kind.
    pub fn concat(&self, other: &Dataset) -> Result<Dataset, ModelError> {
        let inputs = match (&self.inputs, &other.inputs) {
            (DataInputs::Images(x), DataInputs::Images(y)) => DataInputs::Images([x.as_slice(), y].concat()),
            (DataInputs::Tokens { a, b }, DataInputs::Tokens { a: a2, b: b2 }) => DataInputs::Tokens {
                a: [a.as_slice(), a2].concat(),
                b: [b.as_slice(), b2].concat(),
            },
            _ => return Err(ModelError::Inputs("cannot concatenate images with tokens".into())),
        };
        Ok(Dataset {
            inputs,
            labels: [self.labels.as_slice(), &other.labels].concat(),
        })
    }
}

/// AdamW hyper-parameters.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AdamWConfig {
    /// Learning rate.
    pub lr: f64,
    /// First-moment decay β₁.
    pub beta1: f64,
    /// Second-moment decay β₂.
    pub beta2: f64,
    /// ε in the denominator.
    pub eps: f64,
    /// Decoupled weight decay λ (0 = Adam).
    pub weight_decay: f64,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        Self {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
        }
    }
}

/// AdamW state over a flat parameter vector.
#[derive(Clone, Debug)]
pub struct AdamW {
    cfg: AdamWConfig,
    m: Vec<f64>,
    v: Vec<f64>,
    t: u64,
}

impl AdamW {
    /// Fresh state for `n` parameters.
    pub fn new(cfg: AdamWConfig, n: usize) -> Self {
        Self {
            cfg,
            m: vec![0.0; n],
            v: vec![0.0; n],
            t: 0,
        }
    }
    /// One update of `theta` with gradient `grad`.
    pub fn step<E: Float>(&mut self, theta: &mut [E], grad: &[E]) {
        self.step_scaled(theta, grad, 1.0)
    }
    /// One update with the learning rate multiplied by `scale` (schedules).
    pub fn step_scaled<E: Float>(&mut self, theta: &mut [E], grad: &[E], scale: f64) {
        self.t += 1;
        let mut c = self.cfg.clone();
        c.lr *= scale;
        let bc1 = 1.0 - c.beta1.powi(self.t as i32);
        let bc2 = 1.0 - c.beta2.powi(self.t as i32);
        for i in 0..theta.len() {
            let g = grad[i].f64();
            self.m[i] = c.beta1 * self.m[i] + (1.0 - c.beta1) * g;
            self.v[i] = c.beta2 * self.v[i] + (1.0 - c.beta2) * g * g;
            let th = theta[i].f64();
            let upd = c.lr * (self.m[i] / bc1) / ((self.v[i] / bc2).sqrt() + c.eps) + c.lr * c.weight_decay * th;
            theta[i] = E::of(th - upd);
        }
    }
}

/// Loss and accuracy of a model on a dataset.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Eval {
    /// Mean cross-entropy (nats).
    pub loss: f64,
    /// Fraction correct in `[0, 1]`.
    pub acc: f64,
}

/// Evaluates in chunks of `chunk` samples (bounded memory).
pub fn evaluate<M: Model + ?Sized, E: Float>(
    model: &M,
    theta: &[E],
    data: &Dataset,
    chunk: usize,
) -> Result<Eval, ModelError>
where
    Dev: Device<E>,
{
    let (mut loss, mut correct) = (0.0, 0usize);
    let chunk = chunk.max(1);
    for lo in (0..data.len()).step_by(chunk) {
        let hi = (lo + chunk).min(data.len());
        let (inp, labels) = data.rows(lo, hi);
        let logits = evaluate_logits(model, theta, &inp)?;
        let (l, c) = ce_and_correct(&logits, labels, model.classes());
        loss += l * (hi - lo) as f64;
        correct += c;
    }
    let n = data.len().max(1) as f64;
    Ok(Eval {
        loss: loss / n,
        acc: correct as f64 / n,
    })
}

/// Learning-rate schedule over a phase.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Schedule {
    /// Constant learning rate.
    #[default]
    Constant,
    /// Cosine decay from `lr` to 0 over the phase.
    Cosine,
}

impl Schedule {
    /// Multiplier of the learning rate at step `t` (1-based) of `total`.
    pub fn factor(self, t: usize, total: usize) -> f64 {
        match self {
            Schedule::Constant => 1.0,
            Schedule::Cosine => 0.5 * (1.0 + (std::f64::consts::PI * (t - 1) as f64 / total.max(1) as f64).cos()),
        }
    }
}

/// One phase of training.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    /// Optimizer steps.
    pub steps: usize,
    /// Minibatch size (`0` or ≥ the dataset size = full batch).
    pub batch_size: usize,
    /// Optimizer settings.
    pub optim: AdamWConfig,
    /// Learning-rate schedule.
    pub schedule: Schedule,
    /// Seed of the shuffling stream.
    pub seed: u64,
    /// Evaluate (and log a curve point) every this many steps (and at the end).
    pub eval_every: usize,
    /// Store a copy of θ every this many steps (0 = never).
    pub checkpoint_every: usize,
}

/// One point of a training curve.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CurvePoint {
    /// Optimizer steps done so far (cumulative over phases).
    pub step: usize,
    /// Mean minibatch loss since the previous point.
    pub train_loss: f64,
    /// `(set name, evaluation)` for each evaluation set.
    pub evals: Vec<(String, Eval)>,
}

/// What a training run records.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TrainLog {
    /// Curve points.
    pub curve: Vec<CurvePoint>,
    /// `(step, θ)` checkpoints.
    pub checkpoints: Vec<(usize, Vec<f32>)>,
    /// Steps done.
    pub steps: usize,
}

/// Progress notifications from [`train`].
#[derive(Clone, Debug)]
pub enum Progress<'a> {
    /// A step finished.
    Step {
        /// Steps done in this phase.
        done: usize,
        /// Steps of this phase.
        total: usize,
        /// Its minibatch loss.
        loss: f64,
    },
    /// An evaluation point was logged.
    Point(&'a CurvePoint),
}

/// [`ModelError::NonFinite`] naming the first block of `model`'s layout
/// where `values` (θ or a gradient, same layout) holds NaN or an infinity.
fn check_finite<M: Model + ?Sized>(
    model: &M,
    values: &[impl Float],
    step: usize,
    quantity: &'static str,
) -> Result<(), ModelError> {
    if values.iter().all(|v| v.is_finite()) {
        return Ok(());
    }
    let layout = model.layout();
    let block = layout
        .blocks()
        .iter()
        .find(|b| values.get(b.range()).is_some_and(|s| s.iter().any(|v| !v.is_finite())))
        .map_or_else(|| "(outside the layout)".to_string(), |b| b.name.clone());
    Err(ModelError::NonFinite {
        step,
        quantity,
        block: Some(block),
    })
}

/// Trains `theta` in place on `data` with AdamW minibatches, evaluating on
/// `evals` every `eval_every` steps; appends to `log` (so phases chain).
///
/// Training stops with [`ModelError::NonFinite`] (naming the step and the
/// first affected parameter block) as soon as θ, a gradient or a loss is NaN
/// or infinite; θ may then hold the last (finite or not) update.
pub fn train<M: Model + ?Sized>(
    model: &M,
    theta: &mut [f32],
    data: &Dataset,
    cfg: &TrainConfig,
    evals: &[(&str, &Dataset)],
    log: &mut TrainLog,
    progress: &mut dyn FnMut(Progress),
) -> Result<(), ModelError> {
    if data.is_empty() {
        return Err(ModelError::Inputs("empty training set".into()));
    }
    if cfg.steps == 0 {
        return Ok(());
    }
    let n = data.len();
    let bs = if cfg.batch_size == 0 || cfg.batch_size >= n {
        n
    } else {
        cfg.batch_size
    };
    check_finite(model, theta, log.steps, "parameters")?;
    let mut opt = AdamW::new(cfg.optim.clone(), theta.len());
    let mut order: Vec<usize> = (0..n).collect();
    let (mut epoch, mut pos) = (0u64, n); // force a shuffle at the first step
    let (mut acc_loss, mut acc_n) = (0.0, 0usize);
    let full = bs == n;
    for step in 1..=cfg.steps {
        let g = if full {
            loss_and_grad(model, theta, &data.inputs(), &data.labels)?
        } else {
            if pos + bs > n {
                let mut rng =
                    rand_chacha::ChaCha8Rng::seed_from_u64(cfg.seed ^ epoch.wrapping_mul(0x9E37_79B9_7F4A_7C15));
                order.shuffle(&mut rng);
                epoch += 1;
                pos = 0;
            }
            let batch = data.gather(&order[pos..pos + bs]);
            pos += bs;
            loss_and_grad(model, theta, &batch.inputs(), &batch.labels)?
        };
        let at = log.steps + step;
        check_finite(model, &g.grad, at, "gradient")?;
        if !g.loss.is_finite() {
            return Err(ModelError::NonFinite {
                step: at,
                quantity: "loss",
                block: None,
            });
        }
        opt.step_scaled(theta, &g.grad, cfg.schedule.factor(step, cfg.steps));
        check_finite(model, theta, at, "parameters")?;
        acc_loss += g.loss;
        acc_n += 1;
        progress(Progress::Step {
            done: step,
            total: cfg.steps,
            loss: g.loss,
        });
        if cfg.checkpoint_every > 0 && step % cfg.checkpoint_every == 0 {
            log.checkpoints.push((log.steps + step, theta.to_vec()));
        }
        if step % cfg.eval_every.max(1) == 0 || step == cfg.steps {
            let mut point = CurvePoint {
                step: log.steps + step,
                train_loss: acc_loss / acc_n as f64,
                evals: Vec::new(),
            };
            for (name, set) in evals {
                point.evals.push((name.to_string(), evaluate(model, theta, set, 2048)?));
            }
            tracing::debug!(step = point.step, train_loss = point.train_loss, "curve point");
            progress(Progress::Point(&point));
            log.curve.push(point);
            acc_loss = 0.0;
            acc_n = 0;
        }
    }
    log.steps += cfg.steps;
    Ok(())
}
