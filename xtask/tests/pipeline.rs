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
    assert_eq!(fa.len(), 8); // data, 3 training, 4 Hessian stages
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
    // ... and of everything downstream of it (train_modadd, hessian_modadd)
    let runs = xtask::reproduce(&cfg2, &a, false, &mnist()).unwrap();
    let recomputed: Vec<&str> = runs.iter().filter(|r| !r.cached).map(|r| r.stage.as_str()).collect();
    assert_eq!(recomputed, ["train_modadd", "hessian_modadd"]);
    assert_eq!(artifacts(&a).len(), 10);

    // summary.json has the documented schema
    let s: serde_json::Value = serde_json::from_slice(&std::fs::read(a.join("report/summary.json")).unwrap()).unwrap();
    for model in ["cnn_mixed_only", "cnn_pretrained"] {
        for set in ["mixed", "digits", "patterns"] {
            let v = s[model]["acc"][set].as_f64().unwrap_or(-1.0);
            assert!((0.0..=1.0).contains(&v), "{model}.acc.{set} = {v}");
        }
    }
    assert!(s["modadd"]["test_acc"].as_f64().is_some());
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
    for f in [
        "report.md",
        "figures/samples.png",
        "figures/curves_cnn_pretrained.svg",
        "figures/modadd_fourier.svg",
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
    let _ = std::fs::remove_dir_all(&a);
    let _ = std::fs::remove_dir_all(&b);
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
