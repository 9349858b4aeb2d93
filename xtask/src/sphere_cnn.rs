//! The `sphere_cnn` stage: the unsupervised sphere search on the pretrained
//! CNN's **mixed** training loss, scored by the digits and patterns
//! accuracies of each break.
//!
//! **What the search sees.** θ* and the cross-entropy of the first
//! `samples` mixed *training* images (image and its label: both rules give
//! the same label, so this is the loss the network was fine-tuned on; no
//! pure digit or pattern data). The space is the one that breaks single
//! modules of modular addition: shrink coordinates over the top principal
//! components of one weight block ([`gensplit_sphere::Coords::block_components`]:
//! `cᵢ = 1` deletes component i; radii in those units), searched in the box
//! `[0, 1]` from seeded starts, warm along the radius schedule.
//!
//! **Order parameter and breaks.** The participation ratio of `c` (how many
//! components the move spreads over), read at every radius; a **break** is
//! the point of a start's path at its first relative jump above
//! `threshold` ([`gensplit_sphere::detect_transition`]). Label-free.
//!
//! **Scoring only** (never fed back): held-out accuracy on digits, patterns
//! and mixed images (test images `eval_start .. eval_start + eval_size`) at
//! every point of every path. The goal (not a gate): a break with
//! one pure accuracy ≤ 50% and the other ≥ 90%.

use crate::stages::{Images, Trained};
use anyhow::{Context, Result};
use gensplit_models::{evaluate, Dataset, Model};
use gensplit_sphere::{detect_transition, search, Avoid, Coords, LogitLoss, ModelObjective, SphereParams};
use serde::{Deserialize, Serialize};

/// Settings of the `sphere_cnn` stage.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CnnSphereConfig {
    /// Mixed training images in the searched loss (the first ones).
    pub samples: usize,
    /// Weight blocks searched, one search each (layout names).
    pub blocks: Vec<String>,
    /// Temperature T of the searched cross-entropy (T = 1: the plain loss;
    /// a large T makes the cost of deleting a component about linear in
    /// its share, which on modular addition turns spread-out damage into
    /// whole deletions).
    pub temperature: f64,
    /// Principal components per block, at most.
    pub k: usize,
    /// Share of the block's `‖W‖²_F` the components hold, in `(0, 1]`.
    pub energy: f64,
    /// Radii (shrink units, strictly increasing).
    pub radii: Vec<f64>,
    /// Objective evaluations per radius.
    pub iters: usize,
    /// Random starts per block.
    pub starts: usize,
    /// Seed of the starts.
    pub seed: u64,
    /// Relative jump of the participation ratio that flags a transition.
    pub threshold: f64,
    /// First held-out test image of the scoring sets.
    pub eval_start: usize,
    /// Held-out images per scoring set.
    pub eval_size: usize,
    /// `None`: shrink the principal components. `Some(d)`: shrink the
    /// block's ICA subspaces instead (`Coords::block_subspaces_ica`, rows
    /// = output units, directions grouped at |corr(qᵢ², qⱼ²)| ≥ d), the
    /// space that enumerates modular addition's modules.
    #[serde(default)]
    pub unmix: Option<f64>,
}

impl CnnSphereConfig {
    /// The full preset.
    pub fn full() -> Self {
        Self {
            samples: 256,
            blocks: vec!["conv3.weight".into(), "fc1.weight".into(), "fc2.weight".into()],
            temperature: 32.0,
            k: 16,
            energy: 0.9,
            radii: vec![0.5, 1.0, 1.5, 2.0, 2.5, 3.0],
            iters: 8,
            starts: 3,
            seed: 31,
            threshold: 0.3,
            eval_start: 5000,
            eval_size: 1000,
            unmix: None,
        }
    }
    /// The quick preset (smoke test).
    pub fn quick() -> Self {
        Self {
            samples: 32,
            blocks: vec!["fc1.weight".into()],
            temperature: 1.0,
            k: 4,
            energy: 0.9,
            radii: vec![0.5, 1.0],
            iters: 2,
            starts: 1,
            seed: 31,
            threshold: 0.3,
            eval_start: 50,
            eval_size: 50,
            unmix: None,
        }
    }
}

/// Accuracies of one parameter vector on the three scoring sets.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Accs {
    /// Held-out digits accuracy.
    pub digits: f64,
    /// Held-out patterns accuracy.
    pub patterns: f64,
    /// Held-out mixed accuracy.
    pub mixed: f64,
}

/// One point of a path.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CnnPoint {
    /// Radius ‖c‖ (shrink units).
    pub radius: f64,
    /// The searched mixed training loss (nats; tempered when T ≠ 1).
    pub loss: f64,
    /// Participation ratio of c (the order parameter).
    pub participation: f64,
    /// Scoring accuracies.
    pub acc: Accs,
}

/// One start's path in one block.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CnnPath {
    /// Block searched.
    pub block: String,
    /// Start index.
    pub start: usize,
    /// Components in the space.
    pub components: usize,
    /// One point per radius.
    pub points: Vec<CnnPoint>,
    /// Index of the flagged transition (the break), if any.
    pub transition: Option<usize>,
}

/// Output of the `sphere_cnn` stage.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CnnSphereResult {
    /// Accuracies of the unmoved model.
    pub base: Accs,
    /// Every path.
    pub paths: Vec<CnnPath>,
    /// Searched loss at θ*.
    pub base_loss: f64,
    /// Temperature of the searched cross-entropy.
    pub temperature: f64,
}

impl CnnSphereResult {
    /// The breaks: each path's point at its flagged transition, with the
    /// path's block and start.
    pub fn breaks(&self) -> Vec<(&CnnPath, &CnnPoint)> {
        self.paths
            .iter()
            .filter_map(|p| p.transition.and_then(|i| p.points.get(i)).map(|pt| (p, pt)))
            .collect()
    }
}

fn accs<M: Model + ?Sized>(model: &M, theta: &[f32], sets: &[Dataset; 3]) -> Result<Accs> {
    let e = |d: &Dataset| -> Result<f64> { Ok(evaluate(model, theta, d, 500)?.acc) };
    Ok(Accs {
        digits: e(&sets[0])?,
        patterns: e(&sets[1])?,
        mixed: e(&sets[2])?,
    })
}

/// Runs the search on every configured block.
pub fn run(trained: &Trained, images: &Images, cfg: &CnnSphereConfig) -> Result<CnnSphereResult> {
    let model = &trained.model;
    let theta0: Vec<f64> = trained.theta.iter().map(|&x| x as f64).collect();
    let search_data = crate::split::range(
        &images.train_mixed,
        0,
        cfg.samples,
        "sphere_cnn",
        "samples (mixed training images)",
    )?;
    let scoring = [
        crate::split::range(
            &images.test_digits,
            cfg.eval_start,
            cfg.eval_size,
            "sphere_cnn",
            "the digits scoring set",
        )?,
        crate::split::range(
            &images.test_patterns,
            cfg.eval_start,
            cfg.eval_size,
            "sphere_cnn",
            "the patterns scoring set",
        )?,
        crate::split::range(
            &images.test_mixed,
            cfg.eval_start,
            cfg.eval_size,
            "sphere_cnn",
            "the mixed scoring set",
        )?,
    ];
    let base = accs(model, &trained.theta, &scoring)?;
    let obj = ModelObjective::new(
        model,
        &search_data,
        LogitLoss::CrossEntropy {
            temperature: cfg.temperature,
        },
        0,
    )?;
    let mut g = vec![0.0; theta0.len()];
    let base_loss = gensplit_sphere::Objective::value_grad(&obj, &theta0, &mut g)?;
    let params = SphereParams {
        radii: cfg.radii.clone(),
        iters: cfg.iters,
        step: 0.3,
        starts: cfg.starts,
        seed: cfg.seed,
        bounds: Some((0.0, 1.0)),
        gradient_orthogonal: false,
        subtract_quadratic: false,
        warm_start: true,
    };
    let pb = crate::stages::bar(cfg.blocks.len() * cfg.starts * cfg.radii.len(), "sphere cnn");
    let mut paths = Vec::new();
    for block in &cfg.blocks {
        let coords = match cfg.unmix {
            None => Coords::block_components(&theta0, model.layout(), block, cfg.k, cfg.energy),
            Some(d) => Coords::block_subspaces_ica(&theta0, model.layout(), block, cfg.k, cfg.energy, d),
        }
        .with_context(|| format!("sphere_cnn: components of block `{block}`"))?;
        pb.set_message(block.clone());
        // in the box [0, 1]^m no point lies beyond radius √m (every
        // component deleted): the schedule stops below it
        let reach = (coords.dim() as f64).sqrt() * (1.0 - 1e-9);
        let mut params = params.clone();
        params.radii.retain(|&r| r < reach);
        if params.radii.is_empty() {
            tracing::warn!(
                block,
                "sphere_cnn: every radius lies beyond √{} (the box's reach); block skipped",
                coords.dim()
            );
            continue;
        }
        let found = search(&obj, &theta0, &coords, &params, &Avoid::default(), &mut |_| pb.inc(1))
            .with_context(|| format!("sphere_cnn: search in block `{block}`"))?;
        for sp in found {
            let mut points = Vec::with_capacity(sp.points.len());
            for pt in &sp.points {
                let d = coords.delta(&pt.c);
                let th: Vec<f32> = theta0.iter().zip(&d).map(|(a, b)| (a + b) as f32).collect();
                points.push(CnnPoint {
                    radius: pt.radius,
                    loss: pt.loss,
                    participation: pt.participation,
                    acc: accs(model, &th, &scoring)?,
                });
            }
            let radii: Vec<f64> = points.iter().map(|p| p.radius).collect();
            let order: Vec<f64> = points.iter().map(|p| p.participation).collect();
            let transition = detect_transition(&radii, &order, cfg.threshold).map(|t| t.index);
            paths.push(CnnPath {
                block: block.clone(),
                start: sp.start,
                components: coords.dim(),
                points,
                transition,
            });
        }
    }
    crate::progress::finish(&pb);
    let r = CnnSphereResult {
        base,
        paths,
        base_loss,
        temperature: cfg.temperature,
    };
    for (p, pt) in r.breaks() {
        tracing::info!(
            block = p.block,
            start = p.start,
            "sphere cnn break at r = {:.2}: digits {:.3}, patterns {:.3}, mixed {:.3}",
            pt.radius,
            pt.acc.digits,
            pt.acc.patterns,
            pt.acc.mixed
        );
    }
    Ok(r)
}

/// `sphere.cnn` of summary.json.
pub fn summary(r: &CnnSphereResult) -> serde_json::Value {
    let breaks: Vec<serde_json::Value> = r
        .breaks()
        .into_iter()
        .map(|(p, pt)| {
            serde_json::json!({
                "acc_digits": pt.acc.digits,
                "acc_patterns": pt.acc.patterns,
                "acc_mixed": pt.acc.mixed,
                "radius": pt.radius,
                "block": p.block,
                "start": p.start,
            })
        })
        .collect();
    serde_json::json!({
        "base": {"acc_digits": r.base.digits, "acc_patterns": r.base.patterns, "acc_mixed": r.base.mixed},
        "breaks": breaks,
        "paths": r.paths.len(),
    })
}

/// The report section.
pub fn markdown(md: &mut String, r: &CnnSphereResult, seconds: Option<f64>) -> std::fmt::Result {
    use std::fmt::Write;
    writeln!(md, "\n### Sphere search on the pretrained CNN (mixed loss)\n")?;
    writeln!(
        md,
        "Shrink coordinates over each block's principal components; the searched loss is the mixed training loss only \
         (cross-entropy at temperature {}). \
         Unmoved held-out accuracy: digits {:.3}, patterns {:.3}, mixed {:.3}. A break is a path's first jump of the \
         participation ratio of c; the accuracies score it (never fed back).{}\n",
        r.temperature,
        r.base.digits,
        r.base.patterns,
        r.base.mixed,
        seconds.map_or(String::new(), |s| format!(" Stage time {s:.0} s."))
    )?;
    writeln!(
        md,
        "| block | start | radius | searched loss | PR of c | digits | patterns | mixed | break |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"
    )?;
    for p in &r.paths {
        for (i, pt) in p.points.iter().enumerate() {
            writeln!(
                md,
                "| {} | {} | {:.2} | {:.3} | {:.2} | {:.3} | {:.3} | {:.3} | {} |",
                p.block,
                p.start,
                pt.radius,
                pt.loss,
                pt.participation,
                pt.acc.digits,
                pt.acc.patterns,
                pt.acc.mixed,
                if p.transition == Some(i) { "**break**" } else { "" }
            )?;
        }
    }
    Ok(())
}
