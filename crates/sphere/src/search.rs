//! The sphere optimizer and its driver loop.
//!
//! For a start point θ*, a search space `B` ([`Coords`]) and an objective
//! `L`, each radius `r` of an increasing schedule solves
//!
//! ```text
//!   minimise  F(c) = L(θ* + B c)  [ − L(θ*) − gᵀBc − ½ Σᵢ qᵢ cᵢ² ]
//!   subject to ‖c‖ = r,  c ⟂ a₁ … a_m,  lo ≤ cᵢ ≤ hi
//! ```
//!
//! where the bracket is the optional quadratic model (`g = ∇L(θ*)`, `qᵢ`
//! the curvature of column i), `aⱼ` are linear constraints (the gradient
//! direction `Bᵀg` when [`SphereParams::gradient_orthogonal`], and earlier
//! breaks during deflation) and the box is optional. The optimizer is
//! Riemannian gradient descent with a backtracking step: the coordinate
//! gradient is projected onto the constraints and the sphere's tangent
//! space, a step of angle `η` is taken along it, and the point is mapped
//! back to the feasible set (constraint projection, box clip, rescale to
//! `r`, repeated; the last operation is always the rescale, so `‖c‖ = r`
//! holds to rounding). A step is kept only when `F` decreases; `η` grows
//! by 1.25 after an accepted step and halves after a rejected one.
//! Each radius is warm-started from the previous radius's solution,
//! rescaled. Several seeded random starts run independently, in parallel
//! (rayon); their random points are drawn up front from one seeded stream,
//! so the result is the same for any number of threads.

use crate::order::participation_ratio;
use crate::{Coords, Objective, SphereError};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// Settings of one sphere search.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SphereParams {
    /// Radii, strictly increasing, > 0 (units of the coordinates).
    pub radii: Vec<f64>,
    /// Objective evaluations per radius.
    pub iters: usize,
    /// Initial step angle (radians).
    pub step: f64,
    /// Random starts.
    pub starts: usize,
    /// Seed of the start points.
    pub seed: u64,
    /// Box on every coordinate (`[0, 1]` for shrink coordinates).
    pub bounds: Option<(f64, f64)>,
    /// Keep `c ⟂ Bᵀ∇L(θ*)`: no first-order loss change (the seed's
    /// "orthogonal complement of the gradient"; removes rescaling moves).
    pub gradient_orthogonal: bool,
    /// Minimise the loss minus its quadratic model (needs the coordinates'
    /// curvature, see [`Coords::curvature`]).
    pub subtract_quadratic: bool,
    /// Warm-start each radius from the previous radius's solution (`false`:
    /// a fresh random point of the start's seed stream at every radius, so
    /// a basin that only opens at a larger radius can be found).
    pub warm_start: bool,
}

impl Default for SphereParams {
    fn default() -> Self {
        Self {
            radii: vec![0.5, 1.0, 2.0, 4.0],
            iters: 40,
            step: 0.3,
            starts: 5,
            seed: 0,
            bounds: None,
            gradient_orthogonal: false,
            subtract_quadratic: false,
            warm_start: true,
        }
    }
}

impl SphereParams {
    /// Checks the schedule, iterations, step and box.
    pub fn validate(&self) -> Result<(), SphereError> {
        let bad = |field: &'static str, reason: String| Err(SphereError::Param { field, reason });
        if self.radii.is_empty() || self.radii.iter().any(|r| !(r.is_finite() && *r > 0.0)) {
            return bad("radii", format!("need finite radii > 0, got {:?}", self.radii));
        }
        if self.radii.windows(2).any(|w| w[1] <= w[0]) {
            return bad("radii", format!("must increase strictly, got {:?}", self.radii));
        }
        if self.iters == 0 || self.starts == 0 {
            return bad("iters/starts", "must be at least 1".into());
        }
        if !(self.step > 0.0 && self.step.is_finite()) {
            return bad("step", format!("must be finite and > 0, got {}", self.step));
        }
        if let Some((lo, hi)) = self.bounds {
            if !(lo < hi) || lo > 0.0 || hi < 0.0 {
                return bad("bounds", format!("need lo ≤ 0 ≤ hi and lo < hi, got [{lo}, {hi}]"));
            }
        }
        Ok(())
    }
}

/// The solution at one radius.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RadiusPoint {
    /// Radius r = ‖c‖.
    pub radius: f64,
    /// Minimised objective F(c).
    pub objective: f64,
    /// The plain objective `L(θ* + Bc)` (equal to `objective` without the
    /// quadratic model).
    pub loss: f64,
    /// Coordinates of the solution.
    pub c: Vec<f64>,
    /// Participation ratio of `c`.
    pub participation: f64,
    /// Norm of the final projected (Riemannian) gradient.
    pub grad_norm: f64,
    /// Steps accepted at this radius.
    pub accepted: usize,
}

/// One start's path over the radius schedule.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StartPath {
    /// Start index (0-based).
    pub start: usize,
    /// One point per radius.
    pub points: Vec<RadiusPoint>,
}

/// Progress of a search (for progress bars and logs).
#[derive(Debug)]
pub enum Event<'a> {
    /// A radius of a start is done.
    Radius {
        /// Start index.
        start: usize,
        /// The solution.
        point: &'a RadiusPoint,
    },
}

/// What a search must stay away from (deflation): directions `c` must be
/// orthogonal to, and coordinates held at zero.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Avoid {
    /// `c ⟂ a` for each `a` (coordinate space).
    pub orthogonal: Vec<Vec<f64>>,
    /// Coordinates fixed at 0 (for shrink coordinates: groups already
    /// deleted by an earlier break).
    pub frozen: Vec<usize>,
}

/// Orthonormalised linear constraints in coordinate space.
struct Constraints {
    q: Vec<Vec<f64>>,
    frozen: Vec<usize>,
}

impl Constraints {
    fn new(dim: usize, avoid: &[Vec<f64>], frozen: &[usize]) -> Result<Self, SphereError> {
        if let Some(&i) = frozen.iter().find(|&&i| i >= dim) {
            return Err(SphereError::Param {
                field: "frozen",
                reason: format!("coordinate {i} ≥ {dim} coordinates"),
            });
        }
        let mut q: Vec<Vec<f64>> = Vec::new();
        for a in avoid {
            let mut a = a.clone();
            if a.len() == dim {
                frozen.iter().for_each(|&i| a[i] = 0.0);
            }
            let a = &a;
            if a.len() != dim {
                return Err(SphereError::Length {
                    what: "constraint",
                    expected: dim,
                    got: a.len(),
                });
            }
            let mut v = a.clone();
            for _ in 0..2 {
                for u in &q {
                    let d: f64 = u.iter().zip(&v).map(|(x, y)| x * y).sum();
                    v.iter_mut().zip(u).for_each(|(x, y)| *x -= d * y);
                }
            }
            let n = norm(&v);
            if n > 1e-12 * norm(a).max(f64::MIN_POSITIVE) {
                v.iter_mut().for_each(|x| *x /= n);
                q.push(v);
            }
        }
        Ok(Self {
            q,
            frozen: frozen.to_vec(),
        })
    }
    fn project(&self, v: &mut [f64]) {
        self.frozen.iter().for_each(|&i| v[i] = 0.0);
        for u in &self.q {
            let d: f64 = u.iter().zip(v.iter()).map(|(x, y)| x * y).sum();
            v.iter_mut().zip(u).for_each(|(x, y)| *x -= d * y);
        }
    }
}

fn norm(v: &[f64]) -> f64 {
    v.iter().map(|x| x * x).sum::<f64>().sqrt()
}

/// Maps `c` to the feasible set at radius `r`. Without a box: project onto
/// the linear constraints and rescale (exact). With a box: project, then
/// find `s` by bisection with `‖clip(s·c)‖ = r` (the box holds exactly and
/// `‖c‖ = r` to about 1e-12 relative); when even `s → ∞` cannot reach `r`
/// (too few non-zero coordinates), every free coordinate is lifted a little
/// and the scaling is tried again.
fn feasible(c: &mut [f64], r: f64, cons: &Constraints, bounds: Option<(f64, f64)>) -> Result<(), SphereError> {
    let Some((lo, hi)) = bounds else {
        cons.project(c);
        let n = norm(c);
        if !(n > 0.0) || !n.is_finite() {
            return Err(SphereError::Infeasible { dim: c.len() });
        }
        c.iter_mut().for_each(|x| *x *= r / n);
        return Ok(());
    };
    let free: Vec<usize> = (0..c.len()).filter(|i| !cons.frozen.contains(i)).collect();
    let clip_norm = |y: &[f64], s: f64| y.iter().map(|&x| (s * x).clamp(lo, hi).powi(2)).sum::<f64>().sqrt();
    // the largest norm the box allows on the free coordinates
    let cap = (free.len() as f64).sqrt() * lo.abs().max(hi);
    if r > cap * (1.0 + 1e-12) {
        return Err(SphereError::Infeasible { dim: c.len() });
    }
    let rounds = if cons.q.is_empty() { 1 } else { 20 };
    for round in 0..rounds {
        cons.project(c);
        let mut lift = 1e-6 * norm(c).max(1e-300);
        let mut tries = 0;
        // reachable only if the clipped direction, scaled without limit, exceeds r
        while clip_norm(c, 1e300) < r * (1.0 - 1e-13) {
            for &i in &free {
                c[i] += if lo >= 0.0 || c[i] >= 0.0 { lift } else { -lift };
            }
            lift *= 4.0;
            tries += 1;
            if tries > 200 {
                return Err(SphereError::Infeasible { dim: c.len() });
            }
        }
        let (mut a, mut b) = (0.0f64, 1.0f64);
        while clip_norm(c, b) < r {
            b *= 2.0;
        }
        for _ in 0..200 {
            let m = 0.5 * (a + b);
            if clip_norm(c, m) < r {
                a = m;
            } else {
                b = m;
            }
            if b - a <= 1e-15 * b {
                break;
            }
        }
        c.iter_mut().for_each(|x| *x = (b * *x).clamp(lo, hi));
        if round + 1 == rounds {
            break;
        }
    }
    // last touch: exact radius (a tiny uniform rescale, clamped again)
    let n = norm(c);
    if !(n > 0.0) {
        return Err(SphereError::Infeasible { dim: c.len() });
    }
    c.iter_mut().for_each(|x| *x = (*x * r / n).clamp(lo, hi));
    Ok(())
}

/// Evaluates `F` and its coordinate gradient.
struct Eval<'a, O: Objective> {
    obj: &'a O,
    theta0: &'a [f64],
    coords: &'a Coords,
    /// (L0, Bᵀg0, q) when the quadratic model is subtracted.
    quad: Option<(f64, Vec<f64>, Vec<f64>)>,
    grad: Vec<f64>,
    evals: usize,
}

impl<O: Objective> Eval<'_, O> {
    fn at(&mut self, c: &[f64], radius: f64) -> Result<(f64, f64, Vec<f64>), SphereError> {
        let d = self.coords.delta(c);
        let th: Vec<f64> = self.theta0.iter().zip(&d).map(|(a, b)| a + b).collect();
        let loss = self.obj.value_grad(&th, &mut self.grad)?;
        self.evals += 1;
        if !loss.is_finite() {
            return Err(SphereError::NonFinite { what: "loss", radius });
        }
        let mut gc = self.coords.pullback(&self.grad);
        if gc.iter().any(|x| !x.is_finite()) {
            return Err(SphereError::NonFinite {
                what: "gradient",
                radius,
            });
        }
        let mut f = loss;
        if let Some((l0, g0, q)) = &self.quad {
            let lin: f64 = g0.iter().zip(c).map(|(a, b)| a * b).sum();
            let quad: f64 = q.iter().zip(c).map(|(a, b)| a * b * b).sum::<f64>() * 0.5;
            f = loss - l0 - lin - quad;
            for ((g, a), (qi, ci)) in gc.iter_mut().zip(g0).zip(q.iter().zip(c)) {
                *g -= a + qi * ci;
            }
        }
        Ok((f, loss, gc))
    }
}

/// Runs the search from every start over the whole radius schedule.
/// `avoid` holds the deflation constraints (earlier breaks). Returns one
/// path per start. The starts run in parallel on rayon's pool (the result
/// is the same on any number of threads); `observer` then sees every
/// radius of every start, in start order.
pub fn search<O: Objective>(
    obj: &O,
    theta0: &[f64],
    coords: &Coords,
    params: &SphereParams,
    avoid: &Avoid,
    observer: &mut dyn FnMut(&Event),
) -> Result<Vec<StartPath>, SphereError> {
    params.validate()?;
    if theta0.len() != coords.params() || obj.dim() != coords.params() {
        return Err(SphereError::Length {
            what: "θ*",
            expected: coords.params(),
            got: if theta0.len() != coords.params() {
                theta0.len()
            } else {
                obj.dim()
            },
        });
    }
    let k = coords.dim();
    let eval = |quad| Eval {
        obj,
        theta0,
        coords,
        quad,
        grad: vec![0.0; coords.params()],
        evals: 0,
    };
    let zero = vec![0.0; k];
    let (l0, _, g0) = eval(None).at(&zero, 0.0)?;
    let quad = if params.subtract_quadratic {
        let q = coords.curvature().ok_or(SphereError::Param {
            field: "subtract_quadratic",
            reason: "the search space has no quadratic model (use eigenvector coordinates)".into(),
        })?;
        Some((l0, g0.clone(), q.to_vec()))
    } else {
        None
    };
    let mut all_avoid: Vec<Vec<f64>> = avoid.orthogonal.clone();
    if params.gradient_orthogonal {
        all_avoid.push(g0.clone());
    }
    let cons = Constraints::new(k, &all_avoid, &avoid.frozen)?;
    // Every start's random points, drawn from one seeded stream in start
    // order (a start's draws do not depend on its optimisation), so the
    // starts can then run in parallel and the result does not depend on
    // the number of threads.
    let mut rng = ChaCha8Rng::seed_from_u64(params.seed);
    let nonneg = params.bounds.is_some_and(|(lo, _)| lo >= 0.0);
    let draws_per_start = if params.warm_start { 1 } else { params.radii.len() };
    let draws: Vec<Vec<Vec<f64>>> = (0..params.starts)
        .map(|_| {
            (0..draws_per_start)
                .map(|_| {
                    (0..k)
                        .map(|_| {
                            let x = gaussian(&mut rng);
                            if nonneg {
                                x.abs()
                            } else {
                                x
                            }
                        })
                        .collect()
                })
                .collect()
        })
        .collect();
    let run_start = |start: usize| -> Result<StartPath, SphereError> {
        let mut ev = eval(quad.clone());
        let mut c = draws[start][0].clone();
        let mut points = Vec::with_capacity(params.radii.len());
        for (ri, &r) in params.radii.iter().enumerate() {
            if ri > 0 && !params.warm_start {
                c = draws[start][ri].clone();
            }
            feasible(&mut c, r, &cons, params.bounds)?;
            points.push(minimise_at(&mut ev, &mut c, r, params, &cons)?);
        }
        Ok(StartPath { start, points })
    };
    let out = (0..params.starts)
        .into_par_iter()
        .map(run_start)
        .collect::<Result<Vec<StartPath>, SphereError>>()?;
    // the observer sees every radius of every start, in start order
    for path in &out {
        for point in &path.points {
            observer(&Event::Radius {
                start: path.start,
                point,
            });
        }
    }
    Ok(out)
}

fn minimise_at<O: Objective>(
    ev: &mut Eval<'_, O>,
    c: &mut Vec<f64>,
    r: f64,
    params: &SphereParams,
    cons: &Constraints,
) -> Result<RadiusPoint, SphereError> {
    let (mut f, mut loss, mut g) = ev.at(c, r)?;
    let mut eta = params.step;
    let mut accepted = 0;
    let mut tnorm = 0.0;
    let mut used = 1;
    while used < params.iters {
        // Riemannian gradient: project onto the constraints, then the tangent space.
        let mut t = g.clone();
        cons.project(&mut t);
        let radial: f64 = t.iter().zip(c.iter()).map(|(a, b)| a * b).sum::<f64>() / (r * r);
        t.iter_mut().zip(c.iter()).for_each(|(a, b)| *a -= radial * b);
        tnorm = norm(&t);
        if !(tnorm > 0.0) {
            break;
        }
        let mut trial: Vec<f64> = c.iter().zip(&t).map(|(x, d)| x - eta * r * d / tnorm).collect();
        feasible(&mut trial, r, cons, params.bounds)?;
        let (ft, lt, gt) = ev.at(&trial, r)?;
        used += 1;
        if ft < f {
            *c = trial;
            (f, loss, g) = (ft, lt, gt);
            eta = (eta * 1.25).min(1.0);
            accepted += 1;
        } else {
            eta *= 0.5;
            if eta < 1e-6 {
                break;
            }
        }
    }
    Ok(RadiusPoint {
        radius: r,
        objective: f,
        loss,
        participation: participation_ratio(c),
        c: c.clone(),
        grad_norm: tnorm,
        accepted,
    })
}

/// Standard normal by Box–Muller (portable, seed-stable).
fn gaussian(rng: &mut ChaCha8Rng) -> f64 {
    use rand::Rng;
    let u1: f64 = rng.gen_range(f64::EPSILON..1.0);
    let u2: f64 = rng.gen::<f64>();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}
