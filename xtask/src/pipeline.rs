//! The pipeline: which stages run, in what order, under which keys
//! ([`plan`], [`keys`]), and the driver that runs or loads each one
//! ([`Ctx::stage`], [`run_all`]). The stages' own computations live in
//! [`crate::stages`] and the per-stage modules; this file holds no
//! computation, so it is not part of any stage's code fingerprint: adding,
//! reordering or re-estimating a stage leaves every other stage's key alone.

use crate::artifact::{Key, Store};
use crate::config::ReproConfig;
use crate::stages::{
    build_images, summarize, train_cnn, train_modadd, DataSummary, DigitSource, Images, ModAddResult, Trained,
};
use anyhow::{Context, Result};
use gensplit_models::Dataset;
use serde::{de::DeserializeOwned, Serialize};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// Versions of each stage's output format/semantics: bump to invalidate.
pub mod version {
    /// `data`
    pub const DATA: u32 = 1;
    /// `train_cnn_*`
    pub const TRAIN_CNN: u32 = 1;
    /// `train_modadd`
    pub const TRAIN_MODADD: u32 = 1;
    /// `hessian_*`
    pub const HESSIAN: u32 = 1;
    /// `steer_*`
    pub const STEER: u32 = 2;
    /// `sphere_*`
    pub const SPHERE: u32 = 1;
}

/// The code fingerprints a run puts into its keys (component name → SHA-256
/// hex; see [`crate::fingerprint`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Code(pub BTreeMap<String, String>);

impl Code {
    /// The fingerprints of the source this binary was built from.
    pub fn built() -> Self {
        Self(
            crate::CODE_FINGERPRINTS
                .iter()
                .map(|(n, h)| (n.to_string(), h.to_string()))
                .collect(),
        )
    }
    /// The fingerprints of the components whose code computes `stage`.
    pub fn of_stage(&self, stage: &str) -> Result<BTreeMap<String, String>> {
        let names = crate::fingerprint::stage_components(stage)
            .with_context(|| format!("stage `{stage}` has no code components"))?;
        names
            .iter()
            .map(|n| {
                let h = self
                    .0
                    .get(*n)
                    .with_context(|| format!("no code fingerprint for `{n}`"))?;
                Ok((n.to_string(), h.clone()))
            })
            .collect()
    }
}

/// What a stage's key is made of, besides its code.
#[derive(Clone, Debug)]
pub struct StageSpec {
    /// Stage name.
    pub name: String,
    /// Stage version ([`version`]).
    pub version: u32,
    /// The configuration the stage reads (canonical JSON).
    pub config: serde_json::Value,
    /// The stages whose artifacts it reads.
    pub inputs: Vec<String>,
}

/// The Hessian configuration of one image Hessian stage: the pure-set
/// Hessians also give the keep eigenspaces of the `seed_k<k>` steering
/// methods, so one Lanczos run computes as many pairs as the largest such k.
pub fn hessian_config(cfg: &ReproConfig, model: &str, set: &str) -> crate::hessian::HessianConfig {
    let hc = &cfg.hessian_images;
    let sc = if model == "pretrained" {
        &cfg.steer
    } else {
        &cfg.steer_mixed_only
    };
    let mut hc_set = hc.clone();
    if set != "mixed" {
        hc_set.k = hc.k.max(sc.seed_ks.iter().copied().max().unwrap_or(0));
    }
    hc_set
}

/// Name of the Hessian stage of `model` on `set` (the pretrained CNN's
/// stages keep their original names).
pub fn hessian_stage(model: &str, set: &str) -> String {
    if model == "pretrained" {
        format!("hessian_{set}")
    } else {
        format!("hessian_{model}_{set}")
    }
}

const IMAGE_SETS: [&str; 3] = ["digits", "patterns", "mixed"];

/// Every stage of `cfg`, in the order [`run_all`] runs them, with what its
/// key hashes. `data_fp` are the image sets' content fingerprints.
pub fn plan(cfg: &ReproConfig, data_fp: &BTreeMap<String, String>) -> Result<Vec<StageSpec>> {
    fn spec<C: Serialize>(name: &str, version: u32, config: &C, inputs: &[&str]) -> Result<StageSpec> {
        Ok(StageSpec {
            name: name.to_string(),
            version,
            config: serde_json::to_value(config)?,
            inputs: inputs.iter().map(|s| s.to_string()).collect(),
        })
    }
    let mut out = vec![
        spec("data", version::DATA, &(&cfg.data, data_fp), &[])?,
        spec(
            "train_cnn_mixed_only",
            version::TRAIN_CNN,
            &cfg.cnn_mixed_only,
            &["data"],
        )?,
        spec(
            "train_cnn_pretrained",
            version::TRAIN_CNN,
            &cfg.cnn_pretrained,
            &["data"],
        )?,
        spec("train_modadd", version::TRAIN_MODADD, &cfg.modadd, &[])?,
    ];
    for (model, model_stage) in [
        ("pretrained", "train_cnn_pretrained"),
        ("mixed_only", "train_cnn_mixed_only"),
    ] {
        for set in IMAGE_SETS {
            let hc_set = hessian_config(cfg, model, set);
            out.push(spec(
                &hessian_stage(model, set),
                version::HESSIAN,
                &(&hc_set, set),
                &[model_stage, "data"],
            )?);
        }
    }
    out.push(spec(
        "hessian_modadd",
        version::HESSIAN,
        &cfg.hessian_modadd,
        &["train_modadd"],
    )?);
    out.push(spec(
        "train_modadd_seed2",
        version::TRAIN_MODADD,
        &cfg.modadd_seed2,
        &[],
    )?);
    let hc = &cfg.hessian_images;
    out.push(spec(
        "hessian_blocks",
        version::HESSIAN,
        &(hc, &cfg.hessian_blocks),
        &[
            "train_cnn_pretrained",
            "data",
            "hessian_digits",
            "hessian_patterns",
            "hessian_mixed",
        ],
    )?);
    for (model, model_stage, sc) in [
        ("pretrained", "train_cnn_pretrained", &cfg.steer),
        ("mixed_only", "train_cnn_mixed_only", &cfg.steer_mixed_only),
    ] {
        let hs: Vec<String> = IMAGE_SETS.iter().map(|set| hessian_stage(model, set)).collect();
        let inputs: Vec<&str> = [model_stage, "data"]
            .into_iter()
            .chain(hs.iter().map(String::as_str))
            .collect();
        out.push(spec(
            &format!("steer_{model}"),
            version::STEER,
            &(sc, hc, model),
            &inputs,
        )?);
    }
    for (label, recipe, train) in [
        ("modadd", &cfg.modadd, "train_modadd"),
        ("modadd_seed2", &cfg.modadd_seed2, "train_modadd_seed2"),
    ] {
        out.push(spec(
            &format!("sphere_{label}"),
            version::SPHERE,
            &(&cfg.sphere, recipe),
            &[train],
        )?);
    }
    out.push(spec(
        "sphere_cnn",
        version::SPHERE,
        &cfg.sphere_cnn,
        &["train_cnn_pretrained", "data"],
    )?);
    Ok(out)
}

/// Every stage's key: the hash of its name, version, code fingerprints,
/// configuration and its inputs' keys (in `plan` order, so inputs come
/// first).
pub fn keys(plan: &[StageSpec], code: &Code) -> Result<BTreeMap<String, Key>> {
    let mut out: BTreeMap<String, Key> = BTreeMap::new();
    for s in plan {
        let inputs = s
            .inputs
            .iter()
            .map(|i| {
                out.get(i)
                    .copied()
                    .with_context(|| format!("stage `{}` reads `{i}`, which is not planned before it", s.name))
            })
            .collect::<Result<Vec<Key>>>()?;
        let key = Key::with_code(&s.name, s.version, Some(&code.of_stage(&s.name)?), &s.config, &inputs)?;
        out.insert(s.name.clone(), key);
    }
    Ok(out)
}

/// Rough compute time of a stage on the 2-core development machine (AVX-512),
/// for the progress line. Full preset: the CNN stages' times in one idle
/// full run (fb79d38's fresh clone, with the modular-addition track running
/// beside them) plus a fifth; the modular-addition stages' times when they
/// run alone on both cores (beside the CNN stages they take longer, on idle
/// CPU, and the progress line says so). A CPU without AVX-512 takes about
/// twice as long (1.8–2.3 times the fb79d38 run's stage times on a
/// first-generation AMD Zen): once stages worth
/// [`Pace::MIN_EVIDENCE`] estimated seconds have run, the progress lines
/// scale these by the pace measured so far ([`estimate_phrase`]). Quick
/// preset: [`QUICK_ESTIMATES`]. Other configurations print the preset's.
pub fn estimate_seconds(stage: &str, quick: bool) -> Option<f64> {
    let full = [
        // the fixtures are read before the first stage starts
        ("data", 1.0),
        ("train_cnn_mixed_only", 24.0),
        ("train_cnn_pretrained", 96.0),
        ("train_modadd", 95.0),
        ("hessian_digits", 42.0),
        ("hessian_patterns", 35.0),
        ("hessian_mixed", 17.0),
        ("hessian_mixed_only_digits", 25.0),
        ("hessian_mixed_only_patterns", 20.0),
        ("hessian_mixed_only_mixed", 17.0),
        ("hessian_modadd", 5.0),
        ("train_modadd_seed2", 75.0),
        ("hessian_blocks", 65.0),
        ("steer_pretrained", 181.0),
        ("steer_mixed_only", 136.0),
        ("sphere_modadd", 60.0),
        ("sphere_modadd_seed2", 40.0),
        ("sphere_cnn", 18.0),
    ];
    let quick_t = QUICK_ESTIMATES;
    let table: &[(&str, f64)] = if quick { &quick_t } else { &full };
    table.iter().find(|(n, _)| *n == stage).map(|(_, s)| *s)
}

/// How fast this machine runs the stages relative to [`estimate_seconds`]:
/// the summed wall times and estimates of the stages computed so far in the
/// foreground (background stages run on idle CPU, so their times say
/// nothing about the machine). Shared by the tracks of one run.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Pace {
    /// Seconds the measured stages took.
    pub actual: f64,
    /// Seconds [`estimate_seconds`] gave for them.
    pub estimated: f64,
}

impl Pace {
    /// Estimated seconds of measured stages below which the pace is not
    /// used (one short stage says little).
    pub const MIN_EVIDENCE: f64 = 20.0;

    /// `estimate` scaled by this machine's pace so far (`actual /
    /// estimated`, held within 0.25–8), or `None` while fewer than
    /// [`Pace::MIN_EVIDENCE`] estimated seconds were measured.
    pub fn scale(&self, estimate: f64) -> Option<f64> {
        (self.estimated >= Self::MIN_EVIDENCE).then(|| estimate * (self.actual / self.estimated).clamp(0.25, 8.0))
    }

    /// Adds one computed stage: its wall time and its estimate.
    pub fn record(&mut self, seconds: f64, estimate: f64) {
        self.actual += seconds;
        self.estimated += estimate;
    }
}

/// The progress line's time estimate for a stage: the reference machine's
/// `estimate` (2 cores with AVX-512) while `pace` has too little evidence,
/// then the estimate at this machine's pace so far.
pub fn estimate_phrase(estimate: Option<f64>, pace: &Pace, background: bool) -> String {
    let shown = estimate.map(|s| match pace.scale(s) {
        Some(t) => (t, "at this machine's pace so far"),
        None => (s, "on 2 cores"),
    });
    match (shown, background) {
        (Some((s, how)), false) if s >= 1.0 => format!(" (about {} {how})", human_seconds(s)),
        (Some(_), false) => " (about a second)".to_string(),
        (Some((s, how)), true) => format!(
            " in the background, on CPU the CNN stages leave idle (about {} alone, {how})",
            human_seconds(s.max(1.0))
        ),
        (None, true) => " in the background".to_string(),
        (None, false) => String::new(),
    }
}

/// [`estimate_seconds`] of the quick preset: one quick run's stage times on
/// the 2-core development machine (measured while builds shared the cores)
/// scaled to the uncontended quick run's 79 s in all.
const QUICK_ESTIMATES: [(&str, f64); 18] = [
    ("data", 1.0),
    ("train_cnn_mixed_only", 1.0),
    ("train_cnn_pretrained", 2.0),
    ("train_modadd", 1.0),
    ("hessian_digits", 3.0),
    ("hessian_patterns", 3.0),
    ("hessian_mixed", 4.0),
    ("hessian_mixed_only_digits", 4.0),
    ("hessian_mixed_only_patterns", 5.0),
    ("hessian_mixed_only_mixed", 4.0),
    ("hessian_modadd", 1.0),
    ("train_modadd_seed2", 1.0),
    ("hessian_blocks", 17.0),
    ("steer_pretrained", 12.0),
    ("steer_mixed_only", 23.0),
    ("sphere_modadd", 10.0),
    ("sphere_modadd_seed2", 5.0),
    ("sphere_cnn", 1.0),
];

/// How a stage was satisfied in this run.
#[derive(Clone, Debug, Serialize)]
pub struct StageRun {
    /// Stage name.
    pub stage: String,
    /// Artifact key (hex).
    pub key: String,
    /// Loaded from the cache.
    pub cached: bool,
    /// Wall seconds spent in this run.
    pub seconds: f64,
    /// Seconds the stage took when it was computed (from the artifact's
    /// sidecar `.meta.json`; timings are kept out of the artifact itself so
    /// that artifacts stay bit-identical).
    pub compute_seconds: Option<f64>,
    /// SHA-256 of the artifact's payload (hex): equal hashes mean equal
    /// results, across keys and code versions.
    pub payload_sha256: Option<String>,
}

/// A stage not started because a stage on the other track failed.
#[derive(Debug, thiserror::Error)]
#[error("stage `{stage}` not started: a stage on the other track failed")]
pub struct Cancelled {
    /// The stage that was not started.
    pub stage: String,
}

/// Run-wide state: the store, flags and the record of stage runs.
pub struct Ctx {
    /// Artifact store.
    pub store: Store,
    /// Recompute even on a cache hit.
    pub force: bool,
    /// Record of stage runs, in order.
    pub runs: Vec<StageRun>,
    /// Code fingerprints that enter the keys ([`Code::built`] in the binary).
    pub code: Code,
    /// Whether the quick preset's time estimates apply (progress lines).
    pub quick: bool,
    /// Every stage's key, set by [`run_all`] from its [`plan`].
    pub keys: BTreeMap<String, Key>,
    /// The planned stages in plan order (their numbers in progress lines).
    pub order: Vec<String>,
    /// Set when a stage on another track has failed: the stages not started
    /// yet stop instead of computing for nothing.
    pub cancel: Arc<AtomicBool>,
    /// This context's stages run in the background, on CPU another track
    /// leaves idle (said in their progress lines).
    pub background: bool,
    /// This machine's pace so far, shared by every track of the run
    /// (scales the progress lines' estimates).
    pub pace: Arc<std::sync::Mutex<Pace>>,
}

impl Ctx {
    /// A context over `store` with the built code fingerprints.
    pub fn new(store: Store, force: bool, quick: bool) -> Self {
        Self {
            store,
            force,
            runs: Vec::new(),
            code: Code::built(),
            quick,
            keys: BTreeMap::new(),
            order: Vec::new(),
            cancel: Arc::new(AtomicBool::new(false)),
            background: false,
            pace: Arc::default(),
        }
    }

    /// A context for a track of stages run on another thread: the same
    /// store, flags, keys and cancel flag, and a record of its own (merged
    /// back by [`Ctx::absorb`]).
    pub fn fork(&self) -> Self {
        Self {
            store: self.store.clone(),
            force: self.force,
            runs: Vec::new(),
            code: self.code.clone(),
            quick: self.quick,
            keys: self.keys.clone(),
            order: self.order.clone(),
            cancel: Arc::clone(&self.cancel),
            background: false,
            pace: Arc::clone(&self.pace),
        }
    }

    /// Whether every one of `stages` has an artifact file under its key (a
    /// cheap look ahead: not read, not verified).
    fn all_stored(&self, stages: &[&str]) -> bool {
        !self.force
            && stages
                .iter()
                .all(|s| self.keys.get(*s).is_some_and(|k| self.store.path(s, k).exists()))
    }

    /// Takes in the record of a forked context; the record stays in plan order.
    pub fn absorb(&mut self, other: Ctx) {
        let order = &self.order;
        self.runs.extend(other.runs);
        self.runs
            .sort_by_key(|r| order.iter().position(|s| *s == r.stage).unwrap_or(usize::MAX));
    }

    /// Runs (or loads) one stage under its planned key (see [`plan`],
    /// [`keys`]). A corrupt cached artifact is reported and recomputed; one
    /// that cannot be read (permission denied, I/O error) is an error.
    pub fn stage<T: Serialize + DeserializeOwned>(
        &mut self,
        stage: &str,
        compute: impl FnOnce() -> Result<T>,
    ) -> Result<(Key, T)> {
        // Only what needs `T` is generic (loading, computing, saving); the
        // bookkeeping around it is compiled once, not once per artifact type.
        let t0 = Instant::now();
        let (key, n) = self.stage_key(stage)?;
        if !self.force {
            match self.store.load::<T>(stage, &key) {
                Ok(Some(v)) => {
                    self.record_cached(stage, &key, n, t0);
                    return Ok((key, v));
                }
                Ok(None) => {}
                Err(e) => self.unusable_artifact(stage, e)?,
            }
        }
        let reference = self.announce(stage, &key, n);
        let value = compute().with_context(|| format!("stage `{stage}`"))?;
        let seconds = t0.elapsed().as_secs_f64();
        let path = self.store.save(stage, &key, &value, seconds)?;
        self.record_computed(stage, &key, reference, seconds, &path);
        Ok((key, value))
    }

    /// The stage's planned key and its 1-based position in the plan, or an
    /// error when it is not planned or the run was cancelled.
    fn stage_key(&self, stage: &str) -> Result<(Key, usize)> {
        let key = *self
            .keys
            .get(stage)
            .with_context(|| format!("stage `{stage}` is not in the plan"))?;
        if self.cancel.load(Ordering::Relaxed) {
            return Err(Cancelled {
                stage: stage.to_string(),
            }
            .into());
        }
        let n = self.order.iter().position(|s| s == stage).unwrap_or(self.runs.len()) + 1;
        Ok((key, n))
    }

    /// A cached artifact that could not be used: an I/O error is the
    /// stage's error; a corrupt or mismatched one is a warning (the stage
    /// is recomputed).
    fn unusable_artifact(&self, stage: &str, e: crate::artifact::ArtifactError) -> Result<()> {
        match e {
            e @ crate::artifact::ArtifactError::Io { .. } => {
                Err(anyhow::Error::new(e).context(format!("stage `{stage}`")))
            }
            e => {
                tracing::warn!("stage {stage}: unusable cached artifact, recomputing: {e}");
                Ok(())
            }
        }
    }

    fn record_cached(&mut self, stage: &str, key: &Key, n: usize, t0: Instant) {
        let total = self.keys.len();
        tracing::info!("stage {n}/{total} {stage}: cached ({})", &key.hex()[..16]);
        let compute_seconds = self.store.compute_seconds(stage, key);
        self.push_run(stage, key, true, t0.elapsed().as_secs_f64(), compute_seconds);
    }

    /// Appends the stage's record (its payload hash read from the artifact).
    fn push_run(&mut self, stage: &str, key: &Key, cached: bool, seconds: f64, compute_seconds: Option<f64>) {
        self.runs.push(StageRun {
            stage: stage.into(),
            key: key.hex(),
            cached,
            seconds,
            compute_seconds,
            payload_sha256: self.store.payload_sha256(stage, key),
        });
    }

    /// Logs that the stage is computing, with its time estimate; returns the
    /// reference estimate (seconds), if the stage has one.
    fn announce(&self, stage: &str, key: &Key, n: usize) -> Option<f64> {
        let total = self.keys.len();
        let reference = estimate_seconds(stage, self.quick);
        let pace = self.pace.lock().map(|p| *p).unwrap_or_default();
        let estimate = estimate_phrase(reference, &pace, self.background);
        tracing::info!(
            "stage {n}/{total} {stage}: computing{estimate}, key {}",
            &key.hex()[..16]
        );
        reference
    }

    fn record_computed(&mut self, stage: &str, key: &Key, reference: Option<f64>, seconds: f64, path: &Path) {
        if let (Some(est), false) = (reference, self.background) {
            if let Ok(mut p) = self.pace.lock() {
                p.record(seconds, est);
            }
        }
        tracing::info!(stage, seconds = format!("{seconds:.1}"), path = %path.display(), "done");
        self.push_run(stage, key, false, seconds, Some(seconds));
    }
}

fn human_seconds(s: f64) -> String {
    if s < 90.0 {
        format!("{s:.0} s")
    } else {
        format!("{:.0} min", s / 60.0)
    }
}
/// Everything the report needs.
pub struct Outputs {
    /// Data summary.
    pub data: DataSummary,
    /// Trained on mixed only.
    pub cnn_mixed_only: Trained,
    /// Pretrained then mixed.
    pub cnn_pretrained: Trained,
    /// Modular addition.
    pub modadd: ModAddResult,
    /// Hessian spectra: digits, patterns, mixed (pretrained CNN), modadd.
    pub hessian: Vec<crate::hessian::HessianResult>,
    /// Per-layer curvature of the pretrained CNN: (set, rows).
    pub hessian_blocks: Vec<(String, Vec<crate::blocks::BlockRow>)>,
    /// Hessian spectra of the mixed-only CNN: digits, patterns, mixed.
    pub hessian_mixed_only: Vec<crate::hessian::HessianResult>,
    /// Steering and independence of the pretrained CNN.
    pub steer_pretrained: crate::steer::SteerResult,
    /// Steering and independence of the mixed-only CNN.
    pub steer_mixed_only: crate::steer::SteerResult,
    /// The second modular-addition network.
    pub modadd_seed2: ModAddResult,
    /// Sphere search on both modular-addition networks.
    pub sphere: Vec<crate::sphere::SphereResult>,
    /// Sphere search on the pretrained CNN's mixed loss.
    pub sphere_cnn: crate::sphere_cnn::CnnSphereResult,
    /// The image datasets (in memory, for the export).
    pub images: Images,
}

/// Runs every stage of `cfg`.
pub fn run_all(ctx: &mut Ctx, cfg: &ReproConfig, digits: &DigitSource) -> Result<Outputs> {
    // The digit source enters keys through the data fingerprints, never by path.
    let t0 = Instant::now();
    tracing::info!("building the image datasets from {}", digits.dir.display());
    let images = build_images(digits, &cfg.data)
        .with_context(|| format!("building image datasets from {}", digits.dir.display()))?;
    let summary = summarize(&images);
    let build_s = t0.elapsed().as_secs_f64();
    let fp: BTreeMap<String, String> = summary.fingerprints.iter().cloned().collect();
    let planned = plan(cfg, &fp)?;
    ctx.keys = keys(&planned, &ctx.code)?;
    ctx.order = planned.into_iter().map(|s| s.name).collect();
    tracing::info!(
        "{} stages; artifacts in {} (a stage whose artifact is there is not recomputed)",
        ctx.keys.len(),
        ctx.store.dir().display()
    );
    let (_, data) = ctx.stage("data", || Ok(summary))?;
    if let Some(r) = ctx.runs.last_mut() {
        // the images are rebuilt in memory on every run (only their
        // fingerprints are cached), so the build is this stage's cost
        r.seconds += build_s;
        r.compute_seconds = Some(r.seconds);
    }
    // Two tracks that share no stage run at the same time: the CNN's
    // (training, Hessians, per-layer table, steering, sphere search) and
    // modular addition's (two trainings, a Hessian, two sphere searches).
    // While the CNN track has work, the modular-addition stages run on
    // pools of their own at the lowest scheduling priority: they take the
    // share of the cores that the CNN stages leave idle instead of slowing
    // them down. The trainings and the Hessian get one thread (their small
    // matrix products cost less CPU on one thread than on two: 67 s against
    // 79 s of wall time for `train_modadd` alone), the sphere searches as
    // many as the global pool (their starts run in parallel). A stage that
    // starts when the CNN track is done (or cached) runs on the global pool
    // at normal priority ([`TrackPools`]). Every stage's result is the same
    // on any number of threads (checked by the payload hashes), so this
    // changes timings only.
    let background = !ctx.all_stored(CNN_TRACK);
    let build_pool = |threads: usize| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("gensplit-modadd-{i}"))
            .start_handler(|_| lowest_priority())
            .build()
            .context("building the modular-addition track's thread pool")
    };
    let modadd_pool = build_pool(1)?;
    let sphere_pool = build_pool(rayon::current_num_threads())?;
    let mut modadd_ctx = ctx.fork();
    modadd_ctx.background = background;
    let cancel = Arc::clone(&ctx.cancel);
    let cnn_done = AtomicBool::new(!background);
    let pools = TrackPools {
        background: &modadd_pool,
        background_wide: &sphere_pool,
        cnn_done: &cnn_done,
    };
    let (cnn, modadd) = std::thread::scope(|s| {
        let modadd_ctx = &mut modadd_ctx;
        let handle = std::thread::Builder::new()
            .name("modadd track".into())
            .spawn_scoped(s, || {
                let r = modadd_track(modadd_ctx, cfg, &pools);
                if r.is_err() {
                    cancel.store(true, Ordering::Relaxed);
                }
                r
            });
        let cnn = cnn_track(ctx, cfg, &images);
        cnn_done.store(true, Ordering::Relaxed);
        if cnn.is_err() {
            ctx.cancel.store(true, Ordering::Relaxed);
        }
        let modadd = match handle {
            Ok(h) => h
                .join()
                .unwrap_or_else(|_| Err(anyhow::anyhow!("the modular-addition track panicked"))),
            Err(e) => Err(anyhow::Error::new(e).context("starting the modular-addition track")),
        };
        (cnn, modadd)
    });
    ctx.absorb(modadd_ctx);
    // The failure itself, not the other track's cancellation it caused.
    let (cnn, modadd) = match (cnn, modadd) {
        (Ok(c), Ok(m)) => (c, m),
        (Err(e), Err(m)) if e.is::<Cancelled>() => return Err(m),
        (Err(e), _) | (_, Err(e)) => return Err(e),
    };
    let mut hessian = cnn.hessian;
    hessian.push(modadd.hessian_modadd);
    Ok(Outputs {
        sphere_cnn: cnn.sphere_cnn,
        modadd_seed2: modadd.modadd_seed2,
        sphere: modadd.sphere,
        data,
        cnn_mixed_only: cnn.cnn_mixed_only,
        cnn_pretrained: cnn.cnn_pretrained,
        modadd: modadd.modadd,
        hessian,
        hessian_blocks: cnn.hessian_blocks,
        hessian_mixed_only: cnn.hessian_mixed_only,
        steer_pretrained: cnn.steer_pretrained,
        steer_mixed_only: cnn.steer_mixed_only,
        images,
    })
}

/// Gives the calling thread the lowest scheduling priority (nice 19): it
/// then runs when a core would otherwise be idle. Linux only (nice is a
/// per-thread attribute there); elsewhere, and if the call fails, the
/// thread keeps its priority, which changes timings only.
fn lowest_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: gettid and setpriority take and return plain integers; no
    // memory is shared with the kernel.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        if libc::setpriority(libc::PRIO_PROCESS, tid, 19) != 0 {
            tracing::debug!("could not lower the modular-addition track's priority");
        }
    }
}

/// The stages of the CNN track, in the order [`cnn_track`] runs them.
pub const CNN_TRACK: &[&str] = &[
    "train_cnn_mixed_only",
    "train_cnn_pretrained",
    "hessian_digits",
    "hessian_patterns",
    "hessian_mixed",
    "hessian_mixed_only_digits",
    "hessian_mixed_only_patterns",
    "hessian_mixed_only_mixed",
    "hessian_blocks",
    "steer_pretrained",
    "steer_mixed_only",
    "sphere_cnn",
];

/// What the CNN track computes.
struct CnnTrack {
    cnn_mixed_only: Trained,
    cnn_pretrained: Trained,
    /// digits, patterns, mixed (pretrained CNN).
    hessian: Vec<crate::hessian::HessianResult>,
    hessian_mixed_only: Vec<crate::hessian::HessianResult>,
    hessian_blocks: Vec<(String, Vec<crate::blocks::BlockRow>)>,
    steer_pretrained: crate::steer::SteerResult,
    steer_mixed_only: crate::steer::SteerResult,
    sphere_cnn: crate::sphere_cnn::CnnSphereResult,
}

/// The CNN stages ([`CNN_TRACK`]).
fn cnn_track(ctx: &mut Ctx, cfg: &ReproConfig, images: &Images) -> Result<CnnTrack> {
    let (_, cnn_mixed_only) = ctx.stage("train_cnn_mixed_only", || {
        train_cnn("cnn_mixed_only", &cfg.cnn_mixed_only, &cfg.data, images)
    })?;
    let (_, cnn_pretrained) = ctx.stage("train_cnn_pretrained", || {
        train_cnn("cnn_pretrained", &cfg.cnn_pretrained, &cfg.data, images)
    })?;
    let mut hessian = Vec::new();
    let mut hessian_mixed_only = Vec::new();
    let hc = &cfg.hessian_images;
    for (model_name, trained) in [("pretrained", &cnn_pretrained), ("mixed_only", &cnn_mixed_only)] {
        for (set, images) in [
            ("digits", &images.test_digits),
            ("patterns", &images.test_patterns),
            ("mixed", &images.test_mixed),
        ] {
            let hc_set = hessian_config(cfg, model_name, set);
            let (_, h) = ctx.stage(&hessian_stage(model_name, set), || {
                let data = Dataset::from_images(&images.first(hc_set.subset));
                crate::hessian::run(set, trained, &data, &hc_set)
            })?;
            if model_name == "pretrained" {
                hessian.push(h);
            } else {
                hessian_mixed_only.push(h);
            }
        }
    }
    // per-layer curvature of the pretrained CNN (top eigenvalue, trace and
    // top-eigenvector share per layer)
    let bc = &cfg.hessian_blocks;
    let (_, hessian_blocks) = ctx.stage("hessian_blocks", || {
        let mut out = Vec::new();
        for (h, imgs) in hessian
            .iter()
            .zip([&images.test_digits, &images.test_patterns, &images.test_mixed])
        {
            let data = Dataset::from_images(&imgs.first(hc.subset));
            let rows = crate::blocks::per_block(
                &cnn_pretrained.model,
                &cnn_pretrained.theta,
                &data,
                hc.batch_size,
                &h.vectors,
                bc.k_top.min(h.vectors.len()),
                bc.probes,
                bc.seed,
                hc.f64,
            )?;
            out.push((h.set.clone(), rows));
        }
        Ok(out)
    })?;
    let mut steered = Vec::new();
    for (model_name, trained, hs, sc) in [
        ("pretrained", &cnn_pretrained, &hessian, &cfg.steer),
        (
            "mixed_only",
            &cnn_mixed_only,
            &hessian_mixed_only,
            &cfg.steer_mixed_only,
        ),
    ] {
        let (_, r) = ctx.stage(&format!("steer_{model_name}"), || {
            let refs: Vec<&crate::hessian::HessianResult> = hs.iter().collect();
            crate::steer::run(model_name, trained, &refs, images, hc, sc)
        })?;
        steered.push(r);
    }
    let steer_mixed_only = steered.pop().context("steer_mixed_only result")?;
    let steer_pretrained = steered.pop().context("steer_pretrained result")?;
    let (_, sphere_cnn) = ctx.stage("sphere_cnn", || {
        crate::sphere_cnn::run(&cnn_pretrained, images, &cfg.sphere_cnn)
    })?;
    Ok(CnnTrack {
        cnn_mixed_only,
        cnn_pretrained,
        hessian,
        hessian_mixed_only,
        hessian_blocks,
        steer_pretrained,
        steer_mixed_only,
        sphere_cnn,
    })
}

/// What the modular-addition track computes.
struct ModaddTrack {
    modadd: ModAddResult,
    hessian_modadd: crate::hessian::HessianResult,
    modadd_seed2: ModAddResult,
    sphere: Vec<crate::sphere::SphereResult>,
}

/// Where the modular-addition track runs a stage: while the CNN track has
/// work, on a lowest-priority pool of one thread (trainings and the
/// Hessian: their small products cost less CPU on one thread) or of as many
/// threads as the global pool (`wide`: the sphere searches, whose starts
/// run in parallel and so can use all the CPU the CNN stages leave idle);
/// once the CNN track is done, on the whole machine (rayon's global pool,
/// normal priority).
struct TrackPools<'a> {
    background: &'a rayon::ThreadPool,
    background_wide: &'a rayon::ThreadPool,
    cnn_done: &'a AtomicBool,
}

impl TrackPools<'_> {
    /// Runs `f` (one stage) on the pool chosen when it starts, with
    /// `ctx.background` telling the stage's log line which one.
    fn run<R: Send>(&self, ctx: &mut Ctx, wide: bool, f: impl FnOnce(&mut Ctx) -> R + Send) -> R {
        if self.cnn_done.load(Ordering::Relaxed) {
            ctx.background = false;
            f(ctx)
        } else if wide {
            self.background_wide.install(|| f(ctx))
        } else {
            self.background.install(|| f(ctx))
        }
    }
}

/// The modular-addition stages: both trainings, the Hessian, both sphere
/// searches.
fn modadd_track(ctx: &mut Ctx, cfg: &ReproConfig, pools: &TrackPools) -> Result<ModaddTrack> {
    let (_, modadd) = pools.run(ctx, false, |ctx| {
        ctx.stage("train_modadd", || train_modadd(&cfg.modadd, "modadd"))
    })?;
    let (_, hessian_modadd) = pools.run(ctx, false, |ctx| {
        ctx.stage("hessian_modadd", || {
            let data = gensplit_data::modular::generate(&cfg.modadd.data)?;
            crate::hessian::run(
                "modadd",
                &modadd.trained,
                &Dataset::from_modadd(&data.train),
                &cfg.hessian_modadd,
            )
        })
    })?;
    let (_, modadd_seed2) = pools.run(ctx, false, |ctx| {
        ctx.stage("train_modadd_seed2", || {
            train_modadd(&cfg.modadd_seed2, "modadd seed 2")
        })
    })?;
    let mut sphere = Vec::new();
    for (label, recipe, result) in [
        ("modadd", &cfg.modadd, &modadd),
        ("modadd_seed2", &cfg.modadd_seed2, &modadd_seed2),
    ] {
        let (_, r) = pools.run(ctx, true, |ctx| {
            ctx.stage(&format!("sphere_{label}"), || {
                crate::sphere::run(label, recipe, result, &cfg.sphere, label != "modadd")
            })
        })?;
        sphere.push(r);
    }
    Ok(ModaddTrack {
        modadd,
        hessian_modadd,
        modadd_seed2,
        sphere,
    })
}
