//! `report/`: the Markdown report, its figures and `summary.json`.
//!
//! `summary.json` schema (documented in docs/pipeline.md too):
//! `config.quick` (bool); `config.effective` (the whole [`crate::config::ReproConfig`]
//! the run used, preset plus `--config` overrides); `cnn_mixed_only.acc.{mixed,digits,patterns}` and
//! `cnn_pretrained.acc.{mixed,digits,patterns}` (held-out fractions in
//! [0, 1]); `modadd.{test_acc, train_acc, key_frequencies, key_share,
//! step_test_99}`; `timings_s.<stage>` (wall seconds in this run, cache hits
//! included); `stages.<stage>.{key, cached}`; `hessian.<set>.converged`
//! (false when Lanczos stopped on its matvec budget; `--strict` makes that
//! an error) beside each Hessian entry's eigenvalues, residual and stop reason.

use crate::pipeline::{Outputs, StageRun};
use crate::stages::Trained;
use anyhow::{Context, Result};
use plotters::prelude::*;
use serde_json::json;
use std::fmt::Write as _;
use std::path::Path;

use crate::artifact::write_atomic;

fn acc_obj(t: &Trained) -> serde_json::Value {
    json!({
        "mixed": t.acc("mixed"),
        "digits": t.acc("digits"),
        "patterns": t.acc("patterns"),
    })
}

/// The summary as JSON.
pub fn summary(out: &Outputs, cfg: &crate::config::ReproConfig, runs: &[StageRun], total_s: f64) -> serde_json::Value {
    let quick = cfg.quick;
    let mut timings = serde_json::Map::new();
    let mut stages = serde_json::Map::new();
    for r in runs {
        timings.insert(r.stage.clone(), json!(r.seconds));
        stages.insert(
            r.stage.clone(),
            json!({"key": r.key, "cached": r.cached, "compute_seconds": r.compute_seconds, "payload_sha256": r.payload_sha256}),
        );
    }
    timings.insert("total".into(), json!(total_s));
    let m = &out.modadd;
    let compute = |stage: &str| runs.iter().find(|r| r.stage == stage).and_then(|r| r.compute_seconds);
    let mut hessian = serde_json::Map::new();
    for h in &out.hessian {
        hessian.insert(
            h.set.clone(),
            json!({
                "top_eigenvalues": h.values,
                "max_rel_residual": h.max_rel_residual(),
                "matvecs": h.matvecs,
                "seconds": compute(&format!("hessian_{}", h.set)),
                "stop": h.stop,
                "converged": h.converged(),
                "samples": h.samples,
                "loss": h.loss,
                "slq_matvecs": h.slq_matvecs,
            }),
        );
    }
    for h in &out.hessian_mixed_only {
        hessian.insert(
            format!("mixed_only_{}", h.set),
            json!({
                "top_eigenvalues": h.values,
                "max_rel_residual": h.max_rel_residual(),
                "matvecs": h.matvecs,
                "seconds": compute(&format!("hessian_mixed_only_{}", h.set)),
                "stop": h.stop,
                "converged": h.converged(),
                "samples": h.samples,
                "loss": h.loss,
                "slq_matvecs": h.slq_matvecs,
            }),
        );
    }
    for (set, rows) in &out.hessian_blocks {
        if let Some(serde_json::Value::Object(h)) = hessian.get_mut(set) {
            h.insert("blocks".into(), json!(rows));
        }
    }
    let (steering, independence) = crate::steer_report::summary(
        &[&out.steer_pretrained, &out.steer_mixed_only],
        &cfg.steer.relearn.record_at,
    );
    let mut sphere = crate::sphere_report::summary(&out.sphere);
    if let Some(m) = sphere.as_object_mut() {
        m.insert("cnn".into(), crate::sphere_cnn::summary(&out.sphere_cnn));
    }
    json!({
        "config": {"quick": quick, "effective": cfg},
        "steering": steering,
        "independence": independence,
        "cnn_mixed_only": {"acc": acc_obj(&out.cnn_mixed_only), "train_seconds": compute("train_cnn_mixed_only")},
        "cnn_pretrained": {"acc": acc_obj(&out.cnn_pretrained), "train_seconds": compute("train_cnn_pretrained")},
        "modadd": {
            "test_acc": m.trained.acc("test"),
            "train_acc": m.trained.acc("train"),
            "key_frequencies": m.key_frequencies,
            "key_share": m.key_share,
            "step_test_99": m.step_test_99,
            "train_seconds": compute("train_modadd"),
        },
        "modadd_seed2": {
            "test_acc": out.modadd_seed2.trained.acc("test"),
            "train_acc": out.modadd_seed2.trained.acc("train"),
            "key_frequencies": out.modadd_seed2.key_frequencies,
            "key_share": out.modadd_seed2.key_share,
            "step_test_99": out.modadd_seed2.step_test_99,
            "train_seconds": compute("train_modadd_seed2"),
        },
        "sphere": sphere,
        "hessian": hessian,
        "timings_s": timings,
        "stages": stages,
    })
}

/// Writes a PNG grid: one row per set, one column per class (3× upscaled).
pub fn samples_png(path: &Path, rows: &[(String, Vec<Vec<f32>>)]) -> Result<()> {
    let (s, gap, cols) = (3usize, 4usize, 10usize);
    let w = cols * (28 * s + gap) + gap;
    let h = rows.len() * (28 * s + gap) + gap;
    let mut px = vec![255u8; w * h];
    for (r, (_, imgs)) in rows.iter().enumerate() {
        for (c, img) in imgs.iter().enumerate().take(cols) {
            let (x0, y0) = (gap + c * (28 * s + gap), gap + r * (28 * s + gap));
            for y in 0..28 * s {
                for x in 0..28 * s {
                    let v = img[(y / s) * 28 + x / s].clamp(0.0, 1.0);
                    px[(y0 + y) * w + x0 + x] = (255.0 * (1.0 - v)).round() as u8;
                }
            }
        }
    }
    let mut buf = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut buf, w as u32, h as u32);
        enc.set_color(png::ColorType::Grayscale);
        enc.set_depth(png::BitDepth::Eight);
        let mut wr = enc.write_header()?;
        wr.write_image_data(&px)?;
    }
    write_atomic(path, &buf)
}

/// Accuracy curves of one training run (SVG).
pub fn curves_svg(path: &Path, title: &str, t: &Trained) -> Result<()> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (720, 400)).into_drawing_area();
        root.fill(&WHITE)?;
        let max_step = t.log.curve.last().map(|p| p.step).unwrap_or(1).max(1) as f64;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 20))
            .margin(10)
            .x_label_area_size(35)
            .y_label_area_size(45)
            .build_cartesian_2d(0f64..max_step, 0f64..1.0)?;
        chart
            .configure_mesh()
            .x_desc("optimizer step")
            .y_desc("held-out accuracy")
            .x_label_formatter(&|x| format!("{x:.0}"))
            .draw()?;
        let names: Vec<String> = t
            .log
            .curve
            .first()
            .map(|p| p.evals.iter().map(|(n, _)| n.clone()).collect())
            .unwrap_or_default();
        let colors = [RED, BLUE, GREEN, MAGENTA, CYAN];
        for (i, name) in names.iter().enumerate() {
            let color = colors[i % colors.len()];
            let pts: Vec<(f64, f64)> = t
                .log
                .curve
                .iter()
                .filter_map(|p| {
                    p.evals
                        .iter()
                        .find(|(n, _)| n == name)
                        .map(|(_, e)| (p.step as f64, e.acc))
                })
                .collect();
            chart
                .draw_series(LineSeries::new(pts, color.stroke_width(2)))?
                .label(name.clone())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2)));
        }
        for &end in &t.phase_ends[..t.phase_ends.len().saturating_sub(1)] {
            chart.draw_series(LineSeries::new(
                vec![(end as f64, 0.0), (end as f64, 1.0)],
                BLACK.mix(0.4),
            ))?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()?;
        root.present()?;
    }
    write_atomic(path, svg.as_bytes())
}

/// Bar chart of the embedding's folded Fourier power (SVG), key frequencies
/// in red.
pub fn fourier_svg(path: &Path, out: &Outputs) -> Result<()> {
    let m = &out.modadd;
    let total = m.spectrum.total().max(f64::MIN_POSITIVE);
    let shares: Vec<f64> = m.spectrum.power.iter().map(|p| p / total).collect();
    let ymax = shares.iter().cloned().fold(0.0, f64::max).max(1e-3) * 1.1;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (720, 360)).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                format!("Embedding Fourier power, p = {} (key: red)", m.spectrum.p),
                ("sans-serif", 20),
            )
            .margin(10)
            .x_label_area_size(35)
            .y_label_area_size(50)
            .build_cartesian_2d(0f64..(shares.len() as f64 + 1.0), 0f64..ymax)?;
        chart
            .configure_mesh()
            .x_desc("frequency k")
            .y_desc("share of power")
            .x_label_formatter(&|x| format!("{x:.0}"))
            .draw()?;
        chart.draw_series(shares.iter().enumerate().map(|(i, &s)| {
            let k = i + 1;
            let color = if m.key_frequencies.contains(&k) {
                RED.to_rgba()
            } else {
                BLUE.mix(0.5)
            };
            Rectangle::new([(k as f64 - 0.4, 0.0), (k as f64 + 0.4, s)], color.filled())
        }))?;
        root.present()?;
    }
    write_atomic(path, svg.as_bytes())
}

/// A number for a table: 4 decimals, or scientific notation when tiny.
fn num(v: f64) -> String {
    if v != 0.0 && v.abs() < 1e-2 {
        format!("{v:.3e}")
    } else {
        format!("{v:.4}")
    }
}

fn pct(x: Option<f64>) -> String {
    x.map(|v| format!("{:.2}%", 100.0 * v)).unwrap_or_else(|| "—".into())
}

/// Top-k Hessian eigenvalues per set, log scale (SVG).
pub fn spectra_svg(path: &Path, out: &Outputs) -> Result<()> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (720, 400)).into_drawing_area();
        root.fill(&WHITE)?;
        let pos: Vec<f64> = out
            .hessian
            .iter()
            .flat_map(|h| h.values.iter().copied())
            .filter(|v| *v > 0.0)
            .collect();
        let (lo, hi) = pos
            .iter()
            .fold((f64::INFINITY, 0.0f64), |(a, b), &v| (a.min(v), b.max(v)));
        let (lo, hi) = if pos.is_empty() {
            (1e-6, 1.0)
        } else {
            (lo / 2.0, hi * 2.0)
        };
        let kmax = out.hessian.iter().map(|h| h.values.len()).max().unwrap_or(1) as f64;
        let mut chart = ChartBuilder::on(&root)
            .caption("Top Hessian eigenvalues (positive ones, log scale)", ("sans-serif", 20))
            .margin(10)
            .x_label_area_size(35)
            .y_label_area_size(60)
            .build_cartesian_2d(0.5f64..kmax + 0.5, (lo..hi).log_scale())?;
        chart
            .configure_mesh()
            .x_desc("index i (largest first)")
            .y_desc("eigenvalue (nats per unit parameter squared)")
            .x_label_formatter(&|x| format!("{x:.0}"))
            .y_label_formatter(&|y| format!("{y:.0e}"))
            .draw()?;
        let colors = [BLUE, GREEN, RED, MAGENTA];
        for (i, h) in out.hessian.iter().enumerate() {
            let color = colors[i % colors.len()];
            let pts: Vec<(f64, f64)> = h
                .values
                .iter()
                .enumerate()
                .filter(|(_, v)| **v > 0.0)
                .map(|(j, &v)| ((j + 1) as f64, v))
                .collect();
            chart
                .draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))?
                .label(h.set.clone())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2)));
            chart.draw_series(pts.into_iter().map(|p| Circle::new(p, 3, color.filled())))?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()?;
        root.present()?;
    }
    write_atomic(path, svg.as_bytes())
}

/// SLQ spectral densities, one panel per set (SVG, log density axis).
pub fn density_svg(path: &Path, out: &Outputs) -> Result<()> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (900, 520)).into_drawing_area();
        root.fill(&WHITE)?;
        let panels = root.split_evenly((2, 2));
        for (h, area) in out.hessian.iter().zip(panels.iter()) {
            if h.slq_nodes.is_empty() {
                continue;
            }
            let (lo, hi) = h
                .slq_nodes
                .iter()
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| (a.min(v), b.max(v)));
            let sigma = (hi - lo).max(1e-12) / 100.0;
            let grid = gensplit_eigen::slq::linspace(lo - 5.0 * sigma, hi + 5.0 * sigma, 400);
            let dens = gensplit_eigen::slq::gaussian_density(&h.slq_nodes, &h.slq_weights, &grid, sigma);
            let dmax = dens.iter().cloned().fold(0.0, f64::max).max(1e-300);
            let floor = dmax * 1e-8;
            let mut chart = ChartBuilder::on(area)
                .caption(format!("{} (SLQ, {} HVPs)", h.set, h.slq_matvecs), ("sans-serif", 16))
                .margin(8)
                .x_label_area_size(30)
                .y_label_area_size(55)
                .build_cartesian_2d(grid[0]..grid[grid.len() - 1], (floor..dmax * 2.0).log_scale())?;
            chart
                .configure_mesh()
                .x_desc("eigenvalue")
                .y_desc("density")
                .x_label_formatter(&|x| format!("{x:.1e}"))
                .y_label_formatter(&|y| format!("{y:.0e}"))
                .x_labels(5)
                .draw()?;
            chart.draw_series(LineSeries::new(
                grid.iter().zip(&dens).map(|(&x, &d)| (x, d.max(floor))),
                BLUE.stroke_width(2),
            ))?;
        }
        root.present()?;
    }
    write_atomic(path, svg.as_bytes())
}

/// Writes `report/` (report.md, figures, summary.json).
pub fn write(
    dir: &Path,
    out: &Outputs,
    cfg: &crate::config::ReproConfig,
    runs: &[StageRun],
    total_s: f64,
) -> Result<()> {
    let quick = cfg.quick;
    let fig = dir.join("figures");
    std::fs::create_dir_all(&fig).with_context(|| format!("creating {}", fig.display()))?;
    samples_png(&fig.join("samples.png"), &out.data.samples)?;
    curves_svg(
        &fig.join("curves_cnn_mixed_only.svg"),
        "cnn_mixed_only: trained on mixed only",
        &out.cnn_mixed_only,
    )?;
    curves_svg(
        &fig.join("curves_cnn_pretrained.svg"),
        "cnn_pretrained: pure digits+patterns, then mixed",
        &out.cnn_pretrained,
    )?;
    curves_svg(
        &fig.join("curves_modadd.svg"),
        "modadd: (a+b) mod p",
        &out.modadd.trained,
    )?;
    fourier_svg(&fig.join("modadd_fourier.svg"), out)?;
    spectra_svg(&fig.join("hessian_spectra.svg"), out)?;
    density_svg(&fig.join("hessian_density.svg"), out)?;

    let mut steer_figs = Vec::new();
    for r in [&out.steer_pretrained, &out.steer_mixed_only] {
        steer_figs.push((r.model.clone(), crate::steer_report::figures(&fig, r)?));
    }
    let mut sphere_figs = Vec::new();
    for r in &out.sphere {
        sphere_figs.push(crate::sphere_report::figures(&fig, r)?);
    }
    let s = summary(out, cfg, runs, total_s);
    write_atomic(&dir.join("summary.json"), serde_json::to_string_pretty(&s)?.as_bytes())?;

    let mut md = String::new();
    writeln!(
        md,
        "# gensplit report{}\n",
        if quick {
            " (--quick: small smoke configuration, not the real results)"
        } else {
            ""
        }
    )?;
    writeln!(
        md,
        "Generated by `cargo xtask reproduce{}`. Every number below is also in `summary.json`; the \
         effective configuration (preset plus any `--config` overrides) is its `config.effective`.\n",
        if quick { " --quick" } else { "" }
    )?;
    writeln!(md, "## Data\n\nHeld-out samples, one per class 0–9: pure digits (MNIST test), pure 6×6 patterns (test noise stream), and their pixel average.\n\n![samples](figures/samples.png)\n")?;
    writeln!(
        md,
        "| set | images | fingerprint (SHA-256, first 16 hex) |\n| --- | ---: | --- |"
    )?;
    for ((n, c), (_, f)) in out.data.sizes.iter().zip(&out.data.fingerprints) {
        writeln!(md, "| {n} | {c} | `{}` |", &f[..16])?;
    }
    writeln!(md, "\n## CNN accuracy (held-out)\n\n| model | mixed | digits | patterns | train time |\n| --- | ---: | ---: | ---: | ---: |")?;
    for (name, t) in [
        ("cnn_mixed_only", &out.cnn_mixed_only),
        ("cnn_pretrained", &out.cnn_pretrained),
    ] {
        let secs = runs
            .iter()
            .find(|r| r.stage == format!("train_{name}"))
            .and_then(|r| r.compute_seconds);
        writeln!(
            md,
            "| {name} | {} | {} | {} | {} |",
            pct(t.acc("mixed")),
            pct(t.acc("digits")),
            pct(t.acc("patterns")),
            secs.map(|s| format!("{s:.0} s")).unwrap_or_else(|| "—".into())
        )?;
    }
    writeln!(md, "\nTargets (full run): `cnn_mixed_only` mixed ≥ 95%, digits ≥ 50%, patterns ≥ 50% (a network trained only on averages learns both rules); `cnn_pretrained` ≥ 97% on each.\n")?;
    writeln!(
        md,
        "![curves](figures/curves_cnn_mixed_only.svg)\n\n![curves](figures/curves_cnn_pretrained.svg)\n"
    )?;
    let m = &out.modadd;
    writeln!(md, "## Modular addition\n")?;
    writeln!(md, "Full-batch AdamW on half of all pairs (a, b) mod {}: train accuracy {}, test accuracy {}; first curve point with test ≥ 99%: {}.\n",
        m.spectrum.p, pct(m.trained.acc("train")), pct(m.trained.acc("test")),
        m.step_test_99.map(|s| format!("step {s}")).unwrap_or_else(|| "never".into()))?;
    writeln!(md, "Key frequencies (smallest set of folded DFT frequencies of the embedding holding ≥ 85% of its non-constant power): **{:?}**, holding {:.1}% of the power.\n",
        m.key_frequencies, 100.0 * m.key_share)?;
    writeln!(
        md,
        "![curves](figures/curves_modadd.svg)\n\n![fourier](figures/modadd_fourier.svg)\n"
    )?;
    writeln!(md, "## Hessian spectra\n")?;
    writeln!(
        md,
        "Top eigenpairs of the loss Hessian by Lanczos (full reorthogonalization, thick restart) on exact \
         Hessian-vector products: the pretrained CNN on held-out digits, patterns and mixed images, and the \
         modular MLP on its training pairs (cross-entropy only, no weight-decay term). Residual = \
         max ‖Hv − λv‖ / max |λ|; densities by stochastic Lanczos quadrature on a smaller subset.\n"
    )?;
    writeln!(
        md,
        "| set | samples | loss | top-5 eigenvalues | max rel. residual | HVPs | stop | seconds |"
    )?;
    writeln!(md, "| --- | ---: | ---: | --- | ---: | ---: | --- | ---: |")?;
    for h in &out.hessian {
        let secs = runs
            .iter()
            .find(|r| r.stage == format!("hessian_{}", h.set))
            .and_then(|r| r.compute_seconds);
        let top: Vec<String> = h.values.iter().take(5).map(|&v| num(v)).collect();
        writeln!(
            md,
            "| {} | {} | {} | {} | {:.1e} | {} | {} | {} |",
            h.set,
            h.samples,
            num(h.loss),
            top.join(", "),
            h.max_rel_residual(),
            h.matvecs,
            h.stop,
            secs.map(|s| format!("{s:.0}")).unwrap_or_else(|| "—".into())
        )?;
    }
    let unconverged = crate::unconverged_hessians(out);
    if !unconverged.is_empty() {
        writeln!(
            md,
            "\n**Warning: Lanczos did not converge** (stopped on its matvec budget; the eigenpairs are the best \
             found, see the residuals) for: {}.",
            unconverged.join(", ")
        )?;
    }
    writeln!(
        md,
        "\n![spectra](figures/hessian_spectra.svg)\n\n![density](figures/hessian_density.svg)\n"
    )?;
    if !out.hessian_blocks.is_empty() {
        writeln!(
            md,
            "### Per-layer curvature of the pretrained CNN\n\nFor each layer (weight and bias together): the top \
             eigenvalue of the Hessian restricted to that layer's parameters (Lanczos on the diagonal block \
             H_AA, one full HVP per product), its trace (Hutchinson, ± standard error), and the share \
             ‖u_A‖²/‖u‖² of each full top eigenvector u in that layer. In these ReLU networks the logits are \
             piecewise linear in any single layer, so on every single-layer block the Hessian equals the \
             Gauss–Newton matrix.\n"
        )?;
        for (set, rows) in &out.hessian_blocks {
            writeln!(md, "**{set}**\n\n{}\n", crate::blocks::markdown_table(rows))?;
        }
    }
    crate::steer_report::markdown(
        &mut md,
        &[&out.steer_pretrained, &out.steer_mixed_only],
        &steer_figs,
        &cfg.steer.relearn.record_at,
    )?;
    let sphere_secs: Vec<Option<f64>> = out
        .sphere
        .iter()
        .map(|r| {
            runs.iter()
                .find(|x| x.stage == format!("sphere_{}", r.label))
                .and_then(|x| x.compute_seconds)
        })
        .collect();
    crate::sphere_report::markdown(&mut md, &out.sphere, &sphere_figs, &sphere_secs)?;
    crate::sphere_cnn::markdown(
        &mut md,
        &out.sphere_cnn,
        runs.iter()
            .find(|x| x.stage == "sphere_cnn")
            .and_then(|x| x.compute_seconds),
    )?;
    writeln!(
        md,
        "## Stages\n\nThe payload hash identifies a result whatever key or code made it: equal hashes, equal results. \
         The modular-addition stages (`train_modadd*`, `hessian_modadd`, `sphere_modadd*`) run at the same time as \
         the CNN stages, on idle CPU, so their seconds overlap the others' and do not add up to the total.\n\n| stage | key | payload SHA-256 | cached | seconds (this run) | seconds (when computed) |\n| --- | --- | --- | --- | ---: | ---: |"
    )?;
    for r in runs {
        writeln!(
            md,
            "| {} | `{}` | `{}` | {} | {:.1} | {} |",
            r.stage,
            &r.key[..16],
            r.payload_sha256.as_deref().map_or("—", |h| &h[..16.min(h.len())]),
            r.cached,
            r.seconds,
            r.compute_seconds
                .map(|s| format!("{s:.1}"))
                .unwrap_or_else(|| "—".into())
        )?;
    }
    writeln!(md, "\nTotal: {total_s:.1} s.")?;
    write_atomic(&dir.join("report.md"), md.as_bytes())?;
    Ok(())
}
