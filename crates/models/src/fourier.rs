//! Fourier analysis of the modular MLP's token embedding.
//!
//! For the embedding `E: [p, d]`, the power of frequency `k` along the token
//! axis is `P_k = Σ_j |Σ_t E[t, j] · e^{−2πi k t / p}|²`. Frequencies `k`
//! and `p − k` carry the same power for real `E`, so they are folded into
//! `k = 1 ..= ⌊p/2⌋` (for even p, `k = p/2` is not doubled); `k = 0` (the
//! mean over tokens) carries no information about `a + b mod p` and is
//! excluded.
//!
//! **Key frequencies** (the criterion used in every report): sort the folded
//! powers in decreasing order and take the smallest prefix whose power is at
//! least `fraction` (default 0.85) of the total non-constant power. A network
//! that implements modular addition with a few Fourier "modules" has a short
//! list; a memorising one spreads power over all frequencies.

use crate::{Float, ModMlp, Model};
use serde::{Deserialize, Serialize};

/// Default share of the power the key frequencies must hold.
pub const DEFAULT_KEY_FRACTION: f64 = 0.85;

/// Folded power spectrum of the embedding.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Spectrum {
    /// Modulus p.
    pub p: usize,
    /// `power[k − 1]` is the folded power of frequency `k = 1 ..= ⌊p/2⌋`.
    pub power: Vec<f64>,
}

impl Spectrum {
    /// Folded power of the embedding block of `theta`.
    pub fn of_embedding<E: Float>(model: &ModMlp, theta: &[E]) -> Self {
        let p = model.config().p;
        let d = model.config().embed;
        let e = model.layout().view(theta, model.embed_block());
        let mut power = Vec::with_capacity(p / 2);
        for k in 1..=p / 2 {
            let mut pk = 0.0;
            for j in 0..d {
                let (mut re, mut im) = (0.0, 0.0);
                for t in 0..p {
                    let ang = -2.0 * std::f64::consts::PI * (k * t % p) as f64 / p as f64;
                    re += e[t * d + j].f64() * ang.cos();
                    im += e[t * d + j].f64() * ang.sin();
                }
                pk += re * re + im * im;
            }
            let fold = if 2 * k == p { 1.0 } else { 2.0 };
            power.push(fold * pk);
        }
        Self { p, power }
    }

    /// Total non-constant power.
    pub fn total(&self) -> f64 {
        self.power.iter().sum()
    }

    /// Key frequencies (ascending) by the criterion in the module docs, and
    /// the share of power they hold.
    pub fn key_frequencies(&self, fraction: f64) -> (Vec<usize>, f64) {
        let total = self.total();
        if total <= 0.0 {
            return (Vec::new(), 0.0);
        }
        let mut order: Vec<usize> = (0..self.power.len()).collect();
        order.sort_by(|&a, &b| self.power[b].total_cmp(&self.power[a]).then(a.cmp(&b)));
        let (mut keys, mut acc) = (Vec::new(), 0.0);
        for i in order {
            if acc >= fraction * total {
                break;
            }
            acc += self.power[i];
            keys.push(i + 1);
        }
        keys.sort_unstable();
        (keys, acc / total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ModMlpConfig;

    #[test]
    fn pure_cosines_give_their_frequencies() {
        let m = ModMlp::new(&ModMlpConfig {
            p: 13,
            embed: 4,
            hidden: 3,
        })
        .unwrap();
        let mut theta = vec![0.0f64; m.layout().len()];
        let off = m.layout().block(m.embed_block()).offset;
        for t in 0..13 {
            let w = 2.0 * std::f64::consts::PI * t as f64 / 13.0;
            theta[off + t * 4] = (3.0 * w).cos();
            theta[off + t * 4 + 1] = (3.0 * w).sin();
            theta[off + t * 4 + 2] = 0.5 * (5.0 * w).cos();
            theta[off + t * 4 + 3] = 1.0; // constant: ignored
        }
        let s = Spectrum::of_embedding(&m, &theta);
        assert_eq!(s.power.len(), 6);
        // powers: k=3 has 2·(2·(13/2)²) = 169, k=5 has 2·(13/4)² = 21.125
        assert!((s.power[2] - 169.0).abs() < 1e-9 && (s.power[4] - 21.125).abs() < 1e-9);
        let (keys, share) = s.key_frequencies(0.95);
        assert_eq!(keys, vec![3, 5]);
        assert!((share - 1.0).abs() < 1e-9);
        let (keys, share) = s.key_frequencies(0.85);
        assert_eq!(keys, vec![3]);
        assert!((share - 169.0 / 190.125).abs() < 1e-9);
        // Parseval: Σ_k P_k (folded, k≥1) = p Σ_t |E_t − mean|²
        let e = m.layout().view(&theta, m.embed_block());
        let mut direct = 0.0;
        for j in 0..4 {
            let mean: f64 = (0..13).map(|t| e[t * 4 + j]).sum::<f64>() / 13.0;
            direct += (0..13).map(|t| (e[t * 4 + j] - mean).powi(2)).sum::<f64>();
        }
        assert!((s.total() - 13.0 * direct).abs() < 1e-9 * s.total());
    }
}
