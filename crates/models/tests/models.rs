//! Integration tests for gensplit-models: the conv op against a naive
//! reference and finite differences, and whole-model gradients against
//! central finite differences in f64.

use dfdx::prelude::*;
use gensplit_models::conv::{conv2d, forward_raw, reference_forward, ConvGeom};
use gensplit_models::ops::ce_and_correct;
use gensplit_models::*;
use proptest::prelude::*;
use rand::{Rng, SeedableRng};

fn rand_vec(rng: &mut rand_chacha::ChaCha8Rng, n: usize) -> Vec<f64> {
    (0..n).map(|_| rng.gen_range(-1.0..1.0)).collect()
}

fn geom_strategy() -> impl Strategy<Value = (ConvGeom, usize, u64)> {
    (
        1usize..4,
        1usize..9,
        1usize..9,
        1usize..5,
        1usize..4,
        1usize..3,
        0usize..3,
        1usize..4,
        any::<u64>(),
    )
        .prop_map(|(c_in, h, w, c_out, k, stride, pad, n, seed)| {
            (
                ConvGeom {
                    c_in,
                    h,
                    w,
                    c_out,
                    k,
                    stride,
                    pad,
                },
                n,
                seed,
            )
        })
        .prop_filter("kernel must fit", |(g, _, _)| g.checked_out_hw().is_some())
}

/// `Σ conv(x, w, b) ⊙ r` through the dfdx op, with gradients for x, w, b.
fn op_grads(g: &ConvGeom, x: &[f64], w: &[f64], b: &[f64], r: &[f64], n: usize) -> (f64, Vec<f64>, Vec<f64>, Vec<f64>) {
    let dev = Cpu::default();
    let xt = dev.tensor_from_vec(x.to_vec(), (n, g.in_features()));
    let wt = dev.tensor_from_vec(w.to_vec(), (w.len(),));
    let bt = dev.tensor_from_vec(b.to_vec(), (b.len(),));
    let rt = dev.tensor_from_vec(r.to_vec(), (n, g.out_features()));
    let y = conv2d(
        xt.leaky_trace(),
        wt.retaped::<OwnedTape<f64, Cpu>>(),
        bt.retaped::<OwnedTape<f64, Cpu>>(),
        g,
    );
    let l = (y * rt).sum::<Rank0, _>();
    let lv = l.array();
    let grads = l.backward();
    (
        lv,
        grads.get(&xt).as_vec(),
        grads.get(&wt).as_vec(),
        grads.get(&bt).as_vec(),
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn conv_forward_matches_naive((g, n, seed) in geom_strategy()) {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let x = rand_vec(&mut rng, n * g.in_features());
        let w = rand_vec(&mut rng, g.weight_len());
        let b = rand_vec(&mut rng, g.c_out);
        let y = forward_raw(&g, &x, &w, &b, n);
        let yr = reference_forward(&g, &x, &w, &b, n);
        for (a, r) in y.iter().zip(&yr) {
            prop_assert!((a - r).abs() <= 1e-12 * (1.0 + r.abs()), "{a} vs {r}");
        }
        // f32 path agrees to f32 precision
        let xf: Vec<f32> = x.iter().map(|&v| v as f32).collect();
        let wf: Vec<f32> = w.iter().map(|&v| v as f32).collect();
        let bf: Vec<f32> = b.iter().map(|&v| v as f32).collect();
        let yf = forward_raw(&g, &xf, &wf, &bf, n);
        for (a, r) in yf.iter().zip(&yr) {
            prop_assert!((*a as f64 - r).abs() <= 1e-4 * (1.0 + r.abs()));
        }
    }

    #[test]
    fn conv_gradients_match_finite_differences((g, n, seed) in geom_strategy()) {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed ^ 7);
        let x = rand_vec(&mut rng, n * g.in_features());
        let w = rand_vec(&mut rng, g.weight_len());
        let b = rand_vec(&mut rng, g.c_out);
        let r = rand_vec(&mut rng, n * g.out_features());
        let (l0, dx, dw, db) = op_grads(&g, &x, &w, &b, &r, n);
        let f = |x: &[f64], w: &[f64], b: &[f64]| -> f64 {
            reference_forward(&g, x, w, b, n).iter().zip(&r).map(|(a, b)| a * b).sum()
        };
        prop_assert!((l0 - f(&x, &w, &b)).abs() < 1e-10 * (1.0 + l0.abs()));
        let eps = 1e-5;
        let check = |which: usize, analytic: &[f64]| -> Result<(), TestCaseError> {
            let base = [&x, &w, &b][which];
            for i in 0..base.len() {
                let mut p = base.clone();
                let mut m = base.clone();
                p[i] += eps;
                m[i] -= eps;
                let (fp, fm) = match which {
                    0 => (f(&p, &w, &b), f(&m, &w, &b)),
                    1 => (f(&x, &p, &b), f(&x, &m, &b)),
                    _ => (f(&x, &w, &p), f(&x, &w, &m)),
                };
                let fd = (fp - fm) / (2.0 * eps);
                prop_assert!((fd - analytic[i]).abs() <= 1e-7 * (1.0 + fd.abs()), "operand {which} index {i}: fd {fd} vs {}", analytic[i]);
            }
            Ok(())
        };
        check(0, &dx)?;
        check(1, &dw)?;
        check(2, &db)?;
    }
}

fn tiny_cnn() -> Cnn {
    Cnn::new(&CnnConfig {
        channels: [2, 3, 2],
        hidden: 5,
        classes: 10,
    })
    .unwrap()
}

/// Central differences of the loss in f64 along random directions: a smooth
/// check that does not depend on per-coordinate kinks being avoided.
fn directional_fd_check<M: Model>(model: &M, theta: &[f64], inputs: &Inputs, labels: &[u32], seed: u64) {
    let g = loss_and_grad(model, theta, inputs, labels).unwrap();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    for _ in 0..3 {
        let v = rand_vec(&mut rng, theta.len());
        let gv: f64 = g.grad.iter().zip(&v).map(|(a, b)| a * b).sum();
        let loss_at = |t: f64| {
            let th: Vec<f64> = theta.iter().zip(&v).map(|(a, b)| a + t * b).collect();
            let logits = evaluate_logits(model, &th, inputs).unwrap();
            ce_and_correct(&logits, labels, model.classes()).0
        };
        // several step sizes: the best must agree (a kink crossing spoils
        // only some of them)
        let best = [1e-4, 1e-5, 1e-6]
            .iter()
            .map(|&eps| ((loss_at(eps) - loss_at(-eps)) / (2.0 * eps) - gv).abs() / (1e-12 + gv.abs()))
            .fold(f64::INFINITY, f64::min);
        assert!(best < 1e-6, "relative error {best} (g·v = {gv})");
    }
}

#[test]
fn cnn_gradient_matches_finite_differences() {
    let cnn = tiny_cnn();
    let theta: Vec<f64> = cnn.init(3);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    let pixels: Vec<f32> = (0..4 * 784).map(|_| rng.gen::<f32>()).collect();
    let labels = [1u32, 4, 9, 0];
    directional_fd_check(&cnn, &theta, &Inputs::Images { pixels: &pixels }, &labels, 11);
    // the loss matches an independent cross-entropy on the logits
    let g = loss_and_grad(&cnn, &theta, &Inputs::Images { pixels: &pixels }, &labels).unwrap();
    let logits = evaluate_logits(&cnn, &theta, &Inputs::Images { pixels: &pixels }).unwrap();
    let (ce, correct) = ce_and_correct(&logits, &labels, 10);
    assert!((g.loss - ce).abs() < 1e-12);
    assert_eq!(g.correct, correct);
}

#[test]
fn mlp_gradient_matches_finite_differences() {
    let mlp = ModMlp::new(&ModMlpConfig {
        p: 7,
        embed: 3,
        hidden: 6,
    })
    .unwrap();
    let theta: Vec<f64> = mlp.init(5);
    let a = [0u32, 1, 2, 3, 6, 5];
    let b = [6u32, 5, 2, 1, 0, 3];
    let labels: Vec<u32> = a.iter().zip(&b).map(|(x, y)| (x + y) % 7).collect();
    directional_fd_check(&mlp, &theta, &Inputs::Tokens { a: &a, b: &b }, &labels, 12);
}

#[test]
fn reference_cnn_has_29018_parameters() {
    let cnn = Cnn::new(&CnnConfig::default()).unwrap();
    assert_eq!(cnn.layout().len(), 29_018);
    let names: Vec<&str> = cnn.layout().blocks().iter().map(|b| b.name.as_str()).collect();
    assert_eq!(names[0], "conv1.weight");
    assert_eq!(cnn.layout().find("fc1.weight").unwrap().shape, vec![32, 784]);
}

#[test]
fn bad_inputs_are_typed_errors() {
    let cnn = tiny_cnn();
    let theta: Vec<f32> = cnn.init(0);
    let px = vec![0.0f32; 783];
    assert!(matches!(
        loss_and_grad(&cnn, &theta, &Inputs::Images { pixels: &px }, &[0]),
        Err(ModelError::Inputs(_))
    ));
    let px = vec![0.0f32; 784];
    assert!(matches!(
        loss_and_grad(&cnn, &theta, &Inputs::Images { pixels: &px }, &[10]),
        Err(ModelError::LabelRange { .. })
    ));
    assert!(matches!(
        loss_and_grad(&cnn, &theta[1..], &Inputs::Images { pixels: &px }, &[1]),
        Err(ModelError::ThetaLength { .. })
    ));
    let mlp = ModMlp::new(&ModMlpConfig {
        p: 5,
        embed: 2,
        hidden: 3,
    })
    .unwrap();
    let th: Vec<f32> = mlp.init(0);
    assert!(matches!(
        evaluate_logits(&mlp, &th, &Inputs::Tokens { a: &[5], b: &[0] }),
        Err(ModelError::Inputs(_))
    ));
    assert!(ModMlp::new(&ModMlpConfig {
        p: 1,
        embed: 2,
        hidden: 3
    })
    .is_err());
}

#[test]
fn gradients_are_deterministic_and_f32_agrees_with_f64() {
    let cnn = tiny_cnn();
    let t64: Vec<f64> = cnn.init(9);
    let t32: Vec<f32> = cnn.init(9);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(2);
    let pixels: Vec<f32> = (0..20 * 784).map(|_| rng.gen::<f32>()).collect();
    let labels: Vec<u32> = (0..20).map(|i| i % 10).collect();
    let inp = Inputs::Images { pixels: &pixels };
    let a = loss_and_grad(&cnn, &t32, &inp, &labels).unwrap();
    let b = loss_and_grad(&cnn, &t32, &inp, &labels).unwrap();
    assert_eq!(a.grad, b.grad);
    let c = loss_and_grad(&cnn, &t64, &inp, &labels).unwrap();
    let num: f64 = a
        .grad
        .iter()
        .zip(&c.grad)
        .map(|(x, y)| (*x as f64 - y).powi(2))
        .sum::<f64>()
        .sqrt();
    let den: f64 = c.grad.iter().map(|y| y * y).sum::<f64>().sqrt();
    assert!(
        num / den < 1e-4,
        "f32 vs f64 gradient relative difference {}",
        num / den
    );
}

#[test]
fn skipping_the_input_gradient_keeps_parameter_gradients() {
    let g = ConvGeom {
        c_in: 2,
        h: 6,
        w: 5,
        c_out: 3,
        k: 3,
        stride: 2,
        pad: 1,
    };
    let n = 3;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(4);
    let (x, w, b) = (
        rand_vec(&mut rng, n * g.in_features()),
        rand_vec(&mut rng, g.weight_len()),
        rand_vec(&mut rng, 3),
    );
    let r = rand_vec(&mut rng, n * g.out_features());
    let run = |want_dx: bool| {
        let dev = Cpu::default();
        let xt = dev.tensor_from_vec(x.clone(), (n, g.in_features()));
        let wt = dev.tensor_from_vec(w.clone(), (w.len(),));
        let bt = dev.tensor_from_vec(b.clone(), (b.len(),));
        let rt = dev.tensor_from_vec(r.clone(), (n, g.out_features()));
        let y = gensplit_models::conv::conv2d_with(
            xt.leaky_trace(),
            wt.retaped::<OwnedTape<f64, Cpu>>(),
            bt.retaped::<OwnedTape<f64, Cpu>>(),
            &g,
            want_dx,
        );
        let grads = (y * rt).sum::<Rank0, _>().backward();
        (
            grads.get(&xt).as_vec(),
            grads.get(&wt).as_vec(),
            grads.get(&bt).as_vec(),
        )
    };
    let (dx1, dw1, db1) = run(true);
    let (dx0, dw0, db0) = run(false);
    assert_eq!((dw1, db1), (dw0, db0));
    assert!(dx1.iter().any(|&v| v != 0.0));
    assert!(dx0.iter().all(|&v| v == 0.0));
}

/// Values and gradients of `L = Σ z ⊙ r + Σ ż ⊙ rd` for the fused dual conv
/// ([`conv2d_dual`]) against the unfused oracle
/// `z = conv(x, W, b)`, `ż = conv(ẋ, W, 0) + conv(x, V, c)`.
/// Returns the max relative discrepancy over z, ż and the gradients of x, ẋ,
/// W and b (those that exist in the case).
fn fused_dual_discrepancy(g: &ConvGeom, n: usize, seed: u64, with_xdot: bool, taped_tangent: bool) -> f64 {
    use gensplit_models::conv::conv2d_dual;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let (fin, fout) = (g.in_features(), g.out_features());
    let x = rand_vec(&mut rng, n * fin);
    let xd = rand_vec(&mut rng, n * fin);
    let (w, v) = (rand_vec(&mut rng, g.weight_len()), rand_vec(&mut rng, g.weight_len()));
    let (b, c) = (rand_vec(&mut rng, g.c_out), rand_vec(&mut rng, g.c_out));
    let (r, rd) = (rand_vec(&mut rng, n * fout), rand_vec(&mut rng, n * fout));
    let dev = Cpu::default();
    type Tp = OwnedTape<f64, Cpu>;
    let xt = dev.tensor_from_vec(x.clone(), (n, fin));
    let xdt = dev.tensor_from_vec(xd.clone(), (n, fin));
    let wt = dev.tensor_from_vec(w.clone(), (w.len(),));
    let bt = dev.tensor_from_vec(b.clone(), (b.len(),));
    let vt = dev.tensor_from_vec(v.clone(), (v.len(),));
    let ct = dev.tensor_from_vec(c.clone(), (c.len(),));
    let rt = dev.tensor_from_vec(r.clone(), (n, fout));
    let rdt = dev.tensor_from_vec(rd.clone(), (n, fout));
    let zero = dev.zeros_like(&(g.c_out,));

    // Fused.
    let (fz, fzd, fgrads) = if taped_tangent {
        let xdot = with_xdot.then(|| xdt.leaky_trace());
        let (z, zd) = conv2d_dual(
            xt.leaky_trace(),
            xdot,
            wt.retaped::<Tp>(),
            &v,
            bt.retaped::<Tp>(),
            &c,
            g,
            false,
            None,
        );
        let (zv, zdv) = (z.as_vec(), zd.as_vec());
        let l = (z * rt.clone()).sum::<Rank0, _>() + (zd * rdt.clone()).sum::<Rank0, _>();
        (zv, zdv, l.backward())
    } else {
        let xdot = with_xdot.then(|| xdt.clone());
        let (z, zd) = conv2d_dual(
            xt.leaky_trace(),
            xdot,
            wt.retaped::<Tp>(),
            &v,
            bt.retaped::<Tp>(),
            &c,
            g,
            false,
            None,
        );
        let (zv, zdv) = (z.as_vec(), zd.as_vec());
        let l = (z * rt.clone()).sum::<Rank0, _>();
        (zv, zdv, l.backward())
    };
    // Unfused oracle.
    let z = gensplit_models::conv::conv2d_with(xt.leaky_trace(), wt.retaped::<Tp>(), bt.retaped::<Tp>(), g, with_xdot);
    let (uz, uzd, ugrads) = match (with_xdot, taped_tangent) {
        (true, true) => {
            let zd = conv2d(xdt.leaky_trace(), wt.retaped::<Tp>(), zero, g) + conv2d(xt.retaped::<Tp>(), vt, ct, g);
            let (zv, zdv) = (z.as_vec(), zd.as_vec());
            let l = (z * rt).sum::<Rank0, _>() + (zd * rdt).sum::<Rank0, _>();
            (zv, zdv, l.backward())
        }
        (true, false) => {
            let zd = conv2d(xdt.clone(), wt.clone(), zero, g) + conv2d(xt.clone(), vt, ct, g);
            let (zv, zdv) = (z.as_vec(), zd.as_vec());
            (zv, zdv, (z * rt).sum::<Rank0, _>().backward())
        }
        (false, _) => {
            let zd = conv2d(xt.clone(), vt, ct, g);
            let (zv, zdv) = (z.as_vec(), zd.as_vec());
            (zv, zdv, (z * rt).sum::<Rank0, _>().backward())
        }
    };
    let rel = |a: &[f64], b: &[f64]| {
        assert_eq!(a.len(), b.len());
        let scale = b.iter().fold(1e-300f64, |m, v| m.max(v.abs()));
        a.iter().zip(b).fold(0.0f64, |m, (x, y)| m.max((x - y).abs() / scale))
    };
    let mut err = rel(&fz, &uz).max(rel(&fzd, &uzd));
    err = err.max(rel(&fgrads.get(&wt).as_vec(), &ugrads.get(&wt).as_vec()));
    err = err.max(rel(&fgrads.get(&bt).as_vec(), &ugrads.get(&bt).as_vec()));
    if with_xdot {
        err = err.max(rel(&fgrads.get(&xt).as_vec(), &ugrads.get(&xt).as_vec()));
        if taped_tangent {
            err = err.max(rel(&fgrads.get(&xdt).as_vec(), &ugrads.get(&xdt).as_vec()));
        }
    }
    err
}

#[test]
fn fused_dual_conv_matches_unfused() {
    let geoms = [
        (1, 6, 5, 2, 3, 1, 1),
        (3, 7, 8, 4, 3, 2, 1),
        (2, 5, 5, 3, 2, 1, 0),
        (2, 9, 7, 2, 3, 2, 2),
        (1, 28, 28, 8, 3, 1, 1),
    ];
    for (i, &(c_in, h, w, c_out, k, stride, pad)) in geoms.iter().enumerate() {
        let g = ConvGeom {
            c_in,
            h,
            w,
            c_out,
            k,
            stride,
            pad,
        };
        for n in [1, 3, 19] {
            for (with_xdot, taped) in [(true, true), (true, false), (false, true), (false, false)] {
                let e = fused_dual_discrepancy(&g, n, 100 + i as u64, with_xdot, taped);
                assert!(
                    e < 1e-12,
                    "geom {g:?} n {n} xdot {with_xdot} taped {taped}: rel err {e:e}"
                );
            }
        }
    }
}

#[test]
fn fused_dual_conv_is_deterministic() {
    use gensplit_models::conv::{dual_backward_raw, dual_forward_raw};
    let g = ConvGeom {
        c_in: 3,
        h: 9,
        w: 9,
        c_out: 4,
        k: 3,
        stride: 2,
        pad: 1,
    };
    let n = 37;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    let x = rand_vec(&mut rng, n * g.in_features());
    let xd = rand_vec(&mut rng, n * g.in_features());
    let (w, v) = (rand_vec(&mut rng, g.weight_len()), rand_vec(&mut rng, g.weight_len()));
    let (b, c) = (rand_vec(&mut rng, 4), rand_vec(&mut rng, 4));
    let gz = rand_vec(&mut rng, n * g.out_features());
    let gzd = rand_vec(&mut rng, n * g.out_features());
    let run = || {
        let (z, zd) = dual_forward_raw(&g, &x, Some(&xd), &w, &v, &b, &c, n);
        let mut dx = vec![0.0; x.len()];
        let mut dxd = vec![0.0; x.len()];
        let (dw, db) = dual_backward_raw(
            &g,
            &x,
            Some(&xd),
            &w,
            &v,
            &gz,
            Some(&gzd),
            n,
            Some(&mut dx),
            Some(&mut dxd),
        );
        (z, zd, dx, dxd, dw, db)
    };
    let one = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap()
        .install(run);
    let many = rayon::ThreadPoolBuilder::new()
        .num_threads(3)
        .build()
        .unwrap()
        .install(run);
    assert_eq!(one, many);
}

/// The conv kernels keep their work buffers in a per-thread pool between
/// calls. A call after one that left NaN in every buffer (NaN inputs and
/// weights, a different batch size) gives the same bits as a call on fresh
/// buffers: no buffer is read before it is written, and the padded input's
/// zero border survives reuse.
#[test]
fn reused_conv_buffers_change_no_result() {
    use gensplit_models::conv::{dual_backward_raw, dual_forward_raw};
    let g = ConvGeom {
        c_in: 2,
        h: 7,
        w: 7,
        c_out: 3,
        k: 3,
        stride: 2,
        pad: 1,
    };
    let n = 19;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
    let mut draw = |len: usize| rand_vec(&mut rng, len);
    let (x, xd) = (draw(n * g.in_features()), draw(n * g.in_features()));
    let (w, v, b, c) = (draw(g.weight_len()), draw(g.weight_len()), draw(3), draw(3));
    let (gz, gzd) = (draw(n * g.out_features()), draw(n * g.out_features()));
    let run = |x: &[f64], w: &[f64], n: usize| {
        let y = forward_raw(&g, x, w, &b, n);
        let (z, zd) = dual_forward_raw(&g, x, Some(&xd[..x.len()]), w, &v, &b, &c, n);
        let mut dx = vec![0.0; x.len()];
        let mut dxd = vec![0.0; x.len()];
        let fo = n * g.out_features();
        let (dw, db) = dual_backward_raw(
            &g,
            x,
            Some(&xd[..x.len()]),
            w,
            &v,
            &gz[..fo],
            Some(&gzd[..fo]),
            n,
            Some(&mut dx),
            Some(&mut dxd),
        );
        (y, z, zd, dx, dxd, dw, db)
    };
    let pool = || rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
    let fresh = pool().install(|| run(&x, &w, n));
    let reused = pool().install(|| {
        let m = 5;
        let poison = run(&vec![f64::NAN; m * g.in_features()], &vec![f64::NAN; w.len()], m);
        assert!(
            poison.0.iter().all(|v| v.is_nan()),
            "the poisoning call must fill its buffers with NaN"
        );
        run(&x, &w, n)
    });
    assert!(fresh.0.iter().all(|v| v.is_finite()));
    assert_eq!(fresh, reused);
}

/// The fused conv+ReLU op (what the CNN's forward calls through
/// `Primal::conv2d_relu`) against the default composition `conv2d` then
/// dfdx's `relu` ([`gensplit_models::ops::Unfused`]): same logits and
/// gradient, on the tiny CNN (first conv without input gradient, later ones
/// with).
#[test]
fn fused_conv_relu_matches_conv_then_relu() {
    use gensplit_models::ops::Unfused;
    let cnn = tiny_cnn();
    let theta: Vec<f64> = cnn.init(8);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(80);
    let n = 13;
    let pixels: Vec<f32> = (0..n * 784).map(|_| rng.gen()).collect();
    let labels: Vec<u32> = (0..n).map(|_| rng.gen_range(0..10)).collect();
    let inputs = Inputs::Images { pixels: &pixels };
    let dev = Cpu::default();
    let run = |fused: bool| {
        let th = dev.tensor_from_vec(theta.clone(), (theta.len(),));
        let mut ops: Primal<f64, OwnedTape<f64, Cpu>> = Primal::new(cnn.layout(), th.clone());
        let logits = if fused {
            cnn.forward(&mut ops, &inputs).unwrap()
        } else {
            cnn.forward(&mut Unfused(&mut ops), &inputs).unwrap()
        };
        let z = logits.as_vec();
        let target = gensplit_models::ops::one_hot::<f64>(&dev, &labels, 10);
        let g = cross_entropy_with_logits_loss(logits, target)
            .backward()
            .get(&th)
            .as_vec();
        (z, g)
    };
    let ((z1, g1), (z0, g0)) = (run(true), run(false));
    let rel = |a: &[f64], b: &[f64]| {
        let s = b.iter().fold(1e-300f64, |m, v| m.max(v.abs()));
        a.iter().zip(b).fold(0.0f64, |m, (x, y)| m.max((x - y).abs() / s))
    };
    assert!(rel(&z1, &z0) <= 1e-13, "logits {:e}", rel(&z1, &z0));
    assert!(rel(&g1, &g0) <= 1e-12, "gradient {:e}", rel(&g1, &g0));
    assert!(g1.iter().any(|&v| v != 0.0));
}

/// One pass of [`conv2d_dual`] with a taped tangent and a fused ReLU:
/// `(a, ȧ, ∂L/∂x, ∂L/∂ẋ, ∂L/∂W, ∂L/∂b)` for `L = Σ a ⊙ r + Σ ȧ ⊙ rd`.
#[allow(clippy::too_many_arguments, clippy::type_complexity)]
fn cached_dual_pass(
    g: &ConvGeom,
    n: usize,
    (x, xd, w, b): (&[f64], Option<&[f64]>, &[f64], &[f64]),
    (v, c): (&[f64], &[f64]),
    (r, rd): (&[f64], &[f64]),
    cache: Option<&std::sync::Arc<gensplit_models::conv::DualConvCache<f64>>>,
) -> [Vec<f64>; 6] {
    use gensplit_models::conv::conv2d_dual;
    type Tp = OwnedTape<f64, Cpu>;
    let dev = Cpu::default();
    let (fin, fout) = (g.in_features(), g.out_features());
    let xt = dev.tensor_from_vec(x.to_vec(), (n, fin));
    let xdt = dev.tensor_from_vec(xd.unwrap_or(x).to_vec(), (n, fin));
    let wt = dev.tensor_from_vec(w.to_vec(), (w.len(),));
    let bt = dev.tensor_from_vec(b.to_vec(), (b.len(),));
    let (a, ad) = conv2d_dual(
        xt.leaky_trace(),
        xd.map(|_| xdt.leaky_trace()),
        wt.retaped::<Tp>(),
        v,
        bt.retaped::<Tp>(),
        c,
        g,
        true,
        cache,
    );
    let (av, adv) = (a.as_vec(), ad.as_vec());
    let l = (a * dev.tensor_from_vec(r.to_vec(), (n, fout))).sum::<Rank0, _>()
        + (ad * dev.tensor_from_vec(rd.to_vec(), (n, fout))).sum::<Rank0, _>();
    let grads = l.backward();
    let dx = if xd.is_some() {
        grads.get(&xt).as_vec()
    } else {
        Vec::new()
    };
    let dxd = if xd.is_some() {
        grads.get(&xdt).as_vec()
    } else {
        Vec::new()
    };
    [av, adv, dx, dxd, grads.get(&wt).as_vec(), grads.get(&bt).as_vec()]
}

/// The dual conv's cache: recorded on one pass (direction v₀, tangent ẋ₀,
/// incoming ∂L/∂a = r₀), then read on a pass with another direction,
/// tangent and ∂L/∂a but the same ∂L/∂ȧ (as in a Hessian-vector product at
/// a fixed θ and batch, where only ∂L/∂ȧ is v-independent). Every output
/// and gradient equals the uncached pass with the second inputs.
#[test]
fn cached_dual_conv_matches_uncached() {
    use gensplit_models::conv::DualConvCache;
    for (i, &(c_in, h, w, c_out, stride)) in [(1, 8, 8, 3, 1), (3, 9, 7, 4, 2), (2, 28, 28, 8, 2)].iter().enumerate() {
        let g = ConvGeom {
            c_in,
            h,
            w,
            c_out,
            k: 3,
            stride,
            pad: 1,
        };
        for (n, with_xdot) in [(1, true), (11, true), (11, false)] {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(200 + i as u64);
            let (fin, fout) = (g.in_features(), g.out_features());
            let x = rand_vec(&mut rng, n * fin);
            let (wv, bv) = (rand_vec(&mut rng, g.weight_len()), rand_vec(&mut rng, c_out));
            let rd = rand_vec(&mut rng, n * fout);
            let draw = |rng: &mut rand_chacha::ChaCha8Rng| {
                (
                    rand_vec(rng, n * fin),
                    rand_vec(rng, g.weight_len()),
                    rand_vec(rng, c_out),
                    rand_vec(rng, n * fout),
                )
            };
            let (xd0, v0, c0, r0) = draw(&mut rng);
            let (xd1, v1, c1, r1) = draw(&mut rng);
            let xd_of = |xd: &[f64]| with_xdot.then(|| xd.to_vec());
            let cache = std::sync::Arc::new(DualConvCache::new());
            let (xd0, xd1) = (xd_of(&xd0), xd_of(&xd1));
            let pass = |xd: &Option<Vec<f64>>, v: &[f64], c: &[f64], r: &[f64], cache| {
                cached_dual_pass(&g, n, (&x, xd.as_deref(), &wv, &bv), (v, c), (r, &rd), cache)
            };
            let recording = pass(&xd0, &v0, &c0, &r0, Some(&cache));
            assert!(cache.has_primal() && cache.has_tangent_grad() == with_xdot);
            assert_eq!(
                recording,
                pass(&xd0, &v0, &c0, &r0, None),
                "the recording pass is the uncached pass"
            );
            let hit = pass(&xd1, &v1, &c1, &r1, Some(&cache));
            let plain = pass(&xd1, &v1, &c1, &r1, None);
            for (k, (a, b)) in hit.iter().zip(&plain).enumerate() {
                assert_eq!(a.len(), b.len());
                let scale = b.iter().fold(1e-300f64, |m, v| m.max(v.abs()));
                let err = a.iter().zip(b).fold(0.0f64, |m, (p, q)| m.max((p - q).abs() / scale));
                assert!(
                    err <= 1e-13,
                    "geom {g:?} n {n} xdot {with_xdot}: output {k} differs by {err:e}"
                );
            }
        }
    }
}

/// `Model::forward` on the wrong kind of inputs is a typed error, not a
/// panic, for both models and through `AnyModel`.
#[test]
fn forward_on_the_wrong_input_kind_is_an_error() {
    let dev = Cpu::default();
    let cnn = tiny_cnn();
    let th: Vec<f64> = cnn.init(0);
    let mut ops: Primal<f64, NoneTape> = Primal::new(cnn.layout(), dev.tensor_from_vec(th.clone(), (th.len(),)));
    let tokens = Inputs::Tokens { a: &[1], b: &[2] };
    assert!(matches!(cnn.forward(&mut ops, &tokens), Err(ModelError::Inputs(_))));
    let any = AnyModel::Cnn(cnn.clone());
    assert!(matches!(any.forward(&mut ops, &tokens), Err(ModelError::Inputs(_))));
    let mlp = ModMlp::new(&ModMlpConfig {
        p: 5,
        embed: 2,
        hidden: 3,
    })
    .unwrap();
    let th: Vec<f64> = mlp.init(0);
    let mut ops: Primal<f64, NoneTape> = Primal::new(mlp.layout(), dev.tensor_from_vec(th.clone(), (th.len(),)));
    let px = vec![0.0f32; 784];
    let e = mlp.forward(&mut ops, &Inputs::Images { pixels: &px }).err();
    assert!(matches!(e, Some(ModelError::Inputs(_))), "{e:?}");
    // The checked constructor: θ of the wrong length.
    let short = dev.tensor_from_vec(th[1..].to_vec(), (th.len() - 1,));
    assert!(matches!(
        Primal::<f64, NoneTape>::try_new(mlp.layout(), short),
        Err(ModelError::ThetaLength { .. })
    ));
}

/// A model whose forward takes one parameter block twice: `x W₁ᵀ + b`,
/// ReLU, then the *same* `W₁`, `b` again (square layer).
struct TwiceSameBlock {
    layout: ParamLayout,
    w: BlockId,
    b: BlockId,
    head: (BlockId, BlockId),
}

impl TwiceSameBlock {
    fn new() -> Self {
        let mut layout = ParamLayout::new();
        let embed = layout.push("embed", &[5, 2]);
        assert_eq!(embed, 0);
        let w = layout.push("sq.weight", &[4, 4]);
        let b = layout.push("sq.bias", &[4]);
        let hw = layout.push("head.weight", &[5, 4]);
        let hb = layout.push("head.bias", &[5]);
        Self {
            layout,
            w,
            b,
            head: (hw, hb),
        }
    }
}

impl Model for TwiceSameBlock {
    fn layout(&self) -> &ParamLayout {
        &self.layout
    }
    fn classes(&self) -> usize {
        5
    }
    fn check_inputs(&self, inputs: &Inputs) -> Result<usize, ModelError> {
        match inputs {
            Inputs::Tokens { a, .. } => Ok(a.len()),
            Inputs::Images { .. } => Err(ModelError::Inputs("tokens only".into())),
        }
    }
    fn forward<E: Float, O: Ops<E>>(&self, ops: &mut O, inputs: &Inputs) -> Result<O::Act, ModelError> {
        let Inputs::Tokens { a, b } = inputs else {
            return Err(ModelError::Inputs("tokens only".into()));
        };
        let x = ops.embed_pair(0, a, b);
        let x = ops.linear(x, self.w, self.b);
        let x = ops.relu(x);
        let x = ops.linear(x, self.w, self.b);
        Ok(ops.linear(x, self.head.0, self.head.1))
    }
    fn init<E: Float>(&self, seed: u64) -> Vec<E> {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        (0..self.layout.len())
            .map(|_| E::of(rng.gen_range(-0.5..0.5)))
            .collect()
    }
    fn input_features(&self) -> usize {
        1
    }
}

/// dfdx 0.13's slice backward assigns instead of accumulating, so a block
/// taken twice in one forward would get the gradient of one use only: it is
/// rejected with `ModelError::BlockReused` naming the block (training,
/// evaluation), while the shared embedding table (one slice, used twice) is
/// fine.
#[test]
fn a_block_used_twice_in_one_forward_is_rejected() {
    let m = TwiceSameBlock::new();
    let th: Vec<f64> = m.init(1);
    let inputs = Inputs::Tokens { a: &[1, 2], b: &[3, 4] };
    let e = loss_and_grad(&m, &th, &inputs, &[0, 1]).unwrap_err();
    assert_eq!(
        e,
        ModelError::BlockReused {
            block: "sq.weight".into()
        }
    );
    assert!(e.to_string().contains("sq.weight"), "{e}");
    assert!(matches!(
        evaluate_logits(&m, &th, &inputs),
        Err(ModelError::BlockReused { .. })
    ));
    // The modular MLP uses its embedding table for both operands, from one slice.
    let mlp = ModMlp::new(&ModMlpConfig {
        p: 5,
        embed: 2,
        hidden: 3,
    })
    .unwrap();
    let th: Vec<f64> = mlp.init(0);
    assert!(loss_and_grad(&mlp, &th, &inputs, &[4, 1]).is_ok());
}

/// A NaN logit is no prediction: such a row counts as wrong (also when its
/// label is class 0, where a naive argmax would say "correct"), and
/// `try_argmax` returns `None`.
#[test]
fn nan_logits_are_never_class_0() {
    use gensplit_models::ops::try_argmax;
    let logits = [
        f64::NAN,
        1.0,
        0.0,
        /* row 2 */ 2.0,
        1.0,
        0.0,
        /* row 3 */ 0.0,
        f64::NAN,
        -1.0,
    ];
    let (_, correct) = ce_and_correct(&logits, &[0, 0, 0], 3);
    assert_eq!(correct, 1, "only the finite row 2 is correct");
    assert_eq!(try_argmax(&logits[..3]), None);
    assert_eq!(try_argmax(&logits[6..]), None);
    assert_eq!(try_argmax(&logits[3..6]), Some(0));
    assert_eq!(try_argmax::<f64>(&[]), None);
    // A model evaluated at a NaN θ: no sample is correct.
    let mlp = ModMlp::new(&ModMlpConfig {
        p: 5,
        embed: 2,
        hidden: 3,
    })
    .unwrap();
    let mut th: Vec<f32> = mlp.init(0);
    th.iter_mut().for_each(|t| *t = f32::NAN);
    let data = Dataset {
        inputs: DataInputs::Tokens {
            a: vec![0, 1, 2],
            b: vec![0, 0, 0],
        },
        labels: vec![0, 0, 0],
    };
    assert_eq!(evaluate(&mlp, &th, &data, 2).unwrap().acc, 0.0);
}

/// NaN or Inf in training stops it with a typed error naming the step and
/// the parameter block: a NaN in θ before the first step, and an absurd
/// learning rate whose first update overflows f32.
#[test]
fn training_stops_on_non_finite_values() {
    let mlp = ModMlp::new(&ModMlpConfig {
        p: 5,
        embed: 2,
        hidden: 3,
    })
    .unwrap();
    let (a, b): (Vec<u32>, Vec<u32>) = (0..25).map(|i| (i / 5, i % 5)).unzip();
    let labels = a.iter().zip(&b).map(|(x, y)| (x + y) % 5).collect();
    let data = Dataset {
        inputs: DataInputs::Tokens { a, b },
        labels,
    };
    let cfg = TrainConfig {
        steps: 5,
        batch_size: 0,
        optim: AdamWConfig::default(),
        schedule: Schedule::Constant,
        seed: 0,
        eval_every: 5,
        checkpoint_every: 0,
    };
    let run = |theta: &mut Vec<f32>, cfg: &TrainConfig| {
        let mut log = TrainLog {
            steps: 10,
            ..Default::default()
        };
        train(&mlp, theta, &data, cfg, &[], &mut log, &mut |_| {})
    };
    let mut th: Vec<f32> = mlp.init(0);
    let fc1 = mlp.layout().find("fc1.bias").unwrap().offset;
    th[fc1 + 1] = f32::NAN;
    let e = run(&mut th, &cfg).unwrap_err();
    assert_eq!(
        e,
        ModelError::NonFinite {
            step: 10,
            quantity: "parameters",
            block: Some("fc1.bias".into())
        }
    );
    let msg = e.to_string();
    assert!(msg.contains("step 10") && msg.contains("fc1.bias"), "{msg}");

    let mut th: Vec<f32> = mlp.init(0);
    let mut wild = cfg.clone();
    wild.optim.lr = 1e30;
    let e = run(&mut th, &wild).unwrap_err();
    match &e {
        ModelError::NonFinite { step, block, .. } => {
            assert!((11..=15).contains(step), "{e}");
            assert!(block.is_some(), "{e}");
        }
        other => panic!("expected NonFinite, got {other:?}"),
    }
    // A sane run passes.
    let mut th: Vec<f32> = mlp.init(0);
    run(&mut th, &cfg).unwrap();
}

/// Row access has checked alternatives with typed errors, and the conv
/// geometry validates (including overflow) instead of panicking.
#[test]
fn row_access_and_conv_geometry_are_checked() {
    let data = Dataset {
        inputs: DataInputs::Tokens {
            a: vec![0, 1, 2],
            b: vec![0, 0, 0],
        },
        labels: vec![0, 1, 2],
    };
    assert!(data.try_rows(1, 3).is_ok());
    assert_eq!(
        data.try_rows(2, 4).unwrap_err(),
        ModelError::Rows { lo: 2, hi: 4, len: 3 }
    );
    assert!(data.try_rows(2, 1).is_err());
    assert!(matches!(data.try_gather(&[0, 3]), Err(ModelError::Rows { .. })));
    assert_eq!(data.try_gather(&[2, 0]).unwrap().labels, vec![2, 0]);
    let short = Dataset {
        inputs: DataInputs::Images(vec![0.0; 784]),
        labels: vec![0, 1],
    };
    assert!(short.try_rows(0, 2).is_err());

    let ok = ConvGeom {
        c_in: 1,
        h: 28,
        w: 28,
        c_out: 8,
        k: 3,
        stride: 1,
        pad: 1,
    };
    assert!(ok.validate().is_ok());
    for bad in [
        ConvGeom { stride: 0, ..ok },
        ConvGeom { k: 31, ..ok },
        ConvGeom { c_in: 0, ..ok },
        ConvGeom {
            c_in: usize::MAX / 2,
            ..ok
        },
    ] {
        let e = bad.validate().unwrap_err();
        assert!(matches!(e, ModelError::Config { .. }), "{bad:?}: {e}");
    }
    assert_eq!(ConvGeom { stride: 0, ..ok }.checked_out_features(), None);
}

/// Logits of `model` at θ on [`infer::Infer`] (fused, and with every fused
/// op replaced by its composition), bit for bit against the tape-free
/// [`Primal`] forward.
fn assert_infer_equals_primal<M: Model, E: Float>(model: &M, theta: &[E], inputs: &Inputs)
where
    dfdx::tensor::Cpu: dfdx::tensor_ops::Device<E>,
{
    let bits = |v: &[E]| v.iter().map(|x| x.f64().to_bits()).collect::<Vec<_>>();
    let want = evaluate_logits_primal(model, theta, inputs).unwrap();
    let got = evaluate_logits(model, theta, inputs).unwrap();
    assert_eq!(bits(&got), bits(&want), "fused inference forward");
    let mut ops = infer::Infer::try_new(model.layout(), theta).unwrap();
    let z = model.forward(&mut ops::Unfused(&mut ops), inputs).unwrap();
    ops.finish().unwrap();
    assert_eq!(
        bits(&infer::Infer::into_host(z)),
        bits(&want),
        "unfused inference forward"
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    /// Inference keeps the conv activations on the host and skips the ReLU
    /// masks; the logits are the tape-free dfdx forward's, bit for bit, in
    /// f32 and f64, for CNN widths and batch sizes around the conv kernel's
    /// chunk of 8 samples, and for the modular MLP.
    #[test]
    fn infer_logits_equal_the_primal_forward_bit_for_bit(
        c1 in 1usize..5, c2 in 1usize..5, c3 in 1usize..5, hidden in 1usize..9,
        n in 1usize..21, seed in any::<u64>(),
    ) {
        let cnn = Cnn::new(&CnnConfig { channels: [c1, c2, c3], hidden, classes: 10 }).unwrap();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let pixels: Vec<f32> = (0..n * 784).map(|_| rng.gen_range(0.0..1.0)).collect();
        let inputs = Inputs::Images { pixels: &pixels };
        let th64: Vec<f64> = cnn.init(seed);
        let th32: Vec<f32> = cnn.init(seed);
        assert_infer_equals_primal(&cnn, &th64, &inputs);
        assert_infer_equals_primal(&cnn, &th32, &inputs);
        let mlp = ModMlp::new(&ModMlpConfig { p: 7, embed: 3, hidden }).unwrap();
        let a: Vec<u32> = (0..n).map(|_| rng.gen_range(0..7)).collect();
        let b: Vec<u32> = (0..n).map(|_| rng.gen_range(0..7)).collect();
        let tokens = Inputs::Tokens { a: &a, b: &b };
        assert_infer_equals_primal(&mlp, &mlp.init::<f32>(seed), &tokens);
    }
}

/// The reference CNN at its full width on a batch that is not a multiple of
/// the chunk: inference equals the tape-free dfdx forward bit for bit.
#[test]
fn infer_matches_primal_on_the_reference_cnn() {
    let cnn = Cnn::new(&CnnConfig::default()).unwrap();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
    let pixels: Vec<f32> = (0..37 * 784).map(|_| rng.gen_range(0.0..1.0)).collect();
    assert_infer_equals_primal(&cnn, &cnn.init::<f32>(3), &Inputs::Images { pixels: &pixels });
}

proptest! {
    /// `Float::from_f32s` (a copy for f32) gives the values of `of(x as f64)`
    /// element by element, bit for bit, for every non-NaN f32 (the data
    /// loaders reject NaN pixels).
    #[test]
    fn from_f32s_is_of_each_value(v in proptest::collection::vec(any::<f32>().prop_filter("not NaN", |x| !x.is_nan()), 0..64)) {
        let f32s = <f32 as Float>::from_f32s(&v);
        let f64s = <f64 as Float>::from_f32s(&v);
        for (i, &x) in v.iter().enumerate() {
            prop_assert_eq!(f32s[i].to_bits(), <f32 as Float>::of(x as f64).to_bits());
            prop_assert_eq!(f64s[i].to_bits(), <f64 as Float>::of(x as f64).to_bits());
        }
        prop_assert_eq!((f32s.len(), f64s.len()), (v.len(), v.len()));
    }
}
