//! A user's model + data → top Hessian eigenpairs.
//!
//! Builds the reference CNN at a seeded random initialization, a batch of
//! random images with random labels, and runs Lanczos on exact HVPs of the
//! mean cross-entropy. Then checks one eigenpair against a fresh HVP.
//!
//! `cargo run --release -p gensplit-hvp --features examples --example top_eigenpairs [batch] [k]`

use gensplit_eigen::{lanczos, LanczosParams, StepInfo, Which};
use gensplit_hvp::{Curvature, HessianOperator};
use gensplit_models::{Cnn, CnnConfig, DataInputs, Dataset, Model};
use rand::{Rng, SeedableRng};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let batch: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(256);
    let k: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(5);

    let model = Cnn::new(&CnnConfig::default())?;
    let theta: Vec<f64> = model.init(0);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    let pixels: Vec<f32> = (0..batch * 784).map(|_| rng.gen()).collect();
    let labels: Vec<u32> = (0..batch).map(|_| rng.gen_range(0..10)).collect();
    let data = Dataset {
        inputs: DataInputs::Images(pixels),
        labels,
    };

    let h = HessianOperator::new(&model, theta, &data, 128, Curvature::Hessian)?;
    let params = LanczosParams {
        k,
        which: Which::LargestAlgebraic,
        tol: 1e-6,
        ..Default::default()
    };
    let mut progress = |s: &StepInfo<'_>| eprint!("\r{} HVPs, {}/{} converged", s.matvecs, s.converged, s.wanted);
    let t = std::time::Instant::now();
    let eig = lanczos(&h, &params, &mut progress)?;
    eprintln!();
    println!(
        "{} parameters, batch {batch}: {} HVPs in {:.1} s, stop: {:?}",
        h.dim(),
        eig.matvecs,
        t.elapsed().as_secs_f64(),
        eig.stop
    );
    for (l, r) in eig.values.iter().zip(&eig.residuals) {
        println!("  λ = {l:>12.6}   ‖Hv − λv‖ = {r:.2e}");
    }
    // independent check of the top pair
    let hv = h.hvp(&eig.vectors[0])?;
    let res: f64 = hv
        .iter()
        .zip(&eig.vectors[0])
        .map(|(a, b)| (a - eig.values[0] * b).powi(2))
        .sum::<f64>()
        .sqrt();
    println!("check: fresh HVP residual of the top pair {res:.2e}");
    Ok(())
}
