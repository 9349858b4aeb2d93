//! Convolution geometry: input `[C, H, W]`, `O` filters `k×k`, stride `s`,
//! zero padding `p`. Output size `Ho = (H + 2p − k)/s + 1` (likewise `Wo`),
//! defined when `s, k, C, O ≥ 1` and `k ≤ H + 2p`, `k ≤ W + 2p`; the im2col
//! matrix has `C·k²` rows and `Ho·Wo` columns, the weight `O·C·k²` entries.

use crate::model::ModelError;
use serde::{Deserialize, Serialize};

/// Shape of one convolution: input `[C, H, W]`, `O` filters of `k×k`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConvGeom {
    /// Input channels C.
    pub c_in: usize,
    /// Input height H.
    pub h: usize,
    /// Input width W.
    pub w: usize,
    /// Output channels O.
    pub c_out: usize,
    /// Kernel size k (square).
    pub k: usize,
    /// Stride s.
    pub stride: usize,
    /// Zero padding p on every side.
    pub pad: usize,
}

impl ConvGeom {
    /// Output height Ho (`None` when the kernel does not fit or stride is 0).
    pub fn checked_out_hw(&self) -> Option<(usize, usize)> {
        if self.stride == 0 || self.k == 0 || self.c_in == 0 || self.c_out == 0 {
            return None;
        }
        let hp = self.h + 2 * self.pad;
        let wp = self.w + 2 * self.pad;
        if hp < self.k || wp < self.k {
            return None;
        }
        Some(((hp - self.k) / self.stride + 1, (wp - self.k) / self.stride + 1))
    }
    /// `(Ho, Wo)`.
    ///
    /// # Panics
    /// On an invalid geometry (models validate first);
    /// [`ConvGeom::checked_out_hw`] and [`ConvGeom::validate`] are the checked
    /// alternatives.
    pub fn out_hw(&self) -> (usize, usize) {
        match self.checked_out_hw() {
            Some(hw) => hw,
            None => panic!("invalid conv geometry {self:?}"),
        }
    }
    /// Checks the geometry: [`ModelError::Config`] when the stride, kernel
    /// or a channel count is 0, the kernel does not fit the padded input, or
    /// a size (features, im2col rows, weights) overflows `usize`.
    pub fn validate(&self) -> Result<(), ModelError> {
        let bad = |reason: &str| ModelError::Config {
            field: "conv geometry",
            reason: format!("{reason} in {self:?}"),
        };
        if self.checked_out_hw().is_none() {
            return Err(bad(
                "zero stride, kernel or channels, or a kernel larger than the padded input",
            ));
        }
        let sizes = [
            self.c_in.checked_mul(self.h).and_then(|x| x.checked_mul(self.w)),
            self.checked_out_features(),
            self.c_in.checked_mul(self.k).and_then(|x| x.checked_mul(self.k)),
            self.c_in
                .checked_mul(self.k)
                .and_then(|x| x.checked_mul(self.k))
                .and_then(|x| x.checked_mul(self.c_out)),
        ];
        if sizes.iter().any(Option::is_none) {
            return Err(bad("a size overflows usize"));
        }
        Ok(())
    }
    /// Output features per sample, O·Ho·Wo (`None` on an invalid geometry
    /// or overflow).
    pub fn checked_out_features(&self) -> Option<usize> {
        let (ho, wo) = self.checked_out_hw()?;
        self.c_out.checked_mul(ho)?.checked_mul(wo)
    }
    /// Input features per sample, C·H·W.
    pub fn in_features(&self) -> usize {
        self.c_in * self.h * self.w
    }
    /// Output features per sample, O·Ho·Wo.
    ///
    /// # Panics
    /// On an invalid geometry, see [`ConvGeom::out_hw`].
    pub fn out_features(&self) -> usize {
        let (ho, wo) = self.out_hw();
        self.c_out * ho * wo
    }
    /// Rows of the im2col matrix, C·k·k.
    pub fn patch(&self) -> usize {
        self.c_in * self.k * self.k
    }
    /// Weight elements O·C·k·k.
    pub fn weight_len(&self) -> usize {
        self.c_out * self.patch()
    }
}
