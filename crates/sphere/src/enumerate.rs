//! Deflation: enumerate modules one break at a time.
//!
//! Round j runs [`search`] with the constraints `c ⟂ c₁ … c_{j−1}` (the
//! coordinates of the breaks found so far). In a box with a lower bound of
//! 0 (shrink coordinates) the earlier breaks' supports (coordinates at ≥
//! half of their largest entry) are instead frozen at zero: a later break
//! never touches a group an earlier one deleted, and, being non-negative
//! and zero on that support, is orthogonal to it. In each round,
//! the label-free order parameter (the participation ratio of `c` unless
//! the caller supplies another) is scanned along every start's path
//! ([`detect_transition`]: its first jump past the threshold); among the
//! starts that show one, the one that stayed concentrated up to the largest
//! radius gives the break (see [`best_transition`]), taken at the last
//! point before the damage spilled over (for a rise) or the first
//! concentrated point (for a drop). Enumeration stops
//! when no start shows a transition, or after `max_modules` rounds.

use crate::order::{detect_transition, Transition};
use crate::search::{search, Avoid, Event, RadiusPoint, SphereParams, StartPath};
use crate::{Coords, Objective, SphereError};
use serde::{Deserialize, Serialize};

/// Settings of an enumeration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EnumerateParams {
    /// The search run in each round.
    pub search: SphereParams,
    /// Largest number of breaks to look for.
    pub max_modules: usize,
    /// Relative drop of the order parameter that counts as a transition.
    /// `None`: no detection; each round's break is the start with the
    /// lowest objective at the last radius (for spaces where the damage is
    /// concentrated from the smallest radius on, e.g. planted modules).
    pub threshold: Option<f64>,
    /// Stop when a round's break has a plain loss above this (the network
    /// is no longer near its minimum: what breaks then is not one module).
    pub max_loss: Option<f64>,
    /// Pick each round's break with [`concentrated_break`] (the order
    /// parameter compared with its value at the first radius) instead of
    /// [`best_transition`] (consecutive radii).
    #[serde(default)]
    pub cumulative: bool,
}

/// One break found by the enumeration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Break {
    /// Round (0-based).
    pub round: usize,
    /// Start that showed it.
    pub start: usize,
    /// The detected transition (`None` without detection).
    pub transition: Option<Transition>,
    /// The solution at the transition radius.
    pub point: RadiusPoint,
}

/// Why an enumeration ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum EnumStop {
    /// A round found no transition.
    NoTransition,
    /// `max_modules` breaks were found.
    MaxModules,
    /// The constraints left no feasible direction.
    Exhausted,
    /// The last break's loss exceeded `max_loss` (not recorded as a break).
    LossLimit,
}

/// The breaks, every round's paths, and why it stopped.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Enumeration {
    /// Breaks in the order found.
    pub breaks: Vec<Break>,
    /// Paths of every round.
    pub rounds: Vec<Vec<StartPath>>,
    /// Stopping reason.
    pub stop: EnumStop,
}

/// The order parameter of a path: one value per radius.
pub type OrderFn<'a> = dyn Fn(&RadiusPoint) -> f64 + 'a;

/// The transition that gives a round's break: among the starts whose
/// order parameter jumps past `threshold`, the one whose break point (the
/// radius just before a rise, or the radius of a drop) is the largest
/// radius — the most damage that stayed concentrated — and, among equal
/// radii, the lowest objective there. Returns (start, break index,
/// transition).
pub fn best_transition(paths: &[StartPath], order: &OrderFn, threshold: f64) -> Option<(usize, usize, Transition)> {
    paths
        .iter()
        .filter_map(|p| {
            let radii: Vec<f64> = p.points.iter().map(|q| q.radius).collect();
            let ord: Vec<f64> = p.points.iter().map(order).collect();
            detect_transition(&radii, &ord, threshold).map(|t| {
                let i = if t.change > 0.0 { t.index - 1 } else { t.index };
                (p.start, i, t, p.points[i].radius, p.points[i].objective)
            })
        })
        .min_by(|a, b| b.3.total_cmp(&a.3).then(a.4.total_cmp(&b.4)).then(a.0.cmp(&b.0)))
        .map(|(s, i, t, _, _)| (s, i, t))
}

/// The break of a round with [`EnumerateParams::cumulative`]: on each
/// start's path, the last radius up to which the order parameter stays
/// within `1 + threshold` of its value at the first radius (the damage
/// has not spread beyond what it touched at the start); the round's break
/// is the start where that radius is largest (ties: lower objective, then
/// lower start). Returns (start, break index, transition), the transition
/// being the first exceedance (`None` when the whole path stays within).
pub fn concentrated_break(
    paths: &[StartPath],
    order: &OrderFn,
    threshold: f64,
) -> Option<(usize, usize, Option<Transition>)> {
    paths
        .iter()
        .filter_map(|p| {
            let ord: Vec<f64> = p.points.iter().map(order).collect();
            let base = *ord.first()?;
            if !(base > 0.0) {
                return None;
            }
            let out = ord.iter().position(|&o| !(o <= (1.0 + threshold) * base));
            let i = match out {
                Some(0) => return None,
                Some(k) => k - 1,
                None => ord.len() - 1,
            };
            let t = out.map(|k| Transition {
                index: k,
                radius: p.points[k].radius,
                change: (ord[k] - base) / base,
            });
            Some((p.start, i, t, p.points[i].radius, p.points[i].objective))
        })
        .min_by(|a, b| b.3.total_cmp(&a.3).then(a.4.total_cmp(&b.4)).then(a.0.cmp(&b.0)))
        .map(|(s, i, t, _, _)| (s, i, t))
}

/// Enumerates breaks by deflation (module docs). `order` defaults to the
/// participation ratio of `c`.
pub fn enumerate<O: Objective>(
    obj: &O,
    theta0: &[f64],
    coords: &Coords,
    params: &EnumerateParams,
    order: Option<&OrderFn>,
    observer: &mut dyn FnMut(usize, &Event),
) -> Result<Enumeration, SphereError> {
    let pr = |p: &RadiusPoint| p.participation;
    let order: &OrderFn = order.unwrap_or(&pr);
    let mut breaks: Vec<Break> = Vec::new();
    let mut rounds = Vec::new();
    let mut stop = EnumStop::MaxModules;
    for round in 0..params.max_modules {
        let nonneg = params.search.bounds.is_some_and(|(lo, _)| lo >= 0.0);
        let mut avoid = Avoid::default();
        for b in &breaks {
            if nonneg {
                let top = b.point.c.iter().fold(0.0f64, |a, &x| a.max(x));
                avoid
                    .frozen
                    .extend((0..b.point.c.len()).filter(|&i| b.point.c[i] >= 0.5 * top));
            } else {
                avoid.orthogonal.push(b.point.c.clone());
            }
        }
        // with a box, frozen coordinates lower the largest reachable radius
        let mut sp = params.search.clone();
        if let Some((lo, hi)) = sp.bounds {
            let free = coords.dim() - {
                let mut f = avoid.frozen.clone();
                f.sort_unstable();
                f.dedup();
                f.len()
            };
            let cap = (free as f64).sqrt() * lo.abs().max(hi);
            sp.radii.retain(|&r| r <= cap * (1.0 + 1e-9));
            if sp.radii.len() < 2 {
                stop = EnumStop::Exhausted;
                break;
            }
        }
        let paths = match search(obj, theta0, coords, &sp, &avoid, &mut |e| observer(round, e)) {
            Ok(p) => p,
            Err(SphereError::Infeasible { .. }) => {
                stop = EnumStop::Exhausted;
                break;
            }
            Err(e) => return Err(e),
        };
        let pick = match params.threshold {
            Some(th) if params.cumulative => concentrated_break(&paths, order, th),
            Some(th) => best_transition(&paths, order, th).map(|(s, i, t)| (s, i, Some(t))),
            None => paths
                .iter()
                .filter_map(|p| p.points.last().map(|q| (p.start, q.objective)))
                .min_by(|a, b| a.1.total_cmp(&b.1))
                .map(|(s, _)| (s, sp.radii.len() - 1, None)),
        };
        let Some((start, index, transition)) = pick else {
            rounds.push(paths);
            stop = EnumStop::NoTransition;
            break;
        };
        let point = paths[start].points[index].clone();
        rounds.push(paths);
        if params.max_loss.is_some_and(|m| point.loss > m) {
            stop = EnumStop::LossLimit;
            break;
        }
        breaks.push(Break {
            round,
            start,
            transition,
            point,
        });
    }
    Ok(Enumeration { breaks, rounds, stop })
}
