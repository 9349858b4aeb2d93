//! Gradient vs exact Hessian-vector product of the reference CNN
//! (29,018 parameters) at batch 256 and 1024, f32 and f64, on random images
//! in [0, 1] with random labels (JAX's numbers: `scripts/jax_hvp.py`; on the 2-core machine it measured
//! 21 ms / 51 ms gradient / HVP at batch 256 f32 and 184 ms / 337 ms at 1024).
//!
//! Run: `cargo bench -p gensplit-hvp --features bench --bench hvp`.

// `criterion_group!` generates an undocumented function.
#![allow(missing_docs)]

// mimalloc as the global allocator, keeping freed memory (one setup for
// every binary: see `gensplit_models::mimalloc_allocator!`).
gensplit_models::mimalloc_allocator!();

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use gensplit_hvp::{curvature_vector, Curvature, HessianOperator};
use gensplit_models::{loss_and_grad, Cnn, CnnConfig, DataInputs, Dataset, Dev, Float, Inputs, Model};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn bench_dtype<E: Float>(c: &mut Criterion, name: &str)
where
    Dev: dfdx::prelude::Device<E>,
{
    let model = Cnn::new(&CnnConfig::default()).unwrap();
    let theta: Vec<E> = model.init(0);
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let v: Vec<E> = (0..theta.len()).map(|_| E::of(rng.gen_range(-1.0..1.0))).collect();
    let mut group = c.benchmark_group(format!("cnn_{name}"));
    group.sample_size(10);
    for batch in [256usize, 1024] {
        let pixels: Vec<f32> = (0..batch * 784).map(|_| rng.gen::<f32>()).collect();
        let labels: Vec<u32> = (0..batch).map(|_| rng.gen_range(0..10)).collect();
        let inputs = Inputs::Images { pixels: &pixels };
        group.bench_with_input(BenchmarkId::new("gradient", batch), &batch, |b, _| {
            b.iter(|| loss_and_grad(&model, &theta, &inputs, &labels).unwrap())
        });
        group.bench_with_input(BenchmarkId::new("hvp", batch), &batch, |b, _| {
            b.iter(|| curvature_vector(&model, &theta, &inputs, &labels, &v, Curvature::Hessian).unwrap())
        });
        group.bench_with_input(BenchmarkId::new("ggn", batch), &batch, |b, _| {
            b.iter(|| curvature_vector(&model, &theta, &inputs, &labels, &v, Curvature::GaussNewton).unwrap())
        });
        // The same product from a one-batch operator at the same θ, reading
        // its primal cache (recorded before timing): each product's cost
        // inside Lanczos.
        let data = Dataset {
            inputs: DataInputs::Images(pixels.clone()),
            labels: labels.clone(),
        };
        let op = HessianOperator::new(&model, theta.clone(), &data, 0, Curvature::Hessian).unwrap();
        op.hvp(&v).unwrap();
        group.bench_with_input(BenchmarkId::new("hvp_cached", batch), &batch, |b, _| {
            b.iter(|| op.hvp(&v).unwrap())
        });
    }
    group.finish();
}

/// The streaming operator on the `hessian` stages' 2048 samples, f64, in
/// batches of 256 (the stages use 512; batches run two side by side): one product (with the
/// primal cache, and without), and the loss and gradient through the same
/// batching.
fn bench_operator(c: &mut Criterion) {
    let model = Cnn::new(&CnnConfig::default()).unwrap();
    let theta: Vec<f64> = model.init(0);
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    let n = 2048;
    let data = Dataset {
        inputs: DataInputs::Images((0..n * 784).map(|_| rng.gen::<f32>()).collect()),
        labels: (0..n).map(|_| rng.gen_range(0..10)).collect(),
    };
    let v: Vec<f64> = (0..theta.len()).map(|_| rng.gen_range(-1.0..1.0)).collect();
    let op = HessianOperator::new(&model, theta.clone(), &data, 256, Curvature::Hessian).unwrap();
    op.hvp(&v).unwrap();
    let uncached = HessianOperator::new(&model, theta, &data, 256, Curvature::Hessian)
        .unwrap()
        .with_cache_limit(0);
    let mut group = c.benchmark_group("operator_f64");
    group.sample_size(10);
    group.bench_function("gradient_2048_by_256", |b| b.iter(|| op.loss_grad().unwrap()));
    group.bench_function("hvp_2048_by_256", |b| b.iter(|| op.hvp(&v).unwrap()));
    group.bench_function("hvp_uncached_2048_by_256", |b| b.iter(|| uncached.hvp(&v).unwrap()));
    group.finish();
}

fn benches(c: &mut Criterion) {
    keep_freed_memory();
    bench_dtype::<f32>(c, "f32");
    bench_dtype::<f64>(c, "f64");
    bench_operator(c);
}

criterion_group!(hvp, benches);
criterion_main!(hvp);
