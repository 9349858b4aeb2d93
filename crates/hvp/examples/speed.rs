//! Whole-call timings of the reference CNN's gradient and exact HVP, for a
//! quick look next to the JAX peer (`python scripts/jax_hvp.py B f32`).
//! The criterion bench (`benches/hvp.rs`) is the measurement of record.
//!
//! `cargo run --release -p gensplit-hvp --features examples --example speed [batch] [f32|f64] [reps] [hvp|grad|cached]`
//! (a final `hvp`, `grad` or `cached` runs only that and prints nothing, for
//! a profiler).
//!
//! Three calls are timed, interleaved: the gradient, one cold HVP
//! ([`curvature_vector`]: everything recomputed), and one product of a
//! [`HessianOperator`] over the same batch at the same θ, which reads its
//! primal cache (recorded by its first product, before timing) — the cost
//! of each product inside Lanczos.

// mimalloc as the global allocator, keeping freed memory (one setup for
// every binary: see `gensplit_models::mimalloc_allocator!`).
gensplit_models::mimalloc_allocator!();

use gensplit_hvp::{curvature_vector, Curvature, HessianOperator};
use gensplit_models::{loss_and_grad, Cnn, CnnConfig, DataInputs, Dataset, Dev, Float, Inputs, Model};
use rand::{Rng, SeedableRng};
use std::time::Instant;

fn time_ms(f: impl Fn()) -> f64 {
    let s = Instant::now();
    f();
    s.elapsed().as_secs_f64() * 1e3
}

fn median(mut t: Vec<f64>) -> f64 {
    t.sort_by(f64::total_cmp);
    t[t.len() / 2]
}

fn run<E: Float>(batch: usize, reps: usize, only: &str)
where
    Dev: dfdx::prelude::Device<E>,
{
    let model = Cnn::new(&CnnConfig::default()).expect("default CNN");
    let theta: Vec<E> = model.init(0);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    let v: Vec<E> = (0..theta.len()).map(|_| E::of(rng.gen_range(-1.0..1.0))).collect();
    let pixels: Vec<f32> = (0..batch * 784).map(|_| rng.gen::<f32>()).collect();
    let labels: Vec<u32> = (0..batch).map(|_| rng.gen_range(0..10)).collect();
    let inputs = Inputs::Images { pixels: &pixels };
    let grad = || {
        loss_and_grad(&model, &theta, &inputs, &labels).expect("gradient");
    };
    let hvp = || {
        curvature_vector(&model, &theta, &inputs, &labels, &v, Curvature::Hessian).expect("hvp");
    };
    let data = Dataset {
        inputs: DataInputs::Images(pixels.clone()),
        labels: labels.clone(),
    };
    let op = HessianOperator::new(&model, theta.clone(), &data, 0, Curvature::Hessian).expect("operator");
    let cached = || {
        op.hvp(&v).expect("hvp");
    };
    // The first product records the primal cache.
    cached();
    // For a profiler: only one kind of call, nothing printed.
    match only {
        "hvp" => return (0..reps).for_each(|_| hvp()),
        "grad" => return (0..reps).for_each(|_| grad()),
        "cached" => return (0..reps).for_each(|_| cached()),
        _ => {}
    }
    // The calls alternate, so that load from other processes hits all
    // alike; each ratio is the median of the per-round ratios.
    grad();
    hvp();
    let (mut g, mut h, mut c, mut rh, mut rc) = (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..reps {
        let (tg, th, tc) = (time_ms(grad), time_ms(hvp), time_ms(cached));
        g.push(tg);
        h.push(th);
        c.push(tc);
        rh.push(th / tg);
        rc.push(tc / tg);
    }
    println!(
        "batch {batch} {}: gradient {:.1} ms, HVP {:.1} ms (cold), {:.1} ms (operator, cached); \
         HVP/gradient {:.2} cold, {:.2} cached (medians of {reps} interleaved rounds)",
        std::any::type_name::<E>(),
        median(g),
        median(h),
        median(c),
        median(rh),
        median(rc)
    );
}

fn main() {
    keep_freed_memory();
    let mut args = std::env::args().skip(1);
    let batch: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(1024);
    let dtype = args.next().unwrap_or_else(|| "f32".into());
    let reps: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(11);
    // `hvp` / `grad`: only run that (for a profiler), print nothing.
    let only = args.next().unwrap_or_default();
    match dtype.as_str() {
        "f64" => run::<f64>(batch, reps, &only),
        _ => run::<f32>(batch, reps, &only),
    }
}
