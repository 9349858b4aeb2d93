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
//!
//! The parts, one file each:
//!
//! * [`geometry`]: [`ConvGeom`], the shape arithmetic `Ho = (H + 2p − k)/s + 1`;
//! * [`im2col`]: the patch matrix `cols = im2col(x)` and its adjoint col2im;
//! * [`gemm`]: the strided GEMM kernel `dst (+)= a · b` every product runs on;
//! * [`kernel`]: forward and backward passes on plain buffers, a chunk of
//!   [`CHUNK`] samples per GEMM, parallel over chunks;
//! * [`op`]: the differentiable dfdx op [`conv2d`] (and its fused-ReLU form);
//! * [`dual`]: the fused (primal, tangent) op [`conv2d_dual`] for
//!   curvature products, with its [`DualConvCache`];
//! * [`reference`](mod@reference): the naive oracle [`reference_forward`] the tests check
//!   against.

pub mod dual;
pub mod gemm;
pub mod geometry;
pub mod im2col;
pub mod kernel;
pub mod op;
pub mod reference;

pub use dual::{conv2d_dual, DualConvCache};
pub use geometry::ConvGeom;
pub use kernel::{backward_raw, dual_backward_raw, dual_forward_raw, forward_raw, ConvGrads, CHUNK};
pub use op::{conv2d, conv2d_relu_with, conv2d_with};
pub use reference::reference_forward;
