//! 2-D convolution as a differentiable dfdx op (dfdx's own conv2d needs the
//! broken `nightly` feature).
//!
//! Layout: activations are rank-2 tensors `[batch, C·H·W]` holding each
//! sample's NCHW feature map row-major; the weight block is `[O, C, k, k]`
//! (flat `O·C·k·k`), the bias `[O]`. With stride `s` and zero padding `p`,
//! `Ho = (H + 2p − k)/s + 1` (likewise `Wo`) and
//!
//! ```text
//! y[n,o,i,j] = b[o] + Σ_{c,u,v} W[o,c,u,v] · x[n, c, i·s − p + u, j·s − p + v]
//! ```
//!
//! (out-of-range x reads are 0). Forward rule, per sample: `cols = im2col(x)`
//! (`[C·k·k, Ho·Wo]`), `Y = W · cols + b`. Backward rule, with `G = ∂L/∂Y`:
//! `∂L/∂W = Σ_n G_n · cols_nᵀ`, `∂L/∂b = Σ_{n,i,j} G_n`,
//! `∂L/∂x_n = col2im(Wᵀ · G_n)`.
//!
//! Execution: samples are processed in fixed chunks of [`CHUNK`], in parallel
//! (rayon). A chunk's im2col matrices sit side by side (`[C·k·k, m·Ho·Wo]`),
//! so each product above is one GEMM per chunk; partial weight gradients are
//! summed in chunk order, so results are bit-identical whatever the thread
//! count. The GEMMs are the `gemm` crate's, which picks AVX-512 or AVX2/FMA
//! kernels at run time: the same binary on CPUs with different vector units
//! may differ in the last bits (same machine kind: bit-identical). The backward pass recomputes im2col from the saved input (cheaper
//! than storing it). [`conv2d_relu_with`] and [`conv2d_dual`] can fuse the
//! ReLU that follows: `a = max(z, 0)` is written straight from the GEMM
//! output and `∂L/∂z = 1[z > 0]·∂L/∂a` is applied while repacking the
//! incoming gradient.

use crate::model::ModelError;
use crate::{host_vec, Dev, Float, Taped, T1, T2};
use dfdx::prelude::*;
use dfdx::tensor::{Merge, Tape};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::sync::{Arc, OnceLock};

/// Samples per parallel work item and per GEMM (fixed, for determinism).
pub const CHUNK: usize = 8;

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
            return Err(bad("zero stride, kernel or channels, or a kernel larger than the padded input"));
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

/// Per-thread scratch for im2col / col2im of one geometry.
///
/// The input of one sample is first copied into a zero-padded buffer
/// `[C, H+2p, W+2p]` whose border is never written, so every patch row is a
/// plain strided read with no bounds logic: `cols[(c·k+u)·k+v, i·Wo+j] =
/// xp[c, i·s+u, j·s+v]`. col2im accumulates into a padded buffer the same
/// way and adds its interior into `dx`.
pub(crate) struct Patcher<E> {
    g: ConvGeom,
    ho: usize,
    wo: usize,
    hp: usize,
    wp: usize,
    /// Padded input (border zero forever); empty when `pad == 0`.
    xp: Vec<E>,
    /// Padded col2im accumulator.
    dp: Vec<E>,
}

impl<E: Float> Patcher<E> {
    pub(crate) fn new(g: &ConvGeom) -> Self {
        let (ho, wo) = g.out_hw();
        let (hp, wp) = (g.h + 2 * g.pad, g.w + 2 * g.pad);
        let xp = if g.pad > 0 {
            vec![E::zero(); g.c_in * hp * wp]
        } else {
            Vec::new()
        };
        Self {
            g: *g,
            ho,
            wo,
            hp,
            wp,
            xp,
            dp: Vec::new(),
        }
    }

    /// im2col of one sample `x` (`[C·H·W]`) into the columns
    /// `off..off + Ho·Wo` of `cols`, a `[C·k·k, ld]` matrix.
    pub(crate) fn im2col(&mut self, x: &[E], cols: &mut [E], ld: usize, off: usize) {
        let g = self.g;
        assert_eq!(x.len(), g.in_features());
        assert!(off + self.ho * self.wo <= ld && cols.len() >= g.patch() * ld);
        if g.pad > 0 {
            for c in 0..g.c_in {
                for y in 0..g.h {
                    let dst = (c * self.hp + y + g.pad) * self.wp + g.pad;
                    self.xp[dst..dst + g.w].copy_from_slice(&x[(c * g.h + y) * g.w..][..g.w]);
                }
            }
        }
        let src = if g.pad > 0 { &self.xp[..] } else { x };
        match g.stride {
            1 => gather_rows::<E, 1>(&g, self.ho, self.wo, self.hp, self.wp, src, cols, ld, off),
            2 => gather_rows::<E, 2>(&g, self.ho, self.wo, self.hp, self.wp, src, cols, ld, off),
            _ => gather_rows::<E, 0>(&g, self.ho, self.wo, self.hp, self.wp, src, cols, ld, off),
        }
    }

    /// im2col of a chunk of samples `x` (`[m, C·H·W]`) side by side into
    /// `cols`, a `[C·k·k, m·Ho·Wo]` matrix (sample `s` in columns `s·Ho·Wo..`).
    pub(crate) fn im2col_chunk(&mut self, x: &[E], cols: &mut [E]) {
        let (fin, hw) = (self.g.in_features(), self.ho * self.wo);
        let l = x.len() / fin * hw;
        for (s, xs) in x.chunks_exact(fin).enumerate() {
            self.im2col(xs, cols, l, s * hw);
        }
    }

    /// col2im of one sample, accumulating: `dx[c, i·s−p+u, j·s−p+v] +=
    /// dcols[(c·k+u)·k+v, off + i·Wo+j]` with `dcols` a `[C·k·k, ld]` matrix.
    pub(crate) fn col2im_add(&mut self, dcols: &[E], ld: usize, off: usize, dx: &mut [E]) {
        let g = self.g;
        assert_eq!(dx.len(), g.in_features());
        assert!(off + self.ho * self.wo <= ld && dcols.len() >= g.patch() * ld);
        let n = g.c_in * self.hp * self.wp;
        if g.pad == 0 {
            return self.scatter(dcols, ld, off, dx);
        }
        let mut dp = std::mem::take(&mut self.dp);
        dp.clear();
        dp.resize(n, E::zero());
        self.scatter(dcols, ld, off, &mut dp);
        for c in 0..g.c_in {
            for y in 0..g.h {
                let s = (c * self.hp + y + g.pad) * self.wp + g.pad;
                let d = &mut dx[(c * g.h + y) * g.w..][..g.w];
                d.iter_mut().zip(&dp[s..s + g.w]).for_each(|(d, &s)| *d += s);
            }
        }
        self.dp = dp;
    }

    fn scatter(&self, dcols: &[E], ld: usize, off: usize, dst: &mut [E]) {
        let (g, ho, wo, hp, wp) = (&self.g, self.ho, self.wo, self.hp, self.wp);
        match g.stride {
            1 => scatter_rows::<E, 1>(g, ho, wo, hp, wp, dcols, ld, off, dst),
            2 => scatter_rows::<E, 2>(g, ho, wo, hp, wp, dcols, ld, off, dst),
            _ => scatter_rows::<E, 0>(g, ho, wo, hp, wp, dcols, ld, off, dst),
        }
    }
}

/// The stride: the constant `S`, or `g.stride` when `S == 0` (generic).
#[inline(always)]
fn stride_of<const S: usize>(g: &ConvGeom) -> usize {
    if S == 0 {
        g.stride
    } else {
        S
    }
}

/// `cols[(c·k+u)·k+v, i·Wo+j] = xp[c, i·s+u, j·s+v]` over a padded
/// `[C, hp, wp]` input.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn gather_rows<E: Float, const S: usize>(
    g: &ConvGeom,
    ho: usize,
    wo: usize,
    hp: usize,
    wp: usize,
    xp: &[E],
    cols: &mut [E],
    ld: usize,
    off: usize,
) {
    let s = stride_of::<S>(g);
    let (k, hw) = (g.k, ho * wo);
    let span = (wo - 1) * s + 1;
    for c in 0..g.c_in {
        let plane = &xp[c * hp * wp..][..hp * wp];
        for u in 0..k {
            for v in 0..k {
                let row = &mut cols[((c * k + u) * k + v) * ld + off..][..hw];
                for (i, dst) in row.chunks_exact_mut(wo).enumerate() {
                    let src = &plane[(i * s + u) * wp + v..][..span];
                    if s == 1 {
                        dst.copy_from_slice(src);
                    } else {
                        // chunks(s) starts at every s-th element; the last may be short.
                        for (d, c) in dst.iter_mut().zip(src.chunks(s)) {
                            *d = c[0];
                        }
                    }
                }
            }
        }
    }
}

/// `dp[c, i·s+u, j·s+v] += dcols[(c·k+u)·k+v, i·Wo+j]` over a padded
/// `[C, hp, wp]` accumulator.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn scatter_rows<E: Float, const S: usize>(
    g: &ConvGeom,
    ho: usize,
    wo: usize,
    hp: usize,
    wp: usize,
    dcols: &[E],
    ld: usize,
    off: usize,
    dp: &mut [E],
) {
    let s = stride_of::<S>(g);
    let (k, hw) = (g.k, ho * wo);
    let span = (wo - 1) * s + 1;
    for c in 0..g.c_in {
        let plane = &mut dp[c * hp * wp..][..hp * wp];
        for u in 0..k {
            for v in 0..k {
                let row = &dcols[((c * k + u) * k + v) * ld + off..][..hw];
                for (i, src) in row.chunks_exact(wo).enumerate() {
                    let dst = &mut plane[(i * s + u) * wp + v..][..span];
                    if s == 1 {
                        dst.iter_mut().zip(src).for_each(|(d, &x)| *d += x);
                    } else {
                        for (c, &x) in dst.chunks_mut(s).zip(src) {
                            c[0] += x;
                        }
                    }
                }
            }
        }
    }
}

/// `dst[m×n] (+)= a[m×k] · b[k×n]` with explicit (row, col) strides.
#[allow(clippy::too_many_arguments)]
fn matmul<E: Float>(
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [E],
    accumulate: bool,
    a: &[E],
    a_rs: usize,
    a_cs: usize,
    b: &[E],
    b_rs: usize,
    b_cs: usize,
) {
    // Largest index gemm reads, `(rows − 1)·rs + (cols − 1)·cs`, in checked
    // arithmetic: an overflow fails the assert instead of wrapping to a
    // small bound that would let gemm read out of bounds.
    let last = |rows: usize, cols: usize, rs: usize, cs: usize| {
        (rows - 1).checked_mul(rs)?.checked_add((cols - 1).checked_mul(cs)?)
    };
    assert!(m.checked_mul(n).is_some_and(|mn| dst.len() >= mn), "matmul: dst too short");
    assert!(
        m == 0 || k == 0 || last(m, k, a_rs, a_cs).is_some_and(|i| a.len() > i),
        "matmul: a too short"
    );
    assert!(
        k == 0 || n == 0 || last(k, n, b_rs, b_cs).is_some_and(|i| b.len() > i),
        "matmul: b too short"
    );
    assert!(
        [m, n, k, a_rs, a_cs, b_rs, b_cs].iter().all(|&x| isize::try_from(x).is_ok()),
        "matmul: a size or stride exceeds isize"
    );
    // SAFETY: the asserts above keep every index gemm touches inside the
    // slices (bounds computed without overflow, strides representable as
    // isize); `dst` is an exclusive borrow, E is f32 or f64.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            a.as_ptr(),
            a_cs as isize,
            a_rs as isize,
            b.as_ptr(),
            b_cs as isize,
            b_rs as isize,
            if accumulate { E::one() } else { E::zero() },
            E::one(),
            false,
            false,
            false,
            gemm::Parallelism::None,
        )
    }
}

/// Forward pass on plain buffers: `y = conv(x, W, b)`, `[n, O·Ho·Wo]`.
pub fn forward_raw<E: Float>(g: &ConvGeom, x: &[E], w: &[E], b: &[E], n: usize) -> Vec<E> {
    chunked_forward(g, x, None, w, None, b, n, false).z
}

/// Gradients of one conv call: `(dx, dw, db)`.
pub struct ConvGrads<E> {
    /// ∂L/∂x, `[n, C·H·W]` (`None` when not requested).
    pub dx: Option<Vec<E>>,
    /// ∂L/∂W, `[O·C·k·k]`.
    pub dw: Vec<E>,
    /// ∂L/∂b, `[O]`.
    pub db: Vec<E>,
}

/// Backward pass on plain buffers (recomputing im2col from `x`), with
/// `dy = ∂L/∂y`.
pub fn backward_raw<E: Float>(g: &ConvGeom, x: &[E], w: &[E], dy: &[E], n: usize, want_dx: bool) -> ConvGrads<E> {
    let mut dx = want_dx.then(|| vec![E::zero(); n * g.in_features()]);
    let (dw, db) = dual_backward_raw(g, x, None, w, &[], dy, None, n, dx.as_deref_mut(), None);
    ConvGrads { dx, dw, db }
}

/// Fused forward of a convolution and its tangent, on plain buffers.
///
/// With `cols = im2col(x)` and `colsᵈ = im2col(ẋ)` per sample:
/// `z = W·cols + b` and `ż = W·colsᵈ + V·cols + c` (`ż = V·cols + c` when
/// `xdot` is `None`, i.e. ẋ = 0). One im2col of `x` serves both outputs.
/// Returns `(z, ż)`, each `[n, O·Ho·Wo]`.
#[allow(clippy::too_many_arguments)]
pub fn dual_forward_raw<E: Float>(
    g: &ConvGeom,
    x: &[E],
    xdot: Option<&[E]>,
    w: &[E],
    v: &[E],
    b: &[E],
    c: &[E],
    n: usize,
) -> (Vec<E>, Vec<E>) {
    assert_eq!(v.len(), g.weight_len());
    assert_eq!(c.len(), g.c_out);
    let out = chunked_forward(g, x, xdot, w, Some((v, c)), b, n, false);
    (out.z, out.zd.expect("tangent requested"))
}

/// Per-thread work buffers for one chunk of samples.
struct Work<E> {
    pt: Patcher<E>,
    /// im2col of the chunk's `x`, `[C·k·k, m·Ho·Wo]` (sample s in columns `s·Ho·Wo..`).
    cols: Vec<E>,
    /// The same for `ẋ`.
    cols_d: Vec<E>,
    /// GEMM outputs / output gradients in the same column order, `[2·O, m·Ho·Wo]`.
    out: Vec<E>,
}

impl<E: Float> Work<E> {
    fn new(g: &ConvGeom) -> Self {
        Self {
            pt: Patcher::new(g),
            cols: Vec::new(),
            cols_d: Vec::new(),
            out: Vec::new(),
        }
    }
}

/// Resizes `buf` to `len` (contents unspecified; callers overwrite).
fn sized<E: Float>(buf: &mut Vec<E>, len: usize) -> &mut [E] {
    buf.resize(len, E::zero());
    &mut buf[..len]
}

/// The samples of chunk `ci`: `lo..hi`.
fn chunk_range(ci: usize, n: usize) -> (usize, usize) {
    (ci * CHUNK, ((ci + 1) * CHUNK).min(n))
}

/// Outputs of [`chunked_forward`].
struct Forward<E> {
    /// `z` (or `relu(z)`), `[n, O·Ho·Wo]`.
    z: Vec<E>,
    /// `ż` (or `1[z > 0]·ż`), when a tangent was asked for.
    zd: Option<Vec<E>>,
    /// `1[z > 0]`, when the ReLU was fused.
    mask: Option<Vec<bool>>,
}

/// Forward on plain buffers, a chunk of [`CHUNK`] samples per GEMM: the
/// chunk's im2col matrices sit side by side (`[C·k·k, m·Ho·Wo]`), so
/// `[W; V]·cols` is one GEMM with `m·Ho·Wo` columns; the result is copied
/// back to per-sample NCHW rows with the bias added. With `tangent =
/// Some((V, c))` also returns `ż = W·colsᵈ + V·cols + c` (`ẋ = 0` when
/// `xdot` is `None`). With `relu`, returns `a = max(z, 0)`, `ȧ = 1[z > 0]·ż`
/// and the mask instead.
#[allow(clippy::too_many_arguments)]
fn chunked_forward<E: Float>(
    g: &ConvGeom,
    x: &[E],
    xdot: Option<&[E]>,
    w: &[E],
    tangent: Option<(&[E], &[E])>,
    b: &[E],
    n: usize,
    relu: bool,
) -> Forward<E> {
    let (ho, wo) = g.out_hw();
    let hw = ho * wo;
    let (fin, fout, patch, o) = (g.in_features(), g.out_features(), g.patch(), g.c_out);
    assert_eq!(x.len(), n * fin);
    assert!(xdot.is_none_or(|xd| xd.len() == n * fin));
    assert_eq!(w.len(), g.weight_len());
    assert_eq!(b.len(), o);
    // [W; V] stacked, so one GEMM gives both W·cols and V·cols.
    let wv: Vec<E> = match tangent {
        Some((v, _)) => w.iter().chain(v).copied().collect(),
        None => w.to_vec(),
    };
    let rows = wv.len() / patch;
    let nch = n.div_ceil(CHUNK);
    let mut z = vec![E::zero(); n * fout];
    let mut zd = tangent.map(|_| vec![E::zero(); n * fout]);
    let mut mask = relu.then(|| vec![false; n * fout]);
    let zd_chunks = opt_chunks(zd.as_deref_mut(), fout * CHUNK, nch);
    let mask_chunks = opt_chunks(mask.as_deref_mut(), fout * CHUNK, nch);
    z.par_chunks_mut(fout * CHUNK)
        .zip(zd_chunks)
        .zip(mask_chunks)
        .enumerate()
        .for_each_init(
            || Work::new(g),
            |wk, (ci, ((zc, zdc), mut mc))| {
                let (lo, hi) = chunk_range(ci, n);
                let l = (hi - lo) * hw;
                let cols = sized(&mut wk.cols, patch * l);
                wk.pt.im2col_chunk(&x[lo * fin..hi * fin], cols);
                let out = sized(&mut wk.out, rows * l);
                matmul(rows, l, patch, out, false, &wv, patch, 1, cols, l, 1);
                match mc.as_deref_mut() {
                    Some(mc) => unpack_rows(&out[..o * l], b, zc, hw, fout, |i, v| {
                        mc[i] = v > E::zero();
                        if mc[i] {
                            v
                        } else {
                            E::zero()
                        }
                    }),
                    None => unpack_rows(&out[..o * l], b, zc, hw, fout, |_, v| v),
                }
                if let (Some((_, c)), Some(zdc)) = (tangent, zdc) {
                    let (_, outd) = out.split_at_mut(o * l);
                    if let Some(xd) = xdot {
                        let cols_d = sized(&mut wk.cols_d, patch * l);
                        wk.pt.im2col_chunk(&xd[lo * fin..hi * fin], cols_d);
                        matmul(o, l, patch, outd, true, w, patch, 1, cols_d, l, 1);
                    }
                    unpack_masked(outd, c, zdc, hw, fout, mc.as_deref());
                }
            },
        );
    Forward { z, zd, mask }
}

/// im2col of every sample of `x`, chunk after chunk as the GEMMs read it
/// (chunk `ci`'s `[C·k·k, m·Ho·Wo]` matrix at offset `ci·CHUNK·C·k·k·Ho·Wo`).
fn chunked_im2col<E: Float>(g: &ConvGeom, x: &[E], n: usize) -> Vec<E> {
    let (ho, wo) = g.out_hw();
    let hw = ho * wo;
    let (fin, patch) = (g.in_features(), g.patch());
    assert_eq!(x.len(), n * fin);
    let mut cols = vec![E::zero(); n * patch * hw];
    cols.par_chunks_mut(patch * hw * CHUNK).enumerate().for_each_init(
        || Patcher::new(g),
        |pt, (ci, cc)| {
            let (lo, hi) = chunk_range(ci, n);
            pt.im2col_chunk(&x[lo * fin..hi * fin], cc);
        },
    );
    cols
}

/// Tangent-only forward at a cached primal: `ż = V·cols + W·colsᵈ + c`
/// (`ż = V·cols + c` when `xdot` is `None`), zeroed where the cached ReLU
/// `mask` is false, with `cols` the cached im2col of `x`
/// ([`chunked_im2col`]).
#[allow(clippy::too_many_arguments)]
fn chunked_tangent<E: Float>(
    g: &ConvGeom,
    xcols: &[E],
    xdot: Option<&[E]>,
    w: &[E],
    v: &[E],
    c: &[E],
    mask: Option<&[bool]>,
    n: usize,
) -> Vec<E> {
    let (ho, wo) = g.out_hw();
    let hw = ho * wo;
    let (fin, fout, patch, o) = (g.in_features(), g.out_features(), g.patch(), g.c_out);
    assert_eq!(xcols.len(), n * patch * hw);
    assert!(xdot.is_none_or(|xd| xd.len() == n * fin));
    assert_eq!(w.len(), g.weight_len());
    assert_eq!(v.len(), g.weight_len());
    assert_eq!(c.len(), o);
    assert!(mask.is_none_or(|m| m.len() == n * fout));
    let mut zd = vec![E::zero(); n * fout];
    zd.par_chunks_mut(fout * CHUNK).enumerate().for_each_init(
        || Work::new(g),
        |wk, (ci, zdc)| {
            let (lo, hi) = chunk_range(ci, n);
            let l = (hi - lo) * hw;
            let out = sized(&mut wk.out, o * l);
            matmul(
                o,
                l,
                patch,
                out,
                false,
                v,
                patch,
                1,
                &xcols[lo * patch * hw..][..patch * l],
                l,
                1,
            );
            if let Some(xd) = xdot {
                let cols_d = sized(&mut wk.cols_d, patch * l);
                wk.pt.im2col_chunk(&xd[lo * fin..hi * fin], cols_d);
                matmul(o, l, patch, out, true, w, patch, 1, cols_d, l, 1);
            }
            unpack_masked(out, c, zdc, hw, fout, mask.map(|m| &m[lo * fout..hi * fout]));
        },
    );
    zd
}

/// An optional buffer cut into `piece`-sized chunks (`nch` `None`s when absent).
fn opt_chunks<T>(d: Option<&mut [T]>, piece: usize, nch: usize) -> Vec<Option<&mut [T]>> {
    match d {
        Some(d) => d.chunks_mut(piece).map(Some).collect(),
        None => (0..nch).map(|_| None).collect(),
    }
}

/// `dst[i] = post(i, src[o·(m·hw) + s·hw + p] + bias[o])` with
/// `i = s·fout + o·hw + p`, for the `m = dst.len() / fout` samples of a chunk.
#[inline(always)]
fn unpack_rows<E: Float>(
    src: &[E],
    bias: &[E],
    dst: &mut [E],
    hw: usize,
    fout: usize,
    mut post: impl FnMut(usize, E) -> E,
) {
    let l = src.len() / bias.len();
    for (s, ds) in dst.chunks_mut(fout).enumerate() {
        for (oi, (row, &bo)) in ds.chunks_mut(hw).zip(bias).enumerate() {
            let sr = &src[oi * l + s * hw..][..hw];
            let base = s * fout + oi * hw;
            for (p, (d, &v)) in row.iter_mut().zip(sr).enumerate() {
                *d = post(base + p, v + bo);
            }
        }
    }
}

/// [`unpack_rows`] zeroing where the chunk's ReLU `mask` is false (`None`:
/// no ReLU).
fn unpack_masked<E: Float>(src: &[E], bias: &[E], dst: &mut [E], hw: usize, fout: usize, mask: Option<&[bool]>) {
    match mask {
        Some(m) => unpack_rows(src, bias, dst, hw, fout, |i, v| if m[i] { v } else { E::zero() }),
        None => unpack_rows(src, bias, dst, hw, fout, |_, v| v),
    }
}

/// The inverse layout move: `dst[o·(m·hw) + s·hw + p] = src[s·fout + o·hw + p]`,
/// zeroed where `mask` (same layout as `src`) is false.
fn pack_rows<E: Float>(src: &[E], dst: &mut [E], o: usize, hw: usize, fout: usize, mask: Option<&[bool]>) {
    let l = dst.len() / o;
    for (s, ss) in src.chunks(fout).enumerate() {
        for (oi, row) in ss.chunks(hw).enumerate() {
            let d = &mut dst[oi * l + s * hw..][..hw];
            match mask {
                Some(m) => {
                    let m = &m[s * fout + oi * hw..][..hw];
                    for ((d, &v), &keep) in d.iter_mut().zip(row).zip(m) {
                        *d = if keep { v } else { E::zero() };
                    }
                }
                None => d.copy_from_slice(row),
            }
        }
    }
}

/// Fused backward of [`dual_forward_raw`], recomputing the im2col matrices
/// from `x` and `ẋ` (cheaper than storing them). With `G = ∂L/∂z` and
/// `Ġ = ∂L/∂ż` (`gzdot`, `None` when ż is not differentiated):
///
/// * returns `(∂L/∂W, ∂L/∂b)` with `∂L/∂W = Σ_n G_n·colsᵀ + Ġ_n·colsᵈᵀ`
///   (the second term only when both `Ġ` and `ẋ` are given) and
///   `∂L/∂b = Σ G`;
/// * `dx += col2im(Wᵀ·G + Vᵀ·Ġ)` when `dx` is given;
/// * `dxdot += col2im(Wᵀ·Ġ)` when `dxdot` and `Ġ` are given.
///
/// `V` and `c` are constants and get no gradient. Work is batched per chunk
/// of [`CHUNK`] samples (one GEMM per product over the whole chunk; `Wᵀ·G +
/// Vᵀ·Ġ` is one GEMM with `[W; V]` and `[G; Ġ]` stacked). Partial sums are
/// per fixed chunk and reduced in chunk order (thread-count independent).
#[allow(clippy::too_many_arguments)]
pub fn dual_backward_raw<E: Float>(
    g: &ConvGeom,
    x: &[E],
    xdot: Option<&[E]>,
    w: &[E],
    v: &[E],
    gz: &[E],
    gzdot: Option<&[E]>,
    n: usize,
    dx: Option<&mut [E]>,
    dxdot: Option<&mut [E]>,
) -> (Vec<E>, Vec<E>) {
    chunked_backward(g, x, xdot, w, v, gz, gzdot, None, None, n, dx, dxdot)
}

/// [`dual_backward_raw`] behind a fused ReLU: `gz`, `gzdot` are the
/// gradients of `relu(z)` and `1[z > 0]·ż`, multiplied by `mask = 1[z > 0]`
/// on the way in (`None`: no ReLU).
#[allow(clippy::too_many_arguments)]
fn chunked_backward<E: Float>(
    g: &ConvGeom,
    x: &[E],
    xdot: Option<&[E]>,
    w: &[E],
    v: &[E],
    gz: &[E],
    gzdot: Option<&[E]>,
    mask: Option<&[bool]>,
    xcols: Option<&[E]>,
    n: usize,
    dx: Option<&mut [E]>,
    dxdot: Option<&mut [E]>,
) -> (Vec<E>, Vec<E>) {
    let (ho, wo) = g.out_hw();
    let hw = ho * wo;
    let (fin, fout, patch, o) = (g.in_features(), g.out_features(), g.patch(), g.c_out);
    // x is read only when its im2col is not given.
    match xcols {
        Some(c) => assert_eq!(c.len(), n * patch * hw),
        None => assert_eq!(x.len(), n * fin),
    }
    assert!(xdot.is_none_or(|xd| xd.len() == n * fin));
    assert_eq!(w.len(), g.weight_len());
    assert_eq!(gz.len(), n * fout);
    if let Some(gd) = gzdot {
        assert_eq!(gd.len(), n * fout);
        assert_eq!(v.len(), g.weight_len());
    }
    assert!(mask.is_none_or(|m| m.len() == n * fout));
    let dxdot = if gzdot.is_some() { dxdot } else { None };
    let nch = n.div_ceil(CHUNK);
    /// Per-chunk pieces of an optional gradient buffer of `len` entries.
    fn split<E>(d: Option<&mut [E]>, len: usize, piece: usize, nch: usize) -> Vec<Option<&mut [E]>> {
        match d {
            Some(d) => {
                assert_eq!(d.len(), len, "gradient length");
                d.chunks_mut(piece).map(Some).collect()
            }
            None => (0..nch).map(|_| None).collect(),
        }
    }
    let (dxs, dxds) = (
        split(dx, n * fin, fin * CHUNK, nch),
        split(dxdot, n * fin, fin * CHUNK, nch),
    );
    // [W; V] stacked (rows), matching [G; Ġ] stacked in `out`.
    let wv: Vec<E> = match gzdot {
        Some(_) => w.iter().chain(v).copied().collect(),
        None => w.to_vec(),
    };
    let grows = wv.len() / patch;
    let parts: Vec<(Vec<E>, Vec<E>)> = dxs
        .into_par_iter()
        .zip(dxds)
        .enumerate()
        .map_init(
            || Work::new(g),
            |wk, (ci, (mut dxc, mut dxdc))| {
                let mut dw = vec![E::zero(); g.weight_len()];
                let mut db = vec![E::zero(); o];
                let (lo, hi) = chunk_range(ci, n);
                let (m, l) = (hi - lo, (hi - lo) * hw);
                // [G; Ġ] as [grows, m·hw].
                let gs = sized(&mut wk.out, grows * l);
                let mc = mask.map(|m| &m[lo * fout..hi * fout]);
                pack_rows(&gz[lo * fout..hi * fout], &mut gs[..o * l], o, hw, fout, mc);
                if let Some(gd) = gzdot {
                    pack_rows(&gd[lo * fout..hi * fout], &mut gs[o * l..], o, hw, fout, mc);
                }
                for (dbo, row) in db.iter_mut().zip(gs.chunks(l)) {
                    *dbo = row.iter().fold(E::zero(), |a, &v| a + v);
                }
                let cols = sized(&mut wk.cols, patch * l);
                let xc: &[E] = match xcols {
                    Some(c) => &c[lo * patch * hw..][..patch * l],
                    None => {
                        wk.pt.im2col_chunk(&x[lo * fin..hi * fin], cols);
                        cols
                    }
                };
                // dW = G·colsᵀ (+ Ġ·colsᵈᵀ)
                matmul(o, patch, l, &mut dw, false, &gs[..o * l], l, 1, xc, 1, l);
                let cols = sized(&mut wk.cols, patch * l);
                if let (Some(_), Some(xd)) = (gzdot, xdot) {
                    wk.pt.im2col_chunk(&xd[lo * fin..hi * fin], cols);
                    matmul(o, patch, l, &mut dw, true, &gs[o * l..], l, 1, cols, 1, l);
                }
                // The column buffer is free again: reuse it for dcols.
                if let Some(dxc) = dxc.as_deref_mut() {
                    // dcols = [W; V]ᵀ·[G; Ġ] = Wᵀ·G + Vᵀ·Ġ
                    matmul(patch, l, grows, cols, false, &wv, 1, patch, gs, l, 1);
                    for s in 0..m {
                        wk.pt.col2im_add(cols, l, s * hw, &mut dxc[s * fin..(s + 1) * fin]);
                    }
                }
                if let Some(dxdc) = dxdc.as_deref_mut() {
                    // dcolsᵈ = Wᵀ·Ġ
                    matmul(patch, l, o, cols, false, w, 1, patch, &gs[o * l..], l, 1);
                    for s in 0..m {
                        wk.pt.col2im_add(cols, l, s * hw, &mut dxdc[s * fin..(s + 1) * fin]);
                    }
                }
                (dw, db)
            },
        )
        .collect();
    let mut dw = vec![E::zero(); g.weight_len()];
    let mut db = vec![E::zero(); o];
    for (pw, pb) in parts {
        dw.iter_mut().zip(pw).for_each(|(a, b)| *a += b);
        db.iter_mut().zip(pb).for_each(|(a, b)| *a += b);
    }
    (dw, db)
}

/// The differentiable op: `x: [n, C·H·W]`, `w: [O·C·k·k]`, `b: [O]` →
/// `[n, O·Ho·Wo]`. Gradients flow to every operand that carries a tape
/// (at least `x` must carry the tape if any does: dfdx records the op on
/// `x`'s tape type).
pub fn conv2d<E, TX, TW, TB>(x: T2<E, TX>, w: T1<E, TW>, b: T1<E, TB>, g: &ConvGeom) -> T2<E, TX>
where
    E: Float,
    Dev: Device<E>,
    TX: Tape<E, Dev> + Merge<TW> + Merge<TB>,
    TW: Tape<E, Dev>,
    TB: Tape<E, Dev>,
{
    conv2d_with(x, w, b, g, true)
}

/// [`conv2d`] with a choice: `want_dx = false` skips the input gradient
/// (the `Wᵀ·G` GEMM and col2im) when `x` is data that needs none — the
/// first layer of a network. Its gradient is then left at zero.
///
/// The backward pass recomputes each sample's im2col from the saved `x`
/// rather than storing all of them.
pub fn conv2d_with<E, TX, TW, TB>(x: T2<E, TX>, w: T1<E, TW>, b: T1<E, TB>, g: &ConvGeom, want_dx: bool) -> T2<E, TX>
where
    E: Float,
    Dev: Device<E>,
    TX: Tape<E, Dev> + Merge<TW> + Merge<TB>,
    TW: Tape<E, Dev>,
    TB: Tape<E, Dev>,
{
    conv_op(x, w, b, g, want_dx, false)
}

/// `relu(conv2d(x, W, b))` as one op ([`conv2d_with`] followed by a ReLU):
/// the forward writes `a = max(z, 0)` straight from the GEMM output, and the
/// backward masks `∂L/∂a` by `1[z > 0]` while repacking it, so no
/// pre-activation tensor or gradient is ever allocated. Equal to the two
/// ops in sequence (the ReLU's derivative at exactly 0 is taken as 0, as
/// dfdx does).
pub fn conv2d_relu_with<E, TX, TW, TB>(
    x: T2<E, TX>,
    w: T1<E, TW>,
    b: T1<E, TB>,
    g: &ConvGeom,
    want_dx: bool,
) -> T2<E, TX>
where
    E: Float,
    Dev: Device<E>,
    TX: Tape<E, Dev> + Merge<TW> + Merge<TB>,
    TW: Tape<E, Dev>,
    TB: Tape<E, Dev>,
{
    conv_op(x, w, b, g, want_dx, true)
}

/// [`conv2d_with`] with an optional fused ReLU.
fn conv_op<E, TX, TW, TB>(
    x: T2<E, TX>,
    w: T1<E, TW>,
    b: T1<E, TB>,
    g: &ConvGeom,
    want_dx: bool,
    relu: bool,
) -> T2<E, TX>
where
    E: Float,
    Dev: Device<E>,
    TX: Tape<E, Dev> + Merge<TW> + Merge<TB>,
    TW: Tape<E, Dev>,
    TB: Tape<E, Dev>,
{
    let n = x.shape().0;
    assert_eq!(x.shape().1, g.in_features(), "conv2d: input features");
    let (x, tx) = x.split_tape();
    let (w, tw) = w.split_tape();
    let (b, tb) = b.split_tape();
    let mut tape = tx.merge(tw).merge(tb);
    let (wv, xv, bv) = (host_vec(&w), host_vec(&x), host_vec(&b));
    let Forward { z: y, mask, .. } = chunked_forward(g, &xv, None, &wv, None, &bv, n, relu);
    let dev = x.device().clone();
    let out = dev.tensor_from_vec(y, (n, g.out_features()));
    if TX::OWNS_TAPE {
        let (xg, wg, bg, og) = (x.ghost(), w.ghost(), b.ghost(), out.ghost());
        let g = *g;
        tape.add_backward_op(move |grads| {
            // Borrow G by moving it out of the store (put back below).
            let dy = take_grad::<E>(grads.get_or_alloc_mut(&og)?);
            let dxg = cpu_slice::<E>(grads.get_or_alloc_mut(&xg)?);
            let dxg = want_dx.then_some(dxg);
            let (dw, db) = chunked_backward(&g, &xv, None, &wv, &[], &dy, None, mask.as_deref(), None, n, dxg, None);
            *cpu_vec::<E>(grads.get_or_alloc_mut(&og)?) = dy;
            add_into(cpu_slice::<E>(grads.get_or_alloc_mut(&wg)?), &dw);
            add_into(cpu_slice::<E>(grads.get_or_alloc_mut(&bg)?), &db);
            Ok(())
        });
    }
    out.put_tape(tape)
}

/// The parts of one conv layer's dual pass ([`conv2d_dual`]) that do
/// not depend on the direction `v`, kept across curvature products at one
/// fixed θ and one fixed batch:
///
/// * the primal output `z` (or `a = max(z, 0)`) and the ReLU mask
///   `1[z > 0]`, which spares the forward the `W·cols` GEMM;
/// * `cols = im2col(x)`, which spares the forward and the backward an
///   im2col each;
/// * `∂L/∂ẋ = col2im(Wᵀ·Ġ)`, with `Ġ = ∂L/∂ż`. In a Hessian-vector product
///   `L = L̇ = Σ (softmax(z_out) − y)·ż_out` is linear in the tangents with
///   coefficients set by θ and the batch alone, so every tangent's
///   gradient (`Ġ` at every layer) is the ordinary backprop gradient of the
///   loss and does not depend on `v`; this spares the backward the `Wᵀ·Ġ`
///   GEMM and its col2im.
///
/// A cache fills on the first product that passes it (the "recording"
/// pass, which costs what an uncached product costs) and is read by every
/// later one. It is the caller's job to use one cache for one (θ, batch,
/// call site) only: `gensplit_hvp::HessianOperator` owns one per batch and
/// conv call. Memory: [`Self::bytes`].
#[derive(Debug, Default)]
pub struct DualConvCache<E: Float> {
    primal: OnceLock<CachedPrimal<E>>,
    dxdot: OnceLock<Vec<E>>,
}

/// The cached primal output of a conv layer and its ReLU mask.
#[derive(Debug)]
struct CachedPrimal<E: Float> {
    a: T2<E>,
    mask: Option<Vec<bool>>,
    /// im2col of the input `x`, chunk after chunk (chunk `ci`'s
    /// `[C·k·k, m·Ho·Wo]` matrix starts at `ci·CHUNK·C·k·k·Ho·Wo`).
    cols: Vec<E>,
}

impl<E: Float> DualConvCache<E> {
    /// An empty cache.
    pub fn new() -> Self {
        Self {
            primal: OnceLock::new(),
            dxdot: OnceLock::new(),
        }
    }

    /// Bytes held (values and masks).
    pub fn bytes(&self) -> usize {
        let p = self.primal.get().map_or(0, |p| {
            (p.a.shape().num_elements() + p.cols.len()) * std::mem::size_of::<E>() + p.mask.as_ref().map_or(0, Vec::len)
        });
        p + self.dxdot.get().map_or(0, |d| d.len() * std::mem::size_of::<E>())
    }

    /// Whether the primal output is recorded.
    pub fn has_primal(&self) -> bool {
        self.primal.get().is_some()
    }

    /// Whether `∂L/∂ẋ` is recorded.
    pub fn has_tangent_grad(&self) -> bool {
        self.dxdot.get().is_some()
    }

    /// Why this cache cannot serve a [`conv2d_dual`] call on `n` samples of
    /// geometry `g` with the given ReLU choice (`None`: it can — it is empty
    /// or was recorded by such a call). [`conv2d_dual`] panics on a
    /// mismatch; callers check with this first (`gensplit_hvp::Dual` turns
    /// it into an error).
    pub fn mismatch(&self, n: usize, g: &ConvGeom, relu: bool) -> Option<String> {
        let p = self.primal.get()?;
        let want = (n, g.checked_out_features()?);
        if p.a.shape() != &want {
            return Some(format!(
                "recorded output is {:?}, this call makes {:?} (another batch or layer)",
                p.a.shape(),
                want
            ));
        }
        if p.mask.is_some() != relu {
            return Some(format!(
                "recorded {} a fused ReLU, this call is {} (another call site)",
                if p.mask.is_some() { "with" } else { "without" },
                if relu { "with one" } else { "without" }
            ));
        }
        None
    }
}

/// Where the backward pass finds the ReLU mask and (from a cache) the
/// input's im2col.
enum PrimalSrc<E: Float> {
    Own(Option<Vec<bool>>),
    Cached(Arc<DualConvCache<E>>),
}

impl<E: Float> PrimalSrc<E> {
    fn get(&self) -> Option<&[bool]> {
        match self {
            PrimalSrc::Own(m) => m.as_deref(),
            PrimalSrc::Cached(c) => c.primal.get().and_then(|p| p.mask.as_deref()),
        }
    }

    /// The cached im2col of the input, if any.
    fn cols(&self) -> Option<&[E]> {
        match self {
            PrimalSrc::Own(_) => None,
            PrimalSrc::Cached(c) => c.primal.get().map(|p| &p.cols[..]),
        }
    }
}

/// Fused convolution with its tangent, for forward-over-reverse curvature
/// products (`gensplit_hvp::Dual`): given the primal input `x`, its tangent
/// `ẋ` (`None` = identically zero, and `x` then does not depend on θ), the
/// taped weight and bias blocks `W`, `b` and the constant direction blocks
/// `V`, `c` at their place, returns
///
/// ```text
/// z = conv(x, W, b),    ż = conv(ẋ, W, 0) + conv(x, V, c)
/// ```
///
/// sharing one im2col of `x` ([`dual_forward_raw`]). The backward op (one,
/// recorded on `z`'s tape; `ż` gets an empty tape of type `TT`, and its
/// gradient is complete before this op runs since every consumer of `ż` is
/// recorded later) propagates, with `G = ∂L/∂z`, `Ġ = ∂L/∂ż` ([`dual_backward_raw`]):
/// `∂L/∂W = Σ G·colsᵀ + Ġ·colsᵈᵀ`, `∂L/∂b = Σ G`,
/// `∂L/∂x = col2im(Wᵀ·G + Vᵀ·Ġ)`, `∂L/∂ẋ = col2im(Wᵀ·Ġ)`. `Ġ` is used only
/// when `TT` records a tape and `ẋ` is given; with `ẋ = None`, `ż` is a
/// constant and `x` gets no gradient (it is data). Equal, up to rounding, to
/// the three separate [`conv2d`] calls.
///
/// With `relu`, returns the pair after a ReLU instead, `a = max(z, 0)` and
/// `ȧ = 1[z > 0]·ż` (the tangent rule of ReLU, whose mask is a constant),
/// fused as in [`conv2d_relu_with`]: the incoming `∂L/∂a`, `∂L/∂ȧ` are
/// masked while being repacked for the GEMMs.
///
/// **Cache.** For repeated products at a fixed θ and batch, pass a
/// [`DualConvCache`] (`None`: no cache). With an empty cache the op
/// computes exactly the above and records the `v`-independent parts; with a
/// filled cache the forward computes only `ż = V·cols + W·colsᵈ + c` from
/// the recorded `cols` (2 GEMM units instead of 3 for a layer with ẋ, 1
/// instead of 2 for the first layer), and the backward skips `Wᵀ·Ġ` and
/// adds the recorded `∂L/∂ẋ` instead (4 units instead of 5). Products from
/// a filled cache are deterministic and agree with uncached ones up to
/// rounding (bit for bit in the tests, where the GEMMs reduce in the same
/// order).
///
/// # Panics
/// When a filled cache holds a primal of another batch size or another
/// ReLU choice (a caller bug, not a data error).
#[allow(clippy::type_complexity, clippy::too_many_arguments)]
pub fn conv2d_dual<E, TT>(
    x: T2<E, Taped<E>>,
    xdot: Option<T2<E, TT>>,
    w: T1<E, Taped<E>>,
    v: &[E],
    b: T1<E, Taped<E>>,
    c: &[E],
    g: &ConvGeom,
    relu: bool,
    cache: Option<&Arc<DualConvCache<E>>>,
) -> (T2<E, Taped<E>>, T2<E, TT>)
where
    E: Float,
    Dev: Device<E>,
    TT: Tape<E, Dev>,
    Taped<E>: Merge<TT>,
{
    let n = x.shape().0;
    assert_eq!(x.shape().1, g.in_features(), "conv2d_dual: input features");
    let (x, tx) = x.split_tape();
    let (w, tw) = w.split_tape();
    let (b, tb) = b.split_tape();
    let tape = <Taped<E> as Merge<Taped<E>>>::merge(tx, tw);
    let mut tape = <Taped<E> as Merge<Taped<E>>>::merge(tape, tb);
    let xd = xdot.map(|t| {
        assert_eq!(t.shape(), x.shape(), "conv2d_dual: tangent shape");
        let (t, tt) = t.split_tape();
        tape = std::mem::take(&mut tape).merge(tt);
        t
    });
    let hit = cache.and_then(|cc| cc.primal.get().map(|p| (cc, p)));
    // From a filled cache, x is needed only through its recorded im2col.
    let xv = if hit.is_some() { Vec::new() } else { host_vec(&x) };
    let wv = host_vec(&w);
    let xdv = xd.as_ref().map(host_vec);
    let dev = x.device().clone();
    let (z, zd, mask) = match hit {
        Some((cc, p)) => {
            assert_eq!(
                p.a.shape(),
                &(n, g.out_features()),
                "conv2d_dual: cached primal of another batch"
            );
            assert_eq!(
                p.mask.is_some(),
                relu,
                "conv2d_dual: cached primal of another call site"
            );
            let zd = chunked_tangent(g, &p.cols, xdv.as_deref(), &wv, v, c, p.mask.as_deref(), n);
            // A clone shares the recorded buffer (and its tensor id, which
            // is unique within each product's graph).
            (p.a.clone(), zd, PrimalSrc::Cached(cc.clone()))
        }
        None => {
            let bv = host_vec(&b);
            let Forward { z, zd, mask } = chunked_forward(g, &xv, xdv.as_deref(), &wv, Some((v, c)), &bv, n, relu);
            let z = dev.tensor_from_vec(z, (n, g.out_features()));
            let mask = match cache {
                Some(cc) => {
                    // A lost race leaves the other recording, of equal bits.
                    let cols = chunked_im2col(g, &xv, n);
                    let _ = cc.primal.set(CachedPrimal {
                        a: z.clone(),
                        mask,
                        cols,
                    });
                    PrimalSrc::Cached(cc.clone())
                }
                None => PrimalSrc::Own(mask),
            };
            (z, zd.expect("tangent requested"), mask)
        }
    };
    let zd = dev.tensor_from_vec(zd, (n, g.out_features()));
    let (xg, wg, bg, zg, zdg) = (x.ghost(), w.ghost(), b.ghost(), z.ghost(), zd.ghost());
    let xdg = xd.map(|t| t.ghost());
    let tangent_taped = TT::OWNS_TAPE && xdg.is_some();
    let vv = v.to_vec();
    let g = *g;
    let cache = cache.cloned();
    tape.add_backward_op(move |grads| {
        let gz = take_grad::<E>(grads.get_or_alloc_mut(&zg)?);
        let gzd = if tangent_taped {
            Some(take_grad::<E>(grads.get_or_alloc_mut(&zdg)?))
        } else {
            None
        };
        // dẋ goes to a moved-out buffer so that dx can be borrowed in place.
        let mut dxd = match (&xdg, tangent_taped) {
            (Some(xdg), true) => Some(take_grad::<E>(grads.get_or_alloc_mut(xdg)?)),
            _ => None,
        };
        // With a cache, col2im(Wᵀ·Ġ) is recorded once (into a zeroed
        // buffer) and then added, on the recording pass and later alike.
        let cached_dxd = cache.as_ref().filter(|_| dxd.is_some());
        let mut record = match cached_dxd {
            Some(cc) if !cc.has_tangent_grad() => Some(vec![E::zero(); n * g.in_features()]),
            _ => None,
        };
        let dxd_target = match (cached_dxd, record.as_deref_mut()) {
            (Some(_), rec) => rec,
            (None, _) => dxd.as_deref_mut(),
        };
        let dxg = if xdg.is_some() {
            Some(cpu_slice::<E>(grads.get_or_alloc_mut(&xg)?))
        } else {
            None
        };
        let (dw, db) = chunked_backward(
            &g,
            &xv,
            xdv.as_deref(),
            &wv,
            &vv,
            &gz,
            gzd.as_deref(),
            mask.get(),
            mask.cols(),
            n,
            dxg,
            dxd_target,
        );
        if let (Some(cc), Some(d)) = (cached_dxd, dxd.as_deref_mut()) {
            if let Some(rec) = record {
                let _ = cc.dxdot.set(rec);
            }
            add_into(d, cc.dxdot.get().expect("recorded above"));
        }
        *cpu_vec::<E>(grads.get_or_alloc_mut(&zg)?) = gz;
        if let Some(gzd) = gzd {
            *cpu_vec::<E>(grads.get_or_alloc_mut(&zdg)?) = gzd;
        }
        if let (Some(xdg), Some(dxd)) = (&xdg, dxd) {
            *cpu_vec::<E>(grads.get_or_alloc_mut(xdg)?) = dxd;
        }
        add_into(cpu_slice::<E>(grads.get_or_alloc_mut(&wg)?), &dw);
        add_into(cpu_slice::<E>(grads.get_or_alloc_mut(&bg)?), &db);
        Ok(())
    });
    (z.put_tape(tape), zd.put_tape(TT::default()))
}

/// `a += b` elementwise.
fn add_into<E: Float>(a: &mut [E], b: &[E]) {
    a.iter_mut().zip(b).for_each(|(a, &b)| *a += b);
}

/// Moves a gradient buffer out of dfdx's store (leaving it empty; put it
/// back through [`cpu_vec`]).
fn take_grad<E: Float>(v: &mut <Dev as dfdx::tensor::Storage<E>>::Vec) -> Vec<E> {
    std::mem::take(cpu_vec::<E>(v))
}

/// dfdx's CPU storage as the `Vec` it wraps.
fn cpu_vec<E: Float>(v: &mut <Dev as dfdx::tensor::Storage<E>>::Vec) -> &mut Vec<E> {
    v
}

/// Views dfdx's CPU gradient storage as a slice (outside any `Cpu: Device<E>`
/// where-clause, so the associated type normalizes).
pub(crate) fn cpu_slice<E: Float>(v: &mut <Dev as dfdx::tensor::Storage<E>>::Vec) -> &mut [E] {
    &mut v[..]
}

/// Naive reference convolution in f64 straight from the defining sum; the
/// oracle for tests (slow: O(n·O·Ho·Wo·C·k²) with no blocking).
pub fn reference_forward(g: &ConvGeom, x: &[f64], w: &[f64], b: &[f64], n: usize) -> Vec<f64> {
    let (ho, wo) = g.out_hw();
    let mut y = vec![0.0; n * g.out_features()];
    for s in 0..n {
        for o in 0..g.c_out {
            for i in 0..ho {
                for j in 0..wo {
                    let mut acc = b[o];
                    for c in 0..g.c_in {
                        for u in 0..g.k {
                            for v in 0..g.k {
                                let yy = (i * g.stride + u) as isize - g.pad as isize;
                                let xx = (j * g.stride + v) as isize - g.pad as isize;
                                if yy >= 0 && xx >= 0 && (yy as usize) < g.h && (xx as usize) < g.w {
                                    acc += w[((o * g.c_in + c) * g.k + u) * g.k + v]
                                        * x[s * g.in_features() + (c * g.h + yy as usize) * g.w + xx as usize];
                                }
                            }
                        }
                    }
                    y[s * g.out_features() + (o * ho + i) * wo + j] = acc;
                }
            }
        }
    }
    y
}
