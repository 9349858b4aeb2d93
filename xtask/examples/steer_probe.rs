//! Tuning probe for the steering walks on the cached pipeline artifacts
//! (run `cargo xtask reproduce` first): loads the pretrained CNN and its
//! digits/patterns Hessians from `artifacts/`, runs one walk per direction
//! with the parameters given as `key=value` arguments, and prints each
//! operating point (calibration and held-out).
//!
//! `cargo run -p xtask --features examples --example steer_probe -- step=0.02 steps=100 beta=1 kg=1 tol=0.01 w=1 lr=1e-4`

use anyhow::{Context, Result};
use gensplit_hvp::{Curvature, HessianOperator};
use gensplit_models::Dataset;
use gensplit_steer::sweep::{self, Objective, Rule};
use gensplit_steer::walk::{self, AscentParams, UnlearnParams};
use gensplit_steer::Basis;
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;
use xtask::artifact::{decode, Key};
use xtask::hessian::HessianResult;
use xtask::stages::{build_images, DigitSource, Trained};

fn load<T: DeserializeOwned>(stage: &str) -> Result<T> {
    let dir = xtask::workspace_root().join("artifacts");
    let path = std::fs::read_dir(&dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            let n = p.file_name().unwrap_or_default().to_string_lossy().into_owned();
            n.starts_with(&format!("{stage}-")) && n.ends_with(".bin")
        })
        .with_context(|| format!("no {stage} artifact in {}", dir.display()))?;
    let bytes = std::fs::read(&path)?;
    let mut key = [0u8; 32];
    key.copy_from_slice(&bytes[12..44]);
    Ok(decode(&bytes, &Key(key), &path)?)
}

fn main() -> Result<()> {
    let args: BTreeMap<String, f64> = std::env::args()
        .skip(1)
        .filter_map(|a| {
            a.split_once('=')
                .map(|(k, v)| (k.to_string(), v.parse().unwrap_or(f64::NAN)))
        })
        .collect();
    let get = |k: &str, d: f64| args.get(k).copied().unwrap_or(d);
    let cfg = xtask::config::ReproConfig::full();
    let images = build_images(
        &DigitSource {
            dir: gensplit_data::mnist::default_dir(),
            verify: true,
        },
        &cfg.data,
    )?;
    if get("show", 0.0) > 0.0 {
        // Print a steer_pretrained artifact's semi-supervised operating points.
        let r: xtask::steer::SteerResult = load("steer_pretrained")?;
        for d in &r.directions {
            for run in &d.runs {
                let acc = |s: &str| run.heldout.get(s).map_or(f64::NAN, |e| e.acc);
                println!(
                    "{} {} {}: alpha {:.3} held digits {:.4} patterns {:.4} mixed {:.4}{}",
                    d.scenario,
                    d.dir,
                    run.method,
                    run.alpha,
                    acc("digits"),
                    acc("patterns"),
                    acc("mixed"),
                    if d.best.as_deref() == Some(run.method.as_str()) {
                        "  (best)"
                    } else {
                        ""
                    }
                );
            }
        }
        let b = |s: &str| r.base_heldout.get(s).map_or(f64::NAN, |e| e.acc);
        println!(
            "base held digits {:.4} patterns {:.4} mixed {:.4}",
            b("digits"),
            b("patterns"),
            b("mixed")
        );
        return Ok(());
    }
    let trained: Trained = load("train_cnn_pretrained")?;
    let hd: HessianResult = load("hessian_digits")?;
    let hp: HessianResult = load("hessian_patterns")?;
    let n = trained.theta.len();
    let sets = |lo: usize, len: usize| -> BTreeMap<&'static str, Dataset> {
        let idx: Vec<usize> = (lo..lo + len).collect();
        [
            ("digits", &images.test_digits),
            ("patterns", &images.test_patterns),
            ("mixed", &images.test_mixed),
        ]
        .into_iter()
        .map(|(k, s)| (k, Dataset::from_images(&s.subset(&idx))))
        .collect()
    };
    let cal_n = get("cal", 512.0) as usize;
    let mut cal = sets(0, cal_n);
    let mut cal_full = sets(cal_n, 2048 - cal_n);
    if get("demix", 0.0) > 0.0 {
        // semi-supervised with patterns known: digits become de-mixed
        // stand-ins (mixed minus the best-fitting known pattern).
        let known = cal_full["patterns"].clone();
        cal.insert("digits", gensplit_steer::demix::average(&cal["mixed"], &known)?);
        cal_full.insert("digits", gensplit_steer::demix::average(&cal_full["mixed"], &known)?);
    }
    let held = sets(5000, get("held", 2000.0) as usize);
    fn ev<'a>(m: &'a BTreeMap<&'static str, Dataset>) -> Vec<(&'static str, &'a Dataset)> {
        m.iter().map(|(k, v)| (*k, v)).collect()
    }
    let model = &trained.model;
    let theta = &trained.theta;
    let base = sweep::evaluate_sets(model, theta, &ev(&cal))?;
    let which = get("which", 0.0) as usize; // 0 both, 1 digits, 2 patterns
    for (ablate, keep, hk) in [("digits", "patterns", &hp), ("patterns", "digits", &hd)] {
        let skip_walk = get("nowalk", 0.0) > 0.0;
        if (which == 1 && ablate != "digits") || (which == 2 && ablate != "patterns") {
            continue;
        }
        let kk = get("k", 20.0) as usize;
        let ub = Basis::top(&hk.vectors, kk, n, keep)?;
        let keep_data = cal_full[keep].gather(&(0..get("keepn", 512.0) as usize).collect::<Vec<_>>());
        let op = HessianOperator::<_, f32>::new(model, theta.clone(), &keep_data, 512, Curvature::Hessian)?;
        let rule = Rule {
            objective: Objective::MinAcc(ablate.into()),
            keep: keep.into(),
            base_keep_acc: base[keep].acc,
            max_drop: get("drop", 0.02),
        };
        let t0 = std::time::Instant::now();
        if !skip_walk {
            let params = AscentParams {
                steps: get("steps", 100.0) as usize,
                step_size: get("step", 0.02),
                beta: get("beta", 1.0),
                mu: 0.1,
                record_every: get("every", 2.0) as usize,
                keep_gradient: get("kg", 0.0) > 0.0,
                restore_tol: get("tol", 0.01),
                restore_weight: get("w", 1.0),
                batch: get("batch", 0.0) as usize,
                keep_batch: get("kb", 0.0) as usize,
                seed: get("seed", 0.0) as u64,
                stop_acc: get("stop", 0.0),
            };
            let (pts, ths) = walk::curvature_ascent(
                model,
                theta,
                &cal_full[ablate],
                &op,
                if get("proj", 1.0) > 0.0 { Some(&ub) } else { None },
                Some(&keep_data),
                &params,
                &ev(&cal),
                &mut |_| {},
            )?;
            let secs = t0.elapsed().as_secs_f64();
            let i = sweep::operating_point(&pts, &rule).unwrap_or(0);
            let h = sweep::evaluate_sets(model, &ths[i], &ev(&held))?;
            println!(
            "walk  -{ablate}: op step {:?} dist {:.3}: cal {ablate} {:.3} {keep} {:.3} (base {:.3}) | held {ablate} {:.3} {keep} {:.3} mixed {:.3} [{secs:.1}s]",
            pts[i].step, pts[i].alpha, pts[i].acc(ablate), pts[i].acc(keep), base[keep].acc,
            h[ablate].acc, h[keep].acc, h["mixed"].acc
        );
            if get("trace", 0.0) > 0.0 {
                for p in &pts {
                    println!(
                        "   step {:?} dist {:.3} {ablate} {:.3} {keep} {:.3}",
                        p.step,
                        p.alpha,
                        p.acc(ablate),
                        p.acc(keep)
                    );
                }
            }
        }
        if get("lr", 0.0) > 0.0 {
            let t0 = std::time::Instant::now();
            let (pts, ths) = walk::unlearn(
                model,
                theta,
                &cal_full[ablate],
                &cal_full[keep],
                &UnlearnParams {
                    steps: get("usteps", 300.0) as usize,
                    batch: 64,
                    lr: get("lr", 1e-4),
                    ascent_weight: get("aw", 1.0),
                    seed: 9,
                    record_every: get("uevery", 10.0) as usize,
                },
                &ev(&cal),
            )?;
            let i = sweep::operating_point(&pts, &rule).unwrap_or(0);
            let h = sweep::evaluate_sets(model, &ths[i], &ev(&held))?;
            println!(
                "unlearn -{ablate}: op step {:?} dist {:.3}: cal {ablate} {:.3} {keep} {:.3} | held {ablate} {:.3} {keep} {:.3} mixed {:.3} [{:.1}s]",
                pts[i].step, pts[i].alpha, pts[i].acc(ablate), pts[i].acc(keep),
                h[ablate].acc, h[keep].acc, h["mixed"].acc, t0.elapsed().as_secs_f64()
            );
        }
    }
    Ok(())
}
