//! Code fingerprints in stage keys: editing a source file a stage depends on
//! changes that stage's key and its dependents' keys, and nothing else's.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use xtask::config::ReproConfig;
use xtask::fingerprint;
use xtask::pipeline::{keys, plan, Code};

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let (src, dst) = (e.path(), to.join(e.file_name()));
        if src.is_dir() {
            copy_dir(&src, &dst);
        } else {
            std::fs::copy(&src, &dst).unwrap();
        }
    }
}

/// A copy of the fingerprinted parts of the workspace (and some that are not).
fn workspace_copy(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("gensplit-fingerprint-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let root = xtask::workspace_root();
    copy_dir(&root.join("crates"), &dir.join("crates"));
    copy_dir(&root.join("xtask/src"), &dir.join("xtask/src"));
    copy_dir(&root.join("xtask/tests"), &dir.join("xtask/tests"));
    dir
}

fn code(root: &Path) -> Code {
    Code(fingerprint::compute(root).unwrap().into_iter().collect())
}

fn stage_keys(code: &Code) -> BTreeMap<String, String> {
    let fp: BTreeMap<String, String> = [("train_digits", "00"), ("test_digits", "11")]
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    let plan = plan(&ReproConfig::full(), &fp).unwrap();
    keys(&plan, code)
        .unwrap()
        .into_iter()
        .map(|(n, k)| (n, k.hex()))
        .collect()
}

#[test]
fn built_fingerprints_are_those_of_the_source() {
    // build.rs reran on every change: the binary's constants are the tree's
    assert_eq!(Code::built(), code(&xtask::workspace_root()));
    assert_eq!(Code::built().0.len(), fingerprint::COMPONENTS.len());
}

#[test]
fn editing_a_file_changes_exactly_its_stage_and_dependents() {
    let dir = workspace_copy("edit");
    // a copy elsewhere (other absolute path, new mtimes) fingerprints the same
    let base_code = code(&dir);
    assert_eq!(base_code, code(&xtask::workspace_root()));
    let base = stage_keys(&base_code);
    assert_eq!(base.len(), 18);
    // rewriting a file with the same bytes (new mtime) changes nothing
    let f = dir.join("crates/data/src/idx.rs");
    std::fs::write(&f, std::fs::read(&f).unwrap()).unwrap();
    assert_eq!(stage_keys(&code(&dir)), base);

    let all: BTreeSet<&str> = base.keys().map(String::as_str).collect();
    let hessians = [
        "hessian_digits",
        "hessian_patterns",
        "hessian_mixed",
        "hessian_mixed_only_digits",
        "hessian_mixed_only_patterns",
        "hessian_mixed_only_mixed",
        "hessian_modadd",
        "hessian_blocks",
    ];
    let steer = ["steer_pretrained", "steer_mixed_only"];
    let sphere = ["sphere_modadd", "sphere_modadd_seed2"];
    let curvature: BTreeSet<&str> = hessians.iter().chain(&steer).copied().collect();
    let numeric: BTreeSet<&str> = curvature.iter().chain(&sphere).copied().collect();
    let with_cnn = |set: &BTreeSet<&'static str>| -> BTreeSet<&'static str> {
        set.iter().copied().chain(["sphere_cnn"]).collect()
    };
    let cases: Vec<(&str, BTreeSet<&str>)> = vec![
        ("crates/data/src/idx.rs", all.clone()),
        ("crates/data/Cargo.toml", all.clone()),
        ("xtask/src/stages.rs", all.clone()),
        (
            "crates/models/src/conv/mod.rs",
            all.iter().copied().filter(|s| *s != "data").collect(),
        ),
        ("crates/hvp/src/lib.rs", numeric.clone()),
        ("crates/eigen/Cargo.toml", with_cnn(&numeric)),
        ("xtask/src/hessian.rs", curvature.clone()),
        ("crates/steer/src/lib.rs", steer.into_iter().collect()),
        ("xtask/src/steer.rs", steer.into_iter().collect()),
        ("xtask/src/blocks.rs", ["hessian_blocks"].into_iter().collect()),
        ("crates/sphere/src/lib.rs", with_cnn(&sphere.into_iter().collect())),
        ("xtask/src/sphere_cnn.rs", ["sphere_cnn"].into_iter().collect()),
        ("xtask/src/sphere.rs", sphere.into_iter().collect()),
        // code no stage runs: tests, benches, the report
        ("crates/hvp/tests", BTreeSet::new()),
        ("crates/models/benches", BTreeSet::new()),
        ("xtask/src/report.rs", BTreeSet::new()),
        // the plan and driver: adding or reordering stages keeps every key
        ("xtask/src/pipeline.rs", BTreeSet::new()),
        ("xtask/tests/pipeline/fingerprint.rs", BTreeSet::new()),
    ];
    for (path, expected) in cases {
        let target = dir.join(path);
        // a directory: add a new file to it; a file: append a comment
        let (file, original) = if target.is_dir() {
            (target.join("added_by_test.rs"), None)
        } else {
            (target.clone(), Some(std::fs::read(&target).unwrap()))
        };
        let mut edited = original.clone().unwrap_or_default();
        edited.extend_from_slice(b"\n// edited by the fingerprint test\n");
        std::fs::write(&file, &edited).unwrap();
        let keys = stage_keys(&code(&dir));
        let changed: BTreeSet<&str> = keys
            .iter()
            .filter(|(n, k)| base[*n] != **k)
            .map(|(n, _)| n.as_str())
            .collect();
        assert_eq!(changed, expected, "editing {path}");
        match original {
            Some(bytes) => std::fs::write(&file, bytes).unwrap(),
            None => std::fs::remove_file(&file).unwrap(),
        }
        assert_eq!(stage_keys(&code(&dir)), base, "restoring {path}");
    }
    // a new source file in a crate counts like an edit
    std::fs::write(dir.join("crates/steer/src/new_module.rs"), "//! new\n").unwrap();
    let keys = stage_keys(&code(&dir));
    let changed: Vec<&str> = keys
        .iter()
        .filter(|(n, k)| base[*n] != **k)
        .map(|(n, _)| n.as_str())
        .collect();
    assert_eq!(changed, ["steer_mixed_only", "steer_pretrained"]);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn fingerprint_depends_on_paths_and_contents_only() {
    let map = |items: &[(&str, &str)]| -> BTreeMap<String, Vec<u8>> {
        items
            .iter()
            .map(|(p, c)| (p.to_string(), c.as_bytes().to_vec()))
            .collect()
    };
    let a = fingerprint::hash_files(&map(&[("x/a.rs", "fn a() {}"), ("x/b.rs", "")]));
    assert_eq!(
        a,
        fingerprint::hash_files(&map(&[("x/b.rs", ""), ("x/a.rs", "fn a() {}")]))
    );
    assert_ne!(
        a,
        fingerprint::hash_files(&map(&[("x/a.rs", "fn a() {} "), ("x/b.rs", "")]))
    );
    assert_ne!(
        a,
        fingerprint::hash_files(&map(&[("x/c.rs", "fn a() {}"), ("x/b.rs", "")]))
    );
    // contents cannot leak across the boundary between two files
    assert_ne!(
        fingerprint::hash_files(&map(&[("a", "xy"), ("b", "")])),
        fingerprint::hash_files(&map(&[("a", "x"), ("b", "y")]))
    );
    assert!(fingerprint::collect(Path::new("/nonexistent"), &["src"]).is_err());
}
