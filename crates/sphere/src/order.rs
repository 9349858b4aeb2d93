//! Label-free order parameters and the transition detector.
//!
//! * [`participation_ratio`] of the coordinates: `PR(c) = (Σ cᵢ²)² / Σ cᵢ⁴`,
//!   between 1 (all weight on one coordinate) and K (spread evenly). A
//!   break that deletes one module concentrates the move, so PR drops.
//! * [`group_concentration`] of the weight change `δ` over parameter groups
//!   (e.g. hidden units): with group energies `eⱼ = Σ_{i∈Gⱼ} δᵢ²`, the
//!   participation ratio `(Σ eⱼ)² / Σ eⱼ²` (number of groups effectively
//!   touched) and the share of the largest group.
//! * [`loss_curvature`]: second differences of `L(r)` along the radius
//!   schedule, `κₖ = 2[(Lₖ₊₁−Lₖ)/(rₖ₊₁−rₖ) − (Lₖ−Lₖ₋₁)/(rₖ−rₖ₋₁)] /
//!   (rₖ₊₁−rₖ₋₁)`; a module that breaks makes `L(r)` bend down (its
//!   loss is bounded once it is gone).
//! * [`detect_transition`]: the first radius at which an order parameter
//!   changes by more than `threshold` (relative to its previous value, in
//!   either direction). In the searches that work (shrink coordinates), the
//!   damage concentrates on one module from the smallest radius on; once
//!   that module is used up, further damage must spill into the others and
//!   the order parameter jumps up: the jump marks the radius where the
//!   module has just been deleted. A drop marks the opposite transition
//!   (spread damage suddenly concentrating).

use serde::{Deserialize, Serialize};

/// `(Σ cᵢ²)² / Σ cᵢ⁴`; 0 for the zero vector.
pub fn participation_ratio(c: &[f64]) -> f64 {
    let s2: f64 = c.iter().map(|x| x * x).sum();
    let s4: f64 = c.iter().map(|x| x.powi(4)).sum();
    if s4 == 0.0 {
        0.0
    } else {
        s2 * s2 / s4
    }
}

/// Concentration of a weight change over groups of parameters.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Concentration {
    /// Participation ratio of the group energies (effective groups touched).
    pub participation: f64,
    /// Share of the total energy in the largest group.
    pub top_share: f64,
}

/// Energy of `delta` per group and its concentration. Indices outside
/// `delta` are ignored.
pub fn group_concentration(delta: &[f64], groups: &[Vec<usize>]) -> Concentration {
    let e: Vec<f64> = groups
        .iter()
        .map(|g| g.iter().filter_map(|&i| delta.get(i)).map(|x| x * x).sum())
        .collect();
    let total: f64 = e.iter().sum();
    if total == 0.0 {
        return Concentration {
            participation: 0.0,
            top_share: 0.0,
        };
    }
    Concentration {
        participation: participation_ratio(&e.iter().map(|x| x.sqrt()).collect::<Vec<_>>()),
        top_share: e.iter().fold(0.0f64, |a, &x| a.max(x)) / total,
    }
}

/// Second differences of `loss` over `radii` (length n − 2; empty for n < 3).
pub fn loss_curvature(radii: &[f64], loss: &[f64]) -> Vec<f64> {
    (1..radii.len().min(loss.len()).saturating_sub(1))
        .map(|k| {
            let (r0, r1, r2) = (radii[k - 1], radii[k], radii[k + 1]);
            let s1 = (loss[k] - loss[k - 1]) / (r1 - r0);
            let s2 = (loss[k + 1] - loss[k]) / (r2 - r1);
            2.0 * (s2 - s1) / (r2 - r0)
        })
        .collect()
}

/// A detected jump of an order parameter.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Transition {
    /// Index of the radius right after the jump.
    pub index: usize,
    /// That radius.
    pub radius: f64,
    /// Relative change `(xₖ − xₖ₋₁) / xₖ₋₁` (negative for a drop).
    pub change: f64,
}

/// The first consecutive pair of radii where `order` changes by more than
/// `threshold` relative to its previous value (e.g. 0.3 = a 30% rise or
/// fall). Non-positive or non-finite values are skipped.
pub fn detect_transition(radii: &[f64], order: &[f64], threshold: f64) -> Option<Transition> {
    changes(radii, order).find(|t| t.change.abs() > threshold)
}

/// The consecutive pair of radii where `order` changes the most relative
/// to its previous value, if that change exceeds `threshold` (the first
/// such pair on ties). Non-positive or non-finite values are skipped.
pub fn sharpest_transition(radii: &[f64], order: &[f64], threshold: f64) -> Option<Transition> {
    changes(radii, order)
        .filter(|t| t.change.abs() > threshold)
        .fold(None, |best: Option<Transition>, t| match best {
            Some(b) if b.change.abs() >= t.change.abs() => Some(b),
            _ => Some(t),
        })
}

fn changes<'a>(radii: &'a [f64], order: &'a [f64]) -> impl Iterator<Item = Transition> + 'a {
    (1..radii.len().min(order.len())).filter_map(|k| {
        let prev = order[k - 1];
        if !(prev > 0.0) || !order[k].is_finite() {
            return None;
        }
        Some(Transition {
            index: k,
            radius: radii[k],
            change: (order[k] - prev) / prev,
        })
    })
}
