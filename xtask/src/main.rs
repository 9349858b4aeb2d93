//! `cargo xtask`: gensplit's pipeline driver.
//!
//! * `cargo xtask reproduce [--quick] [--config FILE] [--out DIR] [--force]
//!   [--digits-dir DIR] [--strict]` runs every stage (cached by content key)
//!   and writes `DIR/report/`; with `--strict` a Hessian whose Lanczos run
//!   did not converge is an error instead of a warning.
//! * `cargo xtask export [same flags] [--format npy|safetensors|both]` writes
//!   the models, evaluation subsets, Hessian eigenpairs and steered parameter
//!   vectors to `DIR/export/` (see `xtask::export`).
//! * `cargo xtask steer [same flags] --model M --ablate RULE --method NAME
//!   [--alpha A] [--scenario S]` writes one steered model to `DIR/steered/`.
//! * `cargo xtask config --print [--quick] [--config FILE]` prints the
//!   effective configuration as TOML.
//!
//! `--config FILE` is a partial TOML document merged onto the preset (full,
//! or quick with `--quick`); see `xtask::config`.

use anyhow::Result;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use xtask::{config, stages, workspace_root};

// mimalloc as the global allocator, keeping freed memory (one setup for
// every binary: see `gensplit_models::mimalloc_allocator!`).
gensplit_models::mimalloc_allocator!();

#[derive(Parser)]
#[command(name = "cargo xtask", about = "gensplit pipeline tasks")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run every pipeline stage and write the report.
    Reproduce(ReproduceCmd),
    /// Write models, evaluation subsets, Hessian eigenpairs and steered parameters as .npy files
    /// and/or one safetensors file with a JSON index (runs the stages that are not cached yet).
    Export(ExportArgs),
    /// Write a steered model's parameters (.npy + JSON) to DIR/steered/
    /// (runs the stages that are not cached yet).
    Steer(SteerArgs),
    /// Show the effective configuration (preset + --config overrides).
    Config(ConfigArgs),
}

#[derive(clap::Args)]
struct ReproduceCmd {
    #[command(flatten)]
    common: ReproduceArgs,
    /// Fail (after writing the report) when a Hessian's Lanczos run stopped on its matvec budget without converging.
    #[arg(long)]
    strict: bool,
}

#[derive(clap::Args)]
struct ExportArgs {
    #[command(flatten)]
    common: ReproduceArgs,
    /// Which files to write beside index.json.
    #[arg(long, value_enum, default_value_t = xtask::export::Format::Npy)]
    format: xtask::export::Format,
}

#[derive(clap::Args)]
struct ConfigArgs {
    /// Print the effective configuration as TOML (a valid --config file).
    #[arg(long, required = true)]
    print: bool,
    /// Start from the --quick preset instead of the full one.
    #[arg(long)]
    quick: bool,
    /// TOML file whose fields override the preset's.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
}

#[derive(clap::Args)]
struct SteerArgs {
    #[command(flatten)]
    common: ReproduceArgs,
    /// Which CNN: `pretrained` or `mixed_only`.
    #[arg(long, default_value = "pretrained")]
    model: String,
    /// The rule to break: `digits` or `patterns`.
    #[arg(long)]
    ablate: String,
    /// Method name as in the report (e.g. gen_eig, seed_k50, curv_ascent).
    #[arg(long)]
    method: String,
    /// Step along a straight-line method's direction [default: its operating point].
    #[arg(long, allow_hyphen_values = true)]
    alpha: Option<f64>,
    /// `supervised`, `semi_keep_known` or `semi_ablate_known`.
    #[arg(long, default_value = "supervised")]
    scenario: String,
}

#[derive(clap::Args)]
struct ReproduceArgs {
    /// Small end-to-end configuration (CI / smoke test; its numbers are not the results).
    #[arg(long)]
    quick: bool,
    /// TOML file whose fields override the preset's (full, or quick with --quick);
    /// `cargo xtask config --print` shows every field.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Output directory: artifacts go to DIR/artifacts, the report to DIR/report [default: workspace root].
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Recompute every stage even when a valid cached artifact exists.
    #[arg(long)]
    force: bool,
    /// IDX directory standing in for the digits (e.g. Fashion-MNIST); checksums are verified only for the shipped MNIST.
    #[arg(long, value_name = "DIR")]
    digits_dir: Option<PathBuf>,
}

fn main() -> Result<()> {
    keep_freed_memory();
    let (filter, bad_filter) = xtask::progress::log_filter(std::env::var("RUST_LOG").ok().as_deref());
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(|| xtask::progress::LogWriter)
                .with_ansi(colour_logs()),
        )
        .with(filter)
        .init();
    if let Some(why) = bad_filter {
        tracing::warn!("RUST_LOG ignored ({why}); logging at info");
    }
    let mut strict = false;
    let (export, args, req) = match Cli::parse().cmd {
        Cmd::Reproduce(r) => {
            strict = r.strict;
            (None, r.common, None)
        }
        Cmd::Export(e) => (Some(e.format), e.common, None),
        Cmd::Steer(s) => (
            None,
            s.common,
            Some(xtask::steer::SteerRequest {
                model: s.model,
                scenario: s.scenario,
                ablate: s.ablate,
                method: s.method,
                alpha: s.alpha,
            }),
        ),
        Cmd::Config(c) => {
            let cfg = effective_config(c.quick, c.config.as_deref())?;
            print!("{}", cfg.to_toml());
            return Ok(());
        }
    };
    let cfg = effective_config(args.quick, args.config.as_deref())?;
    let digits = match args.digits_dir {
        Some(dir) => stages::DigitSource { dir, verify: false },
        None => stages::DigitSource {
            dir: gensplit_data::mnist::default_dir(),
            verify: true,
        },
    };
    let out = args.out.unwrap_or_else(workspace_root);
    if let Some(req) = req {
        let dir = xtask::steer(&cfg, &out, args.force, &digits, &req)?;
        tracing::info!("steered parameters written to {}", dir.display());
    } else if let Some(format) = export {
        xtask::export::run(&cfg, &out, args.force, &digits, format)?;
    } else if strict {
        xtask::reproduce_strict(&cfg, &out, args.force, &digits)?;
    } else {
        xtask::reproduce(&cfg, &out, args.force, &digits)?;
    }
    Ok(())
}

/// Colour codes in the log only on a terminal, and never under `NO_COLOR`
/// (any non-empty value, see no-color.org): logs written to a file or a
/// pipe stay plain text.
fn colour_logs() -> bool {
    std::io::IsTerminal::is_terminal(&std::io::stderr()) && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// The preset (quick or full) with the overrides of `file`, if any.
fn effective_config(quick: bool, file: Option<&std::path::Path>) -> Result<config::ReproConfig> {
    let base = if quick {
        config::ReproConfig::quick()
    } else {
        config::ReproConfig::full()
    };
    match file {
        Some(path) => config::ReproConfig::load_overrides(&base, path),
        None => Ok(base),
    }
}
