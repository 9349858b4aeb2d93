//! im2col and col2im: for sample `x: [C, H, W]` and geometry `(k, s, p)`,
//! `cols[(c·k + u)·k + v, i·Wo + j] = x[c, i·s − p + u, j·s − p + v]` (0
//! outside the image), so a convolution is the matrix product
//! `W[O, C·k²] · cols`. col2im is its adjoint: it adds
//! `dcols[(c·k + u)·k + v, i·Wo + j]` into `dx[c, i·s − p + u, j·s − p + v]`.

use super::geometry::ConvGeom;
use crate::Float;

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

    /// The geometry these buffers are sized for.
    pub(crate) fn geom(&self) -> &ConvGeom {
        &self.g
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
        let (ho, wo, hp, wp) = (self.ho, self.wo, self.hp, self.wp);
        // Row widths known at compile time for the reference CNN's stride-2
        // layers (14×14 and 7×7 outputs): the strided row reads become
        // fixed-length shuffles (about a quarter off those layers' forward
        // + backward in the `conv` bench). Same values, same order.
        match (g.stride, wo) {
            (2, 14) => gather_rows::<E, 2, 14>(&g, ho, wo, hp, wp, src, cols, ld, off),
            (2, 7) => gather_rows::<E, 2, 7>(&g, ho, wo, hp, wp, src, cols, ld, off),
            (1, _) => gather_rows::<E, 1, 0>(&g, ho, wo, hp, wp, src, cols, ld, off),
            (2, _) => gather_rows::<E, 2, 0>(&g, ho, wo, hp, wp, src, cols, ld, off),
            _ => gather_rows::<E, 0, 0>(&g, ho, wo, hp, wp, src, cols, ld, off),
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
        match (g.stride, wo) {
            (2, 14) => scatter_rows::<E, 2, 14>(g, ho, wo, hp, wp, dcols, ld, off, dst),
            (2, 7) => scatter_rows::<E, 2, 7>(g, ho, wo, hp, wp, dcols, ld, off, dst),
            (1, _) => scatter_rows::<E, 1, 0>(g, ho, wo, hp, wp, dcols, ld, off, dst),
            (2, _) => scatter_rows::<E, 2, 0>(g, ho, wo, hp, wp, dcols, ld, off, dst),
            _ => scatter_rows::<E, 0, 0>(g, ho, wo, hp, wp, dcols, ld, off, dst),
        }
    }
}

/// The row width: the constant `WO`, or `wo` when `WO == 0` (generic).
#[inline(always)]
fn width_of<const WO: usize>(wo: usize) -> usize {
    if WO == 0 {
        wo
    } else {
        debug_assert_eq!(wo, WO);
        WO
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
/// `[C, hp, wp]` input (`S`, `WO`: see [`stride_of`], [`width_of`]).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn gather_rows<E: Float, const S: usize, const WO: usize>(
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
    let wo = width_of::<WO>(wo);
    let (k, hw) = (g.k, ho * wo);
    let span = (wo - 1) * s + 1;
    for c in 0..g.c_in {
        let plane = &xp[c * hp * wp..][..hp * wp];
        for u in 0..k {
            for v in 0..k {
                let row = &mut cols[((c * k + u) * k + v) * ld + off..][..hw];
                for i in 0..ho {
                    let dst = &mut row[i * wo..][..wo];
                    let src = &plane[(i * s + u) * wp + v..][..span];
                    if s == 1 {
                        dst.copy_from_slice(&src[..wo]);
                    } else {
                        for j in 0..wo {
                            dst[j] = src[j * s];
                        }
                    }
                }
            }
        }
    }
}

/// `dp[c, i·s+u, j·s+v] += dcols[(c·k+u)·k+v, i·Wo+j]` over a padded
/// `[C, hp, wp]` accumulator (`S`, `WO`: see [`stride_of`], [`width_of`]).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn scatter_rows<E: Float, const S: usize, const WO: usize>(
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
    let wo = width_of::<WO>(wo);
    let (k, hw) = (g.k, ho * wo);
    let span = (wo - 1) * s + 1;
    for c in 0..g.c_in {
        let plane = &mut dp[c * hp * wp..][..hp * wp];
        for u in 0..k {
            for v in 0..k {
                let row = &dcols[((c * k + u) * k + v) * ld + off..][..hw];
                for i in 0..ho {
                    let src = &row[i * wo..][..wo];
                    let dst = &mut plane[(i * s + u) * wp + v..][..span];
                    if s == 1 {
                        dst.iter_mut().zip(src).for_each(|(d, &x)| *d += x);
                    } else {
                        for j in 0..wo {
                            dst[j * s] += src[j];
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// [`Patcher`]'s dispatch (fixed widths and strides for the reference
    /// CNN's layers) gives exactly the generic path's columns and
    /// accumulations: the reference CNN's three layers, and geometries with
    /// no padding (col2im then adds straight into dx), odd padded widths,
    /// stride 3, k = 1 and k = 5, and non-square images.
    #[test]
    fn fixed_width_rows_equal_the_generic_rows() {
        for (c_in, h, w, k, stride, pad) in [
            (1, 28, 28, 3, 1, 1),
            (8, 28, 28, 3, 2, 1),
            (16, 14, 14, 3, 2, 1),
            (3, 9, 9, 3, 2, 0),
            (2, 11, 8, 3, 3, 1),
            (2, 10, 13, 5, 2, 2),
            (1, 7, 6, 1, 2, 0),
            (2, 6, 9, 2, 2, 1),
        ] {
            let g = ConvGeom {
                c_in,
                h,
                w,
                c_out: 4,
                k,
                stride,
                pad,
            };
            let mut pt = Patcher::<f32>::new(&g);
            let (ho, wo, hp, wp) = (pt.ho, pt.wo, pt.hp, pt.wp);
            let x: Vec<f32> = (0..g.in_features()).map(|i| ((i * 37 % 101) as f32).sin()).collect();
            // the padded input the generic path reads
            let mut xp = vec![0.0f32; c_in * hp * wp];
            for c in 0..c_in {
                for y in 0..h {
                    let d = (c * hp + y + pad) * wp + pad;
                    xp[d..d + w].copy_from_slice(&x[(c * h + y) * w..][..w]);
                }
            }
            let (ld, off) = (3 * ho * wo, ho * wo);
            let mut a = vec![0.5f32; g.patch() * ld];
            let mut b = a.clone();
            // twice: the second call reuses the buffers the first one wrote
            pt.im2col(&x, &mut a, ld, off);
            pt.im2col(&x, &mut a, ld, off);
            gather_rows::<f32, 0, 0>(&g, ho, wo, hp, wp, &xp, &mut b, ld, off);
            assert_eq!(a, b, "im2col, {g:?}");
            let dcols: Vec<f32> = (0..g.patch() * ld).map(|i| ((i * 13 % 97) as f32).cos()).collect();
            let mut da = x.clone();
            pt.col2im_add(&dcols, ld, off, &mut da);
            let mut db = x.clone();
            if pad == 0 {
                // no padding: col2im adds straight into dx
                scatter_rows::<f32, 0, 0>(&g, ho, wo, hp, wp, &dcols, ld, off, &mut db);
                assert_eq!(da, db, "col2im, {g:?}");
                continue;
            }
            let mut dp = vec![0.0f32; c_in * hp * wp];
            scatter_rows::<f32, 0, 0>(&g, ho, wo, hp, wp, &dcols, ld, off, &mut dp);
            for c in 0..c_in {
                for y in 0..h {
                    let s = (c * hp + y + pad) * wp + pad;
                    for (d, v) in db[(c * h + y) * w..][..w].iter_mut().zip(&dp[s..s + w]) {
                        *d += v;
                    }
                }
            }
            assert_eq!(da, db, "col2im, {g:?}");
        }
    }
}
