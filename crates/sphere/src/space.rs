//! Search spaces: a set of directions in θ-space and the coordinates `c`
//! on them.
//!
//! A move is `δ(c) = Σᵢ cᵢ bᵢ` for columns `bᵢ ∈ ℝⁿ` (n = number of
//! parameters) and the sphere is `‖c‖₂ = r` in the coordinates, so the units
//! of `r` are those of the columns:
//!
//! * [`Coords::orthonormal`]: orthonormal columns (a slice of a Hessian or
//!   Gauss–Newton spectrum): `‖δ‖ = ‖c‖`, `r` in units of θ.
//! * [`Coords::whitened`]: columns `uᵢ / √λᵢ` of an eigen-slice: the
//!   quadratic model of the loss increase is `‖c‖²/2` in every direction,
//!   so only higher-order terms pick the direction.
//! * [`Coords::shrink`]: one column per parameter group `G`, equal to
//!   `−θ|_G` (the group's own weights, negated). `cᵢ = 1` deletes group i,
//!   `cᵢ ∈ [0, 1]` shrinks it; the sphere radius counts "deleted groups"
//!   (`r = √m` deletes m groups). Groups are e.g. a hidden unit's incoming
//!   and outgoing weights ([`unit_groups`]); the search then uses a box
//!   constraint `c ∈ [0, 1]^K` so that it can only damage, never amplify.

use crate::SphereError;
use gensplit_models::ParamLayout;

/// A block, its shape (rows, cols) and its principal right vectors.
type Principal = (gensplit_models::Block, usize, usize, Vec<Vec<f64>>);

/// A search space: `K` columns of length `n`.
#[derive(Clone, Debug, PartialEq)]
pub struct Coords {
    cols: Vec<Vec<f64>>,
    n: usize,
    /// Diagonal quadratic model `Bᵀ H B` when the columns are scaled
    /// eigenvectors (used by the loss-minus-quadratic objective).
    curvature: Option<Vec<f64>>,
}

impl Coords {
    /// Orthonormal columns (not checked beyond lengths; pass eigenvectors).
    /// `values` are their eigenvalues (the quadratic model), if known.
    pub fn orthonormal(cols: Vec<Vec<f64>>, values: Option<Vec<f64>>) -> Result<Self, SphereError> {
        Self::new(cols, values)
    }

    /// Whitened eigen-slice: columns `uᵢ / √λᵢ`; eigenvalues ≤ `floor` are
    /// clamped to `floor` (> 0) so that tiny or negative ones do not become
    /// infinite steps. The quadratic model becomes `λᵢ / max(λᵢ, floor)`.
    pub fn whitened(vectors: Vec<Vec<f64>>, values: &[f64], floor: f64) -> Result<Self, SphereError> {
        if !(floor > 0.0) {
            return Err(SphereError::Param {
                field: "floor",
                reason: format!("must be > 0, got {floor}"),
            });
        }
        if values.len() != vectors.len() {
            return Err(SphereError::Length {
                what: "eigenvalues",
                expected: vectors.len(),
                got: values.len(),
            });
        }
        let mut curv = Vec::with_capacity(values.len());
        let cols = vectors
            .into_iter()
            .zip(values)
            .map(|(v, &l)| {
                let s = l.max(floor);
                curv.push(l / s);
                v.into_iter().map(|x| x / s.sqrt()).collect()
            })
            .collect();
        Self::new(cols, Some(curv))
    }

    /// Shrink coordinates: column i is `−θ` restricted to `groups[i]`
    /// (indices into θ). Empty groups and groups whose weights are all zero
    /// are rejected (they would be dead coordinates).
    pub fn shrink(theta: &[f64], groups: &[Vec<usize>]) -> Result<Self, SphereError> {
        let n = theta.len();
        let mut cols = Vec::with_capacity(groups.len());
        for (gi, g) in groups.iter().enumerate() {
            let mut col = vec![0.0; n];
            for &i in g {
                if i >= n {
                    return Err(SphereError::Param {
                        field: "groups",
                        reason: format!("group {gi} has index {i} ≥ {n} parameters"),
                    });
                }
                col[i] = -theta[i];
            }
            if col.iter().all(|&x| x == 0.0) {
                return Err(SphereError::Param {
                    field: "groups",
                    reason: format!("group {gi} is empty or all its weights are zero"),
                });
            }
            cols.push(col);
        }
        Self::new(cols, None)
    }

    /// Shrink coordinates over the top-`k` principal components of one
    /// weight block `W` (`[rows, cols]`, the block's first axis by the rest):
    /// with `W = Σᵢ σᵢ uᵢ vᵢᵀ`, column i is `−σᵢ uᵢ vᵢᵀ` placed in the
    /// block, so `cᵢ = 1` deletes component i. For the modular MLP's token
    /// embedding the components are (mixtures of) Fourier modes of the
    /// tokens, found without knowing that tokens form a cycle. Components are
    /// taken largest first, at most `k`, and only as many as it takes to
    /// hold `energy` (in `(0, 1]`) of `‖W‖²_F`: the small remainder is
    /// noise that a search would delete first for free.
    pub fn block_components(
        theta: &[f64],
        layout: &ParamLayout,
        block: &str,
        k: usize,
        energy: f64,
    ) -> Result<Self, SphereError> {
        let (b, _, _, vs) = Self::principal_directions(theta, layout, block, k, energy)?;
        Self::block_directions_in(theta, &b, &vs)
    }

    /// Like [`Coords::block_components`], but the shrink directions are
    /// rotated within the span of those components so that, to first order,
    /// their costs decouple: with `G = ∂L/∂W` at θ (`grad`, the full
    /// gradient of the searched loss) and `V` the components' right vectors,
    /// the directions are `V qᵢ` for the eigenvectors `qᵢ` of
    /// `−sym(Vᵀ Wᵀ G V)` (the first-order loss change of shrinking along
    /// `V q` is `qᵀ (−sym(VᵀWᵀGV)) q`). Principal components with close
    /// singular values are arbitrary mixtures of the modules that share
    /// them; the loss's first-order costs tell those modules apart when
    /// their votes differ. Label-free: it reads the training loss's
    /// gradient only.
    pub fn block_components_rotated(
        theta: &[f64],
        layout: &ParamLayout,
        block: &str,
        k: usize,
        energy: f64,
        grad: &[f64],
    ) -> Result<Self, SphereError> {
        if grad.len() != theta.len() {
            return Err(SphereError::Length {
                what: "gradient",
                expected: theta.len(),
                got: grad.len(),
            });
        }
        let (b, rows, cols, vs) = Self::principal_directions(theta, layout, block, k, energy)?;
        let m = vs.len();
        let w = &theta[b.offset..b.offset + rows * cols];
        let g = &grad[b.offset..b.offset + rows * cols];
        // A = Wᵀ G (cols × cols), then C = −sym(Vᵀ A V) (m × m)
        let mut a = vec![0.0; cols * cols];
        for r in 0..rows {
            for i in 0..cols {
                let wi = w[r * cols + i];
                for j in 0..cols {
                    a[i * cols + j] += wi * g[r * cols + j];
                }
            }
        }
        let av: Vec<Vec<f64>> = vs
            .iter()
            .map(|v| {
                (0..cols)
                    .map(|i| (0..cols).map(|j| a[i * cols + j] * v[j]).sum())
                    .collect()
            })
            .collect();
        let mut c = vec![0.0; m * m];
        for i in 0..m {
            for j in 0..m {
                let vij: f64 = vs[i].iter().zip(&av[j]).map(|(x, y)| x * y).sum();
                let vji: f64 = vs[j].iter().zip(&av[i]).map(|(x, y)| x * y).sum();
                c[i * m + j] = -0.5 * (vij + vji);
            }
        }
        let (_, q) = gensplit_eigen::dense::sym_eig(&c, m).map_err(|e| SphereError::Param {
            field: "grad",
            reason: format!("eigendecomposition of the first-order cost failed: {e}"),
        })?;
        let dirs: Vec<Vec<f64>> = (0..m)
            .map(|l| {
                let ql = &q[l * m..(l + 1) * m];
                (0..cols).map(|i| (0..m).map(|t| ql[t] * vs[t][i]).sum()).collect()
            })
            .collect();
        Self::block_directions_in(theta, &b, &dirs)
    }

    /// Shrink coordinates over the same principal span as
    /// [`Coords::block_components`], but deleting along **row-space**
    /// (left) directions chosen by independent component analysis: with
    /// `uᵢ = W vᵢ / σᵢ` the left singular vectors of the kept components
    /// (one value per row of `W`, e.g. per token of an embedding), the
    /// directions are `qᵢ = U rᵢ` for the orthogonal rotation `R` that makes
    /// the signals `qᵢ` as non-Gaussian as possible over the rows
    /// ([`ica_rotation`]: largest `Σᵢ (κᵢ − 3)²`, `κᵢ = rows · Σₐ qᵢₐ⁴` the
    /// kurtosis of a unit vector's entries), and column i is `−qᵢ qᵢᵀ W`
    /// placed in the block (`cᵢ = 1` removes the part of every column of `W`
    /// along `qᵢ`).
    ///
    /// Why: principal components are defined only up to rotations within a
    /// group of close singular values, and modules with close strengths
    /// share such a group, so each component mixes them. Independent
    /// signals summed are closer to Gaussian than either alone (the central
    /// limit), so the least Gaussian rotation unmixes them, without labels
    /// and without knowing what the modules are. On the modular MLP's
    /// embedding a module's row signal is a sinusoid of the token (κ = 1.5
    /// for any phase), an equal mix of two frequencies has κ = 2.25, and
    /// sinusoids of different frequencies are exactly orthogonal over the
    /// tokens, so deleting along row directions removes one frequency
    /// without touching the others.
    pub fn block_components_ica(
        theta: &[f64],
        layout: &ParamLayout,
        block: &str,
        k: usize,
        energy: f64,
    ) -> Result<Self, SphereError> {
        let (b, qs) = Self::ica_directions(theta, layout, block, k, energy)?;
        let groups: Vec<Vec<usize>> = (0..qs.len()).map(|i| vec![i]).collect();
        Self::row_projections_in(theta, &b, &qs, &groups)
    }

    /// Like [`Coords::block_components_ica`], with the ICA directions
    /// grouped into subspaces by [`dependent_groups`] (independent subspace
    /// analysis): directions whose squared signals correlate (|corr(qᵢ²,
    /// qⱼ²)| ≥ `min_dependence`) belong to one module, and one coordinate
    /// deletes the whole group: column `−P_G W` with `P_G = Σ_{i∈G} qᵢqᵢᵀ`.
    /// A module of the modular MLP is a cos/sin pair of one frequency over
    /// the tokens, whose squares sum to a constant (correlation −1), while
    /// squares of different frequencies are uncorrelated (0): one
    /// coordinate per frequency, and `r = 1` deletes one module exactly.
    pub fn block_subspaces_ica(
        theta: &[f64],
        layout: &ParamLayout,
        block: &str,
        k: usize,
        energy: f64,
        min_dependence: f64,
    ) -> Result<Self, SphereError> {
        unit_interval("min_dependence", min_dependence)?;
        let (b, qs) = Self::ica_directions(theta, layout, block, k, energy)?;
        let groups = dependent_groups(&qs, min_dependence);
        Self::row_projections_in(theta, &b, &qs, &groups)
    }

    /// The block and its ICA-unmixed row-space directions (see
    /// [`Coords::block_components_ica`]).
    fn ica_directions(
        theta: &[f64],
        layout: &ParamLayout,
        block: &str,
        k: usize,
        energy: f64,
    ) -> Result<(gensplit_models::Block, Vec<Vec<f64>>), SphereError> {
        let (b, rows, cols, vs) = Self::principal_directions(theta, layout, block, k, energy)?;
        let w = &theta[b.offset..b.offset + rows * cols];
        let left: Vec<Vec<f64>> = vs
            .iter()
            .map(|v| {
                let u: Vec<f64> = (0..rows)
                    .map(|r| (0..cols).map(|i| w[r * cols + i] * v[i]).sum())
                    .collect();
                let n = u.iter().map(|x| x * x).sum::<f64>().sqrt();
                u.into_iter().map(|x| x / n).collect()
            })
            .collect();
        Ok((b, ica_rotation(&left, 100)))
    }

    /// Columns `−Σ_{i∈G} qᵢ (qᵢᵀ W)` of block `b`, one per group `G` of the
    /// orthonormal row-space directions `qs`.
    fn row_projections_in(
        theta: &[f64],
        b: &gensplit_models::Block,
        qs: &[Vec<f64>],
        groups: &[Vec<usize>],
    ) -> Result<Self, SphereError> {
        let rows = b.shape.first().copied().unwrap_or(1).max(1);
        let size: usize = b.shape.iter().product();
        let cols = size / rows;
        let w = &theta[b.offset..b.offset + size];
        let mut out = Vec::with_capacity(groups.len());
        for g in groups {
            let mut col = vec![0.0; theta.len()];
            for q in g.iter().filter_map(|&i| qs.get(i)) {
                // qᵀW (one value per column of W)
                let qw: Vec<f64> = (0..cols)
                    .map(|i| (0..rows).map(|r| q[r] * w[r * cols + i]).sum())
                    .collect();
                for r in 0..rows {
                    for i in 0..cols {
                        col[b.offset + r * cols + i] -= q[r] * qw[i];
                    }
                }
            }
            out.push(col);
        }
        Self::new(out, None)
    }

    /// The block, its shape (rows, cols), and the right vectors of its
    /// top principal components (module docs of [`Coords::block_components`]).
    fn principal_directions(
        theta: &[f64],
        layout: &ParamLayout,
        block: &str,
        k: usize,
        energy: f64,
    ) -> Result<Principal, SphereError> {
        unit_interval("energy", energy)?;
        let b = layout
            .blocks()
            .iter()
            .find(|b| b.name == block)
            .cloned()
            .ok_or_else(|| SphereError::Param {
                field: "block",
                reason: format!("no parameter block named `{block}`"),
            })?;
        if theta.len() != layout.len() {
            return Err(SphereError::Length {
                what: "θ",
                expected: layout.len(),
                got: theta.len(),
            });
        }
        let rows = b.shape.first().copied().unwrap_or(1).max(1);
        let size: usize = b.shape.iter().product();
        let cols = size / rows;
        let w = &theta[b.offset..b.offset + size];
        // Gram matrix WᵀW (cols × cols) and its eigenpairs, largest first
        let mut g = vec![0.0; cols * cols];
        for r in 0..rows {
            let row = &w[r * cols..(r + 1) * cols];
            for i in 0..cols {
                for j in 0..cols {
                    g[i * cols + j] += row[i] * row[j];
                }
            }
        }
        let (vals, vecs) = gensplit_eigen::dense::sym_eig(&g, cols).map_err(|e| SphereError::Param {
            field: "block",
            reason: format!("eigendecomposition of the block's Gram matrix failed: {e}"),
        })?;
        let total: f64 = vals.iter().map(|v| v.max(0.0)).sum();
        let mut held = 0.0;
        let mut out = Vec::new();
        for j in (0..cols).rev().take(k.min(cols)) {
            if vals[j] <= 1e-12 * vals[cols - 1].max(f64::MIN_POSITIVE) || held >= energy * total * (1.0 - 1e-12) {
                break;
            }
            held += vals[j];
            out.push(vecs[j * cols..(j + 1) * cols].to_vec());
        }
        Ok((b, rows, cols, out))
    }

    /// Shrink columns `−(W v) vᵀ` of block `b` for unit vectors `v`.
    fn block_directions_in(theta: &[f64], b: &gensplit_models::Block, dirs: &[Vec<f64>]) -> Result<Self, SphereError> {
        let rows = b.shape.first().copied().unwrap_or(1).max(1);
        let size: usize = b.shape.iter().product();
        let cols = size / rows;
        let w = &theta[b.offset..b.offset + size];
        let mut out = Vec::new();
        for v in dirs {
            let n = v.iter().map(|x| x * x).sum::<f64>().sqrt();
            let v: Vec<f64> = v.iter().map(|x| x / n).collect();
            let wv: Vec<f64> = (0..rows)
                .map(|r| (0..cols).map(|i| w[r * cols + i] * v[i]).sum())
                .collect();
            let mut col = vec![0.0; theta.len()];
            for r in 0..rows {
                for i in 0..cols {
                    col[b.offset + r * cols + i] = -wv[r] * v[i];
                }
            }
            out.push(col);
        }
        Self::new(out, None)
    }

    fn new(cols: Vec<Vec<f64>>, curvature: Option<Vec<f64>>) -> Result<Self, SphereError> {
        let Some(n) = cols.first().map(Vec::len) else {
            return Err(SphereError::Param {
                field: "columns",
                reason: "the search space has no directions".into(),
            });
        };
        for c in &cols {
            if c.len() != n {
                return Err(SphereError::Length {
                    what: "search-space column",
                    expected: n,
                    got: c.len(),
                });
            }
        }
        if let Some(q) = &curvature {
            if q.len() != cols.len() {
                return Err(SphereError::Length {
                    what: "quadratic model",
                    expected: cols.len(),
                    got: q.len(),
                });
            }
        }
        Ok(Self { cols, n, curvature })
    }

    /// Number of coordinates K.
    pub fn dim(&self) -> usize {
        self.cols.len()
    }
    /// Number of parameters n.
    pub fn params(&self) -> usize {
        self.n
    }
    /// The columns.
    pub fn columns(&self) -> &[Vec<f64>] {
        &self.cols
    }
    /// `Bᵀ H B` diagonal, when known.
    pub fn curvature(&self) -> Option<&[f64]> {
        self.curvature.as_deref()
    }
    /// `δ(c) = B c`.
    pub fn delta(&self, c: &[f64]) -> Vec<f64> {
        let mut d = vec![0.0; self.n];
        for (ci, col) in c.iter().zip(&self.cols) {
            if *ci != 0.0 {
                d.iter_mut().zip(col).for_each(|(a, b)| *a += ci * b);
            }
        }
        d
    }
    /// `Bᵀ g` (a gradient in θ pulled back to the coordinates).
    pub fn pullback(&self, g: &[f64]) -> Vec<f64> {
        self.cols
            .iter()
            .map(|col| col.iter().zip(g).map(|(a, b)| a * b).sum())
            .collect()
    }
}

/// The parameter groups of the hidden units between two linear layers
/// named `first` (weight `[h, in]`, bias `[h]`) and `second` (weight
/// `[out, h]`): group j holds unit j's incoming weights, its bias and its
/// outgoing weights. Block names are `"<layer>.weight"` / `"<layer>.bias"`.
pub fn unit_groups(layout: &ParamLayout, first: &str, second: &str) -> Result<Vec<Vec<usize>>, SphereError> {
    let find = |name: String| {
        layout
            .blocks()
            .iter()
            .find(|b| b.name == name)
            .cloned()
            .ok_or_else(|| SphereError::Param {
                field: "layer",
                reason: format!("no parameter block named `{name}`"),
            })
    };
    let w1 = find(format!("{first}.weight"))?;
    let b1 = find(format!("{first}.bias"))?;
    let w2 = find(format!("{second}.weight"))?;
    if w1.shape.len() != 2 || w2.shape.len() != 2 || b1.shape != [w1.shape[0]] || w2.shape[1] != w1.shape[0] {
        return Err(SphereError::Param {
            field: "layer",
            reason: format!(
                "`{first}` {:?}/{:?} and `{second}` {:?} are not two linear layers around one hidden layer",
                w1.shape, b1.shape, w2.shape
            ),
        });
    }
    let (h, fan_in, out) = (w1.shape[0], w1.shape[1], w2.shape[0]);
    Ok((0..h)
        .map(|j| {
            let mut g: Vec<usize> = (0..fan_in).map(|i| w1.offset + j * fan_in + i).collect();
            g.push(b1.offset + j);
            g.extend((0..out).map(|o| w2.offset + o * h + j));
            g
        })
        .collect())
}

/// `Ok` when `x` is in `(0, 1]`, else a parameter error naming `field`.
fn unit_interval(field: &'static str, x: f64) -> Result<(), SphereError> {
    if x > 0.0 && x <= 1.0 {
        Ok(())
    } else {
        Err(SphereError::Param {
            field,
            reason: format!("must be in (0, 1], got {x}"),
        })
    }
}

/// Kurtosis `n Σₐ xₐ⁴ / (Σₐ xₐ²)²` of the entries of `x` (3 for Gaussian
/// entries, 1.5 for a sinusoid sampled over whole periods, 1 for a constant).
pub fn kurtosis(x: &[f64]) -> f64 {
    let s2: f64 = x.iter().map(|v| v * v).sum();
    let s4: f64 = x.iter().map(|v| v.powi(4)).sum();
    x.len() as f64 * s4 / (s2 * s2).max(f64::MIN_POSITIVE)
}

/// The orthogonal rotation of orthonormal vectors `y` (all of one length)
/// that maximizes their total non-Gaussianity `Σᵢ (κᵢ − 3)²` ([`kurtosis`]):
/// Jacobi sweeps over pairs, each pair's angle found on a grid of 90
/// angles in `[0, π/2)` (the pair's objective has that period) refined by
/// golden-section search, until a sweep improves the objective by less
/// than 1e-12 relative or after `max_sweeps`. Returns the rotated vectors
/// (orthonormal, spanning the same space). Deterministic.
pub fn ica_rotation(y: &[Vec<f64>], max_sweeps: usize) -> Vec<Vec<f64>> {
    let mut q: Vec<Vec<f64>> = y.to_vec();
    let g = |x: &[f64]| (kurtosis(x) - 3.0).powi(2);
    let rot = |a: &[f64], b: &[f64], t: f64| -> (Vec<f64>, Vec<f64>) {
        let (s, c) = t.sin_cos();
        (
            a.iter().zip(b).map(|(x, y)| c * x + s * y).collect(),
            a.iter().zip(b).map(|(x, y)| -s * x + c * y).collect(),
        )
    };
    let pair = |a: &[f64], b: &[f64], t: f64| {
        let (x, y) = rot(a, b, t);
        g(&x) + g(&y)
    };
    let total = |q: &[Vec<f64>]| q.iter().map(|x| g(x)).sum::<f64>();
    let m = q.len();
    for _ in 0..max_sweeps {
        let before = total(&q);
        for i in 0..m {
            for j in i + 1..m {
                let h = std::f64::consts::FRAC_PI_2 / 90.0;
                let (mut bt, mut bf) = (0.0, pair(&q[i], &q[j], 0.0));
                for t in 1..90 {
                    let f = pair(&q[i], &q[j], t as f64 * h);
                    if f > bf {
                        (bt, bf) = (t as f64 * h, f);
                    }
                }
                // golden-section refinement of the maximum in [bt − h, bt + h]
                let (mut lo, mut hi) = (bt - h, bt + h);
                let phi = 0.5 * (5f64.sqrt() - 1.0);
                for _ in 0..40 {
                    let (x1, x2) = (hi - phi * (hi - lo), lo + phi * (hi - lo));
                    if pair(&q[i], &q[j], x1) > pair(&q[i], &q[j], x2) {
                        hi = x2;
                    } else {
                        lo = x1;
                    }
                }
                let t = 0.5 * (lo + hi);
                let f = pair(&q[i], &q[j], t);
                let (t, f) = if f > bf { (t, f) } else { (bt, bf) };
                if t != 0.0 && f > pair(&q[i], &q[j], 0.0) {
                    let (x, y) = rot(&q[i], &q[j], t);
                    q[i] = x;
                    q[j] = y;
                }
            }
        }
        let after = total(&q);
        if after - before <= 1e-12 * before.abs().max(1e-300) {
            break;
        }
    }
    q
}

/// Groups of dependent signals (independent subspace analysis): `i` and
/// `j` are linked when the Pearson correlation of their squared entries,
/// `|corr(qᵢ², qⱼ²)|`, is at least `min_dependence`, and groups are the
/// connected components of the links (each sorted; groups in order of
/// their smallest member). Independent signals have uncorrelated squares;
/// the coordinates of one rotation-invariant subspace (a cos/sin pair) do
/// not (their squares sum to a constant). A signal with constant squares
/// (no variance) links to nothing.
pub fn dependent_groups(q: &[Vec<f64>], min_dependence: f64) -> Vec<Vec<usize>> {
    let m = q.len();
    let sq: Vec<Vec<f64>> = q
        .iter()
        .map(|v| {
            let s: Vec<f64> = v.iter().map(|x| x * x).collect();
            let mean = s.iter().sum::<f64>() / s.len().max(1) as f64;
            s.into_iter().map(|x| x - mean).collect()
        })
        .collect();
    let norm: Vec<f64> = sq.iter().map(|s| s.iter().map(|x| x * x).sum::<f64>().sqrt()).collect();
    let mut parent: Vec<usize> = (0..m).collect();
    fn root(p: &mut [usize], mut i: usize) -> usize {
        while p[i] != i {
            p[i] = p[p[i]];
            i = p[i];
        }
        i
    }
    for i in 0..m {
        for j in i + 1..m {
            if !(norm[i] > 0.0 && norm[j] > 0.0) {
                continue;
            }
            let c: f64 = sq[i].iter().zip(&sq[j]).map(|(a, b)| a * b).sum::<f64>() / (norm[i] * norm[j]);
            if c.abs() >= min_dependence {
                let (a, b) = (root(&mut parent, i), root(&mut parent, j));
                parent[a.max(b)] = a.min(b);
            }
        }
    }
    let mut groups: Vec<Vec<usize>> = Vec::new();
    let mut index = vec![usize::MAX; m];
    for i in 0..m {
        let r = root(&mut parent, i);
        if index[r] == usize::MAX {
            index[r] = groups.len();
            groups.push(Vec::new());
        }
        groups[index[r]].push(i);
    }
    groups
}
