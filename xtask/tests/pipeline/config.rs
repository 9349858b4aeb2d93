//! The user configuration (`--config FILE`, `cargo xtask config --print`)
//! and the safetensors export: overrides merge onto a preset, bad fields are
//! errors that name their dotted path, a config equal to the preset keeps the
//! preset's keys, and changing the modular-addition `p` recomputes only the
//! modular-addition stages.

use std::path::{Path, PathBuf};
use xtask::artifact::Key;
use xtask::config::{ConfigError, ReproConfig};
use xtask::stages::DigitSource;

/// `base` with the TOML document `overrides` merged onto it.
fn apply(base: &ReproConfig, overrides: &str) -> Result<ReproConfig, ConfigError> {
    base.with_overrides(overrides)
}

/// The error message of an override that must fail.
fn error(base: &ReproConfig, overrides: &str) -> String {
    match apply(base, overrides) {
        Ok(_) => panic!("override accepted:\n{overrides}"),
        Err(e) => e.to_string(),
    }
}

fn presets() -> [(&'static str, ReproConfig); 3] {
    [
        ("full", ReproConfig::full()),
        ("quick", ReproConfig::quick()),
        ("tiny", ReproConfig::tiny()),
    ]
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("gensplit-config-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

#[test]
fn empty_override_equals_the_preset_and_keeps_its_keys() {
    for (name, preset) in presets() {
        for doc in ["", "# nothing\n", "[steer]\n", "[modadd.data]\np = 59\n"] {
            if doc.contains("59") && name != "full" {
                continue;
            }
            let merged = apply(&preset, doc).unwrap();
            assert_eq!(merged, preset, "{name} with {doc:?}");
            // stage keys are content-addressed: same config, same key
            for (stage, a, b) in [
                (
                    "train_modadd",
                    Key::of("train_modadd", 1, &merged.modadd, &[]),
                    Key::of("train_modadd", 1, &preset.modadd, &[]),
                ),
                (
                    "steer",
                    Key::of("steer", 1, &merged.steer, &[]),
                    Key::of("steer", 1, &preset.steer, &[]),
                ),
                ("all", Key::of("all", 1, &merged, &[]), Key::of("all", 1, &preset, &[])),
            ] {
                assert_eq!(a.unwrap().hex(), b.unwrap().hex(), "{name} {stage}");
            }
        }
    }
}

#[test]
fn printed_config_reads_back_to_the_same_config() {
    for (name, preset) in presets() {
        let text = preset.to_toml();
        assert!(
            text.contains("[steer]") && text.contains("[[cnn_pretrained.phases]]"),
            "{text}"
        );
        assert_eq!(apply(&preset, &text).unwrap(), preset, "{name}:\n{text}");
    }
    let full = ReproConfig::full().to_toml();
    // TOML has no null and no u64 above i64::MAX: both are explained
    assert!(
        full.contains("Unset (no value; TOML has no null): data.train_limit"),
        "{full}"
    );
    assert!(full.contains("slq_subset = \"18446744073709551615\""), "{full}");
}

#[test]
fn overrides_replace_exactly_the_fields_given() {
    let base = ReproConfig::tiny();
    let cfg = apply(
        &base,
        r#"
        [steer]
        alphas = [1, 2.5]          # integers are fine where floats are expected
        ascent.steps = 7
        [data]
        train_limit = 200
        [hessian_modadd]
        slq_subset = "18446744073709551615"
        [[cnn_mixed_only.phases]]
        data = "Digits"
        train = { steps = 3, batch_size = 8, schedule = "Constant", seed = 5, eval_every = 1, checkpoint_every = 0, optim = { lr = 0.01, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0.0 } }
        "#,
    )
    .unwrap();
    assert_eq!(cfg.steer.alphas, [1.0, 2.5]);
    assert_eq!(cfg.steer.ascent.steps, 7);
    assert_eq!(cfg.data.train_limit, Some(200));
    assert_eq!(cfg.hessian_modadd.slq_subset, usize::MAX);
    assert_eq!(cfg.cnn_mixed_only.phases.len(), 1);
    assert_eq!(cfg.cnn_mixed_only.phases[0].train.steps, 3);
    assert_eq!(cfg.cnn_mixed_only.phases[0].train.optim.lr, 0.01);
    // everything else is the preset's
    let mut expect = base.clone();
    expect.steer.alphas = cfg.steer.alphas.clone();
    expect.steer.ascent.steps = 7;
    expect.data.train_limit = Some(200);
    expect.cnn_mixed_only.phases = cfg.cnn_mixed_only.phases.clone();
    assert_eq!(cfg, expect);
}

#[test]
fn unknown_fields_are_errors_naming_the_dotted_path() {
    let base = ReproConfig::full();
    let e = error(&base, "[steer]\nalhpas = [1.0]\n");
    assert!(
        e.contains("unknown field `steer.alhpas`") && e.contains("alphas"),
        "{e}"
    );
    let e = error(&base, "seed = 1\n");
    assert!(e.contains("unknown field `seed`"), "{e}");
    let e = error(&base, "[steer_mixed_only.unlearn]\nstepz = 3\n");
    assert!(e.contains("unknown field `steer_mixed_only.unlearn.stepz`"), "{e}");
    let e = error(&base, "[[cnn_mixed_only.phases]]\ndata = \"Mixed\"\nbogus = 1\n");
    assert!(e.contains("unknown field `cnn_mixed_only.phases[0].bogus`"), "{e}");
    // a replaced array element must be complete
    let e = error(&base, "[[cnn_mixed_only.phases]]\ndata = \"Mixed\"\n");
    assert!(e.contains("`cnn_mixed_only.phases[0].train` is missing"), "{e}");
}

#[test]
fn wrong_types_and_values_are_errors_naming_the_dotted_path() {
    let base = ReproConfig::full();
    let e = error(&base, "[steer]\nk = \"five\"\n");
    assert!(
        e.contains("`steer.k` has the wrong type: expected an integer, found a string"),
        "{e}"
    );
    let e = error(&base, "steer.alphas = [0.5, \"x\"]\n");
    assert!(e.contains("`steer.alphas[1]`") && e.contains("expected a float"), "{e}");
    let e = error(&base, "modadd.train.steps = 1.5\n");
    assert!(e.contains("`modadd.train.steps`") && e.contains("found a float"), "{e}");
    let e = error(&base, "hessian_images = 3\n");
    assert!(e.contains("`hessian_images`") && e.contains("expected a table"), "{e}");
    let e = error(&base, "quick = 1\n");
    assert!(e.contains("`quick`") && e.contains("expected a boolean"), "{e}");
    // right TOML type, but a value the field cannot hold
    let e = error(&base, "modadd.data.seed = -1\n");
    assert!(e.contains("invalid value for `modadd.data.seed`"), "{e}");
    let e = error(&base, "modadd.train.schedule = \"Linear\"\n");
    assert!(
        e.contains("`modadd.train.schedule`") && e.contains("unknown variant"),
        "{e}"
    );
    let e = error(&base, "steer.mu = nan\n");
    assert!(e.contains("`steer.mu`"), "{e}");
    // p of the data and of the model must agree
    let e = error(&base, "modadd.data.p = 61\n");
    assert!(e.contains("modadd.data.p") && e.contains("modadd.model.p"), "{e}");
    // not TOML at all
    let e = error(&base, "steer.k = = 3\n");
    assert!(e.contains("not valid TOML"), "{e}");
}

#[test]
fn a_config_file_error_names_the_file_and_the_field() {
    let dir = tmp("file");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("my.toml");
    std::fs::write(&file, "[hessian_images]\nkk = 3\n").unwrap();
    let e = format!(
        "{:#}",
        ReproConfig::load_overrides(&ReproConfig::full(), &file).unwrap_err()
    );
    assert!(e.contains("my.toml") && e.contains("hessian_images.kk"), "{e}");
    std::fs::write(&file, "hessian_images.k = 3\n").unwrap();
    let cfg = ReproConfig::load_overrides(&ReproConfig::quick(), &file).unwrap();
    assert_eq!(cfg.hessian_images.k, 3);
    assert!(cfg.quick);
    let e = format!(
        "{:#}",
        ReproConfig::load_overrides(&ReproConfig::full(), &dir.join("absent.toml")).unwrap_err()
    );
    assert!(e.contains("absent.toml"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

fn mnist() -> DigitSource {
    DigitSource {
        dir: gensplit_data::mnist::default_dir(),
        verify: true,
    }
}

fn recomputed(runs: &[xtask::pipeline::StageRun]) -> Vec<&str> {
    runs.iter().filter(|r| !r.cached).map(|r| r.stage.as_str()).collect()
}

/// Parses a safetensors file: (metadata, [(name, dtype, shape, bytes)]),
/// checking the header length, padding and that the offsets tile the data.
#[allow(clippy::type_complexity)]
fn read_safetensors(path: &Path) -> (serde_json::Value, Vec<(String, String, Vec<u64>, Vec<u8>)>) {
    let bytes = std::fs::read(path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    assert_eq!(n % 8, 0, "header padded to 8 bytes");
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let data = &bytes[8 + n..];
    let mut tensors: Vec<(String, String, Vec<u64>, [usize; 2])> = header
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, _)| *k != "__metadata__")
        .map(|(k, v)| {
            let off: Vec<usize> = v["data_offsets"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_u64().unwrap() as usize)
                .collect();
            let shape = v["shape"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_u64().unwrap())
                .collect();
            (
                k.clone(),
                v["dtype"].as_str().unwrap().to_string(),
                shape,
                [off[0], off[1]],
            )
        })
        .collect();
    tensors.sort_by_key(|t| t.3);
    let mut at = 0;
    for (name, dtype, shape, [b, e]) in &tensors {
        assert_eq!(*b, at, "{name}: offsets are contiguous");
        let item = if dtype == "F32" { 4 } else { 8 };
        assert_eq!((e - b) as u64, shape.iter().product::<u64>() * item, "{name}: size");
        at = *e;
    }
    assert_eq!(at, data.len(), "the tensors fill the data section");
    let out = tensors
        .into_iter()
        .map(|(name, dtype, shape, [b, e])| (name, dtype, shape, data[b..e].to_vec()))
        .collect();
    (header["__metadata__"].clone(), out)
}

#[test]
fn changing_p_recomputes_only_the_modadd_stages_and_exports_safetensors() {
    let base = ReproConfig::tiny();
    let dir = tmp("p");
    let runs = xtask::reproduce(&base, &dir, false, &mnist()).unwrap();
    assert!(runs.iter().all(|r| !r.cached));
    // a config file equal to the preset: the same keys, all cache hits
    let same = apply(&base, "[modadd.data]\np = 7\n[modadd.model]\np = 7\n").unwrap();
    let runs2 = xtask::reproduce(&same, &dir, false, &mnist()).unwrap();
    assert!(recomputed(&runs2).is_empty(), "{runs2:?}");
    let keys = |r: &[xtask::pipeline::StageRun]| r.iter().map(|s| s.key.clone()).collect::<Vec<_>>();
    assert_eq!(keys(&runs), keys(&runs2));

    // p = 11: only the modular-addition stages are recomputed
    let cfg = apply(&base, "modadd.data.p = 11\nmodadd.model.p = 11\n").unwrap();
    assert_eq!((cfg.modadd.data.p, cfg.modadd.model.p), (11, 11));
    let runs3 = xtask::reproduce(&cfg, &dir, false, &mnist()).unwrap();
    assert_eq!(recomputed(&runs3), ["train_modadd", "hessian_modadd", "sphere_modadd"]);
    for (a, b) in runs.iter().zip(&runs3) {
        assert_eq!(a.stage, b.stage);
        assert_eq!(a.key == b.key, b.cached, "{}", a.stage);
    }
    // the report records the effective config
    let s: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("report/summary.json")).unwrap()).unwrap();
    assert_eq!(s["config"]["effective"], serde_json::to_value(&cfg).unwrap());
    assert_eq!(s["config"]["effective"]["modadd"]["data"]["p"], 11);
    assert_eq!(s["config"]["quick"], true);

    // the export in both formats: the same arrays, one index
    xtask::export::run(&cfg, &dir, false, &mnist(), xtask::export::Format::Both).unwrap();
    let ex = dir.join("export");
    let index: serde_json::Value = serde_json::from_slice(&std::fs::read(ex.join("index.json")).unwrap()).unwrap();
    let (meta, tensors) = read_safetensors(&ex.join("gensplit.safetensors"));
    assert_eq!(meta["format"], "gensplit export v1");
    let arrays = index["arrays"].as_array().unwrap();
    assert_eq!(arrays.len(), tensors.len());
    assert!(tensors.iter().any(|t| t.0 == "cnn_pretrained/conv1.weight"));
    assert!(tensors.iter().any(|t| t.0 == "hessian/digits_eigenvectors"));
    assert!(
        tensors.iter().any(|t| t.0.starts_with("steered/pretrained_")),
        "steered parameter vectors are exported"
    );
    for a in arrays {
        let st = &a["safetensors"];
        assert_eq!(st["file"], "gensplit.safetensors");
        let name = st["tensor"].as_str().unwrap();
        let (_, dtype, shape, data) = tensors.iter().find(|t| t.0 == name).unwrap();
        assert_eq!(st["dtype"], dtype.as_str());
        let shape_json: Vec<u64> = a["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_u64().unwrap())
            .collect();
        assert_eq!(&shape_json, shape, "{name}");
        // the .npy file holds the same bytes after its header
        let npy = std::fs::read(ex.join(a["file"].as_str().unwrap())).unwrap();
        let hlen = u16::from_le_bytes([npy[8], npy[9]]) as usize;
        assert_eq!(&npy[10 + hlen..], data.as_slice(), "{name}");
    }
    // values round-trip: modadd labels are (a + b) mod 11
    let get = |n: &str| -> Vec<i64> {
        let t = tensors.iter().find(|t| t.0 == n).unwrap();
        assert_eq!(t.1, "I64");
        t.3.chunks(8)
            .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
            .collect()
    };
    let (a, b, l) = (
        get("data/modadd_train_a"),
        get("data/modadd_train_b"),
        get("data/modadd_train_labels"),
    );
    assert!(!l.is_empty());
    for i in 0..l.len() {
        assert_eq!(l[i], (a[i] + b[i]) % 11);
    }

    // safetensors only: no `file` in the index
    xtask::export::run(&cfg, &dir, false, &mnist(), xtask::export::Format::Safetensors).unwrap();
    let index: serde_json::Value = serde_json::from_slice(&std::fs::read(ex.join("index.json")).unwrap()).unwrap();
    for a in index["arrays"].as_array().unwrap() {
        assert!(a.get("file").is_none() && a["safetensors"]["tensor"].is_string(), "{a}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// An enum field (a sphere formulation's `space` or `loss`) may be given as
/// another variant than the preset's: the full preset's sphere table,
/// printed as TOML, merges onto the quick preset and gives the full one's.
/// A variant that does not exist is still an error naming the field.
#[test]
fn enum_fields_take_another_variant_than_the_preset() {
    let full = ReproConfig::full();
    let toml_text = full.to_toml();
    let doc: toml::Table = toml_text.parse().unwrap();
    let mut only = toml::Table::new();
    only.insert("sphere".into(), doc["sphere"].clone());
    let merged = apply(&ReproConfig::quick(), &toml::to_string(&only).unwrap()).unwrap();
    assert_eq!(merged.sphere, full.sphere);
    let bad = "[[sphere.formulations]]\nname = \"x\"\ncheckpoint = \"final\"\ncold_starts = false\n\
               gradient_orthogonal = false\npositive_only = false\nsubtract_quadratic = false\n\
               loss = { CrossEntropy = { temperature = 1.0 } }\nspace = { no_such_space = { k = 3 } }\n";
    let e = error(&ReproConfig::quick(), bad);
    assert!(e.contains("no_such_space") || e.contains("space"), "{e}");
}
