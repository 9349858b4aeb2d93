//! De-mixing: stand-ins for an unknown rule's data, built from the mixed
//! data and the known rule's pure data only (semi-supervised steering).
//!
//! The mixed data set averages, pixel by pixel, one input of each rule with
//! the same label: `m = (a + b) / 2`. When only rule `b`'s pure data is
//! known, `2m − b` is rule `a`'s input, if we knew which `b` went into `m`.
//! [`average`] picks, among the known samples of `m`'s label, the one that
//! best explains `m`: with pixels in `[0, 1]`, every residual pixel
//! `r = 2m − q` of the right `q` lies in `[0, 1]`, so the cost of a candidate
//! `q` is the squared distance of its residual from `[0, 1]`,
//! `Σ_px max(0, −r)² + max(0, r − 1)²`. The few best candidates are
//! combined pixel by pixel (median: several noisy copies of one template
//! give the template), and the stand-in is `2m − q̂` with `m`'s label (see
//! [`average`] for the details). Ties go to the lowest index (deterministic).
//!
//! No label of the unknown rule is read: the labels are the mixed data's,
//! which both rules share. What it does assume is the mixing operation
//! (an average): the method is specific to data built that way, and it
//! recovers the unknown rule's inputs well only when the known rule's
//! inputs come from a few templates (random binary patterns with a few
//! flipped cells: the right template up to the flips), not when they are as
//! varied as handwritten digits.

use crate::SteerError;
use gensplit_models::{DataInputs, Dataset};

/// Pixels per image.
const PIXELS: usize = 784;

fn pixels<'a>(d: &'a Dataset, what: &str) -> Result<&'a [f32], SteerError> {
    match &d.inputs {
        DataInputs::Images(p) if p.len() == d.len() * PIXELS => Ok(p),
        _ => Err(SteerError::Invalid {
            field: "inputs",
            reason: format!("{what}: de-mixing needs images of {PIXELS} pixels, one per label"),
        }),
    }
}

/// How many best-fitting known samples [`average`] combines.
pub const NEAREST: usize = 5;

/// Stand-ins for the unknown rule's inputs (module docs): for each mixed
/// sample, `2m − q̂` with `q̂` the pixel-wise median of the [`NEAREST`] known
/// samples of the same label that best explain it, where a residual below
/// 0 (the known input cannot have been that bright there) is read as a dark
/// known pixel (`2m`), and the result is clipped to `[0, 1]`. Errors: inputs
/// that are not 28×28 images, or a mixed label with no known sample.
pub fn average(mixed: &Dataset, known: &Dataset) -> Result<Dataset, SteerError> {
    let m = pixels(mixed, "mixed data")?;
    let k = pixels(known, "known data")?;
    let mut out = Vec::with_capacity(m.len());
    let mut column = Vec::with_capacity(NEAREST);
    for (i, &y) in mixed.labels.iter().enumerate() {
        let two_m: Vec<f32> = m[i * PIXELS..(i + 1) * PIXELS].iter().map(|x| 2.0 * x).collect();
        let mut costs: Vec<(f64, usize)> = known
            .labels
            .iter()
            .enumerate()
            .filter(|(_, &l)| l == y)
            .map(|(j, _)| {
                let q = &k[j * PIXELS..(j + 1) * PIXELS];
                let cost: f64 = two_m
                    .iter()
                    .zip(q)
                    .map(|(&a, &b)| {
                        let r = (a - b) as f64;
                        let below = (-r).max(0.0);
                        let above = (r - 1.0).max(0.0);
                        below * below + above * above
                    })
                    .sum();
                (cost, j)
            })
            .collect();
        if costs.is_empty() {
            return Err(SteerError::Invalid {
                field: "known",
                reason: format!("no known sample has label {y} (mixed sample {i})"),
            });
        }
        // Stable order: cost, then index (deterministic ties).
        costs.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        costs.truncate(NEAREST);
        for (px, &a) in two_m.iter().enumerate() {
            column.clear();
            column.extend(costs.iter().map(|&(_, j)| k[j * PIXELS + px]));
            column.sort_by(|x, y| x.total_cmp(y));
            let q = column[column.len() / 2];
            let r = a - q;
            out.push(if r < 0.0 { a.min(1.0) } else { r.min(1.0) });
        }
    }
    Ok(Dataset {
        inputs: DataInputs::Images(out),
        labels: mixed.labels.clone(),
    })
}
