//! Top eigenpairs of a user-supplied symmetric matrix, with a progress report.
//!
//! Run with `cargo run -p gensplit-eigen --example top_eigs`.

use gensplit_eigen::{lanczos, sym_eig, DenseSymmetric, LanczosParams, Projected, StepInfo, Which};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // A 300 x 300 symmetric matrix: an exponential kernel (decaying spectrum,
    // like a covariance or a loss Hessian) plus a rank-one bump and a
    // rank-one dip (one negative eigenvalue).
    let n = 300;
    let u: Vec<f64> = (0..n).map(|i| ((i as f64) * 0.05).sin()).collect();
    let w: Vec<f64> = (0..n).map(|i| ((i as f64) * 0.011).cos()).collect();
    let a = DenseSymmetric::from_fn(n, |i, j| {
        (-(i.abs_diff(j) as f64) / 15.0).exp() + 0.05 * u[i] * u[j] - 0.05 * w[i] * w[j]
    })?;

    let params = LanczosParams {
        k: 5,
        which: Which::LargestAlgebraic,
        tol: 1e-8,
        seed: 7,
        ..Default::default()
    };
    let mut progress = |s: &StepInfo<'_>| {
        if s.matvecs % 10 == 0 {
            eprintln!(
                "matvec {:4}: {}/{} converged, max residual {:.2e} (threshold {:.2e})",
                s.matvecs, s.converged, s.wanted, s.max_residual, s.threshold
            );
        }
    };
    let res = lanczos(&a, &params, &mut progress)?;
    println!(
        "stopped: {:?} after {} matvecs and {} restarts",
        res.stop, res.matvecs, res.restarts
    );
    let (dense, _) = sym_eig(a.as_slice(), n)?;
    for (i, (lam, r)) in res.values.iter().zip(&res.residuals).enumerate() {
        println!(
            "λ_{i} = {lam:.12}  (dense {:.12}),  ||A v - λ v|| = {r:.2e}",
            dense[n - 1 - i]
        );
    }

    // Deflation: project out the top-2 eigenvectors (P A P, P = I - Q Q^T)
    // and ask again; the top eigenvalue is now the third one.
    let p = Projected::new(&a, &res.vectors[..2])?;
    let deflated = lanczos(&p, &LanczosParams { k: 1, ..params }, &mut gensplit_eigen::NoObserver)?;
    println!(
        "after projecting out 2 vectors (rank {}): top = {:.12}, {} matvecs",
        p.rank(),
        deflated.values[0],
        deflated.matvecs
    );
    Ok(())
}
