use gensplit_eigen::testkit::*;
use gensplit_eigen::*;
use proptest::prelude::*;
use proptest::test_runner::RngSeed;
fn cfg(c: u32, s: u64) -> ProptestConfig {
    ProptestConfig {
        rng_seed: RngSeed::Fixed(s),
        max_shrink_iters: 64,
        ..fixed_config(c)
    }
}
struct Chain {
    potential: Vec<f64>,
}
impl LinearOperator for Chain {
    fn dim(&self) -> usize {
        self.potential.len()
    }
    fn apply(&self, x: &[f64], y: &mut [f64]) {
        let n = x.len();
        for i in 0..n {
            let left = if i > 0 { x[i - 1] } else { 0.0 };
            let right = if i + 1 < n { x[i + 1] } else { 0.0 };
            y[i] = (2.0 + self.potential[i]) * x[i] - left - right;
        }
    }
}
proptest! {
    #![proptest_config(cfg(1500, 78))]
    #[test]
    fn stress_planted(kind in any_spectrum(), n in 2usize..=150, k in 1usize..=8, which in any_which(), seed in any::<u64>(), mc in any::<bool>(), tol_exp in 6i32..=12) {
        let op = PlantedOperator::planted(kind, n, seed);
        let params = LanczosParams { k: k.min(n), which, tol: 10f64.powi(-tol_exp), seed, multiplicity_check: mc || kind.has_repeats(), ..Default::default() };
        check_lanczos(&op, &params, CheckTol::for_params(&params))?;
    }
    #[test]
    fn stress_chain(potential in prop::collection::vec(-1.0..1.0f64, 2..150), k in 1usize..=4, which in any_which(), tol_exp in 6i32..=11) {
        let op = Chain { potential };
        let params = LanczosParams { k: k.min(op.dim()), which, tol: 10f64.powi(-tol_exp), multiplicity_check: true, ..Default::default() };
        check_lanczos(&op, &params, CheckTol::for_params(&params))?;
    }
}

#[test]
fn repro() {
    let op = Chain {
        potential: vec![
            0.8071467440711743,
            -0.8587764051796303,
            -0.5442270413492857,
            -0.9872192511272814,
            0.05892646080397839,
            -0.9809434047423076,
            0.12636194509110468,
            -0.3925769306516112,
            0.6502388445704392,
            0.11283207949069538,
            -0.5333586411602359,
            0.7684178244684262,
            -0.8412004331020864,
            0.5341970231909634,
            0.640973180906952,
            0.22700542526597375,
            0.8100949306054458,
            0.41879963002407683,
            -0.287374559437199,
            -0.5862460334396538,
            -0.15605032246023093,
            0.5590265844626184,
            0.0335292157247952,
            0.4163884595155838,
            0.4562137971681643,
            -0.64651350543986,
            -0.6735357485254965,
            0.14226366192326212,
            -0.84587909387569,
            0.48605526077765365,
            -0.5507811794903374,
            0.9509123534375656,
            0.7610149025873216,
            0.19550834114221072,
            -0.640394457494323,
            -0.030507025129724995,
            -0.2245567573671065,
            0.8448981704478818,
            -0.06266827777752837,
            -0.002306421283048,
            0.7034277248173987,
            0.644110065605561,
            -0.13548000071995916,
            0.5282800840561304,
            0.27782082170887884,
            -0.49956495740119766,
            -0.2470168920559105,
            0.822463824011721,
            0.09534180364116773,
            -0.7000416350878289,
            0.1673464088440993,
            -0.4639828434853189,
            -0.837780477186805,
            -0.5693590206915079,
            -0.13027139244198394,
            -0.5513976518804712,
            0.9899934628380603,
            -0.3986400990583091,
            -0.4098331290317504,
            0.9897894693643425,
            -0.3755888472208656,
            -0.7078701244894997,
            0.18236310370572797,
            0.8757947056730065,
            -0.579987749544422,
            0.5464456866143289,
            -0.14571904940529729,
            -0.8909050829839175,
            0.5396204373126373,
            -0.3855681351442253,
            0.4641846280177307,
            0.4641440007930221,
            0.6863781469907355,
            0.9912683624460854,
            0.4714894345484222,
            -0.24443179186302824,
            -0.9019874897847993,
            0.3707474615280095,
            0.2931438714527476,
            0.20636636818420157,
            0.5245443356343291,
            0.9356403866900321,
        ],
    };
    for (tol, mc) in [(1e-7, true), (1e-7, false), (1e-10, true), (1e-6, true)] {
        let params = LanczosParams {
            k: 3,
            which: Which::SmallestAlgebraic,
            tol,
            multiplicity_check: mc,
            max_matvecs: 3000,
            ..Default::default()
        };
        let mut last = 0;
        let mut obs = |s: &StepInfo<'_>| {
            if s.restarts != last {
                last = s.restarts;
                if s.matvecs < 300 || s.matvecs % 500 < 10 {
                    println!(
                        "  mv {} rs {} conv {} vals {:?} res {:?} thr {:e}",
                        s.matvecs, s.restarts, s.converged, s.ritz_values, s.residuals, s.threshold
                    );
                }
            }
        };
        let r = lanczos(&op, &params, &mut obs).unwrap();
        println!(
            "tol {tol} mc {mc}: {:?} {} {:?} restarts {}",
            r.values, r.matvecs, r.stop, r.restarts
        );
    }
    let o = DenseOracle::new(&op).unwrap();
    println!(
        "dense {:?} .. {:?}",
        &o.values()[..6],
        &o.values()[o.values().len() - 3..]
    );
}
struct Grid {
    m: usize,
}
impl LinearOperator for Grid {
    fn dim(&self) -> usize {
        self.m * self.m
    }
    fn apply(&self, x: &[f64], y: &mut [f64]) {
        let m = self.m;
        for r in 0..m {
            for c in 0..m {
                let at = |rr: usize, cc: usize| x[rr * m + cc];
                let mut s = 4.0 * at(r, c);
                if r > 0 {
                    s -= at(r - 1, c);
                }
                if r + 1 < m {
                    s -= at(r + 1, c);
                }
                if c > 0 {
                    s -= at(r, c - 1);
                }
                if c + 1 < m {
                    s -= at(r, c + 1);
                }
                y[r * m + c] = s;
            }
        }
    }
}
proptest! {
    #![proptest_config(cfg(200, 79))]
    #[test]
    fn stress_big(kind in any_spectrum(), n in 150usize..=500, k in 1usize..=12, which in any_which(), seed in any::<u64>(), mc in any::<bool>(), tol_exp in 6i32..=12) {
        let op = PlantedOperator::planted(kind, n, seed);
        let params = LanczosParams { k: k.min(n), which, tol: 10f64.powi(-tol_exp), seed, multiplicity_check: mc || kind.has_repeats(), ..Default::default() };
        check_lanczos(&op, &params, CheckTol::for_params(&params))?;
    }
    #[test]
    fn stress_grid(m in 2usize..=20, k in 1usize..=8, which in any_which(), tol_exp in 6i32..=12, seed in any::<u64>()) {
        let op = Grid { m };
        let params = LanczosParams { k: k.min(m * m), which, tol: 10f64.powi(-tol_exp), seed, multiplicity_check: true, ..Default::default() };
        check_lanczos(&op, &params, CheckTol::for_params(&params))?;
    }
    #[test]
    fn stress_projected(kind in any_spectrum(), n in 10usize..=200, r in 1usize..=8, k in 1usize..=6, which in any_which(), seed in any::<u64>(), tol_exp in 6i32..=12) {
        let a = PlantedOperator::planted(kind, n, seed);
        let p = Projected::new(&a, &gaussian_vectors(n, r, seed ^ 3)).unwrap();
        let params = LanczosParams { k: k.min(n - r), which, tol: 10f64.powi(-tol_exp), seed, multiplicity_check: kind.has_repeats(), ..Default::default() };
        check_lanczos(&p, &params, CheckTol::for_params(&params))?;
    }
}
proptest! {
    #![proptest_config(cfg(6000, 80))]
    #[test]
    fn search(kind in any_spectrum(), n in 20usize..=120, k in 1usize..=5, which in any_which(), seed in any::<u64>(), tol_exp in 6i32..=9) {
        let op = PlantedOperator::planted(kind, n, seed);
        let params = LanczosParams { k: k.min(n), which, tol: 10f64.powi(-tol_exp), seed, multiplicity_check: true, max_matvecs: 3000, ..Default::default() };
        check_lanczos(&op, &params, CheckTol::for_params(&params))?;
    }
}
#[test]
fn repro2() {
    let seed = 3754491434935927377u64;
    let op = PlantedOperator::planted(Spectrum::Repeated { multiplicity: 5 }, 87, seed);
    let params = LanczosParams {
        k: 5,
        which: Which::LargestMagnitude,
        tol: 1e-6,
        seed,
        multiplicity_check: true,
        max_matvecs: 400,
        ..Default::default()
    };
    let mut last = 0;
    let mut obs = |s: &StepInfo<'_>| {
        if s.restarts != last || s.matvecs < 60 {
            last = s.restarts;
            if false {
                println!(
                    "  mv {} rs {} conv {} vals {:?} res {:?} thr {:e}",
                    s.matvecs, s.restarts, s.converged, s.ritz_values, s.residuals, s.threshold
                );
            }
        }
    };
    let r = lanczos(&op, &params, &mut obs).unwrap();
    println!(
        "{:?} {} {:?} restarts {} res {:?}",
        r.values, r.matvecs, r.stop, r.restarts, r.residuals
    );
    println!("planted {:?}", op.wanted_values(8, Which::SmallestAlgebraic));
}
