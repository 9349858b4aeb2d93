//! Checks of the exact curvature-vector products against finite-difference
//! oracles, symmetry, batching, precision and error handling.

use crate::common::*;
use gensplit_eigen::LinearOperator;
use gensplit_hvp::{curvature_vector, dense_hessian, Curvature, HessianOperator, HvpError};
use gensplit_models::{evaluate_logits, loss_and_grad, Cnn, CnnConfig, DataInputs, Dataset, Inputs, Model, ModelError};

fn grad_at<M: Model>(m: &M, theta: &[f64], data: &Dataset) -> Vec<f64> {
    loss_and_grad(m, theta, &data.inputs(), &data.labels).unwrap().grad
}

/// Central differences of the gradient along `v`, one vector per ε.
fn fd_hvp<M: Model>(m: &M, theta: &[f64], data: &Dataset, v: &[f64], eps: f64) -> Vec<f64> {
    let shifted = |s: f64| -> Vec<f64> { theta.iter().zip(v).map(|(t, d)| t + s * d).collect() };
    let gp = grad_at(m, &shifted(eps), data);
    let gm = grad_at(m, &shifted(-eps), data);
    gp.iter().zip(&gm).map(|(a, b)| (a - b) / (2.0 * eps)).collect()
}

const EPSILONS: [f64; 4] = [1e-3, 1e-4, 1e-5, 1e-6];

/// Best relative error of `hv` against finite differences over [`EPSILONS`].
fn best_fd_err<M: Model>(m: &M, theta: &[f64], data: &Dataset, v: &[f64], hv: &[f64]) -> f64 {
    EPSILONS
        .iter()
        .map(|&e| rel_err(hv, &fd_hvp(m, theta, data, v, e)))
        .fold(f64::INFINITY, f64::min)
}

fn check_hvp_vs_fd<M: Model>(name: &str, m: &M, data: &Dataset) {
    let theta: Vec<f64> = m.init(1);
    // The operator with its primal cache (the default) and without.
    for (seed, limit) in [
        (10, gensplit_hvp::DEFAULT_CACHE_BYTES),
        (11, gensplit_hvp::DEFAULT_CACHE_BYTES),
        (12, 0),
    ] {
        let v = random_vec(theta.len(), seed);
        let op = HessianOperator::new(m, theta.clone(), data, 0, Curvature::Hessian)
            .unwrap()
            .with_cache_limit(limit);
        // A first product (another direction) records the cache; the
        // checked one reads it.
        op.hvp(&random_vec(theta.len(), seed + 100)).unwrap();
        let hv = op.hvp(&v).unwrap();
        let err = best_fd_err(m, &theta, data, &v, &hv);
        eprintln!(
            "{name}: H·v vs FD of the gradient, best relative error {err:.3e} (|Hv| = {:.3e}, {} cached batches)",
            norm(&hv),
            op.cached_batches()
        );
        assert!(err <= 1e-6, "{name}: H·v relative error {err:e}");
    }
}

#[test]
fn hvp_matches_finite_differences_cnn() {
    check_hvp_vs_fd("cnn", &tiny_cnn(), &image_data(12, 3));
}

#[test]
fn hvp_matches_finite_differences_mlp() {
    check_hvp_vs_fd("mlp", &tiny_mlp(), &modadd_data(7));
}

fn check_symmetry<M: Model>(name: &str, m: &M, data: &Dataset, kind: Curvature) {
    let theta: Vec<f64> = m.init(2);
    let op = HessianOperator::new(m, theta.clone(), data, 5, kind).unwrap();
    let u = random_vec(theta.len(), 20);
    let v = random_vec(theta.len(), 21);
    let (hu, hv) = (op.hvp(&u).unwrap(), op.hvp(&v).unwrap());
    let (a, b) = (dot(&u, &hv), dot(&v, &hu));
    let scale = norm(&u) * norm(&hv);
    let err = (a - b).abs() / scale;
    eprintln!("{name} {kind:?}: uᵀ(Av) = {a:.6e}, vᵀ(Au) = {b:.6e}, |diff|/(|u||Av|) = {err:.3e}");
    assert!(err <= 1e-10, "{name} {kind:?}: asymmetry {err:e}");
}

#[test]
fn hessian_and_ggn_are_symmetric() {
    let (cnn, img) = (tiny_cnn(), image_data(12, 4));
    let (mlp, tok) = (tiny_mlp(), modadd_data(7));
    for kind in [Curvature::Hessian, Curvature::GaussNewton] {
        check_symmetry("cnn", &cnn, &img, kind);
        check_symmetry("mlp", &mlp, &tok, kind);
    }
}

#[test]
fn dense_hessian_matches_finite_differences() {
    let m = tiny_mlp();
    let data = modadd_data(7);
    let theta: Vec<f64> = m.init(3);
    let n = theta.len();
    assert!(n <= 300, "{n} parameters");
    let h = dense_hessian(&m, &theta, &data, 0, Curvature::Hessian).unwrap();
    // Symmetry of the matrix built from n independent products.
    let hmax = h.iter().fold(0.0f64, |a, x| a.max(x.abs()));
    let mut asym = 0.0f64;
    for i in 0..n {
        for j in 0..i {
            asym = asym.max((h[i * n + j] - h[j * n + i]).abs());
        }
    }
    // Column by column against central differences of the gradient
    // (best ε per column).
    let (mut diff2, mut norm2, mut worst) = (0.0, 0.0, 0.0f64);
    for j in 0..n {
        let col: Vec<f64> = (0..n).map(|i| h[i * n + j]).collect();
        let mut e = vec![0.0; n];
        e[j] = 1.0;
        let (best, fd) = EPSILONS
            .iter()
            .map(|&eps| {
                let fd = fd_hvp(&m, &theta, &data, &e, eps);
                (rel_err(&col, &fd), fd)
            })
            .min_by(|a, b| a.0.total_cmp(&b.0))
            .unwrap();
        diff2 += col.iter().zip(&fd).map(|(a, b)| (a - b) * (a - b)).sum::<f64>();
        norm2 += dot(&fd, &fd);
        if norm(&col) > 1e-8 * hmax {
            worst = worst.max(best);
        }
    }
    let frob = (diff2 / norm2).sqrt();
    eprintln!(
        "dense Hessian ({n}x{n}): max |H − Hᵀ|/max|H| = {:.3e}, Frobenius rel. error vs FD = {frob:.3e}, worst column {worst:.3e}",
        asym / hmax
    );
    assert!(asym <= 1e-12 * hmax, "asymmetry {asym:e} (max {hmax:e})");
    assert!(frob <= 1e-6, "Frobenius relative error {frob:e}");
    assert!(worst <= 1e-5, "worst column relative error {worst:e}");
}

#[test]
fn batching_does_not_change_results() {
    let cnn = run_batches(&tiny_cnn(), &image_data(10, 5));
    let mlp = run_batches(&tiny_mlp(), &modadd_data(7));
    for (name, worst) in [("cnn", cnn), ("mlp", mlp)] {
        eprintln!("{name}: batch sizes 1, 3, all (H·v, G·v, gradient, loss): worst relative difference {worst:.3e}");
        assert!(worst <= 1e-12, "{name}: batching changed the result by {worst:e}");
    }
}

/// H·v, G·v, the gradient and the loss at batch sizes 1, 3 and all; returns
/// the worst relative difference to the full batch.
fn run_batches<M: Model>(m: &M, data: &Dataset) -> f64 {
    let theta: Vec<f64> = m.init(4);
    let v = random_vec(theta.len(), 30);
    let at = |bs: usize| {
        let h = HessianOperator::new(m, theta.clone(), data, bs, Curvature::Hessian).unwrap();
        let g = HessianOperator::new(m, theta.clone(), data, bs, Curvature::GaussNewton).unwrap();
        let (loss, grad) = h.loss_grad().unwrap();
        (h.hvp(&v).unwrap(), g.hvp(&v).unwrap(), grad, loss)
    };
    let full = at(0);
    let mut worst = 0.0f64;
    for bs in [1, 3] {
        let r = at(bs);
        worst = worst
            .max(rel_err(&r.0, &full.0))
            .max(rel_err(&r.1, &full.1))
            .max(rel_err(&r.2, &full.2))
            .max((r.3 - full.3).abs() / full.3);
    }
    // The full-batch operator agrees with the one-batch function too.
    let one = curvature_vector(m, &theta, &data.inputs(), &data.labels, &v, Curvature::Hessian).unwrap();
    worst.max(rel_err(&one, &full.0))
}

#[test]
fn ggn_is_psd_and_matches_explicit_jacobians() {
    let m = tiny_mlp();
    let data = modadd_data(7).gather(&(0..12).map(|i| i * 4).collect::<Vec<_>>());
    let theta: Vec<f64> = m.init(5);
    let n = theta.len();
    let g = HessianOperator::new(&m, theta.clone(), &data, 5, Curvature::GaussNewton).unwrap();
    // PSD on random vectors.
    let mut min_ratio = f64::INFINITY;
    for seed in 0..8 {
        let v = random_vec(n, 40 + seed);
        let q = dot(&v, &g.hvp(&v).unwrap());
        min_ratio = min_ratio.min(q / dot(&v, &v));
        assert!(q >= -1e-12, "vᵀGv = {q:e}");
    }
    eprintln!("ggn: min vᵀGv/vᵀv over 8 random v = {min_ratio:.3e}");
    // Explicit Jᵀ H_CE J v / N from central-difference Jacobians of the logits.
    let k = m.classes();
    let ns = data.len();
    let eps = 1e-5;
    let logits = |t: &[f64]| evaluate_logits(&m, t, &data.inputs()).unwrap();
    let z0 = logits(&theta);
    let mut jac = vec![0.0; ns * k * n]; // [(sample, class), param]
    for j in 0..n {
        let mut tp = theta.clone();
        tp[j] += eps;
        let mut tm = theta.clone();
        tm[j] -= eps;
        let (zp, zm) = (logits(&tp), logits(&tm));
        for r in 0..ns * k {
            jac[r * n + j] = (zp[r] - zm[r]) / (2.0 * eps);
        }
    }
    let v = random_vec(n, 50);
    let jv: Vec<f64> = (0..ns * k).map(|r| dot(&jac[r * n..(r + 1) * n], &v)).collect();
    let mut u = vec![0.0; ns * k];
    for s in 0..ns {
        let row = &z0[s * k..(s + 1) * k];
        let mx = row.iter().fold(f64::NEG_INFINITY, |a, &b| a.max(b));
        let e: Vec<f64> = row.iter().map(|z| (z - mx).exp()).collect();
        let tot: f64 = e.iter().sum();
        let p: Vec<f64> = e.iter().map(|x| x / tot).collect();
        let pj = dot(&p, &jv[s * k..(s + 1) * k]);
        for c in 0..k {
            u[s * k + c] = p[c] * (jv[s * k + c] - pj);
        }
    }
    let explicit: Vec<f64> = (0..n)
        .map(|j| (0..ns * k).map(|r| jac[r * n + j] * u[r]).sum::<f64>() / ns as f64)
        .collect();
    let gv = g.hvp(&v).unwrap();
    let err = rel_err(&gv, &explicit);
    eprintln!("ggn: G·v vs explicit Jᵀ H_CE J v / N (FD Jacobians), relative error {err:.3e}");
    assert!(err <= 1e-6, "GGN relative error {err:e}");
    // H − G = (1/N) Σ (s − y)·∇²z is not zero for this ReLU net, but both
    // agree in the output layer's bias block (z is linear there, with a
    // θ-independent Jacobian), which exercises the difference's structure.
    let h = HessianOperator::new(&m, theta.clone(), &data, 0, Curvature::Hessian).unwrap();
    let b2 = m.layout().find("fc2.bias").unwrap().range();
    let mut e = vec![0.0; n];
    e[b2.start] = 1.0;
    let (he, ge) = (h.hvp(&e).unwrap(), g.hvp(&e).unwrap());
    let err_b = rel_err(&he, &ge);
    eprintln!("ggn: H·e = G·e for the output-bias direction, relative difference {err_b:.3e}");
    assert!(err_b <= 1e-12, "H e_b vs G e_b: {err_b:e}");
}

#[test]
fn f32_agrees_with_f64() {
    let m = tiny_cnn();
    let data = image_data(16, 6);
    let theta: Vec<f64> = m.init(6);
    let v = random_vec(theta.len(), 60);
    let t32: Vec<f32> = theta.iter().map(|&x| x as f32).collect();
    let v32: Vec<f32> = v.iter().map(|&x| x as f32).collect();
    for kind in [Curvature::Hessian, Curvature::GaussNewton] {
        let h64 = HessianOperator::new(&m, theta.clone(), &data, 7, kind)
            .unwrap()
            .hvp(&v)
            .unwrap();
        let h32 = HessianOperator::new(&m, t32.clone(), &data, 7, kind)
            .unwrap()
            .hvp(&v32)
            .unwrap();
        let h32: Vec<f64> = h32.into_iter().map(|x| x as f64).collect();
        let err = rel_err(&h32, &h64);
        eprintln!("f32 vs f64 {kind:?}: relative difference {err:.3e}");
        assert!(err <= 1e-4, "{kind:?}: f32 vs f64 {err:e}");
    }
    let (l64, g64) = HessianOperator::new(&m, theta.clone(), &data, 7, Curvature::Hessian)
        .unwrap()
        .loss_grad()
        .unwrap();
    let (l32, g32) = HessianOperator::new(&m, t32, &data, 7, Curvature::Hessian)
        .unwrap()
        .loss_grad()
        .unwrap();
    let g32: Vec<f64> = g32.into_iter().map(|x| x as f64).collect();
    let err = rel_err(&g32, &g64);
    eprintln!("f32 vs f64 gradient: relative difference {err:.3e}, loss {l32} vs {l64}");
    assert!(err <= 1e-4 && (l32 - l64).abs() <= 1e-5 * l64);
}

#[test]
fn linear_operator_apply_counts_and_is_deterministic() {
    let m = tiny_mlp();
    let data = modadd_data(7);
    let theta: Vec<f64> = m.init(7);
    let op = HessianOperator::new(&m, theta.clone(), &data, 8, Curvature::Hessian).unwrap();
    assert_eq!(LinearOperator::dim(&op), theta.len());
    let v = random_vec(theta.len(), 70);
    let mut y = vec![0.0; theta.len()];
    op.apply(&v, &mut y);
    let hv = op.hvp(&v).unwrap();
    assert_eq!(y, hv, "apply and hvp differ / not deterministic");
    assert_eq!(op.matvecs(), 2);
    op.reset_matvecs();
    assert_eq!(op.matvecs(), 0);
    // An f32 operator is an f64 LinearOperator too.
    let t32: Vec<f32> = theta.iter().map(|&x| x as f32).collect();
    let op32 = HessianOperator::new(&m, t32, &data, 8, Curvature::Hessian).unwrap();
    let mut y32 = vec![0.0; theta.len()];
    op32.apply(&v, &mut y32);
    assert!(rel_err(&y32, &hv) < 1e-4);
}

#[test]
fn errors_are_typed() {
    let m = tiny_mlp();
    let data = modadd_data(7);
    let theta: Vec<f64> = m.init(8);
    let n = theta.len();
    let op = HessianOperator::new(&m, theta.clone(), &data, 0, Curvature::Hessian).unwrap();
    assert_eq!(
        op.hvp(&vec![0.0; n + 1]),
        Err(HvpError::DirectionLength {
            expected: n,
            got: n + 1
        })
    );
    assert_eq!(op.hvp(&[]), Err(HvpError::DirectionLength { expected: n, got: 0 }));
    assert_eq!(
        HessianOperator::new(&m, vec![0.0; n - 1], &data, 0, Curvature::Hessian).unwrap_err(),
        HvpError::Model(ModelError::ThetaLength {
            expected: n,
            got: n - 1
        })
    );
    let empty = Dataset {
        inputs: DataInputs::Tokens { a: vec![], b: vec![] },
        labels: vec![],
    };
    assert_eq!(
        HessianOperator::new(&m, theta.clone(), &empty, 0, Curvature::Hessian).unwrap_err(),
        HvpError::EmptyDataset
    );
    let images = image_data(2, 0);
    assert!(matches!(
        HessianOperator::new(&m, theta.clone(), &images, 0, Curvature::Hessian),
        Err(HvpError::Model(ModelError::Inputs(_)))
    ));
    let mut bad = data.clone();
    bad.labels[3] = 7;
    assert_eq!(
        HessianOperator::new(&m, theta.clone(), &bad, 0, Curvature::Hessian).unwrap_err(),
        HvpError::Model(ModelError::LabelRange { label: 7, classes: 7 })
    );
    let mut short = data.clone();
    short.labels.pop();
    assert!(matches!(
        HessianOperator::new(&m, theta.clone(), &short, 0, Curvature::Hessian),
        Err(HvpError::Model(ModelError::LabelCount { .. }))
    ));
    // One-batch function.
    let inp = Inputs::Tokens { a: &[1, 2], b: &[3, 9] };
    assert!(matches!(
        curvature_vector(&m, &theta, &inp, &[0, 1], &theta, Curvature::Hessian),
        Err(HvpError::Model(ModelError::Inputs(_)))
    ));
    let inp = Inputs::Tokens { a: &[1, 2], b: &[3, 4] };
    assert_eq!(
        curvature_vector(&m, &theta, &inp, &[0, 1], &theta[1..], Curvature::GaussNewton),
        Err(HvpError::DirectionLength {
            expected: n,
            got: n - 1
        })
    );
    // The Dual building block checks its lengths too.
    let dev = gensplit_models::Dev::default();
    let th = dfdx::prelude::TensorFromVec::tensor_from_vec(&dev, theta.clone(), (n,));
    assert_eq!(
        gensplit_hvp::Dual::<f64>::new(m.layout(), th, &theta[2..]).err(),
        Some(HvpError::DirectionLength {
            expected: n,
            got: n - 2
        })
    );
    // Dense matrix too large.
    let big = Cnn::new(&CnnConfig::default()).unwrap();
    let tb: Vec<f32> = big.init(0);
    assert_eq!(
        dense_hessian(&big, &tb, &image_data(1, 0), 0, Curvature::Hessian),
        Err(HvpError::TooLarge {
            n: 29_018,
            max: gensplit_hvp::DENSE_MAX_PARAMS
        })
    );
    // Messages name the numbers.
    let msg = HvpError::DirectionLength { expected: 5, got: 3 }.to_string();
    assert!(msg.contains('5') && msg.contains('3'), "{msg}");
}

/// The tangent of the logits is the JVP `J v` (central differences of the
/// logits), and the primal logits are the ordinary forward's.
#[test]
fn dual_forward_is_the_jvp() {
    use dfdx::prelude::{NoneTape, TensorFromVec};
    fn check<M: Model>(name: &str, m: &M, data: &Dataset) {
        let theta: Vec<f64> = m.init(9);
        let v = random_vec(theta.len(), 90);
        let dev = gensplit_models::Dev::default();
        let th = dev.tensor_from_vec(theta.clone(), (theta.len(),));
        let mut ops = gensplit_hvp::Dual::<f64, NoneTape>::new(m.layout(), th, &v).unwrap();
        let out = m.forward(&mut ops, &data.inputs()).unwrap();
        let z = out.primal.as_vec();
        let zdot = out.tangent.unwrap().as_vec();
        let z_ref = evaluate_logits(m, &theta, &data.inputs()).unwrap();
        assert_eq!(z, z_ref, "{name}: Dual primal logits differ from Primal's");
        let err = EPSILONS
            .iter()
            .map(|&e| {
                let at = |s: f64| {
                    let t: Vec<f64> = theta.iter().zip(&v).map(|(a, b)| a + s * b).collect();
                    evaluate_logits(m, &t, &data.inputs()).unwrap()
                };
                let (zp, zm) = (at(e), at(-e));
                let fd: Vec<f64> = zp.iter().zip(&zm).map(|(a, b)| (a - b) / (2.0 * e)).collect();
                rel_err(&zdot, &fd)
            })
            .fold(f64::INFINITY, f64::min);
        eprintln!("{name}: tangent ż vs FD of the logits, best relative error {err:.3e}");
        assert!(err <= 1e-8, "{name}: JVP relative error {err:e}");
    }
    check("cnn", &tiny_cnn(), &image_data(6, 9));
    check("mlp", &tiny_mlp(), &modadd_data(7));
}

/// The streamed loss and gradient equal the one-batch `loss_and_grad`.
#[test]
fn loss_grad_matches_models() {
    let m = tiny_cnn();
    let data = image_data(9, 10);
    let theta: Vec<f64> = m.init(10);
    let reference = loss_and_grad(&m, &theta, &data.inputs(), &data.labels).unwrap();
    let (loss, grad) = HessianOperator::new(&m, theta, &data, 4, Curvature::Hessian)
        .unwrap()
        .loss_grad()
        .unwrap();
    let (el, eg) = (
        (loss - reference.loss).abs() / reference.loss,
        rel_err(&grad, &reference.grad),
    );
    eprintln!("loss_grad (batches of 4) vs loss_and_grad: loss {el:.3e}, gradient {eg:.3e}");
    assert!(el <= 1e-13 && eg <= 1e-13);
}

/// The fused conv+ReLU of `Dual` (what the CNN's forward calls) against the
/// default composition `conv2d` then `relu` ([`gensplit_models::ops::Unfused`]):
/// same logits, tangent and exact H·v.
#[test]
fn fused_conv_relu_matches_unfused_in_dual() {
    use dfdx::prelude::*;
    use gensplit_models::ops::{one_hot, Unfused};
    let m = tiny_cnn();
    let data = image_data(11, 21);
    let theta: Vec<f64> = m.init(4);
    let v = random_vec(theta.len(), 44);
    let dev = gensplit_models::Dev::default();
    let run = |fused: bool| {
        let th = dev.tensor_from_vec(theta.clone(), (theta.len(),));
        let mut ops = gensplit_hvp::Dual::<f64>::new(m.layout(), th.clone(), &v).unwrap();
        let out = if fused {
            m.forward(&mut ops, &data.inputs()).unwrap()
        } else {
            m.forward(&mut Unfused(&mut ops), &data.inputs()).unwrap()
        };
        let zdot = out.tangent.unwrap();
        let (z, zd) = (out.primal.as_vec(), zdot.as_vec());
        let y = one_hot::<f64>(&dev, &data.labels, 10);
        let s = out.primal.softmax::<Axis<1>>();
        let hv = ((s - y) * zdot).sum::<(), _>().backward().get(&th).as_vec();
        (z, zd, hv)
    };
    let (z1, zd1, hv1) = run(true);
    let (z0, zd0, hv0) = run(false);
    assert!(rel_err(&z1, &z0) <= 1e-13, "logits {:e}", rel_err(&z1, &z0));
    assert!(rel_err(&zd1, &zd0) <= 1e-13, "tangent {:e}", rel_err(&zd1, &zd0));
    let e = rel_err(&hv1, &hv0);
    eprintln!("fused vs unfused conv+ReLU in Dual: H·v relative difference {e:.2e}");
    assert!(e <= 1e-12, "H·v {e:e}");
}

/// The operator's primal cache: products from it agree with uncached ones
/// (up to rounding), give the same bits on every call, respect the byte cap
/// (batches past it run uncached) and record nothing for a model without
/// conv layers.
#[test]
fn primal_cache_agrees_with_uncached_products() {
    // The tiny CNN, and the reference CNN (whose GEMMs are large enough to
    // be blocked differently with and without the cache).
    for m in [tiny_cnn(), Cnn::new(&CnnConfig::default()).unwrap()] {
        check_primal_cache(&m);
    }
    // The MLP has no conv layers: nothing is recorded.
    let (mlp, tokens) = (tiny_mlp(), modadd_data(7));
    let th: Vec<f64> = mlp.init(3);
    let op = HessianOperator::new(&mlp, th.clone(), &tokens, 8, Curvature::Hessian).unwrap();
    op.hvp(&random_vec(th.len(), 4)).unwrap();
    assert_eq!((op.cached_batches(), op.cache_bytes()), (0, 0));
}

fn check_primal_cache(m: &Cnn) {
    let data = image_data(10, 8);
    let theta: Vec<f64> = m.init(9);
    let v = random_vec(theta.len(), 90);
    for kind in [Curvature::Hessian, Curvature::GaussNewton] {
        let plain = HessianOperator::new(m, theta.clone(), &data, 3, kind)
            .unwrap()
            .with_cache_limit(0);
        let reference = plain.hvp(&v).unwrap();
        assert_eq!((plain.cached_batches(), plain.cache_bytes()), (0, 0));
        let cached = HessianOperator::new(m, theta.clone(), &data, 3, kind).unwrap();
        let first = cached.hvp(&v).unwrap();
        assert_eq!(cached.cached_batches(), 4, "{kind:?}: batches of 3, 3, 3, 1");
        let per_batch = cached.cache_bytes() / 4;
        assert!(per_batch > 0);
        let again = cached.hvp(&v).unwrap();
        // The first product recorded the cache, the second read it.
        assert_eq!(first, again, "{kind:?}: reading the cache changed the product");
        assert_eq!(cached.matvecs(), 2);
        // A read with another direction than the recording one: the cached
        // parts must not depend on v.
        let v2 = random_vec(theta.len(), 91);
        let (from_cache, uncached) = (cached.hvp(&v2).unwrap(), plain.hvp(&v2).unwrap());
        let err2 = rel_err(&from_cache, &uncached);
        assert!(
            err2 <= 1e-13,
            "{kind:?}: cache read with a different v differs by {err2:e}"
        );
        assert!(rel_err(&from_cache, &first) > 1e-3, "{kind:?}: v2 gave v's product");
        let err = rel_err(&first, &reference);
        eprintln!(
            "cnn ({} parameters) {kind:?}: cached vs uncached product, relative difference {err:.3e} ({} bytes cached)",
            theta.len(),
            cached.cache_bytes()
        );
        assert!(err <= 1e-13, "{kind:?}: cached product differs by {err:e}");
        // A cap that admits two of the four batches.
        let capped = HessianOperator::new(m, theta.clone(), &data, 3, kind)
            .unwrap()
            .with_cache_limit(2 * per_batch + per_batch / 2);
        let partial = capped.hvp(&v).unwrap();
        assert_eq!(capped.cached_batches(), 2, "{kind:?}: cap");
        assert!(rel_err(&partial, &reference) <= 1e-13);
        assert!(rel_err(&capped.hvp(&v).unwrap(), &reference) <= 1e-13);
    }
}

/// A non-finite product is an error naming the parameter block, from the
/// operator's checked entry points (`hvp`, `try_apply`, `curvature_vector`),
/// and Lanczos on the operator fails with its `NonFinite` error instead of
/// returning NaN eigenpairs.
#[test]
fn non_finite_products_are_errors() {
    let m = tiny_mlp();
    let data = modadd_data(7);
    let mut theta: Vec<f64> = m.init(2);
    let fc2 = m.layout().find("fc2.weight").unwrap().offset;
    theta[fc2 + 3] = f64::INFINITY;
    let op = HessianOperator::new(&m, theta.clone(), &data, 16, Curvature::Hessian).unwrap();
    let v = random_vec(theta.len(), 5);
    let e = op.hvp(&v).unwrap_err();
    assert!(matches!(e, HvpError::NonFinite { .. }), "{e:?}");
    assert!(e.to_string().contains("block `"), "{e}");
    let mut y = vec![0.0; theta.len()];
    assert!(matches!(op.try_apply(&v, &mut y), Err(HvpError::NonFinite { .. })));
    assert!(matches!(
        curvature_vector(&m, &theta, &data.inputs(), &data.labels, &v, Curvature::Hessian),
        Err(HvpError::NonFinite { .. })
    ));
    let params = gensplit_eigen::LanczosParams::new(2, gensplit_eigen::Which::LargestAlgebraic);
    let r = gensplit_eigen::lanczos(&op, &params, &mut gensplit_eigen::NoObserver);
    assert!(
        matches!(r, Err(gensplit_eigen::LanczosError::NonFinite { matvec: 1 })),
        "{r:?}"
    );
    // A finite θ with an infinite direction entry: the block of the product
    // that goes non-finite is named.
    let theta: Vec<f64> = m.init(2);
    let op = HessianOperator::new(&m, theta.clone(), &data, 16, Curvature::Hessian).unwrap();
    let mut v = vec![0.0; theta.len()];
    v[fc2] = f64::NAN;
    match op.hvp(&v) {
        Err(HvpError::NonFinite { block, index }) => {
            let b = m.layout().blocks().iter().find(|b| b.name == block).unwrap();
            assert!(b.range().contains(&index));
        }
        other => panic!("expected NonFinite, got {other:?}"),
    }
}

/// `try_apply` checks both lengths; `apply` (the trait method, whose
/// contract is documented `# Panics`) panics with the checked error's text.
#[test]
fn try_apply_checks_lengths() {
    let m = tiny_mlp();
    let data = modadd_data(7);
    let theta: Vec<f64> = m.init(2);
    let n = theta.len();
    let op = HessianOperator::new(&m, theta, &data, 0, Curvature::Hessian).unwrap();
    let mut y = vec![0.0; n];
    assert_eq!(
        op.try_apply(&vec![0.0; n - 1], &mut y),
        Err(HvpError::DirectionLength {
            expected: n,
            got: n - 1
        })
    );
    let mut short = vec![0.0; n + 2];
    assert_eq!(
        op.try_apply(&vec![0.0; n], &mut short),
        Err(HvpError::DirectionLength {
            expected: n,
            got: n + 2
        })
    );
    op.try_apply(&random_vec(n, 1), &mut y).unwrap();
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| op.apply(&[0.0; 3], &mut y)));
    assert!(r.is_err());
}

/// A primal cache recorded on one batch and handed to a pass over another
/// batch (or a call site without the fused ReLU) is reported as
/// `HvpError::CacheMismatch`; the pass itself then runs uncached and its
/// values stay right.
#[test]
fn a_cache_of_another_batch_is_an_error() {
    use dfdx::prelude::TensorFromVec;
    use gensplit_hvp::{Dual, PrimalCache};
    let m = tiny_cnn();
    let theta: Vec<f64> = m.init(3);
    let v = random_vec(theta.len(), 4);
    let dev = gensplit_models::Dev::default();
    let cache = PrimalCache::new();
    let pass = |data: &Dataset, cache: Option<&PrimalCache<f64>>| {
        let th = dev.tensor_from_vec(theta.clone(), (theta.len(),));
        let mut ops = Dual::<f64>::new(m.layout(), th, &v).unwrap();
        if let Some(c) = cache {
            ops = ops.with_cache(c);
        }
        let out = m.forward(&mut ops, &data.inputs()).unwrap();
        (ops.finish(), out.tangent.unwrap().as_vec())
    };
    let (a, b) = (image_data(3, 1), image_data(5, 2));
    let (ok, _) = pass(&a, Some(&cache));
    ok.unwrap();
    let (reused, zdot) = pass(&b, Some(&cache));
    match reused {
        Err(HvpError::CacheMismatch { conv: 0, reason }) => assert!(reason.contains("batch"), "{reason}"),
        other => panic!("expected CacheMismatch, got {other:?}"),
    }
    let (_, reference) = pass(&b, None);
    assert_eq!(zdot, reference);
}

/// `Dual` rejects a forward that takes one parameter block twice (dfdx's
/// slice backward would drop one use's gradient), like `Primal`.
#[test]
fn dual_rejects_a_block_used_twice() {
    use gensplit_models::{BlockId, Float, Ops, ParamLayout};
    /// Embedding pairs (width 2), then the same square layer twice.
    struct Twice(ParamLayout, BlockId, BlockId);
    impl Model for Twice {
        fn layout(&self) -> &ParamLayout {
            &self.0
        }
        fn classes(&self) -> usize {
            2
        }
        fn check_inputs(&self, inputs: &Inputs) -> Result<usize, ModelError> {
            match inputs {
                Inputs::Tokens { a, .. } => Ok(a.len()),
                Inputs::Images { .. } => Err(ModelError::Inputs("tokens".into())),
            }
        }
        fn forward<E: Float, O: Ops<E>>(&self, ops: &mut O, inputs: &Inputs) -> Result<O::Act, ModelError> {
            let Inputs::Tokens { a, b } = inputs else {
                return Err(ModelError::Inputs("tokens".into()));
            };
            let x = ops.embed_pair(0, a, b);
            let x = ops.linear(x, self.1, self.2);
            Ok(ops.linear(x, self.1, self.2))
        }
        fn init<E: Float>(&self, _: u64) -> Vec<E> {
            (0..self.0.len())
                .map(|i| E::of(((i * 7) % 5) as f64 / 5.0 - 0.4))
                .collect()
        }
        fn input_features(&self) -> usize {
            1
        }
    }
    let mut layout = ParamLayout::new();
    layout.push("embed", &[3, 1]);
    let w = layout.push("sq.weight", &[2, 2]);
    let b = layout.push("sq.bias", &[2]);
    let m = Twice(layout, w, b);
    let theta: Vec<f64> = m.init(0);
    let v = random_vec(theta.len(), 1);
    let inputs = Inputs::Tokens {
        a: &[0, 1, 2],
        b: &[2, 1, 0],
    };
    for kind in [Curvature::Hessian, Curvature::GaussNewton] {
        let e = curvature_vector(&m, &theta, &inputs, &[0, 1, 1], &v, kind).unwrap_err();
        assert_eq!(
            e,
            HvpError::Model(ModelError::BlockReused {
                block: "sq.weight".into()
            })
        );
    }
}
