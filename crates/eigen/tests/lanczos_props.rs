//! Property tests of the Lanczos solver against the dense oracle.

mod common;

use common::*;
use gensplit_eigen::{dense::sym_eig, lanczos, LanczosParams, NoObserver, StopReason, Which};
use proptest::prelude::*;
use proptest::test_runner::RngSeed;

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: None,
        rng_seed: RngSeed::Fixed(0x5eed),
        ..ProptestConfig::default()
    }
}

/// Runs lanczos on a matrix with the given spectrum and checks everything.
fn check(kind: Kind, n: usize, k: usize, which: Which, seed: u64) -> Result<(), TestCaseError> {
    let spec = spectrum(kind, n, seed);
    let a = sym_from_spectrum(&spec, seed);
    let (w, z) = sym_eig(a.as_slice(), n).unwrap();
    let scale = w.iter().fold(0.0f64, |m, x| m.max(x.abs()));
    let tol = 1e-10;
    let params = LanczosParams {
        k,
        which,
        tol,
        seed,
        multiplicity_check: matches!(kind, Kind::Repeated | Kind::Clustered),
        ..Default::default()
    };
    let r = lanczos(&a, &params, &mut NoObserver).unwrap();
    prop_assert!(
        r.stop != StopReason::MaxMatvecs,
        "{kind:?} n={n} k={k} {which:?}: no convergence: {:?} after {} matvecs",
        r.values,
        r.matvecs
    );
    prop_assert_eq!(r.values.len(), k);
    prop_assert_eq!(r.vectors.len(), k);

    // Expected values, most wanted first.
    let mut idx: Vec<usize> = (0..n).collect();
    idx.sort_by(|&i, &j| which.compare(w[i], w[j]));
    for (i, (&got, &e)) in r.values.iter().zip(idx.iter()).enumerate() {
        let exp = w[e];
        let (g, x) = if which == Which::LargestMagnitude {
            (got.abs(), exp.abs())
        } else {
            (got, exp)
        };
        prop_assert!(
            (g - x).abs() <= 1e-8 * scale,
            "{kind:?} n={n} k={k} {which:?}: value {i}: got {got}, expected {exp} (all {:?})",
            r.values
        );
    }
    // Orthonormal vectors.
    let oe = orthonormality_error(&r.vectors);
    prop_assert!(oe <= 1e-10, "orthonormality error {oe:e}");
    // Residuals: reported == explicit, and below tolerance.
    for (i, (v, &lam)) in r.vectors.iter().zip(&r.values).enumerate() {
        let ex = explicit_residual(&a, v, lam);
        prop_assert!(
            (ex - r.residuals[i]).abs() <= 1e-12 * scale.max(1.0),
            "reported residual {} vs explicit {ex}",
            r.residuals[i]
        );
        prop_assert!(ex <= tol * scale * 1.01, "residual {ex:e} > tol");
    }
    // Eigenspaces of eigenvalues whose whole multiplicity lies among the k
    // wanted ones must be spanned by the returned vectors.
    let cluster_tol = 1e-9 * scale;
    let kth = w[idx[k - 1]];
    for &e in idx.iter().take(k) {
        let lam = w[e];
        let members: Vec<usize> = (0..n).filter(|&i| (w[i] - lam).abs() <= cluster_tol).collect();
        let in_top = idx[..k].iter().filter(|&&i| (w[i] - lam).abs() <= cluster_tol).count();
        if members.len() < 2 || in_top < members.len() || (lam - kth).abs() <= cluster_tol && in_top < members.len() {
            continue;
        }
        for &mi in &members {
            let u = &z[mi * n..(mi + 1) * n];
            let proj: f64 = r.vectors.iter().map(|v| dot(u, v).powi(2)).sum();
            prop_assert!(
                (proj - 1.0).abs() <= 1e-6,
                "{kind:?}: eigenspace of {lam} (mult {}) not spanned: |P u|^2 = {proj}",
                members.len()
            );
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(64))]
    #[test]
    fn small_and_medium(kind_i in 0usize..6, n in 2usize..=120, k_raw in 1usize..=8, wh in 0u8..3, seed in any::<u64>()) {
        let k = k_raw.min(n);
        check(KINDS[kind_i], n, k, which_from(wh), seed)?;
    }
}

proptest! {
    #![proptest_config(config(10))]
    #[test]
    fn large(kind_i in 0usize..6, n in 200usize..=400, k_raw in 1usize..=10, wh in 0u8..3, seed in any::<u64>()) {
        check(KINDS[kind_i], n, k_raw, which_from(wh), seed)?;
    }
}

#[test]
fn every_kind_and_which_once() {
    for (ki, &kind) in KINDS.iter().enumerate() {
        for wh in 0..3u8 {
            check(kind, 150, 5, which_from(wh), 1000 + ki as u64 * 10 + wh as u64).unwrap();
        }
    }
}

#[test]
fn repeated_top_eigenvalue_spans_eigenspace() {
    for kind_seed in 0..4u64 {
        // k = 9 covers 12.0 (x3), 7.5 (x4) and two more for LA.
        check(Kind::Repeated, 300, 9, Which::LargestAlgebraic, kind_seed).unwrap();
        check(Kind::Repeated, 300, 5, Which::LargestMagnitude, kind_seed + 7).unwrap();
    }
}

proptest! {
    #![proptest_config(config(8))]
    #[test]
    fn deterministic(kind_i in 0usize..6, n in 10usize..=150, k_raw in 1usize..=6, wh in 0u8..3, seed in any::<u64>()) {
        let k = k_raw.min(n);
        let spec = spectrum(KINDS[kind_i], n, seed);
        let a = sym_from_spectrum(&spec, seed);
        let p = LanczosParams { k, which: which_from(wh), tol: 1e-9, seed, ..Default::default() };
        let r1 = lanczos(&a, &p, &mut NoObserver).unwrap();
        let r2 = lanczos(&a, &p, &mut NoObserver).unwrap();
        prop_assert_eq!(r1, r2);
    }
}

/// Few distinct eigenvalues, each with a large multiplicity: the Krylov space
/// becomes invariant after a handful of steps (breakdown), and fresh random
/// sequences must recover the eigenspaces.
#[test]
fn breakdown_recovers_multiplicities() {
    let n = 200;
    let spec: Vec<f64> = (0..n)
        .map(|i| match i % 50 {
            0..=2 => 6.0,  // multiplicity 12
            3..=10 => 2.0, // multiplicity 32
            11..=30 => -1.0,
            _ => 0.5,
        })
        .collect();
    let a = sym_from_spectrum(&spec, 77);
    let (w, z) = sym_eig(a.as_slice(), n).unwrap();
    for &(k, which) in &[
        (12usize, Which::LargestAlgebraic),
        (14, Which::LargestAlgebraic),
        (3, Which::SmallestAlgebraic),
    ] {
        let p = LanczosParams {
            k,
            which,
            tol: 1e-10,
            seed: 5,
            ..Default::default()
        };
        let r = lanczos(&a, &p, &mut NoObserver).unwrap();
        println!(
            "k={k} {which:?}: {} matvecs, {} restarts, {:?}",
            r.matvecs, r.restarts, r.stop
        );
        assert_eq!(r.stop, StopReason::Converged);
        assert!(r.restarts >= 1, "a breakdown restart must have happened");
        assert!(orthonormality_error(&r.vectors) < 1e-10);
        let expect = match which {
            Which::SmallestAlgebraic => vec![-1.0; k],
            _ => (0..k).map(|i| if i < 12 { 6.0 } else { 2.0 }).collect(),
        };
        for (g, e) in r.values.iter().zip(&expect) {
            assert!((g - e).abs() < 1e-9, "{:?}", r.values);
        }
        for (v, &lam) in r.vectors.iter().zip(&r.values) {
            assert!(explicit_residual(&a, v, lam) < 1e-9);
        }
        if k >= 12 && which == Which::LargestAlgebraic {
            // The 12-dimensional eigenspace of 6 is spanned.
            for i in 0..n {
                if (w[i] - 6.0).abs() < 1e-9 {
                    let u = &z[i * n..(i + 1) * n];
                    let proj: f64 = r.vectors.iter().map(|v| dot(u, v).powi(2)).sum();
                    assert!((proj - 1.0).abs() < 1e-8, "proj {proj}");
                }
            }
        }
        assert!(r.matvecs < 200, "{} matvecs", r.matvecs);
    }
}
