//! Curvature-vector products on one batch.
//!
//! With logits `zₙ = f(θ; xₙ)`, softmax `sₙ = softmax(zₙ)`, one-hot targets
//! `yₙ` and the mean cross-entropy `L = −(1/N) Σₙ log sₙ[yₙ]`:
//!
//! * **Hessian** (`H v`): run [`Dual`] with a taped tangent, form the
//!   directional derivative `L̇(θ) = (1/N) Σₙ Σₖ (sₙₖ − yₙₖ) żₙₖ` as a
//!   differentiable scalar of θ (`s` taped through `z`, `ż` taped through
//!   the tangent branch) and run reverse mode: `∇θ L̇ = ∇θ(∇L · v) = H v`.
//! * **Generalized Gauss–Newton** (`G v = Jᵀ H_CE J v / N`, with
//!   `J = ∂z/∂θ` and the softmax-CE Hessian `H_CE = diag(s) − s sᵀ` per
//!   sample): run [`Dual`] with a tape-less tangent (`ż = J v`), form
//!   `u = H_CE ż = s ⊙ ż − s (sᵀ ż)` as a constant, and back-propagate the
//!   scalar `(1/N) Σ u · z` through the primal logits only (a
//!   vector-Jacobian product).
//!
//! Both are exact (no finite differences) and cost about two to three
//! gradients. `scale` replaces the `1/N` above, so batches of a larger set
//! can be weighted by `1/N_total` and simply summed.

use crate::dual::{Dual, PrimalCache};
use crate::{Curvature, HvpError};
use dfdx::prelude::*;
use gensplit_models::ops::{one_hot, softmax_rows};
use gensplit_models::{host_vec, Dev, Float, Inputs, Model, Taped};

/// θ, inputs and labels validated against the model (see
/// [`gensplit_models::ops::check_batch`]), with the error lifted into [`HvpError`].
pub(crate) fn check_batch<M: Model + ?Sized, E>(
    model: &M,
    theta: &[E],
    inputs: &Inputs,
    labels: &[u32],
) -> Result<usize, HvpError> {
    Ok(gensplit_models::ops::check_batch(model, theta, inputs, labels)?)
}

/// Curvature-vector product on one batch, scaled by `scale` instead of
/// `1/batch`: returns `scale · Σₙ (∂²ℓₙ/∂θ²) v` (Hessian) or
/// `scale · Σₙ Jₙᵀ H_CE,ₙ Jₙ v` (Gauss–Newton), where `ℓₙ` is sample `n`'s
/// cross-entropy. Checks only the lengths of θ and `v` (see
/// [`curvature_vector`] for the full validation). `cache` (one per θ and
/// batch) keeps the `v`-independent parts of the pass for the next product.
#[allow(clippy::too_many_arguments)]
pub(crate) fn curvature_vector_scaled<M: Model + ?Sized, E: Float>(
    model: &M,
    theta: &[E],
    inputs: &Inputs,
    labels: &[u32],
    v: &[E],
    kind: Curvature,
    scale: f64,
    cache: Option<&PrimalCache<E>>,
) -> Result<Vec<E>, HvpError>
where
    Dev: Device<E>,
{
    let dev = Dev::default();
    let th = dev.tensor_from_vec(theta.to_vec(), (theta.len(),));
    let classes = model.classes();
    let n = labels.len();
    let scale_e = E::of(scale);
    let grads = match kind {
        Curvature::Hessian => {
            let mut ops: Dual<E, Taped<E>> = Dual::new(model.layout(), th.clone(), v)?;
            if let Some(c) = cache {
                ops = ops.with_cache(c);
            }
            let out = model.forward(&mut ops, inputs)?;
            ops.finish()?;
            let Some(zdot) = out.tangent else {
                return Ok(vec![E::zero(); theta.len()]);
            };
            let y = one_hot::<E>(&dev, labels, classes);
            let s = out.primal.softmax::<Axis<1>>();
            let ldot = ((s - y) * zdot).sum::<(), _>() * scale_e;
            ldot.backward()
        }
        Curvature::GaussNewton => {
            let mut ops: Dual<E, NoneTape> = Dual::new(model.layout(), th.clone(), v)?;
            if let Some(c) = cache {
                ops = ops.with_cache(c);
            }
            let out = model.forward(&mut ops, inputs)?;
            ops.finish()?;
            let Some(zdot) = out.tangent else {
                return Ok(vec![E::zero(); theta.len()]);
            };
            let zd = host_vec(&zdot);
            let s = softmax_rows(&host_vec(&out.primal), classes);
            let mut u = Vec::with_capacity(n * classes);
            for (sr, zr) in s.chunks(classes).zip(zd.chunks(classes)) {
                let dot: f64 = sr.iter().zip(zr).map(|(a, b)| a * b.f64()).sum();
                u.extend(sr.iter().zip(zr).map(|(a, b)| E::of(a * (b.f64() - dot))));
            }
            let u = dev.tensor_from_vec(u, (n, classes));
            let vjp = (out.primal * u).sum::<(), _>() * scale_e;
            vjp.backward()
        }
    };
    Ok(host_vec(&grads.get(&th)))
}

/// Curvature-vector product of the mean cross-entropy on one batch:
/// `H v` or `G v` (see the module docs), same layout as θ.
///
/// ```
/// use gensplit_hvp::{curvature_vector, Curvature};
/// use gensplit_models::{Inputs, Model, ModMlp, ModMlpConfig};
/// let m = ModMlp::new(&ModMlpConfig { p: 5, embed: 2, hidden: 4 }).unwrap();
/// let theta: Vec<f64> = m.init(0);
/// let v = vec![1.0; theta.len()];
/// let inputs = Inputs::Tokens { a: &[1, 2], b: &[3, 4] };
/// let hv = curvature_vector(&m, &theta, &inputs, &[4, 1], &v, Curvature::Hessian).unwrap();
/// assert_eq!(hv.len(), theta.len());
/// ```
pub fn curvature_vector<M: Model + ?Sized, E: Float>(
    model: &M,
    theta: &[E],
    inputs: &Inputs,
    labels: &[u32],
    v: &[E],
    kind: Curvature,
) -> Result<Vec<E>, HvpError>
where
    Dev: Device<E>,
{
    let n = check_batch(model, theta, inputs, labels)?;
    if v.len() != theta.len() {
        return Err(HvpError::DirectionLength {
            expected: theta.len(),
            got: v.len(),
        });
    }
    let hv = curvature_vector_scaled(model, theta, inputs, labels, v, kind, 1.0 / n as f64, None)?;
    crate::check_finite(model.layout(), &hv)?;
    Ok(hv)
}
