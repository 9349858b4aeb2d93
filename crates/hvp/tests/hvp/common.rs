//! Fixtures shared by the curvature tests: tiny models, seeded data and
//! vector helpers.

use gensplit_models::{Cnn, CnnConfig, DataInputs, Dataset, ModMlp, ModMlpConfig};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

pub fn tiny_cnn() -> Cnn {
    Cnn::new(&CnnConfig {
        channels: [2, 3, 2],
        hidden: 5,
        classes: 10,
    })
    .unwrap()
}

pub fn tiny_mlp() -> ModMlp {
    ModMlp::new(&ModMlpConfig {
        p: 7,
        embed: 3,
        hidden: 6,
    })
    .unwrap()
}

pub fn image_data(n: usize, seed: u64) -> Dataset {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let pixels = (0..n * 784).map(|_| rng.gen::<f32>()).collect();
    let labels = (0..n).map(|_| rng.gen_range(0..10)).collect();
    Dataset {
        inputs: DataInputs::Images(pixels),
        labels,
    }
}

pub fn modadd_data(p: u32) -> Dataset {
    let (a, b): (Vec<u32>, Vec<u32>) = (0..p * p).map(|i| (i / p, i % p)).unzip();
    let labels = a.iter().zip(&b).map(|(x, y)| (x + y) % p).collect();
    Dataset {
        inputs: DataInputs::Tokens { a, b },
        labels,
    }
}

pub fn random_vec(n: usize, seed: u64) -> Vec<f64> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n).map(|_| rng.gen_range(-1.0..1.0)).collect()
}

pub fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

pub fn norm(a: &[f64]) -> f64 {
    dot(a, a).sqrt()
}

pub fn rel_err(a: &[f64], b: &[f64]) -> f64 {
    let d: Vec<f64> = a.iter().zip(b).map(|(x, y)| x - y).collect();
    norm(&d) / norm(b).max(f64::MIN_POSITIVE)
}
