//! gensplit's pipeline, as a library so that its tests can drive it.
//!
//! `cargo xtask reproduce` (see `main.rs`) calls [`reproduce`]: every stage
//! of [`config::ReproConfig`] is run or loaded from the content-addressed
//! [`artifact::Store`], then [`report::write`] renders `report/`.

pub mod artifact;
pub mod blocks;
pub mod config;
pub mod export;
pub mod fingerprint;
pub mod hessian;
pub mod pipeline;
pub mod progress;
pub mod report;
pub mod sphere;
pub mod sphere_cnn;
pub mod sphere_report;
pub mod split;
pub mod stages;
pub mod steer;
pub mod steer_report;

/// Code fingerprints (component, SHA-256 hex) of the source this crate was
/// built from: see [`fingerprint`]. They enter every stage's artifact key.
pub const CODE_FINGERPRINTS: &[(&str, &str)] = include!(concat!(env!("OUT_DIR"), "/fingerprints.rs"));

use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The workspace root (parent of `xtask/`).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

/// Runs every stage of `cfg` with artifacts in `out/artifacts` and writes
/// `out/report`. Returns the record of stage runs. A Hessian whose Lanczos
/// run did not converge is a warning (log and report); see
/// [`reproduce_strict`] to make it an error.
pub fn reproduce(
    cfg: &config::ReproConfig,
    out: &Path,
    force: bool,
    digits: &stages::DigitSource,
) -> Result<Vec<pipeline::StageRun>> {
    reproduce_with(cfg, out, force, digits, false)
}

/// [`reproduce`], then an error (after the report is written, so it shows
/// which) when any Hessian's Lanczos run stopped on its matvec budget
/// without converging: `cargo xtask reproduce --strict`.
pub fn reproduce_strict(
    cfg: &config::ReproConfig,
    out: &Path,
    force: bool,
    digits: &stages::DigitSource,
) -> Result<Vec<pipeline::StageRun>> {
    reproduce_with(cfg, out, force, digits, true)
}

fn reproduce_with(
    cfg: &config::ReproConfig,
    out: &Path,
    force: bool,
    digits: &stages::DigitSource,
    strict: bool,
) -> Result<Vec<pipeline::StageRun>> {
    let t0 = Instant::now();
    let (outputs, runs) = run_stages(cfg, out, force, digits)?;
    let unconverged = unconverged_hessians(&outputs);
    for set in &unconverged {
        tracing::warn!(
            set,
            "Lanczos did not converge (stopped on its matvec budget): its eigenpairs are approximate, see the residuals"
        );
    }
    let report_dir = out.join("report");
    report::write(&report_dir, &outputs, cfg, &runs, t0.elapsed().as_secs_f64())
        .with_context(|| format!("writing the report to {}", report_dir.display()))?;
    tracing::info!(
        "report written to {} in {:.1} s",
        report_dir.join("report.md").display(),
        t0.elapsed().as_secs_f64()
    );
    if strict && !unconverged.is_empty() {
        anyhow::bail!(
            "--strict: Lanczos did not converge within its matvec budget for hessian {} \
             (raise `max_matvecs` of the hessian config; the report is written)",
            unconverged.join(", ")
        );
    }
    Ok(runs)
}

/// Names (as keys of `summary.json`'s `hessian`) of the Hessian entries
/// whose Lanczos run stopped on its matvec budget without converging.
pub fn unconverged_hessians(outputs: &pipeline::Outputs) -> Vec<String> {
    let main = outputs.hessian.iter().map(|h| (h.set.clone(), h));
    let mixed_only = outputs
        .hessian_mixed_only
        .iter()
        .map(|h| (format!("mixed_only_{}", h.set), h));
    main.chain(mixed_only)
        .filter(|(_, h)| !h.converged())
        .map(|(name, _)| name)
        .collect()
}

/// Runs (or loads from `out/artifacts`) every stage of `cfg`.
pub fn run_stages(
    cfg: &config::ReproConfig,
    out: &Path,
    force: bool,
    digits: &stages::DigitSource,
) -> Result<(pipeline::Outputs, Vec<pipeline::StageRun>)> {
    let store = artifact::Store::open(&out.join("artifacts"))?;
    let mut ctx = pipeline::Ctx::new(store, force, cfg.quick);
    let outputs = pipeline::run_all(&mut ctx, cfg, digits)?;
    Ok((outputs, ctx.runs))
}

/// Runs (or loads from the cache) every stage, then writes the steered
/// parameters that `req` asks for to `out/steered/<name>/` (`theta.npy`,
/// one `.npy` per block, `index.json` with the method, α and held-out
/// accuracies). Returns that directory.
pub fn steer(
    cfg: &config::ReproConfig,
    out: &Path,
    force: bool,
    digits: &stages::DigitSource,
    req: &steer::SteerRequest,
) -> Result<PathBuf> {
    let (outputs, _) = run_stages(cfg, out, force, digits)?;
    let (res, trained, sc) = match req.model.as_str() {
        "pretrained" => (&outputs.steer_pretrained, &outputs.cnn_pretrained, &cfg.steer),
        "mixed_only" => (
            &outputs.steer_mixed_only,
            &outputs.cnn_mixed_only,
            &cfg.steer_mixed_only,
        ),
        m => anyhow::bail!("--model must be `pretrained` or `mixed_only`, got `{m}`"),
    };
    let (theta, alpha) = steer::steered_theta(res, &trained.theta, sc, req)?;
    export::write_steered(out, cfg, &outputs, trained, req, &theta, alpha)
}

/// Runs (or loads from the cache) every stage, then writes `out/export/`
/// (see [`export`]).
pub fn export(cfg: &config::ReproConfig, out: &Path, force: bool, digits: &stages::DigitSource) -> Result<()> {
    export::run(cfg, out, force, digits, export::Format::Npy)
}
