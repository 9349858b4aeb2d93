//! The reference oracle: the convolution straight from its defining sum,
//! `y[n,o,i,j] = b[o] + Σ_{c,u,v} W[o,c,u,v] · x[n, c, i·s − p + u, j·s − p + v]`
//! (out-of-range reads are 0), in f64 with no blocking, for the tests.

use super::geometry::ConvGeom;

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
