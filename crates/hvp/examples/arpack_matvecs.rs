//! Matvec counts of gensplit's Lanczos on the reference CNN's Hessian, for
//! comparison with ARPACK (`scipy.sparse.linalg.eigsh`, which='LA',
//! tol 1e-6) in `scripts/jax_hvp.py --eigsh`: top-1 in 21, top-5 in 33,
//! top-20 in 86 matvecs at batch 256 (measured on the 2-core machine).
//!
//! Same setting as the peer script: He-normal weights (std √(2/fan_in)),
//! zero biases, uniform random images, random labels, batch 256; f64 HVPs.
//! (Our random draws differ from numpy's, so the eigenvalues match only in
//! scale: the peer saw 35.4, 26.5, 18.8.)
//!
//! `cargo run --release -p gensplit-hvp --features examples --example arpack_matvecs [batch] [tol] [max_basis] [k,k,..]`
//!
//! Or, on the peer's exact parameters and batch (dumped by
//! `scripts/peer_dump.py`, which also runs ARPACK on them):
//! `cargo run --release -p gensplit-hvp --features examples --example arpack_matvecs -- --peer DIR`

use gensplit_eigen::{lanczos, LanczosParams, NoObserver, Which};
use gensplit_hvp::{Curvature, HessianOperator};
use gensplit_models::{Cnn, CnnConfig, DataInputs, Dataset, Model};
use rand::{Rng, SeedableRng};

fn normal(rng: &mut rand_chacha::ChaCha8Rng) -> f64 {
    let u1: f64 = rng.gen_range(f64::EPSILON..1.0);
    let u2: f64 = rng.gen();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

/// Reads a little-endian `<f8` or `<i8` `.npy` file as f64 values.
fn read_npy(path: &std::path::Path) -> Result<Vec<f64>, Box<dyn std::error::Error>> {
    let b = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if b.len() < 10 || &b[..6] != b"\x93NUMPY" {
        return Err(format!("{}: not a .npy file", path.display()).into());
    }
    let hlen = u16::from_le_bytes([b[8], b[9]]) as usize;
    let header = std::str::from_utf8(&b[10..10 + hlen])?;
    let body = &b[10 + hlen..];
    let vals = body.chunks_exact(8).map(|c| c.try_into().expect("8 bytes"));
    if header.contains("'<f8'") {
        Ok(vals.map(f64::from_le_bytes).collect())
    } else if header.contains("'<i8'") {
        Ok(vals.map(|c| i64::from_le_bytes(c) as f64).collect())
    } else {
        Err(format!("{}: expected <f8 or <i8, header {header}", path.display()).into())
    }
}

/// θ and data dumped by `scripts/peer_dump.py` (JAX layout: f1w/f2w are
/// `[in, out]`, transposed here to our `[out, in]`).
fn peer(dir: &str, model: &Cnn) -> Result<(Vec<f64>, Dataset), Box<dyn std::error::Error>> {
    let dir = std::path::Path::new(dir);
    let mut theta = Vec::with_capacity(model.layout().len());
    for (name, file) in [
        ("conv1.weight", "c1w"),
        ("conv1.bias", "c1b"),
        ("conv2.weight", "c2w"),
        ("conv2.bias", "c2b"),
        ("conv3.weight", "c3w"),
        ("conv3.bias", "c3b"),
        ("fc1.weight", "f1w"),
        ("fc1.bias", "f1b"),
        ("fc2.weight", "f2w"),
        ("fc2.bias", "f2b"),
    ] {
        let v = read_npy(&dir.join(format!("{file}.npy")))?;
        let shape = &model.layout().find(name).ok_or("missing block")?.shape;
        if file.starts_with('f') && file.ends_with('w') {
            let (o, i) = (shape[0], shape[1]);
            theta.extend((0..o * i).map(|j| v[(j % i) * o + j / i]));
        } else {
            theta.extend(v);
        }
    }
    let x = read_npy(&dir.join("x.npy"))?;
    let y = read_npy(&dir.join("y.npy"))?;
    let data = Dataset {
        inputs: DataInputs::Images(x.iter().map(|&p| p as f32).collect()),
        labels: y.iter().map(|&l| l as u32).collect(),
    };
    Ok((theta, data))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let argv: Vec<String> = std::env::args().collect();
    if argv.len() >= 3 && argv[1] == "--peer" {
        let model = Cnn::new(&CnnConfig::default())?;
        let (theta, data) = peer(&argv[2], &model)?;
        let h = HessianOperator::new(&model, theta, &data, 0, Curvature::Hessian)?;
        println!(
            "peer's CNN and batch from {}: {} parameters, batch {}, f64 HVPs, tol 1e-6",
            argv[2],
            h.dim(),
            data.len()
        );
        return run(&h, 1e-6, None, &[1, 5, 20]);
    }
    let mut args = std::env::args().skip(1);
    let batch: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(256);
    let tol: f64 = args.next().map(|s| s.parse()).transpose()?.unwrap_or(1e-6);
    let max_basis: Option<usize> = args.next().map(|s| s.parse()).transpose()?;
    let ks: Vec<usize> = match args.next() {
        Some(s) => s.split(',').map(|k| k.parse()).collect::<Result<_, _>>()?,
        None => vec![1, 5, 20],
    };
    let model = Cnn::new(&CnnConfig::default())?;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let mut theta = vec![0.0f64; model.layout().len()];
    for b in model.layout().blocks() {
        if b.name.ends_with("weight") {
            let fan_in: usize = b.shape[1..].iter().product();
            for t in &mut theta[b.range()] {
                *t = normal(&mut rng) * (2.0 / fan_in as f64).sqrt();
            }
        }
    }
    let pixels: Vec<f32> = (0..batch * 784).map(|_| rng.gen()).collect();
    let labels: Vec<u32> = (0..batch).map(|_| rng.gen_range(0..10)).collect();
    let data = Dataset {
        inputs: DataInputs::Images(pixels),
        labels,
    };
    let h = HessianOperator::new(&model, theta, &data, 0, Curvature::Hessian)?;
    println!(
        "reference CNN, {} parameters, batch {batch}, f64 HVPs, tol {tol:e}",
        h.dim()
    );
    run(&h, tol, max_basis, &ks)
}

fn run(
    h: &HessianOperator<'_, Cnn>,
    tol: f64,
    max_basis: Option<usize>,
    ks: &[usize],
) -> Result<(), Box<dyn std::error::Error>> {
    for (k, arpack) in [(1usize, 21usize), (5, 33), (20, 86)] {
        if !ks.contains(&k) {
            continue;
        }
        let params = LanczosParams {
            k,
            which: Which::LargestAlgebraic,
            tol,
            seed: 0,
            max_basis,
            ..Default::default()
        };
        let t = std::time::Instant::now();
        let eig = lanczos(h, &params, &mut NoObserver)?;
        let scale = eig.values.iter().fold(0.0f64, |a, v| a.max(v.abs()));
        let worst = eig.residuals.iter().fold(0.0f64, |a, &r| a.max(r)) / scale;
        println!(
            "k={k:>2}: matvecs {:>3} (ARPACK {arpack}), {:.1} s, stop {:?}, max rel. residual {worst:.1e}, top {:?}",
            eig.matvecs,
            t.elapsed().as_secs_f64(),
            eig.stop,
            eig.values.iter().take(3).map(|v| format!("{v:.3}")).collect::<Vec<_>>()
        );
    }
    Ok(())
}
