//! Matvec counts on a synthetic spectrum shaped like a neural-network Hessian.

use gensplit_eigen::{lanczos, Diagonal, LanczosParams, StopReason, Which};

/// Ten outliers, a power-law bulk `bulk_scale * (1 + i)^-bulk_decay` decaying
/// towards 0 and 5% small negative eigenvalues (as in trained-network Hessians).
fn nn_like_spectrum(n: usize, bulk_scale: f64, bulk_decay: f64) -> Vec<f64> {
    let outliers = [35.4, 26.5, 18.8, 15.0, 12.1, 10.3, 9.1, 8.2, 7.4, 6.9];
    let mut d: Vec<f64> = outliers.to_vec();
    let n_neg = n / 20;
    let n_bulk = n - outliers.len() - n_neg;
    for i in 0..n_bulk {
        d.push(bulk_scale * (1.0 + i as f64).powf(-bulk_decay));
    }
    for i in 0..n_neg {
        d.push(-0.3 * (1.0 + i as f64).powf(-0.5));
    }
    // Interleave deterministically so the operator is not sorted.
    let mut perm: Vec<usize> = (0..n).collect();
    let mut s: u64 = 0x9E37_79B9_7F4A_7C15;
    for i in (1..n).rev() {
        s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let j = (s >> 33) as usize % (i + 1);
        perm.swap(i, j);
    }
    perm.iter().map(|&p| d[p]).collect()
}

#[test]
fn nn_like_matvec_counts() {
    let n = 30_000;
    // (bulk scale, bulk decay): a fast-decaying and a dense, slowly decaying bulk.
    for (bs, bd) in [(6.0, 0.7), (5.0, 0.3)] {
        run_case(n, bs, bd);
    }
}

fn run_case(n: usize, bs: f64, bd: f64) {
    let diag = nn_like_spectrum(n, bs, bd);
    let mut sorted = diag.clone();
    sorted.sort_by(|a, b| b.total_cmp(a));
    let op = Diagonal { diag };
    for &k in &[1usize, 5, 20] {
        let p = LanczosParams {
            k,
            which: Which::LargestAlgebraic,
            tol: 1e-6,
            seed: 42,
            ..Default::default()
        };
        let t0 = std::time::Instant::now();
        let r = lanczos(&op, &p, &mut gensplit_eigen::NoObserver).unwrap();
        let dt = t0.elapsed();
        println!(
            "bulk {bs}*(1+i)^-{bd}: k = {k:2}: matvecs = {:4}, restarts = {:3}, stop = {:?}, solver time {:.1} ms",
            r.matvecs,
            r.restarts,
            r.stop,
            dt.as_secs_f64() * 1e3
        );
        assert_eq!(r.stop, StopReason::Converged);
        assert!(r.matvecs <= 400, "k = {k}: {} matvecs", r.matvecs);
        for (i, (&v, &res)) in r.values.iter().zip(&r.residuals).enumerate() {
            assert!(res <= 1e-6 * 35.4 * 1.01, "residual {res}");
            assert!((v - sorted[i]).abs() <= 1e-4 * 35.4, "value {v} vs {}", sorted[i]);
        }
    }
}
