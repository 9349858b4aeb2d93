//! Report section, figures and `summary.json` keys of the sphere search.

use crate::artifact::write_atomic;
use crate::sphere::{FormulationRun, SphereResult};
use anyhow::Result;
use plotters::prelude::*;
use serde_json::{json, Value};
use std::fmt::Write as _;
use std::path::Path;

fn opt(x: Option<f64>) -> Value {
    x.filter(|v| v.is_finite()).map_or(Value::Null, |v| json!(v))
}

/// `sphere.<label>` objects for `summary.json`.
pub fn summary(results: &[SphereResult]) -> Value {
    let mut out = serde_json::Map::new();
    for r in results {
        let mut forms = serde_json::Map::new();
        for f in &r.formulations {
            forms.insert(
                f.formulation.name.clone(),
                json!({
                    "starts": f.starts.len(),
                    "single_breaks": f.single_breaks,
                    "broken_frequencies": f.broken_frequencies,
                    "transition_radius": opt(f.transition_radius),
                    "flagged_within_one_step": f.flagged_within_one,
                    "checkpoint_step": f.step,
                    "loss_at_start": f.loss0,
                    "evaluations": f.evaluations,
                    "paths": f.starts.iter().map(|s| json!({
                        "radii": s.radii,
                        "loss": s.loss,
                        "order_parameter": s.unit_pr,
                        "test_acc": s.test_acc,
                        "survival": s.survival,
                        "transition_index": s.transition.map(|t| t.index),
                        "break_index": s.break_index,
                        "broken": s.broken,
                    })).collect::<Vec<_>>(),
                }),
            );
        }
        let found: Vec<usize> = r.enumeration.iter().filter_map(|b| b.broken).collect();
        out.insert(
            r.label.clone(),
            json!({
                "key_frequencies": r.key_frequencies,
                "excluded_loss": r.excluded_loss,
                "grokked_step": r.grokked_step,
                "formulations": forms,
                "best": {
                    "formulation": r.best,
                    "key_frequencies": r.key_frequencies,
                    "broken_frequencies": found,
                    "recall": r.recall,
                    "duplicate": r.duplicate,
                    "enumeration_stop": r.enumeration_stop,
                    "enumeration_formulation": r.enumeration_formulation,
                },
            }),
        );
    }
    Value::Object(out)
}

fn best_run(r: &SphereResult) -> Option<&FormulationRun> {
    let name = r.best.as_ref()?;
    r.formulations.iter().find(|f| &f.formulation.name == name)
}

/// One SVG per network: training loss and the unit participation ratio vs
/// radius for every start of the best formulation (or the first one when
/// none broke), transitions marked; and per-frequency survival of every
/// enumerated break.
pub fn figures(fig_dir: &Path, r: &SphereResult) -> Result<String> {
    let f = best_run(r).or(r.formulations.first());
    let name = format!("sphere_{}.svg", r.label);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (1300, 420)).into_drawing_area();
        root.fill(&WHITE)?;
        let panels = root.split_evenly((1, 3));
        if let Some(f) = f {
            let rmax = f
                .starts
                .iter()
                .flat_map(|s| s.radii.last().copied())
                .fold(1.0f64, f64::max);
            let lmin = f
                .starts
                .iter()
                .flat_map(|s| s.loss.iter().copied())
                .fold(f64::INFINITY, f64::min)
                .max(1e-12);
            let lmax = f
                .starts
                .iter()
                .flat_map(|s| s.loss.iter().copied())
                .fold(lmin * 10.0, f64::max);
            let prmax = f
                .starts
                .iter()
                .flat_map(|s| s.unit_pr.iter().copied())
                .fold(1.0f64, f64::max);
            let mut ch = ChartBuilder::on(&panels[0])
                .caption(
                    format!("{}: training loss vs radius ({})", r.label, f.formulation.name),
                    ("sans-serif", 14),
                )
                .margin(8)
                .x_label_area_size(30)
                .y_label_area_size(60)
                .build_cartesian_2d(0.0..rmax * 1.05, (lmin..lmax * 1.5).log_scale())?;
            ch.configure_mesh().x_desc("radius").y_desc("loss (nats)").draw()?;
            for (i, s) in f.starts.iter().enumerate() {
                let col = Palette99::pick(i).to_rgba();
                ch.draw_series(LineSeries::new(
                    s.radii.iter().copied().zip(s.loss.iter().map(|l| l.max(lmin))),
                    col,
                ))?;
                if let Some(b) = s.break_index {
                    ch.draw_series(std::iter::once(Circle::new(
                        (s.radii[b], s.loss[b].max(lmin)),
                        5,
                        col.filled(),
                    )))?;
                }
            }
            let mut ch = ChartBuilder::on(&panels[1])
                .caption(
                    "order parameter: participation ratio over hidden units",
                    ("sans-serif", 14),
                )
                .margin(8)
                .x_label_area_size(30)
                .y_label_area_size(50)
                .build_cartesian_2d(0.0..rmax * 1.05, 0.0..prmax * 1.1)?;
            ch.configure_mesh()
                .x_desc("radius (x: transition, dot: single break)")
                .y_desc("units")
                .draw()?;
            for (i, s) in f.starts.iter().enumerate() {
                let col = Palette99::pick(i).to_rgba();
                ch.draw_series(LineSeries::new(
                    s.radii.iter().copied().zip(s.unit_pr.iter().copied()),
                    col,
                ))?;
                if let Some(t) = s.transition {
                    ch.draw_series(std::iter::once(Cross::new(
                        (t.radius, s.unit_pr[t.index]),
                        6,
                        col.stroke_width(2),
                    )))?;
                }
                if let Some(b) = s.break_index {
                    ch.draw_series(std::iter::once(Circle::new(
                        (s.radii[b], s.unit_pr[b]),
                        5,
                        col.filled(),
                    )))?;
                }
            }
        }
        // survival bars of the enumeration's breaks
        let nk = r.key_frequencies.len().max(1);
        let nb = r.enumeration.len().max(1);
        let mut ch = ChartBuilder::on(&panels[2])
            .caption("enumeration: key-frequency survival per break", ("sans-serif", 14))
            .margin(8)
            .x_label_area_size(30)
            .y_label_area_size(40)
            .build_cartesian_2d(0.0..(nb * (nk + 1)) as f64, -0.2f64..1.6)?;
        ch.configure_mesh()
            .disable_x_mesh()
            .x_desc(format!("break 1..{nb}; bars: frequencies {:?}", r.key_frequencies))
            .y_desc("survival")
            .draw()?;
        for (bi, b) in r.enumeration.iter().enumerate() {
            for (ki, &s) in b.survival.iter().enumerate() {
                let x0 = (bi * (nk + 1) + ki) as f64;
                let col = Palette99::pick(ki).to_rgba();
                ch.draw_series(std::iter::once(Rectangle::new(
                    [(x0, 0.0), (x0 + 0.9, s.clamp(-0.2, 1.6))],
                    col.filled(),
                )))?;
            }
        }
        ch.draw_series(LineSeries::new(
            [(0.0, 0.2), ((nb * (nk + 1)) as f64, 0.2)],
            BLACK.stroke_width(1),
        ))?;
        ch.draw_series(LineSeries::new(
            [(0.0, 0.8), ((nb * (nk + 1)) as f64, 0.8)],
            BLACK.stroke_width(1),
        ))?;
        root.present()?;
    }
    write_atomic(&fig_dir.join(&name), svg.as_bytes())?;
    Ok(name)
}

fn pct(v: &[f64]) -> String {
    v.iter()
        .map(|x| format!("{:.0}%", 100.0 * x))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The report section.
pub fn markdown(
    md: &mut String,
    results: &[SphereResult],
    figs: &[String],
    stage_seconds: &[Option<f64>],
) -> Result<()> {
    writeln!(
        md,
        "## Unsupervised sphere search (modular addition)\n\nFrom θ* the search minimises a loss on spheres \
         ‖c‖ = r of growing radius in a search space δ = Bc (warm-started along the radii, several seeded \
         starts) and watches a label-free order parameter: the participation ratio of the weight change over \
         the hidden units. It reads only the training loss. Scoring (never fed back): the share of each key \
         frequency's a+b−c logit signal that survives; a **single break** leaves one key frequency ≤ 20% and \
         all others ≥ 80%. Formulations: the checkpoint (final, saturated; or the first checkpoint after test \
         accuracy reached 99%), the space (top Hessian / Gauss–Newton eigenvectors, a later slice, or shrink \
         coordinates over hidden units, box [0, 1]), the loss (CE, tempered CE, margin loss; optionally minus \
         its quadratic model; optionally orthogonal to the gradient).\n"
    )?;
    for (i, r) in results.iter().enumerate() {
        writeln!(
            md,
            "### {}: key frequencies {:?}\n\nExcluded loss at θ* (training CE with one key frequency removed from \
             the logits): {}. Grokked checkpoint: step {}. Stage time: {}.\n",
            r.label,
            r.key_frequencies,
            r.excluded_loss
                .iter()
                .map(|l| format!("{l:.3e}"))
                .collect::<Vec<_>>()
                .join(", "),
            r.grokked_step,
            stage_seconds
                .get(i)
                .copied()
                .flatten()
                .map_or("cached".into(), |s| format!("{s:.0} s")),
        )?;
        writeln!(
            md,
            "| formulation | step | loss at θ* | starts | single breaks | frequencies | transition radius | flagged ±1 step | evaluation budget |\n| --- | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: |"
        )?;
        for f in &r.formulations {
            writeln!(
                md,
                "| {} | {} | {:.2e} | {} | {} | {:?} | {} | {} | {} |",
                f.formulation.name,
                f.step,
                f.loss0,
                f.starts.len(),
                f.single_breaks,
                f.broken_frequencies,
                f.transition_radius.map_or("—".into(), |t| format!("{t:.2}")),
                f.flagged_within_one,
                f.evaluations
            )?;
        }
        writeln!(
            md,
            "\nLowest survival reached by any start at the largest radius, per formulation (key frequencies in order):\n"
        )?;
        for f in &r.formulations {
            let last: Vec<String> = f
                .starts
                .iter()
                .filter_map(|s| s.survival.last())
                .map(|v| pct(v))
                .collect();
            writeln!(md, "- {}: {}", f.formulation.name, last.join(" · "))?;
        }
        writeln!(
            md,
            "\nEnumeration (deflation with {}): stop `{}`, recall {:.2}{}.\n",
            r.enumeration_formulation.as_deref().unwrap_or("no formulation broke"),
            r.enumeration_stop,
            r.recall,
            if r.duplicate {
                ", a frequency was reported twice"
            } else {
                ""
            }
        )?;
        if !r.enumeration.is_empty() {
            writeln!(md, "| break | radius | training loss | survival | embedding power (rel.) | broken |\n| ---: | ---: | ---: | --- | --- | --- |")?;
            for (j, b) in r.enumeration.iter().enumerate() {
                writeln!(
                    md,
                    "| {} | {:.2} | {:.3e} | {} | {} | {} |",
                    j + 1,
                    b.radius,
                    b.loss,
                    pct(&b.survival),
                    pct(&b.embed_power),
                    b.broken.map_or("—".into(), |k| k.to_string())
                )?;
            }
        }
        if let Some(fig) = figs.get(i) {
            writeln!(md, "\n![sphere {}](figures/{fig})\n", r.label)?;
        }
    }
    Ok(())
}
