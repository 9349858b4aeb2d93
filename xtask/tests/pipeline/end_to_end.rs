//! End-to-end tests of the pipeline on the tiny configuration: determinism,
//! caching, corruption recovery and the summary schema.

use std::path::{Path, PathBuf};
use xtask::config::ReproConfig;
use xtask::stages::DigitSource;

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("gensplit-pipeline-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn mnist() -> DigitSource {
    DigitSource {
        dir: gensplit_data::mnist::default_dir(),
        verify: true,
    }
}

fn artifacts(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir.join("artifacts"))
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".bin"))
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    v.sort();
    v
}

#[test]
fn tiny_pipeline_is_deterministic_cached_and_self_healing() {
    let cfg = ReproConfig::tiny();
    let (a, b) = (tmp("a"), tmp("b"));
    let runs_a = xtask::reproduce(&cfg, &a, false, &mnist()).unwrap();
    assert!(runs_a.iter().all(|r| !r.cached));
    xtask::reproduce(&cfg, &b, false, &mnist()).unwrap();
    // same config and seeds -> bit-identical artifacts
    let (fa, fb) = (artifacts(&a), artifacts(&b));
    assert_eq!(fa.len(), 18); // data, 4 training, 7 Hessian, per-layer, 2 steering, 3 sphere stages
    assert_eq!(fa, fb);

    // second run in the same directory: every stage is a cache hit
    let runs = xtask::reproduce(&cfg, &a, false, &mnist()).unwrap();
    assert!(runs.iter().all(|r| r.cached), "{runs:?}");

    // corrupt one artifact: detected, recomputed, identical again
    let (name, bytes) = &fa[1];
    let path = a.join("artifacts").join(name);
    let mut bad = bytes.clone();
    let last = bad.len() - 1;
    bad[last] ^= 0xff;
    std::fs::write(&path, &bad).unwrap();
    let runs = xtask::reproduce(&cfg, &a, false, &mnist()).unwrap();
    assert_eq!(runs.iter().filter(|r| !r.cached).count(), 1);
    assert_eq!(&std::fs::read(&path).unwrap(), bytes);

    // --force recomputes everything, same bytes
    let runs = xtask::reproduce(&cfg, &a, true, &mnist()).unwrap();
    assert!(runs.iter().all(|r| !r.cached));
    assert_eq!(artifacts(&a), fb);

    // a different seed changes the key (new file), not the old artifact
    let mut cfg2 = cfg.clone();
    cfg2.modadd.init_seed += 1;
    // ... and of everything downstream of it (train_modadd, hessian_modadd, sphere_modadd)
    let runs = xtask::reproduce(&cfg2, &a, false, &mnist()).unwrap();
    let recomputed: Vec<&str> = runs.iter().filter(|r| !r.cached).map(|r| r.stage.as_str()).collect();
    assert_eq!(recomputed, ["train_modadd", "hessian_modadd", "sphere_modadd"]);
    assert_eq!(artifacts(&a).len(), 21);

    // summary.json has the documented schema
    let s: serde_json::Value = serde_json::from_slice(&std::fs::read(a.join("report/summary.json")).unwrap()).unwrap();
    for model in ["cnn_mixed_only", "cnn_pretrained"] {
        for set in ["mixed", "digits", "patterns"] {
            let v = s[model]["acc"][set].as_f64().unwrap_or(-1.0);
            assert!((0.0..=1.0).contains(&v), "{model}.acc.{set} = {v}");
        }
    }
    assert!(s["modadd"]["test_acc"].as_f64().is_some());
    // sphere search keys (issue 9's schema)
    for label in ["modadd", "modadd_seed2"] {
        let sp = &s["sphere"][label];
        let forms = sp["formulations"].as_object().expect("sphere formulations");
        assert!(!forms.is_empty());
        for (name, f) in forms {
            assert!(f["starts"].as_u64().is_some(), "sphere.{label}.{name}.starts");
            assert!(
                f["single_breaks"].as_u64().is_some(),
                "sphere.{label}.{name}.single_breaks"
            );
            assert!(f["broken_frequencies"].as_array().is_some());
            assert!(f.get("transition_radius").is_some());
        }
        let best = &sp["best"];
        assert!(
            best["recall"].as_f64().is_some_and(|r| (0.0..=1.0).contains(&r)),
            "sphere.{label}.best.recall"
        );
        assert!(best["key_frequencies"].as_array().is_some() && best["broken_frequencies"].as_array().is_some());
        assert!(best.get("formulation").is_some());
        assert!(
            best.get("enumeration_formulation").is_some(),
            "sphere.{label}.best.enumeration_formulation"
        );
    }
    // sphere.cnn.breaks: list of {acc_digits, acc_patterns, acc_mixed, radius}
    let cnn = &s["sphere"]["cnn"];
    assert!(cnn["paths"].as_u64().is_some_and(|n| n > 0), "sphere.cnn.paths");
    for b in cnn["breaks"].as_array().expect("sphere.cnn.breaks") {
        for k in ["acc_digits", "acc_patterns", "acc_mixed"] {
            assert!(
                b[k].as_f64().is_some_and(|a| (0.0..=1.0).contains(&a)),
                "sphere.cnn.breaks[].{k}"
            );
        }
        assert!(b["radius"].as_f64().is_some_and(|r| r > 0.0));
    }
    assert!(s["modadd"]["key_frequencies"].as_array().is_some());
    assert!(s["config"]["quick"].as_bool().is_some());
    for stage in ["data", "train_cnn_mixed_only", "train_cnn_pretrained", "train_modadd"] {
        assert!(s["timings_s"][stage].as_f64().is_some(), "timings_s.{stage}");
    }
    for set in ["digits", "patterns", "mixed", "modadd"] {
        let h = &s["hessian"][set];
        assert_eq!(
            h["top_eigenvalues"].as_array().map(|a| a.len()),
            Some(2),
            "hessian.{set}"
        );
        assert!(h["max_rel_residual"].as_f64().is_some() && h["matvecs"].as_u64().is_some());
        assert!(h["seconds"].as_f64().is_some(), "hessian.{set}.seconds");
    }
    // per-layer curvature rows for every pretrained-CNN set
    for set in ["digits", "patterns", "mixed"] {
        let rows = s["hessian"][set]["blocks"].as_array().map(|a| a.len());
        assert_eq!(rows, Some(5), "hessian.{set}.blocks");
    }
    // steering and independence keys (issue 8's schema)
    for m in ["pretrained", "mixed_only"] {
        let st = &s["steering"][m];
        for set in ["digits", "patterns", "mixed"] {
            let v = st["base_acc"][set].as_f64().unwrap_or(-1.0);
            assert!((0.0..=1.0).contains(&v), "steering.{m}.base_acc.{set}");
        }
        for dir in ["ablate_digits", "ablate_patterns"] {
            let sup = &st["supervised"][dir];
            for method in [
                "unprojected",
                "seed_k2",
                "gen_eig",
                "proj_grad",
                "random",
                "curv_ascent",
                "unlearn",
            ] {
                let r = &sup["methods"][method];
                assert!(r["alpha"].as_f64().is_some(), "{m} {dir} {method}: {r}");
                assert!(r["kl_keep"].as_f64().is_some(), "{m} {dir} {method}.kl_keep");
                for set in ["digits", "patterns", "mixed"] {
                    assert!(r["acc"][set].as_f64().is_some(), "{m} {dir} {method}.acc.{set}");
                }
            }
            assert!(sup["best"]["method"].as_str().is_some(), "{m} {dir} best");
            for scen in ["semi_keep_known", "semi_ablate_known"] {
                assert!(st[scen][dir]["best"]["method"].as_str().is_some(), "{m} {scen} {dir}");
            }
            assert!(st["relearn"][dir].as_object().is_some(), "{m} relearn {dir}");
        }
        let ind = &s["independence"][m];
        for key in ["overlap_digits_patterns", "overlap_random"] {
            assert!(ind[key].as_f64().is_some(), "independence.{m}.{key}");
        }
        assert!(ind["cross_curvature"]["matrix"].as_array().map(|a| a.len()) == Some(3));
        assert!(ind["mixed_decomposition"].as_array().map(|a| a.len()) == Some(2));
    }
    for f in [
        "report.md",
        "figures/samples.png",
        "figures/curves_cnn_pretrained.svg",
        "figures/modadd_fourier.svg",
        "figures/steer_pretrained_ablate_patterns.svg",
        "figures/steer_pretrained_decomposition.svg",
        "figures/steer_pretrained_cross_curvature.svg",
    ] {
        assert!(a.join("report").join(f).exists(), "{f}");
    }

    // export: every indexed array exists with header + shape·itemsize bytes
    xtask::export(&cfg, &b, false, &mnist()).unwrap();
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(b.join("export/index.json")).unwrap()).unwrap();
    let arrays = index["arrays"].as_array().unwrap();
    assert!(arrays.len() > 30);
    for arr in arrays {
        let bytes = std::fs::read(b.join("export").join(arr["file"].as_str().unwrap())).unwrap();
        let hlen = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
        let n: u64 = arr["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_u64().unwrap())
            .product();
        let item = if arr["dtype"] == "<f4" { 4 } else { 8 };
        assert_eq!(bytes.len() as u64, 10 + hlen as u64 + n * item, "{}", arr["file"]);
    }

    // `cargo xtask steer`: a steered model, and clear errors on bad requests
    let req = |method: &str, alpha: Option<f64>| xtask::steer::SteerRequest {
        model: "pretrained".into(),
        scenario: "supervised".into(),
        ablate: "patterns".into(),
        method: method.into(),
        alpha,
    };
    let dir = xtask::steer(&cfg, &b, false, &mnist(), &req("gen_eig", Some(0.5))).unwrap();
    let idx: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
    assert_eq!(idx["method"], "gen_eig");
    assert!(idx["heldout_acc"]["patterns"]["steered"].as_f64().is_some());
    assert!(dir.join("theta.npy").exists());
    let err = |r: xtask::steer::SteerRequest| format!("{:#}", xtask::steer(&cfg, &b, false, &mnist(), &r).unwrap_err());
    let e = err(req("no_such_method", None));
    assert!(
        e.contains("unknown method `no_such_method`") && e.contains("gen_eig"),
        "{e}"
    );
    let e = err(req("gen_eig", Some(1e6)));
    assert!(e.contains("out of range"), "{e}");
    let e = err(req("curv_ascent", Some(1.0)));
    assert!(e.contains("omit --alpha") || e.contains("no operating point"), "{e}");
    let e = err(xtask::steer::SteerRequest {
        ablate: "colour".into(),
        ..req("gen_eig", None)
    });
    assert!(e.contains("--ablate"), "{e}");
    // nothing half-written: only complete steered directories exist
    for entry in std::fs::read_dir(b.join("steered")).unwrap() {
        let p = entry.unwrap().path();
        assert!(p.join("index.json").exists(), "{}", p.display());
    }
    let _ = std::fs::remove_dir_all(&a);
    let _ = std::fs::remove_dir_all(&b);
}

#[test]
fn steering_asks_for_no_more_eigenpairs_than_computed() {
    let mut cfg = ReproConfig::tiny();
    cfg.steer.k = 3; // the tiny Hessians compute 2
    let out = tmp("k");
    let err = xtask::reproduce(&cfg, &out, false, &mnist()).unwrap_err();
    let msg = format!("{err:#}");
    assert!(msg.contains("3 eigenvectors requested but only 2"), "{msg}");
    // the failed stage left no artifact behind
    let names: Vec<String> = std::fs::read_dir(out.join("artifacts"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(!names.iter().any(|n| n.starts_with("steer_")), "{names:?}");
    assert!(!names.iter().any(|n| n.ends_with(".tmp")), "{names:?}");
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn missing_digit_directory_is_a_clear_error() {
    let out = tmp("missing");
    let src = DigitSource {
        dir: out.join("no-such-dir"),
        verify: false,
    };
    let err = xtask::reproduce(&ReproConfig::tiny(), &out, false, &src).unwrap_err();
    let msg = format!("{err:#}");
    assert!(msg.contains("no-such-dir"), "{msg}");
    let _ = std::fs::remove_dir_all(&out);
}

/// NaN/Inf in training fails the stage with an error naming the stage, the
/// step and the parameter block, and caches nothing; a Lanczos run stopped
/// on its matvec budget is a warning in the report and
/// `hessian.<set>.converged: false` in summary.json (every Hessian entry has
/// the flag), and an error under `--strict` (`reproduce_strict`).
#[test]
fn non_finite_training_and_unconverged_lanczos_are_reported() {
    let out = tmp("nonfinite");
    let mut cfg = ReproConfig::tiny();
    cfg.modadd.train.optim.lr = 1e30;
    let err = xtask::reproduce(&cfg, &out, false, &mnist()).unwrap_err();
    let msg = format!("{err:#}");
    assert!(
        msg.contains("stage `train_modadd`")
            && msg.contains("non-finite")
            && msg.contains("step")
            && msg.contains("block `"),
        "{msg}"
    );
    let names: Vec<String> = std::fs::read_dir(out.join("artifacts"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(!names.iter().any(|n| n.starts_with("train_modadd")), "{names:?}");

    let mut cfg = ReproConfig::tiny();
    cfg.hessian_modadd.max_matvecs = 3;
    xtask::reproduce(&cfg, &out, false, &mnist()).unwrap();
    let s: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("report/summary.json")).unwrap()).unwrap();
    let hessian = s["hessian"].as_object().unwrap();
    assert!(hessian.len() >= 4);
    for (set, h) in hessian {
        assert!(h["converged"].is_boolean(), "{set}: {h}");
    }
    assert_eq!(s["hessian"]["modadd"]["converged"], false);
    assert_eq!(s["hessian"]["modadd"]["stop"], "MaxMatvecs");
    let md = std::fs::read_to_string(out.join("report/report.md")).unwrap();
    assert!(md.contains("Lanczos did not converge") && md.contains("modadd"));
    let err = xtask::reproduce_strict(&cfg, &out, false, &mnist()).unwrap_err();
    let msg = format!("{err:#}");
    assert!(msg.contains("--strict") && msg.contains("modadd"), "{msg}");
    // Converged entries pass under --strict (modadd with its tiny budget).
    let unconverged: Vec<String> = hessian
        .iter()
        .filter(|(_, h)| h["converged"] == false)
        .map(|(k, _)| k.clone())
        .collect();
    if unconverged == ["modadd"] {
        xtask::reproduce_strict(&ReproConfig::tiny(), &out, false, &mnist()).unwrap();
    }
    let _ = std::fs::remove_dir_all(&out);
}
