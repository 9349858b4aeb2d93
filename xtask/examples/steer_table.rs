//! Prints the operating points of a `steer_*` artifact as a table:
//! `cargo run -p xtask --features examples --example steer_table -- artifacts/steer_pretrained-<key>.bin`.

use anyhow::{Context, Result};
use xtask::artifact::{decode, Key};
use xtask::steer::SteerResult;

fn main() -> Result<()> {
    let path = std::env::args().nth(1).context("usage: steer_table ARTIFACT")?;
    let path = std::path::PathBuf::from(path);
    let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    anyhow::ensure!(bytes.len() > 44, "{} is too short to be an artifact", path.display());
    let mut key = [0u8; 32];
    key.copy_from_slice(&bytes[12..44]);
    let r: SteerResult = decode(&bytes, &Key(key), &path)?;
    let acc = |m: &std::collections::BTreeMap<String, gensplit_models::Eval>, s: &str| {
        m.get(s).map_or(f64::NAN, |e| 100.0 * e.acc)
    };
    println!(
        "{}: base held-out digits {:.1} patterns {:.1} mixed {:.1}; overlap {:.3} (random {:.5})",
        r.model,
        acc(&r.base_heldout, "digits"),
        acc(&r.base_heldout, "patterns"),
        acc(&r.base_heldout, "mixed"),
        r.independence.overlap_digits_patterns,
        r.independence.overlap_random
    );
    println!("cross-curvature {:?}", r.independence.cross_curvature);
    for d in &r.directions {
        println!("\n{} {} (best {:?})", d.scenario, d.dir, d.best);
        for m in &d.runs {
            let cal = m.op.map(|i| &m.points[i].evals);
            println!(
                "  {:<13} α {:>7.3} pts {:>3} | cal d {:>5.1} p {:>5.1} m {:>5.1} | held-out d {:>5.1} p {:>5.1} m {:>5.1} | KL {:.3}",
                m.method,
                m.alpha,
                m.points.len(),
                cal.map_or(f64::NAN, |c| acc(c, "digits")),
                cal.map_or(f64::NAN, |c| acc(c, "patterns")),
                cal.map_or(f64::NAN, |c| acc(c, "mixed")),
                acc(&m.heldout, "digits"),
                acc(&m.heldout, "patterns"),
                acc(&m.heldout, "mixed"),
                m.kl_keep
            );
        }
        for (m, a) in &d.relearn {
            println!("  relearn {m}: {a:?}");
        }
    }
    Ok(())
}
