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
//! `∂L/∂x_n = col2im(Wᵀ · G_n)`. Samples run in parallel (rayon) in fixed
//! chunks whose partial weight gradients are summed in chunk order, so results
//! are bit-identical whatever the thread count.

use crate::{host_vec, Dev, Float, Taped, T1, T2};
use dfdx::prelude::*;
use dfdx::tensor::{Merge, Tape};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// Samples per parallel work item (fixed, for determinism).
const CHUNK: usize = 8;

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
    /// `(Ho, Wo)`; panics on an invalid geometry (models validate first).
    pub fn out_hw(&self) -> (usize, usize) {
        self.checked_out_hw().expect("invalid conv geometry")
    }
    /// Input features per sample, C·H·W.
    pub fn in_features(&self) -> usize {
        self.c_in * self.h * self.w
    }
    /// Output features per sample, O·Ho·Wo.
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

    /// im2col of one sample `x` (`[C·H·W]`) into `cols` (`[C·k·k, Ho·Wo]`).
    pub(crate) fn im2col(&mut self, x: &[E], cols: &mut [E]) {
        let g = self.g;
        assert_eq!(x.len(), g.in_features());
        assert_eq!(cols.len(), g.patch() * self.ho * self.wo);
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
            1 => gather_rows::<E, 1>(&g, self.ho, self.wo, self.hp, self.wp, src, cols),
            2 => gather_rows::<E, 2>(&g, self.ho, self.wo, self.hp, self.wp, src, cols),
            _ => gather_rows::<E, 0>(&g, self.ho, self.wo, self.hp, self.wp, src, cols),
        }
    }

    /// col2im of one sample, accumulating: `dx[c, i·s−p+u, j·s−p+v] += dcols[(c·k+u)·k+v, i·Wo+j]`.
    pub(crate) fn col2im_add(&mut self, dcols: &[E], dx: &mut [E]) {
        let g = self.g;
        assert_eq!(dx.len(), g.in_features());
        assert_eq!(dcols.len(), g.patch() * self.ho * self.wo);
        let n = g.c_in * self.hp * self.wp;
        if g.pad == 0 {
            return self.scatter(dcols, dx);
        }
        let mut dp = std::mem::take(&mut self.dp);
        dp.clear();
        dp.resize(n, E::zero());
        self.scatter(dcols, &mut dp);
        for c in 0..g.c_in {
            for y in 0..g.h {
                let s = (c * self.hp + y + g.pad) * self.wp + g.pad;
                let d = &mut dx[(c * g.h + y) * g.w..][..g.w];
                d.iter_mut().zip(&dp[s..s + g.w]).for_each(|(d, &s)| *d += s);
            }
        }
        self.dp = dp;
    }

    fn scatter(&self, dcols: &[E], dst: &mut [E]) {
        let (g, ho, wo, hp, wp) = (&self.g, self.ho, self.wo, self.hp, self.wp);
        match g.stride {
            1 => scatter_rows::<E, 1>(g, ho, wo, hp, wp, dcols, dst),
            2 => scatter_rows::<E, 2>(g, ho, wo, hp, wp, dcols, dst),
            _ => scatter_rows::<E, 0>(g, ho, wo, hp, wp, dcols, dst),
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
fn gather_rows<E: Float, const S: usize>(
    g: &ConvGeom,
    ho: usize,
    wo: usize,
    hp: usize,
    wp: usize,
    xp: &[E],
    cols: &mut [E],
) {
    let s = stride_of::<S>(g);
    let (k, hw) = (g.k, ho * wo);
    let span = (wo - 1) * s + 1;
    for c in 0..g.c_in {
        let plane = &xp[c * hp * wp..][..hp * wp];
        for u in 0..k {
            for v in 0..k {
                let row = &mut cols[((c * k + u) * k + v) * hw..][..hw];
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
fn scatter_rows<E: Float, const S: usize>(
    g: &ConvGeom,
    ho: usize,
    wo: usize,
    hp: usize,
    wp: usize,
    dcols: &[E],
    dp: &mut [E],
) {
    let s = stride_of::<S>(g);
    let (k, hw) = (g.k, ho * wo);
    let span = (wo - 1) * s + 1;
    for c in 0..g.c_in {
        let plane = &mut dp[c * hp * wp..][..hp * wp];
        for u in 0..k {
            for v in 0..k {
                let row = &dcols[((c * k + u) * k + v) * hw..][..hw];
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
    assert!(dst.len() >= m * n);
    assert!(m == 0 || k == 0 || a.len() > (m - 1) * a_rs + (k - 1) * a_cs);
    assert!(k == 0 || n == 0 || b.len() > (k - 1) * b_rs + (n - 1) * b_cs);
    // SAFETY: the asserts above keep every index gemm touches inside the
    // slices; `dst` is an exclusive borrow, E is f32 or f64.
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

/// Forward pass on plain buffers: returns `y` (`[n, O·Ho·Wo]`) and, when
/// `keep_cols`, the im2col matrices of every sample for the backward pass.
pub fn forward_raw<E: Float>(
    g: &ConvGeom,
    x: &[E],
    w: &[E],
    b: &[E],
    n: usize,
    keep_cols: bool,
) -> (Vec<E>, Option<Vec<E>>) {
    let (ho, wo) = g.out_hw();
    let hw = ho * wo;
    let (fin, fout, patch) = (g.in_features(), g.out_features(), g.patch());
    assert_eq!(x.len(), n * fin);
    assert_eq!(w.len(), g.weight_len());
    assert_eq!(b.len(), g.c_out);
    let mut y = vec![E::zero(); n * fout];
    let mut cols = if keep_cols {
        Some(vec![E::zero(); n * patch * hw])
    } else {
        None
    };
    let one_sample = |pt: &mut Patcher<E>, xs: &[E], ys: &mut [E], cs: &mut [E]| {
        pt.im2col(xs, cs);
        matmul(g.c_out, hw, patch, ys, false, w, patch, 1, cs, hw, 1);
        for (o, row) in ys.chunks_mut(hw).enumerate() {
            for v in row {
                *v += b[o];
            }
        }
    };
    match cols.as_mut() {
        Some(cols) => {
            y.par_chunks_mut(fout * CHUNK)
                .zip(cols.par_chunks_mut(patch * hw * CHUNK))
                .zip(x.par_chunks(fin * CHUNK))
                .for_each(|((yc, cc), xc)| {
                    let mut pt = Patcher::new(g);
                    for ((ys, cs), xs) in yc.chunks_mut(fout).zip(cc.chunks_mut(patch * hw)).zip(xc.chunks(fin)) {
                        one_sample(&mut pt, xs, ys, cs);
                    }
                });
        }
        None => {
            y.par_chunks_mut(fout * CHUNK)
                .zip(x.par_chunks(fin * CHUNK))
                .for_each(|(yc, xc)| {
                    let mut cs = vec![E::zero(); patch * hw];
                    let mut pt = Patcher::new(g);
                    for (ys, xs) in yc.chunks_mut(fout).zip(xc.chunks(fin)) {
                        one_sample(&mut pt, xs, ys, &mut cs);
                    }
                });
        }
    }
    (y, cols)
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

/// Backward pass on plain buffers, from the forward's im2col matrices.
pub fn backward_raw<E: Float>(g: &ConvGeom, cols: &[E], w: &[E], dy: &[E], n: usize, want_dx: bool) -> ConvGrads<E> {
    let (ho, wo) = g.out_hw();
    let hw = ho * wo;
    let (fin, fout, patch) = (g.in_features(), g.out_features(), g.patch());
    assert_eq!(dy.len(), n * fout);
    assert_eq!(cols.len(), n * patch * hw);
    let mut dx = if want_dx { Some(vec![E::zero(); n * fin]) } else { None };
    // Per-chunk partial (dw, db), in chunk order.
    let partial = |dyc: &[E], cc: &[E], dxc: Option<&mut [E]>| {
        let mut dw = vec![E::zero(); g.weight_len()];
        let mut db = vec![E::zero(); g.c_out];
        let mut dcols = if dxc.is_some() {
            vec![E::zero(); patch * hw]
        } else {
            Vec::new()
        };
        let mut dxc = dxc;
        let mut pt = Patcher::new(g);
        for (s, (dys, cs)) in dyc.chunks(fout).zip(cc.chunks(patch * hw)).enumerate() {
            // dW += dY · colsᵀ
            matmul(g.c_out, patch, hw, &mut dw, true, dys, hw, 1, cs, 1, hw);
            for (o, row) in dys.chunks(hw).enumerate() {
                db[o] += row.iter().fold(E::zero(), |a, &v| a + v);
            }
            if let Some(dxc) = dxc.as_deref_mut() {
                // dcols = Wᵀ · dY
                matmul(patch, hw, g.c_out, &mut dcols, false, w, 1, patch, dys, hw, 1);
                pt.col2im_add(&dcols, &mut dxc[s * fin..(s + 1) * fin]);
            }
        }
        (dw, db)
    };
    let parts: Vec<(Vec<E>, Vec<E>)> = match dx.as_mut() {
        Some(dx) => dy
            .par_chunks(fout * CHUNK)
            .zip(cols.par_chunks(patch * hw * CHUNK))
            .zip(dx.par_chunks_mut(fin * CHUNK))
            .map(|((dyc, cc), dxc)| partial(dyc, cc, Some(dxc)))
            .collect(),
        None => dy
            .par_chunks(fout * CHUNK)
            .zip(cols.par_chunks(patch * hw * CHUNK))
            .map(|(dyc, cc)| partial(dyc, cc, None))
            .collect(),
    };
    let mut dw = vec![E::zero(); g.weight_len()];
    let mut db = vec![E::zero(); g.c_out];
    for (pw, pb) in parts {
        dw.iter_mut().zip(pw).for_each(|(a, b)| *a += b);
        db.iter_mut().zip(pb).for_each(|(a, b)| *a += b);
    }
    ConvGrads { dx, dw, db }
}

/// `ys = W · cols` (or `ys += W · cols` when `acc`), one sample: `W` is
/// `[O, C·k·k]`, `cols` `[C·k·k, Ho·Wo]`.
fn w_cols<E: Float>(g: &ConvGeom, hw: usize, w: &[E], cols: &[E], ys: &mut [E], acc: bool) {
    let patch = g.patch();
    matmul(g.c_out, hw, patch, ys, acc, w, patch, 1, cols, hw, 1);
}

/// `ys[o, ·] += b[o]`.
fn add_bias<E: Float>(hw: usize, b: &[E], ys: &mut [E]) {
    for (row, &bo) in ys.chunks_mut(hw).zip(b) {
        for v in row {
            *v += bo;
        }
    }
}

/// `dw += G · colsᵀ`, one sample.
fn dw_add<E: Float>(g: &ConvGeom, hw: usize, gs: &[E], cols: &[E], dw: &mut [E]) {
    matmul(g.c_out, g.patch(), hw, dw, true, gs, hw, 1, cols, 1, hw);
}

/// `dcols = Wᵀ · G` (or `+=` when `acc`), one sample.
fn wt_g<E: Float>(g: &ConvGeom, hw: usize, w: &[E], gs: &[E], dcols: &mut [E], acc: bool) {
    let patch = g.patch();
    matmul(patch, hw, g.c_out, dcols, acc, w, 1, patch, gs, hw, 1);
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
    let (ho, wo) = g.out_hw();
    let hw = ho * wo;
    let (fin, fout, patch) = (g.in_features(), g.out_features(), g.patch());
    assert_eq!(x.len(), n * fin);
    assert!(xdot.is_none_or(|xd| xd.len() == n * fin));
    assert_eq!(w.len(), g.weight_len());
    assert_eq!(v.len(), g.weight_len());
    assert_eq!(b.len(), g.c_out);
    assert_eq!(c.len(), g.c_out);
    let mut z = vec![E::zero(); n * fout];
    let mut zd = vec![E::zero(); n * fout];
    z.par_chunks_mut(fout * CHUNK)
        .zip(zd.par_chunks_mut(fout * CHUNK))
        .enumerate()
        .for_each(|(ci, (zc, zdc))| {
            let mut cols = vec![E::zero(); patch * hw];
            let mut pt = Patcher::new(g);
            let mut cols_d = if xdot.is_some() {
                vec![E::zero(); patch * hw]
            } else {
                Vec::new()
            };
            for (s, (zs, zds)) in zc.chunks_mut(fout).zip(zdc.chunks_mut(fout)).enumerate() {
                let i = ci * CHUNK + s;
                pt.im2col(&x[i * fin..(i + 1) * fin], &mut cols);
                w_cols(g, hw, w, &cols, zs, false);
                add_bias(hw, b, zs);
                match xdot {
                    Some(xd) => {
                        pt.im2col(&xd[i * fin..(i + 1) * fin], &mut cols_d);
                        w_cols(g, hw, w, &cols_d, zds, false);
                        w_cols(g, hw, v, &cols, zds, true);
                    }
                    None => w_cols(g, hw, v, &cols, zds, false),
                }
                add_bias(hw, c, zds);
            }
        });
    (z, zd)
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
/// `V` and `c` are constants and get no gradient. Partial sums are per
/// fixed chunk and reduced in chunk order (thread-count independent).
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
    let (ho, wo) = g.out_hw();
    let hw = ho * wo;
    let (fin, fout, patch) = (g.in_features(), g.out_features(), g.patch());
    assert_eq!(x.len(), n * fin);
    assert!(xdot.is_none_or(|xd| xd.len() == n * fin));
    assert_eq!(w.len(), g.weight_len());
    assert_eq!(gz.len(), n * fout);
    if let Some(gd) = gzdot {
        assert_eq!(gd.len(), n * fout);
        assert_eq!(v.len(), g.weight_len());
    }
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
    let parts: Vec<(Vec<E>, Vec<E>)> = dxs
        .into_par_iter()
        .zip(dxds)
        .enumerate()
        .map(|(ci, (mut dxc, mut dxdc))| {
            let mut dw = vec![E::zero(); g.weight_len()];
            let mut db = vec![E::zero(); g.c_out];
            let mut cols = vec![E::zero(); patch * hw];
            let mut pt = Patcher::new(g);
            let need_cols_d = xdot.is_some() && gzdot.is_some();
            let mut cols_d = if need_cols_d {
                vec![E::zero(); patch * hw]
            } else {
                Vec::new()
            };
            let mut dcols = if dxc.is_some() || dxdc.is_some() {
                vec![E::zero(); patch * hw]
            } else {
                Vec::new()
            };
            let (lo, hi) = (ci * CHUNK, ((ci + 1) * CHUNK).min(n));
            for i in lo..hi {
                let s = i - lo;
                let gs = &gz[i * fout..(i + 1) * fout];
                let gds = gzdot.map(|gd| &gd[i * fout..(i + 1) * fout]);
                pt.im2col(&x[i * fin..(i + 1) * fin], &mut cols);
                dw_add(g, hw, gs, &cols, &mut dw);
                for (o, row) in gs.chunks(hw).enumerate() {
                    db[o] += row.iter().fold(E::zero(), |a, &v| a + v);
                }
                if let (Some(gds), Some(xd)) = (gds, xdot) {
                    pt.im2col(&xd[i * fin..(i + 1) * fin], &mut cols_d);
                    dw_add(g, hw, gds, &cols_d, &mut dw);
                }
                if let Some(dxc) = dxc.as_deref_mut() {
                    wt_g(g, hw, w, gs, &mut dcols, false);
                    if let Some(gds) = gds {
                        wt_g(g, hw, v, gds, &mut dcols, true);
                    }
                    pt.col2im_add(&dcols, &mut dxc[s * fin..(s + 1) * fin]);
                }
                if let (Some(dxdc), Some(gds)) = (dxdc.as_deref_mut(), gds) {
                    wt_g(g, hw, w, gds, &mut dcols, false);
                    pt.col2im_add(&dcols, &mut dxdc[s * fin..(s + 1) * fin]);
                }
            }
            (dw, db)
        })
        .collect();
    let mut dw = vec![E::zero(); g.weight_len()];
    let mut db = vec![E::zero(); g.c_out];
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
    let n = x.shape().0;
    assert_eq!(x.shape().1, g.in_features(), "conv2d: input features");
    let (x, tx) = x.split_tape();
    let (w, tw) = w.split_tape();
    let (b, tb) = b.split_tape();
    let mut tape = tx.merge(tw).merge(tb);
    let (wv, xv, bv) = (host_vec(&w), host_vec(&x), host_vec(&b));
    let (y, _) = forward_raw(g, &xv, &wv, &bv, n, false);
    let dev = x.device().clone();
    let out = dev.tensor_from_vec(y, (n, g.out_features()));
    if TX::OWNS_TAPE {
        let (xg, wg, bg, og) = (x.ghost(), w.ghost(), b.ghost(), out.ghost());
        let g = *g;
        tape.add_backward_op(move |grads| {
            // Borrow G by moving it out of the store (put back below).
            let dy = take_grad::<E>(grads.get_or_alloc_mut(&og)?);
            let dxg = cpu_slice::<E>(grads.get_or_alloc_mut(&xg)?);
            let (dw, db) = dual_backward_raw(&g, &xv, None, &wv, &[], &dy, None, n, want_dx.then_some(dxg), None);
            *cpu_vec::<E>(grads.get_or_alloc_mut(&og)?) = dy;
            add_into(cpu_slice::<E>(grads.get_or_alloc_mut(&wg)?), &dw);
            add_into(cpu_slice::<E>(grads.get_or_alloc_mut(&bg)?), &db);
            Ok(())
        });
    }
    out.put_tape(tape)
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
#[allow(clippy::type_complexity)]
pub fn conv2d_dual<E, TT>(
    x: T2<E, Taped<E>>,
    xdot: Option<T2<E, TT>>,
    w: T1<E, Taped<E>>,
    v: &[E],
    b: T1<E, Taped<E>>,
    c: &[E],
    g: &ConvGeom,
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
    let (xv, wv, bv) = (host_vec(&x), host_vec(&w), host_vec(&b));
    let xdv = xd.as_ref().map(host_vec);
    let (z, zd) = dual_forward_raw(g, &xv, xdv.as_deref(), &wv, v, &bv, c, n);
    let dev = x.device().clone();
    let z = dev.tensor_from_vec(z, (n, g.out_features()));
    let zd = dev.tensor_from_vec(zd, (n, g.out_features()));
    let (xg, wg, bg, zg, zdg) = (x.ghost(), w.ghost(), b.ghost(), z.ghost(), zd.ghost());
    let xdg = xd.map(|t| t.ghost());
    let tangent_taped = TT::OWNS_TAPE && xdg.is_some();
    let vv = v.to_vec();
    let g = *g;
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
        let dxg = if xdg.is_some() {
            Some(cpu_slice::<E>(grads.get_or_alloc_mut(&xg)?))
        } else {
            None
        };
        let (dw, db) = dual_backward_raw(
            &g,
            &xv,
            xdv.as_deref(),
            &wv,
            &vv,
            &gz,
            gzd.as_deref(),
            n,
            dxg,
            dxd.as_deref_mut(),
        );
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
