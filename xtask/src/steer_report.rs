//! Rendering of the `steer_*` stages ([`crate::steer::SteerResult`]): the
//! `steering` and `independence` objects of `summary.json` ([`summary`]),
//! the SVG figures ([`figures`]: accuracy and loss along every supervised
//! steering path, the semi-supervised paths, the decomposition of the top
//! mixed eigenvectors and the cross-curvature matrix) and the report's
//! "Steering and independence" section ([`markdown`]).
//!
//! Every accuracy in the JSON and the tables is a held-out fraction in
//! `[0, 1]` (shown as %); every figure shows the calibration split, on which
//! the operating points were chosen. Non-finite numbers become JSON `null`
//! and "—" in the tables; missing entries are skipped, never unwrapped.

use crate::artifact::write_atomic;
use crate::steer::{DirectionRuns, MethodRun, SteerResult, SETS};
use anyhow::{Context, Result};
use gensplit_models::Eval;
use gensplit_steer::sweep::Point;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

// ---------------------------------------------------------------- helpers

/// A finite number as JSON, anything else as `null`.
fn jf(x: f64) -> Value {
    if x.is_finite() {
        json!(x)
    } else {
        Value::Null
    }
}

fn jopt(x: Option<f64>) -> Value {
    x.map_or(Value::Null, jf)
}

fn finite(x: f64) -> Option<f64> {
    x.is_finite().then_some(x)
}

/// Held-out (or calibration) accuracy of `set`, if present and finite.
fn acc_of(evals: &BTreeMap<String, Eval>, set: &str) -> Option<f64> {
    evals.get(set).and_then(|e| finite(e.acc))
}

/// `{digits, patterns, mixed}` accuracies.
fn acc_json(evals: &BTreeMap<String, Eval>) -> Value {
    sets_json(|s| acc_of(evals, s))
}

fn sets_json(f: impl Fn(&str) -> Option<f64>) -> Value {
    let mut m = Map::new();
    for s in SETS {
        m.insert(s.to_string(), jopt(f(s)));
    }
    Value::Object(m)
}

/// The rule a direction ablates (`ablate_digits` → `digits`).
fn ablated_set(dir: &str) -> &str {
    dir.strip_prefix("ablate_").unwrap_or(dir)
}

/// The rule a direction keeps (the other pure set).
fn kept_set(dir: &str) -> &'static str {
    if ablated_set(dir) == "digits" {
        "patterns"
    } else {
        "digits"
    }
}

fn is_random_seed(name: &str) -> bool {
    name.starts_with("random_s")
}

fn pct(x: Option<f64>) -> String {
    match x.and_then(finite) {
        Some(v) => format!("{:.2}%", 100.0 * v),
        None => "—".into(),
    }
}

/// A number for a table: 4 decimals, or scientific notation when tiny/huge.
fn num(v: f64) -> String {
    if !v.is_finite() {
        "—".into()
    } else if v != 0.0 && (v.abs() < 1e-2 || v.abs() >= 1e5) {
        format!("{v:.3e}")
    } else {
        format!("{v:.4}")
    }
}

fn deg(rad: Option<f64>) -> String {
    match rad.and_then(finite) {
        Some(r) => format!("{:.2}°", r.to_degrees()),
        None => "—".into(),
    }
}

/// File-name-safe version of a model name.
fn safe(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Mean, sample standard deviation (divisor n − 1; 0 for one value), min and
/// max of the finite values.
#[derive(Clone, Copy, Debug)]
struct Stats {
    mean: f64,
    std: f64,
    min: f64,
    max: f64,
}

fn stats(values: impl IntoIterator<Item = f64>) -> Option<Stats> {
    let v: Vec<f64> = values.into_iter().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let std = if v.len() > 1 {
        (v.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / (n - 1.0)).sqrt()
    } else {
        0.0
    };
    Some(Stats {
        mean,
        std,
        min: v.iter().cloned().fold(f64::INFINITY, f64::min),
        max: v.iter().cloned().fold(f64::NEG_INFINITY, f64::max),
    })
}

/// The random-direction baseline of one direction, aggregated over seeds.
struct RandomAgg {
    seeds: usize,
    alpha: Option<Stats>,
    kl_keep: Option<Stats>,
    acc: BTreeMap<&'static str, Option<Stats>>,
}

fn random_agg(d: &DirectionRuns) -> Option<RandomAgg> {
    let runs: Vec<&MethodRun> = d.runs.iter().filter(|r| is_random_seed(&r.method)).collect();
    if runs.is_empty() {
        return None;
    }
    Some(RandomAgg {
        seeds: runs.len(),
        alpha: stats(runs.iter().map(|r| r.alpha)),
        kl_keep: stats(runs.iter().map(|r| r.kl_keep)),
        acc: SETS
            .iter()
            .map(|s| {
                (
                    *s,
                    stats(runs.iter().map(|r| acc_of(&r.heldout, s).unwrap_or(f64::NAN))),
                )
            })
            .collect(),
    })
}

impl RandomAgg {
    fn acc_mean(&self, set: &str) -> Option<f64> {
        self.acc.get(set).copied().flatten().map(|s| s.mean)
    }
    fn json(&self) -> Value {
        let pick = |f: fn(&Stats) -> f64| sets_json(|s| self.acc.get(s).copied().flatten().map(|st| f(&st)));
        json!({
            "alpha": jopt(self.alpha.map(|s| s.mean)),
            "acc": pick(|s| s.mean),
            "acc_std": pick(|s| s.std),
            "acc_min": pick(|s| s.min),
            "acc_max": pick(|s| s.max),
            "kl_keep": jopt(self.kl_keep.map(|s| s.mean)),
            "seeds": self.seeds,
        })
    }
}

fn find_run<'a>(d: &'a DirectionRuns, name: &str) -> Option<&'a MethodRun> {
    d.runs.iter().find(|r| r.method == name)
}

fn best_run(d: &DirectionRuns) -> Option<&MethodRun> {
    d.best.as_deref().and_then(|b| find_run(d, b))
}

// ---------------------------------------------------------------- summary

fn method_json(r: &MethodRun) -> Value {
    json!({
        "alpha": jf(r.alpha),
        "acc": acc_json(&r.heldout),
        "kl_keep": jf(r.kl_keep),
        "operating_point": r.op.is_some(),
    })
}

fn best_json(d: &DirectionRuns) -> Value {
    let Some(name) = d.best.as_deref() else {
        return Value::Null;
    };
    match find_run(d, name) {
        Some(r) => json!({
            "method": name,
            "alpha": jf(r.alpha),
            "acc": acc_json(&r.heldout),
            "kl_keep": jf(r.kl_keep),
        }),
        None => json!({
            "method": name,
            "alpha": Value::Null,
            "acc": sets_json(|_| None),
            "kl_keep": Value::Null,
        }),
    }
}

/// Best's ablated-rule held-out accuracy minus each other method's (and the
/// kept-rule accuracies of both).
fn margins_json(d: &DirectionRuns, agg: Option<&RandomAgg>) -> Value {
    let mut out = Map::new();
    let Some(best) = best_run(d) else {
        return Value::Object(out);
    };
    let (abl, kept) = (ablated_set(&d.dir), kept_set(&d.dir));
    let best_abl = acc_of(&best.heldout, abl);
    let best_kept = acc_of(&best.heldout, kept);
    let mut entry = |name: &str, m_abl: Option<f64>, m_kept: Option<f64>| {
        out.insert(
            name.to_string(),
            json!({
                "ablated_acc_diff": jopt(best_abl.zip(m_abl).map(|(b, m)| b - m)),
                "kept_acc_best": jopt(best_kept),
                "kept_acc_method": jopt(m_kept),
            }),
        );
    };
    for r in d.runs.iter().filter(|r| r.method != best.method) {
        entry(&r.method, acc_of(&r.heldout, abl), acc_of(&r.heldout, kept));
    }
    if let Some(a) = agg {
        if best.method != "random" {
            entry("random", a.acc_mean(abl), a.acc_mean(kept));
        }
    }
    Value::Object(out)
}

fn direction_json(d: &DirectionRuns) -> Value {
    let agg = random_agg(d);
    let mut methods = Map::new();
    for r in &d.runs {
        methods.insert(r.method.clone(), method_json(r));
    }
    if let Some(a) = &agg {
        methods.insert("random".into(), a.json());
    }
    let mut o = Map::new();
    o.insert("methods".into(), Value::Object(methods));
    o.insert("best".into(), best_json(d));
    if d.scenario == "supervised" {
        o.insert("margins".into(), margins_json(d, agg.as_ref()));
    }
    Value::Object(o)
}

fn steering_json(r: &SteerResult, relearn_steps: &[usize]) -> Value {
    let mut o = Map::new();
    o.insert("base_acc".into(), acc_json(&r.base_heldout));
    o.insert("base_acc_cal".into(), acc_json(&r.base_cal));
    o.insert("heldout_size".into(), json!(r.heldout_size));
    let mut scenarios: BTreeMap<String, Map<String, Value>> = ["supervised", "semi_keep_known", "semi_ablate_known"]
        .iter()
        .map(|s| (s.to_string(), Map::new()))
        .collect();
    let mut relearn = Map::new();
    relearn.insert("steps".into(), json!(relearn_steps));
    for d in &r.directions {
        scenarios
            .entry(d.scenario.clone())
            .or_default()
            .insert(d.dir.clone(), direction_json(d));
        if d.scenario == "supervised" {
            let mut per = Map::new();
            for (name, accs) in &d.relearn {
                let list: Vec<Value> = accs.iter().map(|&a| jf(a)).collect();
                per.insert(name.clone(), json!({ "acc_after_steps": list }));
            }
            relearn.insert(d.dir.clone(), Value::Object(per));
        }
    }
    for (s, m) in scenarios {
        o.insert(s, Value::Object(m));
    }
    o.insert("relearn".into(), Value::Object(relearn));
    Value::Object(o)
}

fn independence_json(r: &SteerResult) -> Value {
    let ind = &r.independence;
    let rb = &ind.random_baseline;
    let angles: Vec<Value> = ind.principal_angles.iter().map(|a| jf(a.to_degrees())).collect();
    let matrix: Vec<Vec<Value>> = ind
        .cross_curvature
        .iter()
        .map(|row| row.iter().map(|&v| jf(v)).collect())
        .collect();
    let decomposition: Vec<Value> = ind
        .mixed_decomposition
        .iter()
        .map(|d| {
            json!({
                "in_digits": jf(d.in_a),
                "in_patterns": jf(d.in_b),
                "joint": jf(d.joint),
                "rest": jf(d.rest),
                "bar_digits": jf(d.bar_a),
                "bar_patterns": jf(d.bar_b),
                "bar_rest": jf(d.bar_rest),
            })
        })
        .collect();
    json!({
        "overlap_digits_patterns": jf(ind.overlap_digits_patterns),
        "overlap_random": jf(ind.overlap_random),
        "overlap_random_empirical": {
            "mean": jf(rb.overlap_mean),
            "std": jf(rb.overlap_std),
            "trials": rb.trials,
        },
        "principal_angles_deg": angles,
        "cross_curvature": { "sets": SETS, "matrix": matrix },
        "mixed_decomposition": decomposition,
        "k": ind.k,
    })
}

/// The `steering` and `independence` objects of `summary.json`, each keyed
/// by model name (`pretrained` / `mixed_only`).
///
/// `steering.<m>`: `base_acc` / `base_acc_cal` (`{digits, patterns, mixed}`,
/// held-out / calibration), `heldout_size`; for each scenario (`supervised`,
/// `semi_keep_known`, `semi_ablate_known`) and direction `<dir>`
/// (`ablate_digits` / `ablate_patterns`): `methods.<name>.{alpha, acc,
/// kl_keep, operating_point}` (held-out accuracies at the operating point;
/// plus an aggregate `random` entry over the `random_s*` runs with `alpha`,
/// `acc`, `acc_std` (sample std over seeds), `acc_min`, `acc_max`, `kl_keep`
/// and `seeds`), `best.{method, alpha, acc, kl_keep}` (null without a best),
/// and for `supervised` also `margins.<name>.{ablated_acc_diff,
/// kept_acc_best, kept_acc_method}` (best's ablated-rule accuracy minus the
/// method's). `relearn.steps` (= `relearn_steps`) and
/// `relearn.<dir>.<name>.acc_after_steps` (held-out ablated-rule accuracy
/// after each of those steps).
///
/// `independence.<m>`: `overlap_digits_patterns`, `overlap_random`,
/// `overlap_random_empirical.{mean, std, trials}`, `principal_angles_deg`,
/// `cross_curvature.{sets, matrix}` (row r = eigenvectors of set r, column s
/// = Hessian of set s), `mixed_decomposition` (list of `{in_digits,
/// in_patterns, joint, rest, bar_digits, bar_patterns, bar_rest}`) and `k`.
pub fn summary(results: &[&SteerResult], relearn_steps: &[usize]) -> (Value, Value) {
    let mut steering = Map::new();
    let mut independence = Map::new();
    for r in results {
        steering.insert(r.model.clone(), steering_json(r, relearn_steps));
        independence.insert(r.model.clone(), independence_json(r));
    }
    (Value::Object(steering), Value::Object(independence))
}

// ---------------------------------------------------------------- figures

type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;

const GREY: RGBColor = RGBColor(150, 150, 150);
const SEED_COLORS: [RGBColor; 4] = [
    RGBColor(31, 119, 180),
    RGBColor(23, 190, 207),
    RGBColor(227, 119, 194),
    RGBColor(188, 189, 34),
];
const OTHER_COLORS: [RGBColor; 4] = [
    RGBColor(0, 0, 0),
    RGBColor(127, 127, 127),
    RGBColor(0, 90, 50),
    RGBColor(90, 0, 90),
];

/// A fixed colour per method name (seed_k* variants and unknown names by
/// their order in `names`).
fn method_color(name: &str, names: &[&str]) -> RGBColor {
    match name {
        "gen_eig" => RGBColor(214, 39, 40),
        "curv_ascent" => RGBColor(44, 160, 44),
        "guarded_ascent" => RGBColor(0, 0, 0),
        "unlearn" => RGBColor(148, 103, 189),
        "proj_grad" => RGBColor(255, 127, 14),
        "unprojected" => RGBColor(140, 86, 75),
        n if n.starts_with("seed") => {
            let i = names.iter().filter(|m| m.starts_with("seed")).position(|m| *m == n);
            SEED_COLORS[i.unwrap_or(0) % SEED_COLORS.len()]
        }
        n => {
            let i = names.iter().position(|m| *m == n).unwrap_or(0);
            OTHER_COLORS[i % OTHER_COLORS.len()]
        }
    }
}

/// The α range of all finite points (padded; `(-1, 1)` when empty).
fn alpha_range<'a>(runs: impl IntoIterator<Item = &'a MethodRun>) -> (f64, f64) {
    let (lo, hi) = runs
        .into_iter()
        .flat_map(|r| r.points.iter().map(|p| p.alpha))
        .filter(|a| a.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| (a.min(v), b.max(v)));
    if !(lo.is_finite() && hi.is_finite()) {
        return (-1.0, 1.0);
    }
    let span = (hi - lo).max(1e-9);
    let pad = 0.03 * span;
    if hi - lo < 1e-9 {
        (lo - 1.0, hi + 1.0)
    } else {
        (lo - pad, hi + pad)
    }
}

/// Lower end of a kept-accuracy axis: a little below the lowest finite
/// value (rounded down to 0.05), at most 0.9, so small drops stay visible.
fn acc_floor(runs: &[MethodRun], set: &str) -> f64 {
    let lo = runs
        .iter()
        .flat_map(|r| r.points.iter().map(|p| p.acc(set)))
        .filter(|x| x.is_finite())
        .fold(f64::INFINITY, f64::min);
    if lo.is_finite() {
        (((lo - 0.02) / 0.05).floor() * 0.05).clamp(0.0, 0.9)
    } else {
        0.0
    }
}

/// Upper end of a loss axis: the largest loss, but at most 1.25 × the 95th
/// percentile and at most 10 nats.
fn loss_cap<'a>(runs: impl IntoIterator<Item = &'a MethodRun>, set: &str) -> (f64, bool) {
    let mut v: Vec<f64> = runs
        .into_iter()
        .flat_map(|r| r.points.iter().map(|p| p.loss(set)))
        .filter(|x| x.is_finite())
        .collect();
    if v.is_empty() {
        return (1.0, false);
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let max = v[v.len() - 1];
    let p95 = v[((v.len() - 1) as f64 * 0.95).floor() as usize];
    let cap = (1.25 * p95).clamp(1e-3, 10.0);
    if max > cap {
        (cap, true)
    } else {
        ((max * 1.05).max(1e-3), false)
    }
}

/// What one panel of path plots shows.
struct PanelSpec<'a> {
    title: String,
    y_desc: String,
    y_range: (f64, f64),
    x_range: (f64, f64),
    /// Value of a calibration point (NaN = skip).
    value: &'a dyn Fn(&Point) -> f64,
    /// A dashed horizontal reference line and its legend label.
    hline: Option<(f64, String)>,
    legend: Option<SeriesLabelPosition>,
}

fn path_points(r: &MethodRun, spec: &PanelSpec, clip: f64) -> Vec<(f64, f64)> {
    r.points
        .iter()
        .filter_map(|p| {
            let v = (spec.value)(p);
            (v.is_finite() && p.alpha.is_finite()).then(|| (p.alpha, v.clamp(spec.y_range.0, clip)))
        })
        .collect()
}

/// One panel: a line + points per method (individual random seeds thin grey,
/// no legend entry), the operating points as large open circles.
fn path_panel(area: &Area, runs: &[MethodRun], spec: &PanelSpec) -> Result<()> {
    let (xlo, xhi) = spec.x_range;
    let (ylo, yhi) = spec.y_range;
    let mut chart = ChartBuilder::on(area)
        .caption(&spec.title, ("sans-serif", 16))
        .margin(8)
        .x_label_area_size(34)
        .y_label_area_size(50)
        .build_cartesian_2d(xlo..xhi, ylo..yhi)?;
    chart
        .configure_mesh()
        .x_desc("α (lines: signed θ units; walks: ‖θ − θ*‖)")
        .y_desc(spec.y_desc.as_str())
        .x_labels(7)
        .y_labels(6)
        .draw()?;
    let names: Vec<&str> = runs
        .iter()
        .map(|r| r.method.as_str())
        .filter(|n| !is_random_seed(n))
        .collect();
    for r in runs.iter().filter(|r| is_random_seed(&r.method)) {
        chart.draw_series(LineSeries::new(
            path_points(r, spec, yhi),
            GREY.mix(0.7).stroke_width(1),
        ))?;
    }
    for r in runs.iter().filter(|r| !is_random_seed(&r.method)) {
        let c = method_color(&r.method, &names);
        let pts = path_points(r, spec, yhi);
        chart
            .draw_series(LineSeries::new(pts.clone(), c.stroke_width(2)))?
            .label(r.method.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], c.stroke_width(2)));
        chart.draw_series(pts.iter().map(|&p| Circle::new(p, 2, c.filled())))?;
        if let Some(p) = r.op.and_then(|i| r.points.get(i)) {
            let v = (spec.value)(p);
            if v.is_finite() && p.alpha.is_finite() {
                chart.draw_series(std::iter::once(Circle::new(
                    (p.alpha, v.clamp(ylo, yhi)),
                    7,
                    c.stroke_width(2),
                )))?;
            }
        }
    }
    if let Some((h, label)) = &spec.hline {
        if h.is_finite() {
            let style = BLACK.mix(0.6).stroke_width(1);
            chart
                .draw_series(DashedLineSeries::new(vec![(xlo, *h), (xhi, *h)], 6, 4, style))?
                .label(label.clone())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], style));
        }
    }
    if let Some(pos) = &spec.legend {
        chart
            .configure_series_labels()
            .position(pos.clone())
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK.mix(0.5))
            .label_font(("sans-serif", 12))
            .draw()?;
    }
    Ok(())
}

/// `steer_<m>_<dir>.svg`: the supervised paths of one direction.
fn direction_svg(path: &Path, r: &SteerResult, d: &DirectionRuns) -> Result<()> {
    let (abl, kept) = (ablated_set(&d.dir), kept_set(&d.dir));
    let x_range = alpha_range(&d.runs);
    let acc = |s: &'static str| move |p: &Point| p.acc(s);
    let loss = |s: &'static str| move |p: &Point| p.loss(s);
    let abl_static: &'static str = if abl == "digits" { "digits" } else { "patterns" };
    let (acc_a, acc_k, loss_a, loss_k) = (acc(abl_static), acc(kept), loss(abl_static), loss(kept));
    let (cap_a, clip_a) = loss_cap(&d.runs, abl);
    let (cap_k, clip_k) = loss_cap(&d.runs, kept);
    let clipped = |c: bool, cap: f64| {
        if c {
            format!(" (clipped at {cap:.2} nats)")
        } else {
            String::new()
        }
    };
    let threshold = (d.rule.keep == kept).then(|| {
        (
            d.rule.base_keep_acc - d.rule.max_drop,
            format!("keep threshold (−{:.1} pts)", 100.0 * d.rule.max_drop),
        )
    });
    let specs = [
        PanelSpec {
            title: format!("ablated rule ({abl}) accuracy"),
            y_desc: "accuracy".into(),
            y_range: (0.0, 1.02),
            x_range,
            value: &acc_a,
            hline: None,
            legend: None,
        },
        PanelSpec {
            title: format!("kept rule ({kept}) accuracy"),
            y_desc: "accuracy".into(),
            y_range: (acc_floor(&d.runs, kept), 1.02),
            x_range,
            value: &acc_k,
            hline: threshold,
            legend: Some(SeriesLabelPosition::LowerLeft),
        },
        PanelSpec {
            title: format!("ablated rule ({abl}) loss{}", clipped(clip_a, cap_a)),
            y_desc: "loss (nats)".into(),
            y_range: (0.0, cap_a),
            x_range,
            value: &loss_a,
            hline: None,
            legend: None,
        },
        PanelSpec {
            title: format!("kept rule ({kept}) loss{}", clipped(clip_k, cap_k)),
            y_desc: "loss (nats)".into(),
            y_range: (0.0, cap_k),
            x_range,
            value: &loss_k,
            hline: None,
            legend: None,
        },
    ];
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (1200, 860)).into_drawing_area();
        root.fill(&WHITE)?;
        let root = root.titled(
            &format!(
                "{}: {} — supervised steering, calibration split (grey: random seeds; open circle: operating point)",
                r.model, d.dir
            ),
            ("sans-serif", 18),
        )?;
        for (area, spec) in root.split_evenly((2, 2)).iter().zip(&specs) {
            path_panel(area, &d.runs, spec)?;
        }
        root.present()?;
    }
    write_atomic(path, svg.as_bytes())
}

/// One semi-supervised panel: ablated-rule accuracy (solid) and kept-rule
/// accuracy (dashed) per method.
fn semi_panel(area: &Area, d: &DirectionRuns) -> Result<()> {
    let (abl, kept) = (ablated_set(&d.dir), kept_set(&d.dir));
    let (xlo, xhi) = alpha_range(&d.runs);
    let unknown = if d.scenario == "semi_keep_known" {
        "unknown"
    } else {
        "known"
    };
    let mut chart = ChartBuilder::on(area)
        .caption(
            format!(
                "{}: {} (solid: {unknown} {abl}, dashed: kept {kept})",
                d.scenario, d.dir
            ),
            ("sans-serif", 15),
        )
        .margin(8)
        .x_label_area_size(34)
        .y_label_area_size(50)
        .build_cartesian_2d(xlo..xhi, 0.0..1.02)?;
    chart
        .configure_mesh()
        .x_desc("α (lines: signed θ units; walks: ‖θ − θ*‖)")
        .y_desc("accuracy (calibration)")
        .x_labels(7)
        .y_labels(6)
        .draw()?;
    let names: Vec<&str> = d.runs.iter().map(|r| r.method.as_str()).collect();
    for r in &d.runs {
        let c = method_color(&r.method, &names);
        let series = |set: &str| -> Vec<(f64, f64)> {
            r.points
                .iter()
                .filter(|p| p.alpha.is_finite() && p.acc(set).is_finite())
                .map(|p| (p.alpha, p.acc(set).clamp(0.0, 1.02)))
                .collect()
        };
        let (pa, pk) = (series(abl), series(kept));
        chart
            .draw_series(LineSeries::new(pa.clone(), c.stroke_width(2)))?
            .label(format!("{} ({abl})", r.method))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], c.stroke_width(2)));
        chart.draw_series(pa.iter().map(|&p| Circle::new(p, 2, c.filled())))?;
        let dashed = c.stroke_width(2);
        chart
            .draw_series(DashedLineSeries::new(pk.clone(), 6, 4, dashed))?
            .label(format!("{} ({kept})", r.method))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 6, y)], dashed));
        chart.draw_series(pk.iter().map(|&p| TriangleMarker::new(p, 3, c.filled())))?;
        if let Some(p) = r.op.and_then(|i| r.points.get(i)) {
            for set in [abl, kept] {
                let v = p.acc(set);
                if v.is_finite() && p.alpha.is_finite() {
                    chart.draw_series(std::iter::once(Circle::new(
                        (p.alpha, v.clamp(0.0, 1.02)),
                        7,
                        c.stroke_width(2),
                    )))?;
                }
            }
        }
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK.mix(0.5))
        .label_font(("sans-serif", 12))
        .draw()?;
    Ok(())
}

/// `steer_<m>_semi.svg`: the semi-supervised scenarios, one panel each.
fn semi_svg(path: &Path, r: &SteerResult, semi: &[&DirectionRuns]) -> Result<()> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (1200, 860)).into_drawing_area();
        root.fill(&WHITE)?;
        let root = root.titled(
            &format!(
                "{}: semi-supervised steering, calibration split (open circle: operating point)",
                r.model
            ),
            ("sans-serif", 18),
        )?;
        for (area, d) in root.split_evenly((2, 2)).iter().zip(semi.iter().take(4)) {
            semi_panel(area, d)?;
        }
        root.present()?;
    }
    write_atomic(path, svg.as_bytes())
}

/// `steer_<m>_decomposition.svg`: stacked bars of the top mixed eigenvectors.
fn decomposition_svg(path: &Path, r: &SteerResult) -> Result<()> {
    let dec = &r.independence.mixed_decomposition;
    let k = dec.len().max(1) as f64;
    let part = |x: f64| if x.is_finite() { x.max(0.0) } else { 0.0 };
    let blue = RGBColor(31, 119, 180);
    let red = RGBColor(214, 39, 40);
    let grey = RGBColor(170, 170, 170);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (900, 420)).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                format!(
                    "{}: top mixed-loss eigenvectors vs span(U_digits), span(U_patterns) (k = {})",
                    r.model, r.independence.k
                ),
                ("sans-serif", 17),
            )
            .margin(10)
            .x_label_area_size(35)
            .y_label_area_size(50)
            .build_cartesian_2d(0.5f64..k + 0.5, 0f64..1.32)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_desc("mixed eigenvector i (largest eigenvalue first)")
            .y_desc("share of ‖u‖²")
            .x_label_formatter(&|x| format!("{x:.0}"))
            .y_label_formatter(&|y| {
                if *y <= 1.0 + 1e-9 {
                    format!("{y:.1}")
                } else {
                    String::new()
                }
            })
            .draw()?;
        let w = 0.4;
        let bars = |lo: &dyn Fn(usize) -> f64, hi: &dyn Fn(usize) -> f64, c: RGBColor| -> Vec<Rectangle<(f64, f64)>> {
            (0..dec.len())
                .map(|i| {
                    let x = (i + 1) as f64;
                    let (a, b) = (lo(i).min(1.0), hi(i).min(1.0));
                    Rectangle::new([(x - w, a), (x + w, b.max(a))], c.filled())
                })
                .collect()
        };
        let a = |i: usize| part(dec[i].bar_a);
        let ab = |i: usize| part(dec[i].bar_a) + part(dec[i].bar_b);
        let abr = |i: usize| ab(i) + part(dec[i].bar_rest);
        for (lo, hi, c, label) in [
            (
                &(|_| 0.0) as &dyn Fn(usize) -> f64,
                &a as &dyn Fn(usize) -> f64,
                blue,
                "digits span",
            ),
            (&a, &ab, red, "patterns span"),
            (&ab, &abr, grey, "rest"),
        ] {
            chart
                .draw_series(bars(lo, hi, c))?
                .label(label)
                .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], c.filled()));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperMiddle)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.5))
            .label_font(("sans-serif", 12))
            .draw()?;
        root.present()?;
    }
    write_atomic(path, svg.as_bytes())
}

/// White (0) to dark blue (≥ 1).
fn heat(v: f64) -> RGBColor {
    let t = if v.is_finite() { v.clamp(0.0, 1.0) } else { 0.0 };
    let mix = |a: f64, b: f64| (a + (b - a) * t).round() as u8;
    RGBColor(mix(255.0, 8.0), mix(255.0, 48.0), mix(255.0, 107.0))
}

/// `steer_<m>_cross_curvature.svg`: the 3×3 cross-curvature heatmap.
fn cross_svg(path: &Path, r: &SteerResult) -> Result<()> {
    let m = &r.independence.cross_curvature;
    let (x0, y0, cell) = (170i32, 110i32, 100i32);
    let font = |size: i32, c: &RGBColor| {
        ("sans-serif", size)
            .into_font()
            .color(c)
            .pos(Pos::new(HPos::Center, VPos::Center))
    };
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (620, 500)).into_drawing_area();
        root.fill(&WHITE)?;
        root.draw(&Text::new(
            format!("{}: cross-curvature mean uᵀH_s u / λ_r(u)", r.model),
            (310, 22),
            font(18, &BLACK),
        ))?;
        root.draw(&Text::new(
            "column: Hessian of set s",
            (x0 + 3 * cell / 2, 58),
            font(14, &BLACK),
        ))?;
        root.draw(&Text::new(
            "row: top eigenvectors of set r",
            (x0 + 3 * cell / 2, y0 + 3 * cell + 25),
            font(14, &BLACK),
        ))?;
        for (i, s) in SETS.iter().enumerate() {
            let c = i as i32;
            root.draw(&Text::new(
                format!("H_{s}"),
                (x0 + c * cell + cell / 2, 85),
                font(14, &BLACK),
            ))?;
            root.draw(&Text::new(
                format!("U_{s}"),
                (x0 - 55, y0 + c * cell + cell / 2),
                font(14, &BLACK),
            ))?;
        }
        for i in 0..SETS.len() {
            for j in 0..SETS.len() {
                let v = m.get(i).and_then(|row| row.get(j)).copied().unwrap_or(f64::NAN);
                let (x, y) = (x0 + j as i32 * cell, y0 + i as i32 * cell);
                root.draw(&Rectangle::new([(x, y), (x + cell, y + cell)], heat(v).filled()))?;
                root.draw(&Rectangle::new(
                    [(x, y), (x + cell, y + cell)],
                    BLACK.mix(0.3).stroke_width(1),
                ))?;
                let tc = if v.is_finite() && v > 0.55 { WHITE } else { BLACK };
                let text = if v.is_finite() { format!("{v:.3}") } else { "—".into() };
                root.draw(&Text::new(text, (x + cell / 2, y + cell / 2), font(17, &tc)))?;
            }
        }
        // colour scale
        let (bx, steps) = (x0 + 3 * cell + 40, 30);
        let h = 3 * cell;
        for i in 0..steps {
            let t = 1.0 - i as f64 / (steps - 1) as f64;
            let (ya, yb) = (y0 + i * h / steps, y0 + (i + 1) * h / steps);
            root.draw(&Rectangle::new([(bx, ya), (bx + 22, yb)], heat(t).filled()))?;
        }
        root.draw(&Rectangle::new(
            [(bx, y0), (bx + 22, y0 + h)],
            BLACK.mix(0.4).stroke_width(1),
        ))?;
        root.draw(&Text::new("≥ 1", (bx + 48, y0 + 5), font(13, &BLACK)))?;
        root.draw(&Text::new("≤ 0", (bx + 48, y0 + h - 5), font(13, &BLACK)))?;
        root.present()?;
    }
    write_atomic(path, svg.as_bytes())
}

/// Writes the steering figures of one model into `fig_dir` and returns
/// their file names (relative to `fig_dir`):
/// `steer_<m>_<dir>.svg` per supervised direction (2×2: ablated/kept rule
/// accuracy and loss vs α on the calibration split), `steer_<m>_semi.svg`
/// (the semi-supervised runs), `steer_<m>_decomposition.svg` (stacked bars of
/// the top mixed eigenvectors) and `steer_<m>_cross_curvature.svg` (3×3
/// heatmap). Figures without data are skipped.
pub fn figures(fig_dir: &Path, r: &SteerResult) -> Result<Vec<String>> {
    std::fs::create_dir_all(fig_dir).with_context(|| format!("creating {}", fig_dir.display()))?;
    let m = safe(&r.model);
    let mut names = Vec::new();
    for d in r.directions.iter().filter(|d| d.scenario == "supervised") {
        let name = format!("steer_{m}_{}.svg", safe(&d.dir));
        direction_svg(&fig_dir.join(&name), r, d).with_context(|| format!("rendering {name}"))?;
        names.push(name);
    }
    let semi: Vec<&DirectionRuns> = r.directions.iter().filter(|d| d.scenario.starts_with("semi")).collect();
    if !semi.is_empty() {
        let name = format!("steer_{m}_semi.svg");
        semi_svg(&fig_dir.join(&name), r, &semi).with_context(|| format!("rendering {name}"))?;
        names.push(name);
    }
    if !r.independence.mixed_decomposition.is_empty() {
        let name = format!("steer_{m}_decomposition.svg");
        decomposition_svg(&fig_dir.join(&name), r).with_context(|| format!("rendering {name}"))?;
        names.push(name);
    }
    if !r.independence.cross_curvature.is_empty() {
        let name = format!("steer_{m}_cross_curvature.svg");
        cross_svg(&fig_dir.join(&name), r).with_context(|| format!("rendering {name}"))?;
        names.push(name);
    }
    Ok(names)
}

// ---------------------------------------------------------------- markdown

const METHODS_MD: &str = "\
Each CNN is steered to lose one rule (direction `ablate_digits` or `ablate_patterns`) while keeping the other. \
H_s is the Hessian of the cross-entropy on set s at the trained θ*, U_s its top-k eigenvectors (the `hessian_*` \
eigenpairs). Two disjoint splits of the test images are used: the **calibration** split (the Hessians' images) on \
which every curvature product is computed and every path is evaluated to choose α, and the **held-out** split on \
which every accuracy and KL below is reported. Straight-line methods move along `θ* + α d` with ‖d‖ = 1 and α of \
both signs (θ units); walks report α = ‖θ − θ*‖ ≥ 0.

**seed_k<k>**: the top eigenvector u₁ of the ablated rule's Hessian with the top-k eigenspace of the kept rule's \
Hessian projected out, d = P⊥u₁ / ‖P⊥u₁‖ with P⊥ = I − U_keep,k U_keep,kᵀ: a sharp direction of the rule to break \
along which the rule to keep is (to second order, on its sharpest directions) flat.

**gen_eig**: the generalized eigenvector of (H_ablate, H_keep + μI) with the largest eigenvalue, restricted to the \
span of both top-k eigenspaces: the direction maximizing dᵀH_ablate d / dᵀ(H_keep + μI) d, i.e. the most curvature \
of the ablated loss per unit of curvature of the kept loss.

**curv_ascent**: a walk that ascends the ablated rule's loss (on the calibration images that do not choose the \
operating point, and only on samples still classified correctly), each step guarded by the kept rule's Hessian at θ* \
(a pull −β(H_keep + μI)δ back along the directions where the kept rule would pay) and projected out of its top \
eigenspace. The kept rule enters only through its curvature at θ*.

**guarded_ascent**: the same walk with the kept rule's gradient at the current point as a second guard (the step's \
component that would raise the kept loss is removed, and a restoring step along −∇L_keep is added once the kept \
loss exceeds its θ* value by a small slack): a constrained ascent, maximize L_ablate subject to L_keep ≈ L_keep(θ*), \
on the complement of the kept rule's top eigenspace. It reads the same data as the unlearning baseline. In the \
full configuration each step reads a fresh seeded minibatch (512 images) of the ablate calibration images while \
the keep guard (gradient and H_keep) stays on 1,024 fixed keep images (512 for the mixed-only CNN, whose operating \
points are also chosen on 512 calibration images per set), and the walk stops once the step's \
minibatch is at chance level (`steer.guarded.{batch,keep_batch,seed,stop_acc}`). Steps are 0.02 long, at most 90, \
for the pretrained CNN's supervised walks, and 0.04, at most 45, for the mixed-only CNN's and for every \
semi-supervised walk (`steer.semi_guarded`). `curv_ascent` is left out of the full configuration (it was dominated \
by `guarded_ascent` in both directions) and kept in the quick one.

**unlearn**: Adam fine-tuning from θ* on L_keep − L_ablate (the usual unlearning objective), evaluated along its \
iterates.

**Baselines**: `unprojected` (u₁ itself, no protection of the kept rule), `proj_grad` (the ablated loss's gradient \
with the kept rule's top-k eigenspace projected out), `random` (random unit directions in the complement of the kept \
rule's top-k eigenspace; one run per seed, reported as mean ± standard deviation over seeds) and `unlearn`.

**Semi-supervised**: *keep-known* — only the rule to keep has pure data; the rule to break is unknown. The methods \
break the curvature of the **mixed** loss that the known keep rule does not share (gen_eig of (H_mixed, H_keep + μI), \
guarded ascent on the mixed loss guarded by the keep rule), and the operating point maximizes the mixed loss while keeping the known \
rule. *ablate-known* — the rule to break is known but nothing of the rule to keep: the mixed data stand in for it \
(both rules explain the mixed images, so breaking one module leaves mixed accuracy nearly intact), i.e. H_mixed and \
mixed accuracy play the role of the kept rule. **demix_ascent** (when configured): the mixed images are averages of \
one input of each rule with the same label, so `2m − q` with q the known rule's input is the unknown rule's input. \
The stand-in for an unknown-rule image is `2m − q̂`, q̂ the pixel-wise median of the 5 known calibration samples of \
the same label that best explain m (negative residuals read as a dark known pixel; clipped to [0, 1]); no label of \
the unknown rule is read. The guarded walk then ascends the stand-ins' loss guarded by the known rule (keep-known), or \
ascends the known rule's loss guarded by the stand-ins' curvature and gradient (ablate-known), and every method's \
operating point is judged on the stand-ins (calibration): the lowest stand-in accuracy with the known rule kept \
(keep-known), or the lowest known-rule accuracy with the stand-ins within `stand_in_max_drop` (ablate-known). It \
works where the mixed data alone cannot: a model that reads mixed images mostly through one rule gives the mixed \
loss almost no gradient toward the other rule, and guarding mixed accuracy guards the rule that carries it.

**Operating point**: on each path, among the calibration points whose kept-set accuracy is at least its θ* value \
minus the allowed drop, the one with the lowest ablated-rule accuracy (the highest mixed loss for keep-known); ties go \
to the smaller |α|; when no point qualifies the method has no operating point and the model is left at θ*. The best \
method of each scenario and direction is also chosen on calibration numbers only. **Relearning**: from the operating \
points, Adam on a few labelled examples of the ablated rule; the held-out ablated-rule accuracy after each number of \
steps shows whether the rule was removed or merely hidden.";

fn scenario_label(s: &str) -> &str {
    match s {
        "supervised" => "supervised",
        "semi_keep_known" => "semi: keep known",
        "semi_ablate_known" => "semi: ablate known",
        other => other,
    }
}

fn independence_md(md: &mut String, r: &SteerResult) -> Result<()> {
    let ind = &r.independence;
    let rb = &ind.random_baseline;
    let angles = &ind.principal_angles;
    let min_angle = angles.iter().copied().filter(|a| a.is_finite()).reduce(f64::min);
    let max_angle = angles.iter().copied().filter(|a| a.is_finite()).reduce(f64::max);
    writeln!(
        md,
        "**Independence** of the digits and patterns top-{} eigenspaces (overlap ‖U_dᵀU_p‖²_F / k: 1 = same \
         subspace, ≈ k/n for unrelated ones):\n",
        ind.k
    )?;
    writeln!(md, "| quantity | value | random subspaces |\n| --- | ---: | ---: |")?;
    writeln!(
        md,
        "| overlap ‖U_dᵀU_p‖²_F / k | {} | {} (expectation k/n); {} ± {} (empirical, {} trials) |",
        num(ind.overlap_digits_patterns),
        num(ind.overlap_random),
        num(rb.overlap_mean),
        num(rb.overlap_std),
        rb.trials
    )?;
    writeln!(
        md,
        "| smallest principal angle | {} | {} (mean over trials) |",
        deg(min_angle),
        deg(Some(rb.min_angle_mean))
    )?;
    writeln!(md, "| largest principal angle | {} | — |", deg(max_angle))?;
    let mean_of = |f: fn(&gensplit_steer::independence::Decomposition) -> f64| {
        stats(ind.mixed_decomposition.iter().map(f)).map(|s| s.mean)
    };
    if !ind.mixed_decomposition.is_empty() {
        writeln!(
            md,
            "| top mixed eigenvectors: mean share in digits / patterns / neither | {} / {} / {} | — |",
            pct(mean_of(|d| d.bar_a)),
            pct(mean_of(|d| d.bar_b)),
            pct(mean_of(|d| d.bar_rest))
        )?;
    }
    writeln!(
        md,
        "\nCross-curvature (entry r, s: mean over set r's top-{} eigenvectors u of uᵀH_s u / λ_r(u); 1 on the \
         diagonal, ≈ 0 when set s's loss is flat along set r's sharp directions):\n",
        ind.k
    )?;
    writeln!(
        md,
        "| eigenvectors of ↓ \\ Hessian of → | {} |\n| --- |{}",
        SETS.join(" | "),
        " ---: |".repeat(SETS.len())
    )?;
    for (i, s) in SETS.iter().enumerate() {
        let cells: Vec<String> = (0..SETS.len())
            .map(|j| {
                ind.cross_curvature
                    .get(i)
                    .and_then(|row| row.get(j))
                    .map_or_else(|| "—".into(), |&v| num(v))
            })
            .collect();
        writeln!(md, "| {s} | {} |", cells.join(" | "))?;
    }
    writeln!(md)?;
    Ok(())
}

fn alpha_cell(r: &MethodRun) -> String {
    if r.op.is_none() {
        "none (θ*)".into()
    } else {
        num(r.alpha)
    }
}

fn operating_points_md(md: &mut String, r: &SteerResult, relearn_steps: &[usize]) -> Result<()> {
    writeln!(
        md,
        "**Operating points** (held-out accuracy; KL keep = mean KL(base ‖ steered) on the kept rule's held-out \
         images, nats; relearn = held-out ablated-rule accuracy after that many relearning steps; best method in \
         **bold**):\n"
    )?;
    let relearn_head: String = relearn_steps.iter().map(|s| format!(" relearn @{s} |")).collect();
    writeln!(
        md,
        "| scenario | direction | method | α | digits | patterns | mixed | KL keep |{relearn_head}\n\
         | --- | --- | --- | ---: | ---: | ---: | ---: | ---: |{}",
        " ---: |".repeat(relearn_steps.len())
    )?;
    for d in &r.directions {
        for run in d.runs.iter().filter(|x| !is_random_seed(&x.method)) {
            let is_best = d.best.as_deref() == Some(run.method.as_str());
            let name = if is_best {
                format!("**{}**", run.method)
            } else {
                run.method.clone()
            };
            let curve = d.relearn.iter().find(|(m, _)| *m == run.method).map(|(_, c)| c);
            let relearn: String = (0..relearn_steps.len())
                .map(|j| format!(" {} |", pct(curve.and_then(|c| c.get(j).copied()))))
                .collect();
            writeln!(
                md,
                "| {} | {} | {name} | {} | {} | {} | {} | {} |{relearn}",
                scenario_label(&d.scenario),
                d.dir,
                alpha_cell(run),
                pct(acc_of(&run.heldout, "digits")),
                pct(acc_of(&run.heldout, "patterns")),
                pct(acc_of(&run.heldout, "mixed")),
                num(run.kl_keep)
            )?;
        }
        if let Some(a) = random_agg(d) {
            let cell = |s: &str| match a.acc.get(s).copied().flatten() {
                Some(st) => format!("{} ± {:.2} pts", pct(Some(st.mean)), 100.0 * st.std),
                None => "—".into(),
            };
            writeln!(
                md,
                "| {} | {} | random (mean ± std, {} seeds) | {} | {} | {} | {} | {} |{}",
                scenario_label(&d.scenario),
                d.dir,
                a.seeds,
                a.alpha.map_or_else(|| "—".into(), |s| num(s.mean)),
                cell("digits"),
                cell("patterns"),
                cell("mixed"),
                a.kl_keep.map_or_else(|| "—".into(), |s| num(s.mean)),
                " — |".repeat(relearn_steps.len())
            )?;
        }
    }
    writeln!(md)?;
    // margins of the supervised best methods
    for d in r.directions.iter().filter(|d| d.scenario == "supervised") {
        let (abl, kept) = (ablated_set(&d.dir), kept_set(&d.dir));
        let Some(best) = best_run(d) else {
            writeln!(
                md,
                "- {}: no method kept the {kept} rule on calibration (no operating point).",
                d.dir
            )?;
            continue;
        };
        let runner = d
            .runs
            .iter()
            .filter(|x| x.method != best.method && x.op.is_some() && !is_random_seed(&x.method))
            .filter_map(|x| acc_of(&x.heldout, abl).map(|a| (x, a)))
            .min_by(|a, b| a.1.total_cmp(&b.1));
        let mut line = format!(
            "- {}: best **{}** — held-out {abl} {}, {kept} {}",
            d.dir,
            best.method,
            pct(acc_of(&best.heldout, abl)),
            pct(acc_of(&best.heldout, kept))
        );
        if let Some((x, a)) = runner {
            write!(
                line,
                "; strongest other method on held-out {} — {abl} {}, {kept} {}",
                x.method,
                pct(Some(a)),
                pct(acc_of(&x.heldout, kept))
            )?;
        }
        if let Some(a) = random_agg(d) {
            write!(
                line,
                "; random — {abl} {}, {kept} {}",
                pct(a.acc_mean(abl)),
                pct(a.acc_mean(kept))
            )?;
        }
        writeln!(md, "{line}.")?;
    }
    writeln!(md)?;
    Ok(())
}

/// Appends the `## Steering and independence` section to `md`: the methods,
/// then per model the base held-out accuracies, the independence statistics
/// and cross-curvature table, the table of operating points per scenario and
/// direction (with relearning accuracies after `relearn_steps`), and links
/// `figures/<name>` to the figures listed for that model in `figs`
/// (`(model, file names)`, as returned by [`figures`]).
pub fn markdown(
    md: &mut String,
    results: &[&SteerResult],
    figs: &[(String, Vec<String>)],
    relearn_steps: &[usize],
) -> Result<()> {
    writeln!(md, "## Steering and independence\n")?;
    writeln!(md, "{METHODS_MD}")?;
    if let Some(d) = results.iter().flat_map(|r| r.directions.iter()).next() {
        writeln!(
            md,
            "\nAllowed drop of the kept set's calibration accuracy at an operating point: {:.1} points.",
            100.0 * d.rule.max_drop
        )?;
    }
    writeln!(md)?;
    for r in results {
        writeln!(md, "### `{}`\n", r.model)?;
        writeln!(
            md,
            "Base held-out accuracy ({} images per set): digits {}, patterns {}, mixed {} (calibration: {}, {}, {}).\n",
            r.heldout_size,
            pct(acc_of(&r.base_heldout, "digits")),
            pct(acc_of(&r.base_heldout, "patterns")),
            pct(acc_of(&r.base_heldout, "mixed")),
            pct(acc_of(&r.base_cal, "digits")),
            pct(acc_of(&r.base_cal, "patterns")),
            pct(acc_of(&r.base_cal, "mixed")),
        )?;
        independence_md(md, r)?;
        operating_points_md(md, r, relearn_steps)?;
        for (_, names) in figs.iter().filter(|(m, _)| *m == r.model) {
            for name in names {
                let alt = name.trim_end_matches(".svg");
                writeln!(md, "![{alt}](figures/{name})\n")?;
            }
        }
    }
    Ok(())
}
