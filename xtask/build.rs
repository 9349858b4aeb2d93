//! Exports the code fingerprints of the source this crate is built from
//! (see `src/fingerprint.rs`) as `$OUT_DIR/fingerprints.rs`, and asks Cargo
//! to rerun when any fingerprinted file changes.

#[allow(dead_code)]
#[path = "src/fingerprint.rs"]
mod fingerprint;

fn main() {
    let manifest = std::path::PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let root = manifest.parent().expect("xtask lives in the workspace");
    for (_, paths) in fingerprint::COMPONENTS {
        for p in paths {
            println!("cargo:rerun-if-changed={}", root.join(p).display());
        }
    }
    let fps = fingerprint::compute(root).expect("reading the fingerprinted sources");
    let mut text = String::from("&[\n");
    for (name, hex) in fps {
        text.push_str(&format!("    ({name:?}, {hex:?}),\n"));
    }
    text.push_str("]\n");
    let out = std::path::PathBuf::from(std::env::var_os("OUT_DIR").expect("set by cargo"));
    std::fs::write(out.join("fingerprints.rs"), text).expect("writing fingerprints.rs");
}
