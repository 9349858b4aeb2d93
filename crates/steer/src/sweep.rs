//! Sweeps, evaluation and the honest operating point.
//!
//! A steering run produces a path of parameter vectors `θ(α)`: a straight
//! line `θ* + α d` for a direction `d` (α in units of θ, both signs, since
//! an eigenvector's sign is arbitrary), or the iterates of a walk
//! ([`crate::walk`], α = `‖θ_t − θ*‖`). Each point is evaluated
//! ([`evaluate_sets`]: mean cross-entropy in nats and accuracy in `[0, 1]`)
//! on named calibration sets, and [`operating_point`] picks one point by a
//! rule that reads calibration numbers only, so the accuracies reported at
//! that point on a disjoint held-out split are honest.
//!
//! [`kl_from`] measures how far a steered model moved on data it should keep:
//! the mean over samples of `KL(p_base ‖ p_steered) = Σ_c p_base,c (log
//! p_base,c − log p_steered,c)`, in nats.

use crate::SteerError;
use gensplit_models::ops::{ce_and_correct, log_softmax};
use gensplit_models::{evaluate, evaluate_logits, Dataset, Eval, Model};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One evaluated point of a path.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Point {
    /// Step size along a direction (signed, θ units), or distance from θ*
    /// for walks.
    pub alpha: f64,
    /// Iteration of a walk (`None` for straight lines).
    pub step: Option<usize>,
    /// Evaluation per set name.
    pub evals: BTreeMap<String, Eval>,
}

impl Point {
    /// Accuracy on `set` (NaN when the set was not evaluated).
    pub fn acc(&self, set: &str) -> f64 {
        self.evals.get(set).map_or(f64::NAN, |e| e.acc)
    }
    /// Loss on `set` (NaN when not evaluated).
    pub fn loss(&self, set: &str) -> f64 {
        self.evals.get(set).map_or(f64::NAN, |e| e.loss)
    }
}

/// Samples per forward pass of every evaluation here (bounded memory; the
/// chunking fixes the order of the sums, so all paths agree bit for bit).
const CHUNK: usize = 1024;

/// Evaluates θ (f32) on every named set, in chunks of [`CHUNK`] samples.
pub fn evaluate_sets<M: Model + ?Sized>(
    model: &M,
    theta: &[f32],
    sets: &[(&str, &Dataset)],
) -> Result<BTreeMap<String, Eval>, SteerError> {
    let mut out = BTreeMap::new();
    for (name, data) in sets {
        let e = evaluate(model, theta, data, CHUNK)?;
        if !e.loss.is_finite() {
            return Err(SteerError::NonFinite {
                what: format!("loss on `{name}`"),
            });
        }
        out.insert(name.to_string(), e);
    }
    Ok(out)
}

/// `θ* + α d`, rounded to f32 (the models' storage type).
pub fn offset(theta: &[f32], d: &[f64], alpha: f64) -> Result<Vec<f32>, SteerError> {
    if d.len() != theta.len() {
        return Err(SteerError::Length {
            what: "direction".into(),
            expected: theta.len(),
            got: d.len(),
        });
    }
    if !alpha.is_finite() {
        return Err(SteerError::Invalid {
            field: "alpha",
            reason: format!("must be finite, got {alpha}"),
        });
    }
    Ok(theta
        .iter()
        .zip(d)
        .map(|(&t, &x)| (t as f64 + alpha * x) as f32)
        .collect())
}

/// Evaluates the straight line `θ* + α d` at every α of `alphas`.
pub fn line<M: Model + ?Sized>(
    model: &M,
    theta: &[f32],
    d: &[f64],
    alphas: &[f64],
    sets: &[(&str, &Dataset)],
) -> Result<Vec<Point>, SteerError> {
    line_with_base(model, theta, d, alphas, sets, None)
}

/// [`line`], reusing `base` (the evaluation of θ* itself on every set of
/// `sets`, as [`evaluate_sets`] returns it) at α = 0, where `θ* + 0·d` is
/// θ* bit for bit: the same numbers without the forward passes. A `base`
/// that lacks one of the sets is not used.
pub fn line_with_base<M: Model + ?Sized>(
    model: &M,
    theta: &[f32],
    d: &[f64],
    alphas: &[f64],
    sets: &[(&str, &Dataset)],
    base: Option<&BTreeMap<String, Eval>>,
) -> Result<Vec<Point>, SteerError> {
    let base = base.and_then(|b| {
        sets.iter()
            .map(|(name, _)| b.get(*name).map(|e| (name.to_string(), *e)))
            .collect::<Option<BTreeMap<String, Eval>>>()
    });
    // the points are independent: evaluated in parallel, kept in α order
    alphas
        .par_iter()
        .map(|&alpha| {
            let th = offset(theta, d, alpha)?;
            let evals = match &base {
                Some(b) if alpha == 0.0 && d.iter().all(|x| x.is_finite()) => b.clone(),
                _ => evaluate_sets(model, &th, sets)?,
            };
            Ok(Point {
                alpha,
                step: None,
                evals,
            })
        })
        .collect()
}

/// A symmetric grid `±a_i` (and 0) from a list of positive magnitudes.
pub fn symmetric_grid(magnitudes: &[f64]) -> Result<Vec<f64>, SteerError> {
    if let Some(bad) = magnitudes.iter().find(|a| !(a.is_finite() && **a > 0.0)) {
        return Err(SteerError::Invalid {
            field: "alphas",
            reason: format!("step magnitudes must be finite and > 0, got {bad}"),
        });
    }
    let mut g: Vec<f64> = magnitudes.iter().map(|a| -a).collect();
    g.push(0.0);
    g.extend_from_slice(magnitudes);
    // All finite and nonzero (checked above), so `total_cmp` is the
    // numeric order.
    g.sort_by(|a, b| a.total_cmp(b));
    g.dedup();
    Ok(g)
}

/// What the operating point optimises.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Objective {
    /// The lowest accuracy on this set.
    MinAcc(String),
    /// The highest loss on this set (label-aware but rule-agnostic: used
    /// when the rule to break is unknown).
    MaxLoss(String),
}

/// The rule that picks a path's operating point from calibration numbers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Rule {
    /// What to optimise.
    pub objective: Objective,
    /// The set whose accuracy must be kept.
    pub keep: String,
    /// Its accuracy at θ* (calibration split).
    pub base_keep_acc: f64,
    /// Largest allowed drop of that accuracy (0.02 = 2 points).
    pub max_drop: f64,
}

/// Index of the operating point: among the points whose `keep` accuracy is
/// at least `base − max_drop`, the best by the objective (ties go to the
/// smaller |α|). When no point qualifies, `None`.
pub fn operating_point(points: &[Point], rule: &Rule) -> Option<usize> {
    let score = |p: &Point| match &rule.objective {
        Objective::MinAcc(s) => -p.acc(s),
        Objective::MaxLoss(s) => p.loss(s),
    };
    let mut best: Option<usize> = None;
    for (i, p) in points.iter().enumerate() {
        let k = p.acc(&rule.keep);
        let kept = k >= rule.base_keep_acc - rule.max_drop - 1e-12;
        if !kept || !score(p).is_finite() {
            continue;
        }
        best = match best {
            None => Some(i),
            Some(j) => {
                let (si, sj) = (score(p), score(&points[j]));
                if si > sj || (si == sj && p.alpha.abs() < points[j].alpha.abs()) {
                    Some(i)
                } else {
                    Some(j)
                }
            }
        };
    }
    best
}

/// Mean `KL(p_base ‖ p)` over `data` (nats), from the logits of both models.
pub fn kl_from<M: Model + ?Sized>(model: &M, base: &[f32], theta: &[f32], data: &Dataset) -> Result<f64, SteerError> {
    let base_logits = logits(model, base, data)?;
    Ok(evaluate_with_kl(model, theta, data, &base_logits)?.1)
}

/// The logits of θ on every sample of `data` (row-major `[n, classes]`),
/// computed in chunks of [`CHUNK`] samples like [`evaluate_sets`].
pub fn logits<M: Model + ?Sized>(model: &M, theta: &[f32], data: &Dataset) -> Result<Vec<f32>, SteerError> {
    let mut out = Vec::with_capacity(data.len() * model.classes());
    for lo in (0..data.len()).step_by(CHUNK) {
        let hi = (lo + CHUNK).min(data.len());
        out.extend(evaluate_logits(model, theta, &data.rows(lo, hi).0)?);
    }
    Ok(out)
}

/// The evaluation of `data` from its [`logits`]: the numbers
/// [`evaluate_sets`] gives for this set, bit for bit (the same per-chunk
/// sums), without another forward pass.
pub fn evaluate_from_logits(logits: &[f32], data: &Dataset, classes: usize) -> Result<Eval, SteerError> {
    check_logits(logits, data, classes, "logits")?;
    let mut loss = 0.0;
    let mut correct = 0usize;
    for lo in (0..data.len()).step_by(CHUNK) {
        let hi = (lo + CHUNK).min(data.len());
        let (l, c) = ce_and_correct(&logits[lo * classes..hi * classes], &data.labels[lo..hi], classes);
        loss += l * (hi - lo) as f64;
        correct += c;
    }
    let n = data.len().max(1) as f64;
    let eval = Eval {
        loss: loss / n,
        acc: correct as f64 / n,
    };
    if !eval.loss.is_finite() {
        return Err(SteerError::NonFinite { what: "loss".into() });
    }
    Ok(eval)
}

fn check_logits(logits: &[f32], data: &Dataset, classes: usize, what: &str) -> Result<(), SteerError> {
    if logits.len() != data.len() * classes {
        return Err(SteerError::Length {
            what: what.into(),
            expected: data.len() * classes,
            got: logits.len(),
        });
    }
    Ok(())
}

/// θ's evaluation on `data` ([`evaluate_from_logits`]) and the mean
/// `KL(p_base ‖ p_θ)` (nats) against the reference logits `base_logits`
/// ([`logits`] of the reference model on the same data), from one forward
/// pass of θ.
pub fn evaluate_with_kl<M: Model + ?Sized>(
    model: &M,
    theta: &[f32],
    data: &Dataset,
    base_logits: &[f32],
) -> Result<(Eval, f64), SteerError> {
    let classes = model.classes();
    check_logits(base_logits, data, classes, "reference logits")?;
    let zs = logits(model, theta, data)?;
    let eval = evaluate_from_logits(&zs, data, classes)?;
    let mut kl = 0.0;
    for (rb, rs) in base_logits.chunks(classes).zip(zs.chunks(classes)) {
        let (lb, ls) = (log_softmax(rb), log_softmax(rs));
        kl += lb.iter().zip(&ls).map(|(a, b)| a.exp() * (a - b)).sum::<f64>();
    }
    let kl = kl / data.len().max(1) as f64;
    if !kl.is_finite() {
        return Err(SteerError::NonFinite {
            what: "KL divergence".into(),
        });
    }
    Ok((eval, kl.max(0.0)))
}
