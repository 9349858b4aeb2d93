//! Solver overhead: top-5 Lanczos on a cheap 30000-dimensional diagonal
//! operator with an NN-Hessian-like spectrum (the matvec itself is ~free, so
//! this measures orthogonalization, small eigenproblems and restarts).
//!
//! Run: `cargo bench -p gensplit-eigen --features bench --bench lanczos`.

// `criterion_group!` generates an undocumented function.
#![allow(missing_docs)]

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use gensplit_eigen::{lanczos, Diagonal, LanczosParams, NoObserver, Which};

fn spectrum(n: usize) -> Vec<f64> {
    let outliers = [35.4, 26.5, 18.8, 15.0, 12.1, 10.3, 9.1, 8.2, 7.4, 6.9];
    let mut d: Vec<f64> = outliers.to_vec();
    let mut i = 0usize;
    while d.len() < n {
        d.push(5.0 * (1.0 + i as f64).powf(-0.3) * if i % 20 == 19 { -0.05 } else { 1.0 });
        i += 1;
    }
    // Deterministic shuffle.
    let mut s: u64 = 12345;
    for i in (1..n).rev() {
        s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        d.swap(i, (s >> 33) as usize % (i + 1));
    }
    d
}

fn bench(c: &mut Criterion) {
    let op = Diagonal { diag: spectrum(30_000) };
    let mut g = c.benchmark_group("lanczos_n30000");
    g.sample_size(10);
    for k in [1usize, 5, 20] {
        let p = LanczosParams {
            k,
            which: Which::LargestAlgebraic,
            tol: 1e-6,
            seed: 1,
            ..Default::default()
        };
        g.bench_function(format!("top{k}"), |b| {
            b.iter(|| lanczos(black_box(&op), &p, &mut NoObserver).unwrap())
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
