//! The `steer_*` stages: independence analysis and steering of a trained CNN
//! (supervised, semi-supervised, relearning), built from `gensplit-steer`.
//!
//! Splits (all from the held-out test images, so training never saw them):
//! * **calibration**: test images `0..hessian.subset` — the data of the
//!   `hessian_*` eigenpairs and of every curvature product here; α and the
//!   operating points are chosen on its first `cal_eval` images, and the
//!   walks, the unlearning baseline and relearning train on the rest;
//! * **held-out**: test images `heldout_start..heldout_start+heldout_size`,
//!   disjoint from calibration; every reported accuracy and KL is on it.
//!
//! Units: α in θ units (a straight line `θ* + α d`, `‖d‖ = 1`), or the
//! distance `‖θ − θ*‖` for walks; losses in nats; accuracies in `[0, 1]`.

use crate::hessian::{HessianConfig, HessianResult};
use crate::stages::bar;
use crate::stages::{Images, Trained};
use anyhow::{bail, Context, Result};
use gensplit_data::ImageSet;
use gensplit_hvp::{Curvature, HessianOperator};
use gensplit_models::{Dataset, Eval, Model};
use gensplit_steer::direction::{self, products};
use gensplit_steer::independence::{self, CrossCurvature, Decomposition, RandomBaseline};
use gensplit_steer::sweep::{self, Objective, Point, Rule};
use gensplit_steer::walk::{self, AscentParams, RelearnParams, UnlearnParams};
use gensplit_steer::Basis;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The three image sets, in the order used everywhere here.
pub const SETS: [&str; 3] = ["digits", "patterns", "mixed"];

/// Name of the de-mixed stand-ins' calibration set in the semi-supervised
/// runs' points (`demix_ascent`).
pub const DEMIXED: &str = "demixed";

/// Settings of a steering stage.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SteerConfig {
    /// Calibration images per set used to evaluate sweep points (a prefix of
    /// the Hessian subset).
    pub cal_eval: usize,
    /// First held-out test image (must be ≥ the Hessian subset size).
    pub heldout_start: usize,
    /// Held-out images per set.
    pub heldout_size: usize,
    /// Eigenvectors of each loss used for spans, cross-curvature and the
    /// independence statistics.
    pub k: usize,
    /// Keep-eigenspace sizes of the `seed` method (one method per entry,
    /// named `seed_k<k>`).
    pub seed_ks: Vec<usize>,
    /// Ridge μ of the generalized eigenproblem (nats per θ²).
    pub mu: f64,
    /// Step magnitudes of the straight-line sweeps (both signs are run).
    pub alphas: Vec<f64>,
    /// Seeds of the random-direction baseline.
    pub random_seeds: Vec<u64>,
    /// Random frame pairs of the independence baseline.
    pub random_trials: usize,
    /// The curvature-guarded ascent walk (`curv_ascent`: keep data enters
    /// only through `H_k` at θ*).
    pub ascent: AscentParams,
    /// The same walk with the keep-gradient guard (`guarded_ascent`).
    pub guarded: AscentParams,
    /// The semi-supervised runs' walks (`semi_walks`): the same walk, with
    /// its own steps and step size (their goal is looser than the
    /// supervised one's: ablated ≤ 50%, kept rule down ≤ 5 points).
    pub semi_guarded: AscentParams,
    /// Keep eigenvectors the walks project out (at most the keep
    /// Hessians' k).
    pub walk_k: usize,
    /// Samples of the keep loss in the walk's `H_k` (prefix of calibration).
    pub ascent_keep_subset: usize,
    /// The same for the semi-supervised walks' guard (the known rule's or
    /// the stand-ins' images; 0 = `ascent_keep_subset`).
    #[serde(default)]
    pub semi_keep_subset: usize,
    /// The unlearning fine-tune baseline.
    pub unlearn: UnlearnParams,
    /// Relearning: labelled ablated-rule samples (from calibration).
    pub relearn_samples: usize,
    /// Relearning optimizer and record steps.
    pub relearn: RelearnParams,
    /// Held-out images (a prefix of the held-out split) on which the
    /// relearning curves are measured (0 = the whole held-out split).
    #[serde(default)]
    pub relearn_eval: usize,
    /// Calibration images (a prefix of the Hessian's subset) of the cross
    /// products `H_s U_r` behind the cross-curvature matrix and the
    /// generalized eigenproblems (0 = the whole Hessian subset).
    #[serde(default)]
    pub product_subset: usize,
    /// Allowed kept-rule drop on calibration at the operating point.
    pub max_keep_drop: f64,
    /// Walks of the semi-supervised runs: `guarded_ascent` (ascend the
    /// mixed loss guarded by the known rule, or the known rule's loss
    /// guarded by the mixed data) and/or `demix_ascent` (the same walk with
    /// the unknown rule's de-mixed stand-ins, `gensplit_steer::demix`, in
    /// the mixed data's place). With `demix_ascent`, every method of the
    /// run is judged on the stand-ins (see `run`).
    #[serde(default = "default_semi_walks")]
    pub semi_walks: Vec<String>,
    /// Allowed drop of the de-mixed stand-ins' calibration accuracy at the
    /// operating point when they stand in for the kept rule (ablate-known
    /// with `demix_ascent`): they are a noisier proxy than real data (their
    /// accuracy at θ* is below the real rule's), so the semi-supervised
    /// goal's 5 points rather than `max_keep_drop`.
    #[serde(default = "default_stand_in_drop")]
    pub stand_in_max_drop: f64,
}

/// The full preset's walk (it met the semi-supervised goal in all four
/// runs; the mixed-data `guarded_ascent` in two of four, docs/results.md).
fn default_semi_walks() -> Vec<String> {
    vec!["demix_ascent".into()]
}

fn default_stand_in_drop() -> f64 {
    0.05
}

/// One method's run in one scenario and direction.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MethodRun {
    /// Method name.
    pub method: String,
    /// Calibration points along the path.
    pub points: Vec<Point>,
    /// Index of the operating point in `points` (`None`: no point kept the rule).
    pub op: Option<usize>,
    /// α at the operating point.
    pub alpha: f64,
    /// Held-out evaluation at the operating point (per set).
    pub heldout: BTreeMap<String, Eval>,
    /// Mean KL(base ‖ steered) on the kept rule's held-out data (nats).
    pub kl_keep: f64,
    /// Extra numbers (e.g. the generalized Rayleigh quotient).
    pub info: BTreeMap<String, f64>,
    /// The unit direction of a straight-line method (f32; `None` for walks
    /// and the random baseline, which is reproducible from its seed).
    pub direction: Option<Vec<f32>>,
    /// θ at a walk's operating point (`None` for straight lines).
    pub theta_op: Option<Vec<f32>>,
}

/// All methods of one scenario and direction.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DirectionRuns {
    /// `supervised`, `semi_keep_known` or `semi_ablate_known`.
    pub scenario: String,
    /// `ablate_digits` or `ablate_patterns`.
    pub dir: String,
    /// The rule the operating points used.
    pub rule: Rule,
    /// Runs, in method order.
    pub runs: Vec<MethodRun>,
    /// Name of the best method (chosen on calibration numbers).
    pub best: Option<String>,
    /// θ at the best method's operating point.
    pub best_theta: Option<Vec<f32>>,
    /// Relearning curves (method, held-out ablated accuracy at each step).
    pub relearn: Vec<(String, Vec<f64>)>,
}

/// Independence statistics of the digits and patterns eigenspaces.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Independence {
    /// ‖U_dᵀU_p‖²_F / k.
    pub overlap_digits_patterns: f64,
    /// Its expectation for random subspaces, k/n.
    pub overlap_random: f64,
    /// The empirical random-frame baseline.
    pub random_baseline: RandomBaseline,
    /// Principal angles between the two spans (radians, ascending).
    pub principal_angles: Vec<f64>,
    /// `cross[r][s]`: mean over set r's top eigenvectors u of uᵀH_s u / λ_r(u) (SETS order).
    pub cross_curvature: Vec<Vec<f64>>,
    /// Per-vector values of each cross-curvature entry.
    pub cross_detail: Vec<Vec<CrossCurvature>>,
    /// Decomposition of each top mixed eigenvector against span(U_d), span(U_p).
    pub mixed_decomposition: Vec<Decomposition>,
    /// Eigenvectors per set used.
    pub k: usize,
}

/// Output of a `steer_*` stage.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SteerResult {
    /// `pretrained` or `mixed_only`.
    pub model: String,
    /// Unsteered calibration evaluation (per set).
    pub base_cal: BTreeMap<String, Eval>,
    /// Unsteered held-out evaluation (per set).
    pub base_heldout: BTreeMap<String, Eval>,
    /// Held-out images per set.
    pub heldout_size: usize,
    /// Independence analysis.
    pub independence: Independence,
    /// Every scenario and direction.
    pub directions: Vec<DirectionRuns>,
}

struct Ctx<'a> {
    model: &'a gensplit_models::AnyModel,
    theta: &'a [f32],
    cal_eval: BTreeMap<&'static str, Dataset>,
    cal_full: BTreeMap<&'static str, Dataset>,
    /// Calibration images `cal_eval..subset`: the data the walks, the
    /// unlearning baseline and relearning train on, disjoint from the
    /// images that choose the operating points.
    cal_walk: BTreeMap<&'static str, Dataset>,
    heldout: BTreeMap<&'static str, Dataset>,
    /// A fourth calibration set evaluated at every point (the de-mixed
    /// stand-ins of the semi-supervised runs).
    extra_eval: Option<(&'static str, Dataset)>,
    /// θ* evaluated on [`Ctx::eval_sets`] (every straight line's α = 0).
    base_eval: BTreeMap<String, gensplit_models::Eval>,
    /// θ*'s logits on the held-out sets (the reference of `kl_keep`).
    base_logits: BTreeMap<&'static str, Vec<f32>>,
    cfg: &'a SteerConfig,
}

impl Ctx<'_> {
    fn eval_sets(&self) -> Vec<(&str, &Dataset)> {
        let mut v: Vec<(&str, &Dataset)> = SETS.iter().map(|s| (*s, &self.cal_eval[s])).collect();
        if let Some((name, d)) = &self.extra_eval {
            v.push((name, d));
        }
        v
    }
    fn heldout_sets(&self) -> Vec<(&str, &Dataset)> {
        SETS.iter().map(|s| (*s, &self.heldout[s])).collect()
    }
    /// Finishes a run: operating point, held-out numbers, KL on the keep set.
    #[allow(clippy::too_many_arguments)]
    fn finish(
        &self,
        method: &str,
        points: Vec<Point>,
        thetas: &dyn Fn(usize) -> Result<Vec<f32>>,
        rule: &Rule,
        keep_set: &str,
        info: BTreeMap<String, f64>,
        direction: Option<Vec<f32>>,
    ) -> Result<(MethodRun, Vec<f32>)> {
        let op = sweep::operating_point(&points, rule);
        let theta = match op {
            Some(i) => thetas(i)?,
            None => self.theta.to_vec(),
        };
        // the keep set's logits give both its accuracy and the KL
        let mut heldout = BTreeMap::new();
        let mut kl_keep = None;
        for (name, data) in self.heldout_sets() {
            match self.base_logits.get(name) {
                Some(base) if name == keep_set => {
                    let (e, kl) = sweep::evaluate_with_kl(self.model, &theta, data, base)
                        .with_context(|| format!("held-out `{name}` evaluation of {method}"))?;
                    heldout.insert(name.to_string(), e);
                    kl_keep = Some(kl);
                }
                _ => heldout.extend(sweep::evaluate_sets(self.model, &theta, &[(name, data)])?),
            }
        }
        let kl_keep = match kl_keep {
            Some(kl) => kl,
            None => sweep::kl_from(self.model, self.theta, &theta, &self.heldout[keep_set])?,
        };
        Ok((
            MethodRun {
                method: method.to_string(),
                alpha: op.map_or(0.0, |i| points[i].alpha),
                points,
                op,
                heldout,
                kl_keep,
                info,
                theta_op: if direction.is_none() && op.is_some() {
                    Some(theta.clone())
                } else {
                    None
                },
                direction,
            },
            theta,
        ))
    }
    fn line(
        &self,
        method: &str,
        d: &[f64],
        rule: &Rule,
        keep_set: &str,
        info: BTreeMap<String, f64>,
    ) -> Result<(MethodRun, Vec<f32>)> {
        let alphas = sweep::symmetric_grid(&self.cfg.alphas)?;
        let points = sweep::line_with_base(
            self.model,
            self.theta,
            d,
            &alphas,
            &self.eval_sets(),
            Some(&self.base_eval),
        )?;
        let th = self.theta;
        let keep_dir = !method.starts_with("random_s");
        let (mut run, theta) = self.finish(
            method,
            points.clone(),
            &|i| Ok(sweep::offset(th, d, points[i].alpha)?),
            rule,
            keep_set,
            info,
            Some(Vec::new()),
        )?;
        run.direction = keep_dir.then(|| d.iter().map(|&x| x as f32).collect());
        Ok((run, theta))
    }

    /// One ascent walk (`curv_ascent`, or `guarded_ascent` when
    /// `params.keep_gradient`) from θ*, with a progress bar, finished at its
    /// operating point.
    #[allow(clippy::too_many_arguments)]
    fn walk(
        &self,
        method: &str,
        label: &str,
        ascend: &Dataset,
        guard_op: &dyn gensplit_eigen::LinearOperator,
        guard_basis: Option<&Basis>,
        guard_data: &Dataset,
        params: &AscentParams,
        rule: &Rule,
        keep_set: &str,
    ) -> Result<(MethodRun, Vec<f32>)> {
        let pb = bar(params.steps, label);
        let (pts, ths) = walk::curvature_ascent(
            self.model,
            self.theta,
            ascend,
            guard_op,
            guard_basis,
            params.keep_gradient.then_some(guard_data),
            params,
            &self.eval_sets(),
            &mut |t| pb.set_position(t as u64),
        )?;
        crate::progress::finish(&pb);
        self.finish(
            method,
            pts,
            &|i| Ok(ths[i].clone()),
            rule,
            keep_set,
            BTreeMap::new(),
            None,
        )
    }
}

/// CPU seconds (user + system, all threads) this process has used, from
/// `/proc/self/stat` in clock ticks of 1/100 s (Linux's USER_HZ); `None`
/// elsewhere. Logged next to wall time: on a shared machine the wall time of
/// a phase says more about the other jobs than about the phase.
fn process_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name; utime and stime are the
    // 14th and 15th fields of the whole line.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

fn dir_name(ablate: &str) -> String {
    format!("ablate_{ablate}")
}

fn other(set: &str) -> &'static str {
    if set == "digits" {
        "patterns"
    } else {
        "digits"
    }
}

/// Runs the whole steering analysis of one model.
pub fn run(
    name: &str,
    trained: &Trained,
    hessians: &[&HessianResult],
    images: &Images,
    hc: &HessianConfig,
    cfg: &SteerConfig,
) -> Result<SteerResult> {
    let model = &trained.model;
    let n = model.layout().len();
    let theta = trained.theta.as_slice();
    if cfg.heldout_start < hc.subset {
        bail!(
            "steer config: heldout_start = {} overlaps the calibration split (the Hessian's first {} test images)",
            cfg.heldout_start,
            hc.subset
        );
    }
    if cfg.cal_eval >= hc.subset || cfg.cal_eval == 0 {
        bail!(
            "steer config: cal_eval = {} must be in 1..{} (the rest of the calibration split trains the walks)",
            cfg.cal_eval,
            hc.subset
        );
    }
    let test: BTreeMap<&str, &ImageSet> = [
        ("digits", &images.test_digits),
        ("patterns", &images.test_patterns),
        ("mixed", &images.test_mixed),
    ]
    .into_iter()
    .collect();
    let mut cal_full = BTreeMap::new();
    let mut cal_eval = BTreeMap::new();
    let mut cal_walk = BTreeMap::new();
    let mut heldout = BTreeMap::new();
    for s in SETS {
        cal_full.insert(
            s,
            crate::split::range(test[s], 0, hc.subset, "steer", "the calibration split")?,
        );
        cal_eval.insert(
            s,
            crate::split::range(test[s], 0, cfg.cal_eval, "steer", "the calibration split")?,
        );
        cal_walk.insert(
            s,
            crate::split::range(
                test[s],
                cfg.cal_eval,
                hc.subset - cfg.cal_eval,
                "steer",
                "the calibration split",
            )?,
        );
        heldout.insert(
            s,
            crate::split::range(
                test[s],
                cfg.heldout_start,
                cfg.heldout_size,
                "steer",
                "the held-out split",
            )?,
        );
    }
    let hess: BTreeMap<&str, &HessianResult> = SETS
        .iter()
        .map(|s| {
            hessians
                .iter()
                .find(|h| h.set == *s)
                .map(|h| (*s, *h))
                .with_context(|| format!("missing upstream artifact: the `{s}` Hessian of {name}"))
        })
        .collect::<Result<_>>()?;
    for s in SETS {
        if hess[s].samples != hc.subset {
            bail!(
                "the `{s}` Hessian of {name} used {} samples, expected {}",
                hess[s].samples,
                hc.subset
            );
        }
    }
    let k = cfg.k;
    let basis = |s: &str, k: usize| -> Result<Basis> {
        Ok(Basis::top(&hess[s].vectors, k, n, &format!("{name} `{s}` Hessian"))?)
    };
    let u: BTreeMap<&str, Basis> = SETS.iter().map(|s| Ok((*s, basis(s, k)?))).collect::<Result<_>>()?;
    let uvecs: BTreeMap<&str, Vec<Vec<f64>>> = SETS.iter().map(|s| (*s, u[s].vectors())).collect();
    // The eigenvectors as stored (f32, not re-orthonormalized) for products.
    let mut ctx = Ctx {
        model,
        theta,
        cal_eval,
        cal_full,
        cal_walk,
        heldout,
        extra_eval: None,
        base_eval: BTreeMap::new(),
        base_logits: BTreeMap::new(),
        cfg,
    };
    let base_cal = sweep::evaluate_sets(model, theta, &ctx.eval_sets())?;
    // θ*'s held-out logits: its held-out evaluation and the KL reference
    let mut base_heldout = BTreeMap::new();
    for s in SETS {
        let z = sweep::logits(model, theta, &ctx.heldout[s])?;
        base_heldout.insert(
            s.to_string(),
            sweep::evaluate_from_logits(&z, &ctx.heldout[s], model.classes())
                .with_context(|| format!("held-out `{s}` evaluation of θ*"))?,
        );
        ctx.base_logits.insert(s, z);
    }
    ctx.base_eval = base_cal.clone();
    // Curvature products here run in f32 (the models' storage type; about
    // 1.6x faster than f64, relative error ~1e-7, far below what steering
    // can resolve); the eigenpairs themselves came from f64 Lanczos.
    let theta32: Vec<f32> = theta.to_vec();

    // --- cross products H_s U_r (r ≠ s), the shared input of the
    // cross-curvature matrix and the generalized eigenproblems.
    let clock = std::time::Instant::now();
    let cpu0 = process_cpu_seconds();
    let phase = |what: &str| {
        tracing::info!(
            model = name,
            secs = clock.elapsed().as_secs_f64(),
            cpu_secs = process_cpu_seconds().zip(cpu0).map(|(a, b)| a - b),
            "steer: {what} done"
        )
    };
    let prod_n = match cfg.product_subset {
        0 => hc.subset,
        p => p.min(hc.subset),
    };
    let pb = bar(6 * k, &format!("steer {name} H·U"));
    let mut cross_prod: BTreeMap<(&str, &str), Vec<Vec<f64>>> = BTreeMap::new();
    let mut grads: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    for s in SETS {
        let prod_data = ctx.cal_full[s].gather(&(0..prod_n).collect::<Vec<_>>());
        let op = HessianOperator::<_, f32>::new(model, theta32.clone(), &prod_data, hc.batch_size, Curvature::Hessian)
            .with_context(|| format!("Hessian operator on calibration `{s}`"))?;
        grads.insert(s, op.loss_grad()?.1.iter().map(|&g| g as f64).collect());
        for r in SETS {
            if r == s {
                continue;
            }
            // all k products of one pair at once: they run in parallel
            let out = products(&op, &uvecs[r]).with_context(|| format!("H_{s} U_{r}"))?;
            pb.inc(uvecs[r].len() as u64);
            cross_prod.insert((r, s), out);
        }
    }
    crate::progress::finish(&pb);
    phase("cross products H_s U_r");
    // H_r U_r = U_r Λ_r (eigenpairs, residual ≤ tol): no products needed.
    let own = |r: &str| -> Vec<Vec<f64>> {
        uvecs[r]
            .iter()
            .zip(&hess[r].values)
            .map(|(v, l)| v.iter().map(|x| x * l).collect())
            .collect()
    };
    let prod = |r: &str, s: &str| -> Vec<Vec<f64>> {
        if r == s {
            own(r)
        } else {
            cross_prod[&(r, s)].clone()
        }
    };

    // --- independence
    let mut cross = vec![vec![0.0; 3]; 3];
    let mut cross_detail = vec![Vec::new(); 3];
    for (i, r) in SETS.iter().enumerate() {
        for (j, s) in SETS.iter().enumerate() {
            let c = independence::cross_curvature(&uvecs[r], &hess[r].values[..k], &prod(r, s))?;
            cross[i][j] = c.mean;
            cross_detail[i].push(c);
        }
    }
    let mixed_decomposition = uvecs["mixed"]
        .iter()
        .map(|v| independence::decompose(v, &u["digits"], &u["patterns"]))
        .collect::<Result<Vec<_>, _>>()?;
    let independence = Independence {
        overlap_digits_patterns: independence::overlap(&u["digits"], &u["patterns"])?,
        overlap_random: independence::expected_random_overlap(n, k, k),
        random_baseline: independence::random_baseline(n, k, k, cfg.random_trials, 0x1d)?,
        principal_angles: independence::principal_angles(&u["digits"], &u["patterns"])?,
        cross_curvature: cross,
        cross_detail,
        mixed_decomposition,
        k,
    };
    tracing::info!(
        model = name,
        overlap = independence.overlap_digits_patterns,
        random = independence.overlap_random,
        "digits/patterns top-{k} eigenspace overlap"
    );

    let mut directions = Vec::new();
    // --- supervised
    for ablate in ["digits", "patterns"] {
        let keep = other(ablate);
        let rule = Rule {
            objective: Objective::MinAcc(ablate.into()),
            keep: keep.into(),
            base_keep_acc: base_cal[keep].acc,
            max_drop: cfg.max_keep_drop,
        };
        let label = format!("steer {name} -{ablate}");
        let mut runs = Vec::new();
        let mut thetas = Vec::new();
        let mut push = |r: (MethodRun, Vec<f32>)| {
            let acc = |set: &str| r.0.heldout.get(set).map_or(f64::NAN, |e| e.acc);
            tracing::info!(
                model = name,
                dir = dir_name(ablate),
                "{:<12} α {:>7.3}  held-out {ablate} {:.3}, {keep} {:.3}, mixed {:.3}",
                r.0.method,
                r.0.alpha,
                acc(ablate),
                acc(keep),
                acc("mixed"),
            );
            runs.push(r.0);
            thetas.push(r.1);
        };
        let ua1 = &uvecs[ablate][0];
        push(ctx.line(
            "unprojected",
            &direction::unprojected(ua1)?,
            &rule,
            keep,
            BTreeMap::new(),
        )?);
        for &ks in &cfg.seed_ks {
            let b = basis(keep, ks)?;
            push(ctx.line(
                &format!("seed_k{ks}"),
                &direction::seed(ua1, &b)?,
                &rule,
                keep,
                BTreeMap::new(),
            )?);
        }
        let span: Vec<Vec<f64>> = [uvecs[ablate].clone(), uvecs[keep].clone()].concat();
        let ha = [prod(ablate, ablate), prod(keep, ablate)].concat();
        let hk = [prod(ablate, keep), prod(keep, keep)].concat();
        let g = direction::generalized_auto(&span, &ha, &hk, cfg.mu)?;
        let info: BTreeMap<String, f64> = [
            ("ratio".to_string(), g.ratio),
            ("ablate_curvature".to_string(), g.ablate_curvature),
            ("keep_curvature".to_string(), g.keep_curvature),
            ("mu".to_string(), g.mu),
        ]
        .into_iter()
        .collect();
        push(ctx.line("gen_eig", &g.direction, &rule, keep, info)?);
        push(ctx.line(
            "proj_grad",
            &direction::projected_gradient(&grads[ablate], &u[keep])?,
            &rule,
            keep,
            BTreeMap::new(),
        )?);
        // random baseline: one run per seed, plus their mean as `random`
        let mut rand_runs = Vec::new();
        for &seed in &cfg.random_seeds {
            let d = direction::random_in_complement(&u[keep], seed)?;
            rand_runs.push(ctx.line(&format!("random_s{seed}"), &d, &rule, keep, BTreeMap::new())?);
        }
        // curvature-guarded ascent
        let walk_n = |d: &Dataset| d.gather(&(0..cfg.ascent_keep_subset.min(d.len())).collect::<Vec<_>>());
        let keep_data = walk_n(&ctx.cal_walk[keep]);
        let walk_basis = basis(keep, cfg.walk_k)?;
        let keep_op =
            HessianOperator::<_, f32>::new(model, theta32.clone(), &keep_data, hc.batch_size, Curvature::Hessian)?;
        phase(&format!("{} straight lines", dir_name(ablate)));
        // `ascent.steps = 0` leaves out `curv_ascent` (the full preset: it
        // is dominated by `guarded_ascent`, see docs/results.md).
        for (method, params) in [("curv_ascent", &cfg.ascent), ("guarded_ascent", &cfg.guarded)] {
            if params.steps == 0 {
                continue;
            }
            push(ctx.walk(
                method,
                &label,
                &ctx.cal_walk[ablate],
                &keep_op,
                Some(&walk_basis),
                &keep_data,
                params,
                &rule,
                keep,
            )?);
        }
        phase(&format!("{} walks", dir_name(ablate)));
        let (pts, ths) = walk::unlearn(
            model,
            theta,
            &ctx.cal_walk[ablate],
            &ctx.cal_walk[keep],
            &cfg.unlearn,
            &ctx.eval_sets(),
        )?;
        push(ctx.finish(
            "unlearn",
            pts,
            &|i| Ok(ths[i].clone()),
            &rule,
            keep,
            BTreeMap::new(),
            None,
        )?);
        phase(&format!("{} unlearning baseline", dir_name(ablate)));
        // best: lowest calibration ablated accuracy at the operating point
        let best = runs
            .iter()
            .enumerate()
            .filter(|(_, r)| r.op.is_some())
            .min_by(|a, b| {
                let (x, y) = (
                    a.1.points[a.1.op.unwrap_or(0)].acc(ablate),
                    b.1.points[b.1.op.unwrap_or(0)].acc(ablate),
                );
                x.partial_cmp(&y).unwrap_or(std::cmp::Ordering::Equal)
            })
            .map(|(i, _)| i);
        // relearning from the operating points
        let sample =
            ctx.cal_walk[ablate].gather(&(0..cfg.relearn_samples.min(ctx.cal_walk[ablate].len())).collect::<Vec<_>>());
        let mut relearn = Vec::new();
        let relearn_heldout = match cfg.relearn_eval {
            0 => ctx.heldout[ablate].clone(),
            m => ctx.heldout[ablate].gather(&(0..m.min(ctx.heldout[ablate].len())).collect::<Vec<_>>()),
        };
        for (r, th) in runs.iter().zip(&thetas) {
            if [
                "seed_k50",
                "seed_k20",
                "gen_eig",
                "curv_ascent",
                "guarded_ascent",
                "unlearn",
            ]
            .contains(&r.method.as_str())
                && r.op.is_some()
            {
                let acc = walk::relearn(model, th, &sample, &relearn_heldout, &cfg.relearn)?;
                relearn.push((r.method.clone(), acc));
            }
        }
        phase(&format!("{} relearning", dir_name(ablate)));
        let best_name = best.map(|i| runs[i].method.clone());
        let best_theta = best.map(|i| thetas[i].clone());
        let mut all = runs;
        all.extend(rand_runs.into_iter().map(|r| r.0));
        tracing::info!(
            model = name,
            dir = dir_name(ablate),
            best = ?best_name,
            "supervised steering done"
        );
        directions.push(DirectionRuns {
            scenario: "supervised".into(),
            dir: dir_name(ablate),
            rule,
            runs: all,
            best: best_name,
            best_theta,
            relearn,
        });
    }

    // --- semi-supervised
    for w in &cfg.semi_walks {
        if !["guarded_ascent", "demix_ascent"].contains(&w.as_str()) {
            bail!("steer config: unknown semi-supervised walk `{w}` (known: guarded_ascent, demix_ascent)");
        }
    }
    let demix = cfg.semi_walks.iter().any(|w| w == "demix_ascent");
    for ablate in ["digits", "patterns"] {
        let keep = other(ablate);
        // keep-known: the keep rule's pure data is known; the rule to break
        // is unknown. Break the MIXED loss's curvature that the keep rule
        // does not have; choose the point with the highest mixed loss that
        // keeps the known rule.
        // ablate-known: the rule to break is known, nothing of the rule to
        // keep; the mixed data stands in for it (both rules explain it, so
        // breaking one module leaves mixed accuracy nearly intact).
        // With `demix_ascent`, the unknown rule's de-mixed stand-ins
        // (mixed images minus the best-fitting known sample, built from the
        // mixed data and the known rule's calibration data only) take the
        // mixed data's place as the thing to break (keep-known) or to keep
        // (ablate-known), for the walk and for every method's operating
        // point: on a model that reads mixed images mostly through one
        // rule, the mixed data cannot stand in for the other.
        for (scenario, known, brk, guard) in [
            ("semi_keep_known", keep, "mixed", keep),
            ("semi_ablate_known", ablate, ablate, "mixed"),
        ] {
            let stand_in = if demix {
                let known_data = &ctx.cal_walk[known];
                let cal = gensplit_steer::demix::average(&ctx.cal_eval["mixed"], known_data)?;
                let walk = gensplit_steer::demix::average(&ctx.cal_walk["mixed"], known_data)?;
                Some((cal, walk))
            } else {
                None
            };
            ctx.extra_eval = stand_in.as_ref().map(|(cal, _)| (DEMIXED, cal.clone()));
            ctx.base_eval = base_cal.clone();
            let base_stand_in = match &stand_in {
                Some((cal, _)) => {
                    let e = sweep::evaluate_sets(model, theta, &[(DEMIXED, cal)])?;
                    let acc = e[DEMIXED].acc;
                    ctx.base_eval.extend(e);
                    acc
                }
                None => f64::NAN,
            };
            let rule = match (scenario, demix) {
                ("semi_keep_known", false) => Rule {
                    objective: Objective::MaxLoss("mixed".into()),
                    keep: keep.into(),
                    base_keep_acc: base_cal[keep].acc,
                    max_drop: cfg.max_keep_drop,
                },
                ("semi_keep_known", true) => Rule {
                    objective: Objective::MinAcc(DEMIXED.into()),
                    keep: keep.into(),
                    base_keep_acc: base_cal[keep].acc,
                    max_drop: cfg.max_keep_drop,
                },
                (_, false) => Rule {
                    objective: Objective::MinAcc(ablate.into()),
                    keep: "mixed".into(),
                    base_keep_acc: base_cal["mixed"].acc,
                    max_drop: cfg.max_keep_drop,
                },
                (_, true) => Rule {
                    objective: Objective::MinAcc(ablate.into()),
                    keep: DEMIXED.into(),
                    base_keep_acc: base_stand_in,
                    max_drop: cfg.stand_in_max_drop,
                },
            };
            let mut runs = Vec::new();
            let mut thetas = Vec::new();
            let span: Vec<Vec<f64>> = [uvecs[brk].clone(), uvecs[guard].clone()].concat();
            let ha = [prod(brk, brk), prod(guard, brk)].concat();
            let hk = [prod(brk, guard), prod(guard, guard)].concat();
            let g = direction::generalized_auto(&span, &ha, &hk, cfg.mu)?;
            let info: BTreeMap<String, f64> = [("ratio".to_string(), g.ratio), ("mu".to_string(), g.mu)]
                .into_iter()
                .collect();
            let (r, t) = ctx.line("gen_eig", &g.direction, &rule, keep, info)?;
            runs.push(r);
            thetas.push(t);
            for walk_name in &cfg.semi_walks {
                let demixed = walk_name == "demix_ascent";
                // What the walk ascends and what guards it: the pure or mixed
                // calibration sets, or the stand-ins in the mixed data's place.
                let pick = |set: &str| -> &Dataset {
                    match (&stand_in, set, demixed) {
                        (Some((_, walk)), "mixed", true) => walk,
                        _ => &ctx.cal_walk[set],
                    }
                };
                let gw = pick(guard);
                // The mixed Hessian has k pairs; the pure ones up to
                // max(seed_ks). The stand-ins have no eigenvectors: only
                // their curvature and gradient guard.
                let guard_basis = match (guard, demixed) {
                    ("mixed", true) => None,
                    ("mixed", false) => Some(basis(guard, k)?),
                    _ => Some(basis(guard, cfg.walk_k)?),
                };
                let guard_n = match cfg.semi_keep_subset {
                    0 => cfg.ascent_keep_subset,
                    m => m,
                };
                let guard_data = gw.gather(&(0..guard_n.min(gw.len())).collect::<Vec<_>>());
                let guard_op = HessianOperator::<_, f32>::new(
                    model,
                    theta32.clone(),
                    &guard_data,
                    hc.batch_size,
                    Curvature::Hessian,
                )?;
                let (r, t) = ctx.walk(
                    walk_name,
                    &format!("{scenario} -{ablate}"),
                    pick(brk),
                    &guard_op,
                    guard_basis.as_ref(),
                    &guard_data,
                    &cfg.semi_guarded,
                    &rule,
                    keep,
                )?;
                runs.push(r);
                thetas.push(t);
            }
            // best by the rule's own (calibration, known-data) objective
            let score = |r: &MethodRun| match (&rule.objective, r.op) {
                (_, None) => f64::NEG_INFINITY,
                (Objective::MinAcc(s), Some(i)) => -r.points[i].acc(s),
                (Objective::MaxLoss(s), Some(i)) => r.points[i].loss(s),
            };
            let best = (0..runs.len()).filter(|&i| runs[i].op.is_some()).max_by(|&a, &b| {
                score(&runs[a])
                    .partial_cmp(&score(&runs[b]))
                    .unwrap_or(std::cmp::Ordering::Equal)
            });
            phase(&format!("{scenario} {}", dir_name(ablate)));
            directions.push(DirectionRuns {
                scenario: scenario.into(),
                dir: dir_name(ablate),
                rule,
                best: best.map(|i| runs[i].method.clone()),
                best_theta: best.map(|i| thetas[i].clone()),
                runs,
                relearn: Vec::new(),
            });
        }
    }
    ctx.extra_eval = None;
    Ok(SteerResult {
        model: name.to_string(),
        base_cal,
        base_heldout,
        heldout_size: cfg.heldout_size,
        independence,
        directions,
    })
}

/// A request for one steered model (`cargo xtask steer`).
#[derive(Clone, Debug)]
pub struct SteerRequest {
    /// `pretrained` or `mixed_only`.
    pub model: String,
    /// `supervised`, `semi_keep_known` or `semi_ablate_known`.
    pub scenario: String,
    /// The rule to break: `digits` or `patterns`.
    pub ablate: String,
    /// Method name (as in the report).
    pub method: String,
    /// Step along a straight-line method's direction; `None` = its
    /// operating point. Walks only have their operating point.
    pub alpha: Option<f64>,
}

/// The steered θ a request asks for, with its α, after validating the
/// request against the computed runs.
pub fn steered_theta(
    res: &SteerResult,
    base: &[f32],
    cfg: &SteerConfig,
    req: &SteerRequest,
) -> Result<(Vec<f32>, f64)> {
    let dir = dir_name(&req.ablate);
    if !["digits", "patterns"].contains(&req.ablate.as_str()) {
        bail!("--ablate must be `digits` or `patterns`, got `{}`", req.ablate);
    }
    let runs = res
        .directions
        .iter()
        .find(|d| d.scenario == req.scenario && d.dir == dir)
        .with_context(|| {
            format!(
                "no `{}` runs for {dir} (scenarios: supervised, semi_keep_known, semi_ablate_known)",
                req.scenario
            )
        })?;
    let known: Vec<&str> = runs.runs.iter().map(|r| r.method.as_str()).collect();
    let run = runs.runs.iter().find(|r| r.method == req.method).with_context(|| {
        format!(
            "unknown method `{}` for {} {dir}; known: {}",
            req.method,
            req.scenario,
            known.join(", ")
        )
    })?;
    if run.method.starts_with("random_s") {
        let seed: u64 = run.method["random_s".len()..]
            .parse()
            .context("random seed in the method name")?;
        let keep = other(&req.ablate);
        bail!(
            "`{}` is a baseline; take a real method (its direction is P⊥ of a seed-{seed} Gaussian against the `{keep}` eigenspace, not stored)",
            run.method
        );
    }
    match (&run.direction, &run.theta_op, req.alpha) {
        (Some(d), _, alpha) => {
            let a = alpha.unwrap_or(run.alpha);
            let max = cfg.alphas.iter().cloned().fold(0.0f64, f64::max);
            if !a.is_finite() || a.abs() > max {
                bail!("--alpha {a} is out of range: `{}` was swept over [-{max}, {max}]", run.method);
            }
            let d64: Vec<f64> = d.iter().map(|&x| x as f64).collect();
            Ok((sweep::offset(base, &d64, a)?, a))
        }
        (None, Some(th), None) => Ok((th.clone(), run.alpha)),
        (None, Some(_), Some(a)) => bail!(
            "`{}` is a walk (a curved path); only its operating point (distance {:.3}) is stored: omit --alpha (got {a})",
            run.method,
            run.alpha
        ),
        (None, None, _) => bail!(
            "`{}` found no operating point that kept the rule within {:.0} points; nothing to write",
            run.method,
            100.0 * cfg.max_keep_drop
        ),
    }
}
