//! # gensplit-models
//!
//! The two networks gensplit studies, written on [dfdx] 0.13 (stable Rust,
//! CPU), and the training loop.
//!
//! * **One flat parameter vector per model.** A model's parameters θ ∈ ℝⁿ are
//!   a single `Vec<E>`; [`ParamLayout`] names its blocks (layer, shape,
//!   offset). Gradients, Hessian eigenvectors, steering directions and
//!   sphere-search perturbations later all live in this coordinate system.
//! * **Each forward is written once**, generically over the [`Ops`] trait
//!   ([`Model::forward`]). [`Primal`] runs it on taped dfdx tensors (training,
//!   gradients), [`infer::Infer`] without a tape (evaluation: the same values,
//!   with the conv activations kept on the host); the `gensplit-hvp` crate
//!   runs the *same* code on (primal, tangent) pairs to get exact
//!   Hessian-vector products.
//! * dfdx has no convolution on stable Rust, so [`conv`] adds a
//!   differentiable conv2d op from outside (im2col + GEMM, parallel over the
//!   batch), tested against a naive reference and finite differences.
//!
//! ```
//! use gensplit_models::{Cnn, CnnConfig, Model, Inputs, loss_and_grad};
//! let cnn = Cnn::new(&CnnConfig::default()).unwrap();
//! assert_eq!(cnn.layout().len(), 29_018);
//! let theta: Vec<f64> = cnn.init(0);
//! let pixels = vec![0.5f32; 2 * 784];
//! let labels = [3u32, 7];
//! let out = loss_and_grad(&cnn, &theta, &Inputs::Images { pixels: &pixels }, &labels).unwrap();
//! assert!(out.loss > 0.0 && out.grad.len() == theta.len());
//! ```

pub mod cnn;
pub mod conv;
pub mod fourier;
pub mod infer;
pub mod layout;
pub mod mlp;
pub mod model;
pub mod ops;
pub mod train;

pub use cnn::{Cnn, CnnConfig};
pub use conv::ConvGeom;
pub use layout::{Block, BlockId, ParamLayout};
pub use mlp::{ModMlp, ModMlpConfig};
pub use model::{AnyModel, Inputs, Model, ModelError};
pub use ops::{evaluate_logits, evaluate_logits_primal, loss_and_grad, LossGrad, Ops, Primal};
pub use train::{
    evaluate, train, AdamW, AdamWConfig, CurvePoint, DataInputs, Dataset, Eval, Progress, Schedule, TrainConfig,
    TrainLog,
};

use dfdx::prelude::*;

/// Floating-point element types the models run in: `f32` (training) and
/// `f64` (Hessian tests and oracles).
pub trait Float:
    Dtype + num_traits::Float + num_traits::FromPrimitive + Send + Sync + std::fmt::Debug + 'static
{
    /// Converts from `f64` (rounding for `f32`).
    fn of(x: f64) -> Self;
    /// Converts to `f64`.
    fn f64(self) -> f64;
    /// Converts `f32` values (the datasets' storage type), exactly: a copy
    /// for `f32` (one `memcpy`, the same values as `of(x as f64)`), widening
    /// for `f64`.
    fn from_f32s(v: &[f32]) -> Vec<Self>;
}
impl Float for f32 {
    fn of(x: f64) -> Self {
        x as f32
    }
    fn f64(self) -> f64 {
        self as f64
    }
    fn from_f32s(v: &[f32]) -> Vec<Self> {
        v.to_vec()
    }
}
impl Float for f64 {
    fn of(x: f64) -> Self {
        x
    }
    fn f64(self) -> f64 {
        self
    }
    fn from_f32s(v: &[f32]) -> Vec<Self> {
        v.iter().map(|&x| x as f64).collect()
    }
}

/// The device every model runs on (dfdx's CPU backend).
pub type Dev = Cpu;
/// A rank-1 dfdx tensor with a runtime length.
pub type T1<E, T = NoneTape> = Tensor<(usize,), E, Dev, T>;
/// A rank-2 dfdx tensor `[rows, cols]` with runtime dimensions.
pub type T2<E, T = NoneTape> = Tensor<(usize, usize), E, Dev, T>;
/// dfdx's tape that records backward operations.
pub type Taped<E> = OwnedTape<E, Dev>;

/// A tensor's elements in row-major order, as a `Vec`.
///
/// dfdx's `as_vec` walks the tensor element by element through its strides;
/// this makes the tensor contiguous first (free when it already is, which
/// every op output here is) and then copies the buffer in one `memcpy`.
pub fn host_vec<S: Shape, E: Float, T>(t: &Tensor<S, E, Dev, T>) -> Vec<E>
where
    Dev: Device<E>,
{
    let t = t.retaped::<NoneTape>().contiguous();
    let mut v = vec![E::zero(); t.shape().num_elements()];
    t.copy_into(&mut v);
    v
}

/// Moves a gradient buffer out of dfdx's CPU gradient store, leaving it
/// empty (put it back through [`cpu_vec`]): lets a custom backward op read
/// one gradient while writing others.
pub fn take_grad<E: Float>(v: &mut <Dev as dfdx::tensor::Storage<E>>::Vec) -> Vec<E> {
    std::mem::take(cpu_vec::<E>(v))
}

/// dfdx's CPU storage as the `Vec` it wraps.
pub fn cpu_vec<E: Float>(v: &mut <Dev as dfdx::tensor::Storage<E>>::Vec) -> &mut Vec<E> {
    v
}

/// dfdx's CPU gradient storage as a slice (outside any `Cpu: Device<E>`
/// where-clause, so the associated type normalizes).
pub fn cpu_slice<E: Float>(v: &mut <Dev as dfdx::tensor::Storage<E>>::Vec) -> &mut [E] {
    &mut v[..]
}

/// Installs mimalloc as the global allocator and defines
/// `fn keep_freed_memory()`, which tells it never to return freed memory to
/// the OS; the one allocator setup of gensplit's binaries and benches (call
/// `keep_freed_memory()` first thing in `main`).
///
/// Why: glibc's malloc returns the large im2col/activation buffers to the OS
/// after every call and faults them in again (~30% of an HVP's time in a
/// profile); mimalloc keeps them. Every HVP allocates and frees the same
/// large activation and gradient buffers, and returning them made the kernel
/// zero fresh pages on each call (~10% of an HVP's time), so the process
/// keeps its peak footprint instead (mimalloc's `purge_delay` option, enum
/// index 15 in mimalloc v2 and v3, set to −1). Results are unaffected
/// (allocation never changes arithmetic).
///
/// The calling crate must depend on `mimalloc` and `libmimalloc-sys` (with
/// its `extended` feature); this crate does not.
#[macro_export]
macro_rules! mimalloc_allocator {
    () => {
        #[global_allocator]
        static ALLOC: ::mimalloc::MiMalloc = ::mimalloc::MiMalloc;

        /// Tells mimalloc never to hand freed memory back to the OS (see
        /// `gensplit_models::mimalloc_allocator!`).
        fn keep_freed_memory() {
            /// mimalloc's `purge_delay` option (its enum index in mimalloc v2 and v3).
            const MI_OPTION_PURGE_DELAY: ::libmimalloc_sys::mi_option_t = 15;
            // SAFETY: sets an integer option; called before any threads start.
            unsafe { ::libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) }
        }
    };
}
