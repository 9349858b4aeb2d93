//! Criterion benches: the conv op (forward + backward), the reference CNN's
//! logits on 1,024 images (inference against the tape-free dfdx forward), and the reference
//! CNN's loss gradient at batch 256 and 1024 (f32). Peer numbers on this
//! machine kind (JAX jit, XLA CPU, 2 cores): gradient 21 ms at 256, 184 ms
//! at 1024 (`scripts/jax_hvp.py`).
//!
//! Run: `cargo bench -p gensplit-models --features bench --bench cnn`.

#![allow(missing_docs)] // criterion_group! generates undocumented items

// mimalloc as the global allocator, keeping freed memory (one setup for
// every binary: see `gensplit_models::mimalloc_allocator!`).
gensplit_models::mimalloc_allocator!();

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use gensplit_models::conv::{backward_raw, forward_raw, ConvGeom};
use gensplit_models::{evaluate_logits, evaluate_logits_primal, loss_and_grad, Cnn, CnnConfig, Inputs, Model};
use rand::{Rng, SeedableRng};

fn conv(c: &mut Criterion) {
    keep_freed_memory();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let layers = [
        (
            "conv1_1to8_s1",
            ConvGeom {
                c_in: 1,
                h: 28,
                w: 28,
                c_out: 8,
                k: 3,
                stride: 1,
                pad: 1,
            },
        ),
        (
            "conv2_8to16_s2",
            ConvGeom {
                c_in: 8,
                h: 28,
                w: 28,
                c_out: 16,
                k: 3,
                stride: 2,
                pad: 1,
            },
        ),
        (
            "conv3_16to16_s2",
            ConvGeom {
                c_in: 16,
                h: 14,
                w: 14,
                c_out: 16,
                k: 3,
                stride: 2,
                pad: 1,
            },
        ),
    ];
    let n = 256;
    let mut group = c.benchmark_group("conv_fwd_bwd_b256_f32");
    for (name, g) in layers {
        let x: Vec<f32> = (0..n * g.in_features()).map(|_| rng.gen()).collect();
        let w: Vec<f32> = (0..g.weight_len()).map(|_| rng.gen::<f32>() - 0.5).collect();
        let b = vec![0.1f32; g.c_out];
        let dy: Vec<f32> = (0..n * g.out_features()).map(|_| rng.gen::<f32>() - 0.5).collect();
        group.bench_function(name, |bch| {
            bch.iter(|| {
                let y = forward_raw(&g, &x, &w, &b, n);
                let r = backward_raw(&g, &x, &w, &dy, n, true);
                (y, r.dw)
            })
        });
    }
    group.finish();
}

fn gradient(c: &mut Criterion) {
    keep_freed_memory();
    let cnn = Cnn::new(&CnnConfig::default()).unwrap();
    let theta: Vec<f32> = cnn.init(0);
    let mut group = c.benchmark_group("cnn_gradient_f32");
    group.sample_size(10);
    for n in [256usize, 1024] {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(n as u64);
        let pixels: Vec<f32> = (0..n * 784).map(|_| rng.gen()).collect();
        let labels: Vec<u32> = (0..n).map(|_| rng.gen_range(0..10)).collect();
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |bch, _| {
            bch.iter(|| {
                loss_and_grad(&cnn, &theta, &Inputs::Images { pixels: &pixels }, &labels)
                    .unwrap()
                    .loss
            })
        });
    }
    group.finish();
}

/// Logits of the reference CNN on 1,024 images (the evaluation pass of the
/// steering sweeps): the inference forward (`evaluate_logits`, conv
/// activations on the host) against the tape-free dfdx forward it replaced
/// (`evaluate_logits_primal`), side by side in one run; the logits are
/// equal bit for bit.
fn logits(c: &mut Criterion) {
    keep_freed_memory();
    let cnn = Cnn::new(&CnnConfig::default()).unwrap();
    let theta: Vec<f32> = cnn.init(0);
    let n = 1024usize;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(n as u64);
    let pixels: Vec<f32> = (0..n * 784).map(|_| rng.gen()).collect();
    let inputs = Inputs::Images { pixels: &pixels };
    let mut group = c.benchmark_group("cnn_logits_1024_f32");
    group.sample_size(20);
    group.bench_function("infer", |bch| {
        bch.iter(|| evaluate_logits(&cnn, &theta, &inputs).unwrap())
    });
    group.bench_function("primal", |bch| {
        bch.iter(|| evaluate_logits_primal(&cnn, &theta, &inputs).unwrap())
    });
    group.finish();
}

criterion_group!(benches, conv, gradient, logits);
criterion_main!(benches);
