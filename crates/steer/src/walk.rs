//! Curved paths: steering walks that re-read the ablated loss as they go, the
//! unlearning fine-tune baseline, and relearning after a steer.
//!
//! **Curvature-guarded ascent** ([`curvature_ascent`], method `curv_ascent`).
//! One linear step does not take a rule to chance on the CNN (in the
//! pipeline's runs the best straight line leaves the ablated rule far above
//! chance: see the report), because the ablated loss's top curvature
//! directions at θ* stop being the ones that hurt it most once the weights
//! have moved. The walk follows the ablated loss instead, while
//! the keep rule is guarded by its curvature at θ*, the same data access as
//! the straight-line methods (the keep rule enters only through `H_k` at θ*
//! and its top eigenvectors `U_k`):
//!
//! ```text
//! δ₀ = 0;  for t = 1..T:
//!   g  = ∇L_a(θ* + δ)  over the ablate samples still classified correctly
//!   s  = P⊥_k ( g/‖g‖ − β (H_k + μI) δ )
//!   δ ← δ + η s / ‖s‖
//! ```
//!
//! `½ δᵀ H_k δ` is the keep loss's quadratic model at a minimum, so the
//! `−β H_k δ` term pulls the walk back along the directions where the keep
//! rule would pay, and `P⊥_k` removes its stiffest ones outright. Ascending
//! only on samples that are still right spends the budget on breaking the
//! rule, not on making already-wrong predictions more wrong (the gradient of
//! the cross-entropy does not vanish on them). Each point's α is `‖δ‖`.
//!
//! **Guarded ascent** (the same function with
//! [`AscentParams::keep_gradient`], method `guarded_ascent`): a constrained
//! ascent, maximise `L_a` subject to `L_k ≈ L_k(θ*)`. After the step above
//! is formed, its component along `+∇L_k(θ* + δ)` is removed (the step is
//! first-order neutral or better for the keep loss), and while
//! `L_k(θ* + δ) − L_k(θ*)` exceeds `restore_tol` nats, a restoring component
//! `−w ∇L_k/‖∇L_k‖` is added. The curvature terms still act: `P⊥_k`
//! removes the keep rule's stiffest directions, where a first-order guard
//! would be too late. This reads the keep data at every step, like the
//! unlearning baseline.
//!
//! **Unlearning fine-tune** ([`unlearn`], method `unlearn`): Adam on
//! `L_k − λ L_a` over minibatches of both calibration sets, the thing a
//! practitioner would try first (it reads the keep rule's gradient at every
//! step, not only its curvature at θ*).
//!
//! **Relearning** ([`relearn`]): Adam on a small labelled sample of the
//! ablated rule, starting from a steered θ, with the held-out accuracy
//! recorded at given steps: a rule that was only masked comes back fast.

use crate::subspace::Basis;
use crate::sweep::{evaluate_sets, Point};
use crate::SteerError;
use gensplit_eigen::LinearOperator;
use gensplit_models::{evaluate_logits, loss_and_grad, AdamW, AdamWConfig, Dataset, Model};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

/// Settings of [`curvature_ascent`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AscentParams {
    /// Iterations T.
    pub steps: usize,
    /// Step length η (θ units).
    pub step_size: f64,
    /// Weight β of the keep-curvature pull (per unit of curvature·θ).
    pub beta: f64,
    /// Ridge μ added to `H_k` (nats per θ²).
    pub mu: f64,
    /// Evaluate every this many steps (and at the last).
    pub record_every: usize,
    /// Also guard with the keep loss's gradient at the current point (the
    /// walk then reads keep data at every step, like the unlearning
    /// baseline): the step's component that would raise the keep loss is
    /// removed, and while the keep loss exceeds its value at θ* by more than
    /// `restore_tol` nats a restoring component `−restore_weight · ∇L_k/‖∇L_k‖`
    /// is added.
    pub keep_gradient: bool,
    /// Keep-loss slack (nats) before the restoring component acts.
    pub restore_tol: f64,
    /// Weight of the restoring component (relative to the unit ascent step).
    pub restore_weight: f64,
    /// Ablate samples per step (0 = every sample): each step reads a fresh
    /// seeded minibatch of them.
    #[serde(default)]
    pub batch: usize,
    /// Keep samples per step of the keep-gradient guard (0 = every keep
    /// sample, the same at every step): a fresh seeded minibatch, and the
    /// restoring test then compares the minibatch's keep loss with its own
    /// value at θ* (paired). `H_k` stays on the operator's fixed samples.
    #[serde(default)]
    pub keep_batch: usize,
    /// Minibatch seed (with `batch > 0`).
    #[serde(default)]
    pub seed: u64,
    /// Stop early once the fraction of the step's ablate samples still
    /// classified correctly is at most this (chance level is `1/classes`);
    /// the point where the walk stops is always recorded. `0` = never.
    #[serde(default)]
    pub stop_acc: f64,
}

fn norm(x: &[f64]) -> f64 {
    x.iter().map(|v| v * v).sum::<f64>().sqrt()
}

fn grad_f64<M: Model + ?Sized>(model: &M, theta: &[f32], data: &Dataset) -> Result<Vec<f64>, SteerError> {
    let out = loss_and_grad(model, theta, &data.inputs(), &data.labels)?;
    let g: Vec<f64> = out.grad.iter().map(|&x| x as f64).collect();
    if g.iter().any(|x| !x.is_finite()) {
        return Err(SteerError::NonFinite {
            what: "ablate-loss gradient".into(),
        });
    }
    Ok(g)
}

/// Indices of the samples `theta` classifies correctly.
pub fn correct_indices<M: Model + ?Sized>(model: &M, theta: &[f32], data: &Dataset) -> Result<Vec<usize>, SteerError> {
    let classes = model.classes();
    let mut idx = Vec::new();
    for lo in (0..data.len()).step_by(1024) {
        let hi = (lo + 1024).min(data.len());
        let (inp, labels) = data.rows(lo, hi);
        let z = evaluate_logits(model, theta, &inp)?;
        for (i, (row, &l)) in z.chunks(classes).zip(labels).enumerate() {
            let arg = row
                .iter()
                .enumerate()
                .fold((0, f32::NEG_INFINITY), |b, (c, &v)| if v > b.1 { (c, v) } else { b })
                .0;
            if row.iter().all(|v| v.is_finite()) && arg as u32 == l {
                idx.push(lo + i);
            }
        }
    }
    Ok(idx)
}

fn check_theta(theta: &[f32], n: usize) -> Result<(), SteerError> {
    if theta.len() != n {
        return Err(SteerError::Length {
            what: "θ".into(),
            expected: n,
            got: theta.len(),
        });
    }
    Ok(())
}

/// The curvature-guarded ascent walk (module docs). `keep_op` is `H_k` at
/// θ* (any operator of θ's dimension), `keep_basis` the top keep
/// eigenvectors to project out (`None`: none), `keep_data` the keep rule's
/// samples for the gradient guard (required when
/// `params.keep_gradient`). Returns the evaluated points
/// (α = ‖δ‖) and the parameters at each of them; `on_step(t)` is called
/// after every iteration (progress).
#[allow(clippy::too_many_arguments)]
pub fn curvature_ascent<M: Model + ?Sized, K: LinearOperator + ?Sized>(
    model: &M,
    theta: &[f32],
    ablate: &Dataset,
    keep_op: &K,
    keep_basis: Option<&Basis>,
    keep_data: Option<&Dataset>,
    params: &AscentParams,
    eval_sets: &[(&str, &Dataset)],
    on_step: &mut dyn FnMut(usize),
) -> Result<(Vec<Point>, Vec<Vec<f32>>), SteerError> {
    let n = model.layout().len();
    check_theta(theta, n)?;
    if keep_op.dim() != n {
        return Err(SteerError::Length {
            what: "keep operator".into(),
            expected: n,
            got: keep_op.dim(),
        });
    }
    for (field, v) in [
        ("step_size", params.step_size),
        ("beta", params.beta),
        ("mu", params.mu),
    ] {
        if !(v.is_finite() && v >= 0.0) {
            return Err(SteerError::Invalid {
                field,
                reason: format!("must be finite and ≥ 0, got {v}"),
            });
        }
    }
    let keep_data = match (params.keep_gradient, keep_data) {
        (false, _) => None,
        (true, Some(d)) if !d.is_empty() => Some(d),
        (true, _) => {
            return Err(SteerError::Invalid {
                field: "keep_data",
                reason: "the keep-gradient guard needs the keep rule's samples".into(),
            })
        }
    };
    if !(params.stop_acc.is_finite() && (0.0..=1.0).contains(&params.stop_acc)) {
        return Err(SteerError::Invalid {
            field: "stop_acc",
            reason: format!("must be in [0, 1], got {}", params.stop_acc),
        });
    }
    let base_keep_loss = match (keep_data, params.keep_batch) {
        (Some(d), 0) => loss_and_grad(model, theta, &d.inputs(), &d.labels)?.loss,
        _ => 0.0,
    };
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(params.seed);
    let every = params.record_every.max(1);
    let mut delta = vec![0.0f64; n];
    let mut th = theta.to_vec();
    let mut points = vec![Point {
        alpha: 0.0,
        step: Some(0),
        evals: evaluate_sets(model, theta, eval_sets)?,
    }];
    let mut thetas = vec![theta.to_vec()];
    let mut hd = vec![0.0f64; n];
    let mut last_recorded = 0;
    let mut t_done = 0;
    for t in 1..=params.steps {
        let mb;
        let abl: &Dataset = if params.batch > 0 {
            mb = minibatch(&mut rng, ablate, params.batch);
            &mb
        } else {
            ablate
        };
        let idx = correct_indices(model, &th, abl)?;
        if idx.is_empty() || (idx.len() as f64) <= params.stop_acc * abl.len() as f64 {
            break;
        }
        let g = grad_f64(model, &th, &abl.gather(&idx))?;
        let gn = norm(&g);
        if gn == 0.0 {
            break;
        }
        keep_op.apply(&delta, &mut hd);
        if hd.iter().any(|x| !x.is_finite()) {
            return Err(SteerError::NonFinite {
                what: "keep curvature product".into(),
            });
        }
        let mut s: Vec<f64> = g
            .iter()
            .zip(&hd)
            .zip(&delta)
            .map(|((gi, hi), di)| gi / gn - params.beta * (hi + params.mu * di))
            .collect();
        if let Some(b) = keep_basis {
            b.project_out(&mut s)?;
        }
        if let Some(kd_all) = keep_data {
            let kmb;
            let (kd, base) = if params.keep_batch > 0 {
                kmb = minibatch(&mut rng, kd_all, params.keep_batch);
                (&kmb, loss_and_grad(model, theta, &kmb.inputs(), &kmb.labels)?.loss)
            } else {
                (kd_all, base_keep_loss)
            };
            let out = loss_and_grad(model, &th, &kd.inputs(), &kd.labels)?;
            let gk: Vec<f64> = out.grad.iter().map(|&x| x as f64).collect();
            let gkn = norm(&gk);
            if gkn > 0.0 && gkn.is_finite() {
                let c: f64 = s.iter().zip(&gk).map(|(a, b)| a * b).sum::<f64>() / gkn;
                if c > 0.0 {
                    s.iter_mut().zip(&gk).for_each(|(a, b)| *a -= c * b / gkn);
                }
                if out.loss - base > params.restore_tol {
                    let sn = norm(&s).max(f64::MIN_POSITIVE);
                    s.iter_mut()
                        .zip(&gk)
                        .for_each(|(a, b)| *a = *a / sn - params.restore_weight * b / gkn);
                }
            }
        }
        let sn = norm(&s);
        if sn == 0.0 || !sn.is_finite() {
            break;
        }
        for (d, si) in delta.iter_mut().zip(&s) {
            *d += params.step_size * si / sn;
        }
        th = theta.iter().zip(&delta).map(|(&a, &d)| (a as f64 + d) as f32).collect();
        on_step(t);
        t_done = t;
        if t % every == 0 || t == params.steps {
            points.push(Point {
                alpha: norm(&delta),
                step: Some(t),
                evals: evaluate_sets(model, &th, eval_sets)?,
            });
            thetas.push(th.clone());
            last_recorded = t;
        }
    }
    // An early stop between two records: the point where the walk stopped.
    if t_done > last_recorded {
        points.push(Point {
            alpha: norm(&delta),
            step: Some(t_done),
            evals: evaluate_sets(model, &th, eval_sets)?,
        });
        thetas.push(th);
    }
    Ok((points, thetas))
}

/// Settings of [`unlearn`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UnlearnParams {
    /// Adam steps.
    pub steps: usize,
    /// Samples per minibatch from each set.
    pub batch: usize,
    /// Adam learning rate.
    pub lr: f64,
    /// Weight λ of the ablate loss's ascent.
    pub ascent_weight: f64,
    /// Minibatch seed.
    pub seed: u64,
    /// Evaluate every this many steps.
    pub record_every: usize,
}

fn minibatch(rng: &mut rand_chacha::ChaCha8Rng, data: &Dataset, b: usize) -> Dataset {
    let mut idx: Vec<usize> = (0..data.len()).collect();
    idx.shuffle(rng);
    idx.truncate(b.min(data.len()));
    data.gather(&idx)
}

/// Unlearning fine-tune: Adam on `L_keep − λ L_ablate` (module docs).
/// Returns the evaluated points (α = ‖θ_t − θ*‖) and θ at each of them.
pub fn unlearn<M: Model + ?Sized>(
    model: &M,
    theta: &[f32],
    ablate: &Dataset,
    keep: &Dataset,
    params: &UnlearnParams,
    eval_sets: &[(&str, &Dataset)],
) -> Result<(Vec<Point>, Vec<Vec<f32>>), SteerError> {
    check_theta(theta, model.layout().len())?;
    if params.batch == 0 || ablate.is_empty() || keep.is_empty() {
        return Err(SteerError::Invalid {
            field: "batch",
            reason: "the batch size and both datasets must be non-empty".into(),
        });
    }
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(params.seed);
    let mut opt = AdamW::new(
        AdamWConfig {
            lr: params.lr,
            ..Default::default()
        },
        theta.len(),
    );
    let mut th = theta.to_vec();
    let every = params.record_every.max(1);
    let mut points = vec![Point {
        alpha: 0.0,
        step: Some(0),
        evals: evaluate_sets(model, theta, eval_sets)?,
    }];
    let mut thetas = vec![theta.to_vec()];
    for t in 1..=params.steps {
        let (ba, bk) = (
            minibatch(&mut rng, ablate, params.batch),
            minibatch(&mut rng, keep, params.batch),
        );
        let ga = loss_and_grad(model, &th, &ba.inputs(), &ba.labels)?;
        let gk = loss_and_grad(model, &th, &bk.inputs(), &bk.labels)?;
        let g: Vec<f32> = gk
            .grad
            .iter()
            .zip(&ga.grad)
            .map(|(k, a)| k - params.ascent_weight as f32 * a)
            .collect();
        if g.iter().any(|x| !x.is_finite()) {
            return Err(SteerError::NonFinite {
                what: format!("unlearning gradient at step {t}"),
            });
        }
        opt.step(&mut th, &g);
        if t % every == 0 || t == params.steps {
            let dist = th
                .iter()
                .zip(theta)
                .map(|(a, b)| ((a - b) as f64).powi(2))
                .sum::<f64>()
                .sqrt();
            points.push(Point {
                alpha: dist,
                step: Some(t),
                evals: evaluate_sets(model, &th, eval_sets)?,
            });
            thetas.push(th.clone());
        }
    }
    Ok((points, thetas))
}

/// Settings of [`relearn`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RelearnParams {
    /// Adam learning rate.
    pub lr: f64,
    /// Steps at which the held-out accuracy is recorded (ascending; 0 = before).
    pub record_at: Vec<usize>,
}

/// Full-batch Adam on `sample` from `theta`; the accuracy on `heldout`
/// at each step of `record_at`.
pub fn relearn<M: Model + ?Sized>(
    model: &M,
    theta: &[f32],
    sample: &Dataset,
    heldout: &Dataset,
    params: &RelearnParams,
) -> Result<Vec<f64>, SteerError> {
    check_theta(theta, model.layout().len())?;
    if sample.is_empty() {
        return Err(SteerError::Invalid {
            field: "sample",
            reason: "the relearning sample is empty".into(),
        });
    }
    if params.record_at.windows(2).any(|w| w[0] >= w[1]) {
        return Err(SteerError::Invalid {
            field: "record_at",
            reason: "steps must be strictly ascending".into(),
        });
    }
    let mut opt = AdamW::new(
        AdamWConfig {
            lr: params.lr,
            ..Default::default()
        },
        theta.len(),
    );
    let mut th = theta.to_vec();
    let mut out = Vec::new();
    let mut t = 0;
    for &stop in &params.record_at {
        while t < stop {
            let g = loss_and_grad(model, &th, &sample.inputs(), &sample.labels)?;
            opt.step(&mut th, &g.grad);
            t += 1;
        }
        out.push(evaluate_sets(model, &th, &[("heldout", heldout)])?["heldout"].acc);
    }
    Ok(out)
}
