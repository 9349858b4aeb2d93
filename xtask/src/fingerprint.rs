//! Code fingerprints: which source code a stage's artifact was computed by.
//!
//! A stage's artifact key hashes its configuration and its inputs' keys, and
//! also the **code** that computes it, so that a change to a kernel, the
//! training loop or the eigensolver never reuses artifacts of the old code.
//! The code is described by *components*: each library crate (its `src/`
//! tree and `Cargo.toml`) and each of xtask's stage modules
//! ([`COMPONENTS`]). A component's fingerprint is the SHA-256 of its files'
//! workspace-relative paths (with `/` separators) and contents, in sorted
//! order; modification times and absolute paths never enter, so a fresh
//! clone anywhere gives the same fingerprints.
//!
//! `xtask/build.rs` includes this file and exports the fingerprints of the
//! source it was built from as `xtask::fingerprint::BUILT` (and reruns when
//! any of those files changes); the functions here compute the same values
//! for any directory, which is how the tests check that editing one file
//! changes exactly the keys it should.
//!
//! Not covered: `Cargo.lock` (a dependency's version), the compiler and the
//! CPU. Results can differ across CPUs (AVX-512 or not) in the last digits;
//! `--force` recomputes everything.

use std::collections::BTreeMap;
use std::io;
use std::path::Path;

use sha2::{Digest, Sha256};

/// Every code component, as (name, workspace-relative paths). A path is a
/// file or a directory (every file under it, recursively).
pub const COMPONENTS: [(&str, &[&str]); 13] = [
    ("gensplit-data", &["crates/data/Cargo.toml", "crates/data/src"]),
    ("gensplit-models", &["crates/models/Cargo.toml", "crates/models/src"]),
    ("gensplit-hvp", &["crates/hvp/Cargo.toml", "crates/hvp/src"]),
    ("gensplit-eigen", &["crates/eigen/Cargo.toml", "crates/eigen/src"]),
    ("gensplit-steer", &["crates/steer/Cargo.toml", "crates/steer/src"]),
    ("gensplit-sphere", &["crates/sphere/Cargo.toml", "crates/sphere/src"]),
    ("xtask-stages", &["xtask/src/stages.rs"]),
    ("xtask-hessian", &["xtask/src/hessian.rs"]),
    ("xtask-blocks", &["xtask/src/blocks.rs"]),
    ("xtask-steer", &["xtask/src/steer.rs"]),
    ("xtask-sphere", &["xtask/src/sphere.rs"]),
    ("xtask-sphere-cnn", &["xtask/src/sphere_cnn.rs"]),
    ("xtask-split", &["xtask/src/split.rs"]),
];

/// The components whose code computes `stage` (its inputs' code reaches its
/// key through their keys as well). `None` for an unknown stage.
pub fn stage_components(stage: &str) -> Option<&'static [&'static str]> {
    const DATA: &[&str] = &["gensplit-data", "xtask-stages"];
    const TRAIN: &[&str] = &["gensplit-data", "gensplit-models", "xtask-stages"];
    const HESSIAN: &[&str] = &[
        "gensplit-data",
        "gensplit-models",
        "gensplit-hvp",
        "gensplit-eigen",
        "xtask-stages",
        "xtask-hessian",
    ];
    const BLOCKS: &[&str] = &[
        "gensplit-data",
        "gensplit-models",
        "gensplit-hvp",
        "gensplit-eigen",
        "xtask-stages",
        "xtask-blocks",
    ];
    const STEER: &[&str] = &[
        "gensplit-data",
        "gensplit-models",
        "gensplit-hvp",
        "gensplit-eigen",
        "gensplit-steer",
        "xtask-stages",
        "xtask-steer",
        "xtask-split",
    ];
    const SPHERE: &[&str] = &[
        "gensplit-data",
        "gensplit-models",
        "gensplit-hvp",
        "gensplit-eigen",
        "gensplit-sphere",
        "xtask-stages",
        "xtask-sphere",
    ];
    const SPHERE_CNN: &[&str] = &[
        "gensplit-data",
        "gensplit-models",
        "gensplit-eigen",
        "gensplit-sphere",
        "xtask-stages",
        "xtask-sphere-cnn",
        "xtask-split",
    ];
    Some(match stage {
        "data" => DATA,
        "sphere_cnn" => SPHERE_CNN,
        "hessian_blocks" => BLOCKS,
        s if s.starts_with("train_") => TRAIN,
        s if s.starts_with("hessian_") => HESSIAN,
        s if s.starts_with("steer_") => STEER,
        s if s.starts_with("sphere_") => SPHERE,
        _ => return None,
    })
}

/// Collects the files of `paths` (relative to `root`; files or directories,
/// recursively) as a map from `/`-separated relative path to contents.
/// A path that does not exist is an error.
pub fn collect(root: &Path, paths: &[&str]) -> io::Result<BTreeMap<String, Vec<u8>>> {
    fn walk(root: &Path, rel: &str, out: &mut BTreeMap<String, Vec<u8>>) -> io::Result<()> {
        let full = root.join(rel);
        let meta =
            std::fs::metadata(&full).map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", full.display())))?;
        if meta.is_dir() {
            for entry in std::fs::read_dir(&full)? {
                let name = entry?.file_name();
                let name = name.to_str().ok_or_else(|| {
                    io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("non-UTF-8 file name under {}", full.display()),
                    )
                })?;
                walk(root, &format!("{rel}/{name}"), out)?;
            }
        } else {
            out.insert(rel.to_string(), std::fs::read(&full)?);
        }
        Ok(())
    }
    let mut out = BTreeMap::new();
    for p in paths {
        walk(root, p.trim_end_matches('/'), &mut out)?;
    }
    Ok(out)
}

/// SHA-256 (hex) of a file map: for each file in path order, the length and
/// bytes of its path, then the length and bytes of its contents.
pub fn hash_files(files: &BTreeMap<String, Vec<u8>>) -> String {
    let mut h = Sha256::new();
    for (path, contents) in files {
        h.update((path.len() as u64).to_le_bytes());
        h.update(path.as_bytes());
        h.update((contents.len() as u64).to_le_bytes());
        h.update(contents);
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Fingerprints of every component of [`COMPONENTS`] under `root` (a
/// workspace or a copy of one), as (name, hex).
pub fn compute(root: &Path) -> io::Result<Vec<(String, String)>> {
    COMPONENTS
        .iter()
        .map(|(name, paths)| Ok((name.to_string(), hash_files(&collect(root, paths)?))))
        .collect()
}
