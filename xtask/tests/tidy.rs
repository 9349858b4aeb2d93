//! Hygiene checks that keep docs and code honest (rust-analyzer style "tidy").

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    xtask::workspace_root()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

fn sources() -> Vec<PathBuf> {
    let mut files = Vec::new();
    for e in std::fs::read_dir(root().join("crates")).unwrap() {
        let src = e.unwrap().path().join("src");
        if src.exists() {
            rust_files(&src, &mut files);
        }
    }
    rust_files(&root().join("xtask/src"), &mut files);
    files
}

#[test]
fn every_module_has_a_doc_comment() {
    let missing: Vec<_> = sources()
        .into_iter()
        .filter(|p| !std::fs::read_to_string(p).unwrap().trim_start().starts_with("//!"))
        .collect();
    assert!(missing.is_empty(), "modules without a `//!` doc: {missing:?}");
}

#[test]
fn no_placeholders_or_debug_leftovers() {
    // spelled in pieces so that this file does not match itself
    let bad = [
        concat!("todo", "!("),
        concat!("unimplemented", "!("),
        concat!("dbg", "!("),
    ];
    for p in sources() {
        let text = std::fs::read_to_string(&p).unwrap();
        for b in bad {
            assert!(!text.contains(b), "{} contains {b}", p.display());
        }
    }
}

#[test]
fn ci_runs_the_readme_test_command() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let ci = std::fs::read_to_string(root().join(".ci/run")).unwrap();
    let cmd = "cargo test --workspace";
    assert!(readme.contains(cmd), "README must show `{cmd}`");
    assert!(ci.lines().any(|l| l.trim() == cmd), ".ci/run must run `{cmd}`");
    // every feature on: the examples need one (`examples`) to be built
    assert!(ci.contains("cargo clippy --workspace --all-targets --all-features -- -D warnings"));
    assert!(ci.contains("cargo xtask reproduce --quick"));
    assert!(
        ci.contains("cargo xtask reproduce --quick --strict"),
        ".ci/run must fail on an unconverged Hessian"
    );
}

#[test]
fn docs_document_the_summary_schema_and_readme_every_crate() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let pipeline = std::fs::read_to_string(root().join("docs/pipeline.md")).unwrap();
    for field in [
        "config.quick",
        "cnn_mixed_only.acc",
        "cnn_pretrained.acc",
        "modadd.test_acc",
        "modadd.key_frequencies",
        "timings_s.<stage>",
        "hessian.<set>.top_eigenvalues",
        "hessian.<set>.max_rel_residual",
        "hessian.<set>.matvecs",
        "hessian.<set>.seconds",
        "hessian.<set>.converged",
    ] {
        assert!(
            pipeline.contains(field),
            "docs/pipeline.md does not document summary field `{field}`"
        );
    }
    for e in std::fs::read_dir(root().join("crates")).unwrap() {
        let name = e.unwrap().file_name().to_string_lossy().into_owned();
        assert!(
            readme.contains(&format!("crates/{name}")),
            "README layout does not list crates/{name}"
        );
    }
}

/// Text with every run of whitespace collapsed to one space.
fn flat(path: &str) -> String {
    let text = std::fs::read_to_string(root().join(path)).unwrap();
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[test]
fn readme_links_every_doc_and_every_link_resolves() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    for e in std::fs::read_dir(root().join("docs")).unwrap() {
        let name = e.unwrap().file_name().to_string_lossy().into_owned();
        assert!(
            readme.contains(&format!("(docs/{name}")),
            "README does not link docs/{name}"
        );
    }
    for part in readme.split("](").skip(1) {
        let target = part.split([')', '#']).next().unwrap();
        if !target.starts_with("http") && !target.is_empty() {
            assert!(root().join(target).exists(), "README links to missing {target}");
        }
    }
}

#[test]
fn docs_claims_match_the_config_and_the_tests() {
    let perf = flat("docs/performance.md");
    // the Hessian stages' batch size as configured
    let batch = xtask::config::ReproConfig::full().hessian_images.batch_size;
    assert!(
        perf.contains(&format!("the stages themselves use batches of {batch}")),
        "docs/performance.md states another batch size than the config's {batch}"
    );
    // the primal cache is tested to 1e-13, not bit for bit
    assert!(
        !perf.contains("bit for bit"),
        "docs/performance.md claims bit-for-bit agreement"
    );
    assert!(perf.contains("at most 1e-13"));
    let hvp_tests = std::fs::read_to_string(root().join("crates/hvp/tests/hvp/products.rs")).unwrap();
    assert!(
        hvp_tests.contains("err <= 1e-13"),
        "update docs/performance.md with the tolerance the test asserts"
    );
    // the README says what exists and what is planned, and where numbers
    // are quoted, that they depend on the CPU
    let readme = flat("README.md");
    assert!(readme.contains("The unsupervised sphere search (`crates/sphere`"));
    assert!(readme.contains("**in progress**"));
    assert!(readme.contains("Reruns on one machine are bit-identical"));
    assert!(flat("docs/results.md").contains("without AVX-512"));
}

#[test]
fn cargo_metadata_has_no_placeholders() {
    let ws = std::fs::read_to_string(root().join("Cargo.toml")).unwrap();
    assert!(!ws.contains("example.invalid"), "placeholder repository URL");
    for krate in ["xtask/Cargo.toml", "crates/sphere/Cargo.toml"] {
        let text = std::fs::read_to_string(root().join(krate)).unwrap();
        assert!(text.contains("publish = false"), "{krate} must not be publishable");
    }
    let alias = std::fs::read_to_string(root().join(".cargo/config.toml")).unwrap();
    assert!(!alias.contains("--quiet"), "the xtask alias hides the first build");
}

#[test]
fn mnist_fixture_keeps_its_license_and_checksums() {
    let readme = std::fs::read_to_string(root().join("fixtures/mnist/README.md")).unwrap();
    assert!(readme.contains("CC BY-SA 3.0"));
    for (name, sha) in gensplit_data::mnist::MNIST_SHA256 {
        assert!(
            readme.contains(sha),
            "fixtures/mnist/README.md lacks the checksum of {name}"
        );
    }
}

/// Every Rust file of the workspace: sources, tests, benches, examples.
fn all_rust_files() -> Vec<PathBuf> {
    let mut files = Vec::new();
    for e in std::fs::read_dir(root().join("crates")).unwrap() {
        rust_files(&e.unwrap().path(), &mut files);
    }
    rust_files(&root().join("xtask"), &mut files);
    files
}

/// One implementation each: the host-side softmax family, the tensor-to-host
/// copy and dfdx gradient-buffer access, the Lanczos step (shared by
/// Lanczos and SLQ) and the mimalloc setup (a macro every binary calls).
#[test]
fn one_implementation_each() {
    let this = root().join("xtask/tests/tidy.rs");
    let defs = |needle: &str| -> Vec<String> {
        all_rust_files()
            .into_iter()
            .filter(|p| *p != this)
            .filter(|p| std::fs::read_to_string(p).unwrap().contains(needle))
            .map(|p| p.strip_prefix(root()).unwrap().display().to_string())
            .collect()
    };
    // spelled in pieces so that this file does not match itself
    for (needle, home) in [
        (concat!("fn soft", "max"), "crates/models/src/ops.rs"),
        (concat!("fn log_soft", "max"), "crates/models/src/ops.rs"),
        (concat!("fn log_sum", "_exp"), "crates/models/src/ops.rs"),
        (concat!("fn host", "_vec"), "crates/models/src/lib.rs"),
        (concat!("fn take", "_grad"), "crates/models/src/lib.rs"),
        (concat!("fn cpu", "_vec"), "crates/models/src/lib.rs"),
        (concat!("fn lanczos", "_step"), "crates/eigen/src/util.rs"),
        (concat!("#[global", "_allocator]"), "crates/models/src/lib.rs"),
        (concat!("mi_option", "_set("), "crates/models/src/lib.rs"),
    ] {
        assert_eq!(defs(needle), [home], "`{needle}` must be defined once, in {home}");
    }
    // Both solvers run the shared step.
    for f in ["crates/eigen/src/lanczos.rs", "crates/eigen/src/slq.rs"] {
        let text = std::fs::read_to_string(root().join(f)).unwrap();
        assert!(
            text.contains(concat!("lanczos", "_step(")),
            "{f} does not use the shared Lanczos step"
        );
    }
}

/// The xtask binary turns CLI input (flags, config files, IDX files, cached
/// artifacts) into errors, never panics: outside `#[cfg(test)]` modules and
/// comments, xtask's sources have no `.unwrap()`, `panic!` or `todo!`, and
/// every `.expect(`/`unreachable!` states an invariant no input can break
/// (listed here, so a new one is a reviewed decision).
#[test]
fn xtask_has_no_panics_reachable_from_input() {
    const ALLOWED: [&str; 7] = [
        "a ReproConfig always serializes to JSON",
        "the root is a table",
        "a ReproConfig serializes to a table",
        "a TOML table always serializes",
        "static template",
        "xtask lives in the workspace",
        "handled above",
    ];
    let mut files = Vec::new();
    rust_files(&root().join("xtask/src"), &mut files);
    let mut bad = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        for (i, line) in text.lines().enumerate() {
            let t = line.trim();
            if t.starts_with("#[cfg(test)]") {
                break; // test modules sit at the end of a file
            }
            if t.starts_with("//") {
                continue;
            }
            let flagged = [
                ".unwrap()",
                "panic!(",
                concat!("todo", "!("),
                concat!("unimplemented", "!("),
            ]
            .iter()
            .any(|p| t.contains(p))
                || ((t.contains(".expect(") || t.contains("unreachable!(")) && !ALLOWED.iter().any(|a| t.contains(a)));
            if flagged {
                bad.push(format!("{}:{}: {t}", f.display(), i + 1));
            }
        }
    }
    assert!(bad.is_empty(), "possible panics on input:\n{}", bad.join("\n"));
}

/// Every package's resolved features, as `cargo tree` prints them
/// (`name vX.Y.Z [f1,f2]`, one set per line), for `args`.
fn resolved_features(args: &[&str]) -> std::collections::BTreeMap<String, std::collections::BTreeSet<String>> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = std::process::Command::new(cargo)
        .current_dir(root())
        .args(["tree", "--offline", "--prefix", "none", "-f", "{p} [{f}]"])
        .args(args)
        .output()
        .expect("running cargo tree");
    assert!(
        out.status.success(),
        "cargo tree {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut m = std::collections::BTreeMap::<String, std::collections::BTreeSet<String>>::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let line = line.trim_end_matches(" (*)").trim_end_matches(" (proc-macro)");
        if let Some((pkg, feats)) = line.split_once(" [") {
            m.entry(pkg.to_string())
                .or_default()
                .insert(feats.trim_end_matches(']').to_string());
        }
    }
    m
}

/// `cargo xtask reproduce` builds xtask's normal dependencies; `cargo test
/// --workspace` builds every crate with its dev-dependencies. A shared crate
/// whose features differ between the two is compiled twice (and with it
/// everything that depends on it), so the README's second command would
/// recompile most of the first one's work. xtask/Cargo.toml lists the
/// features that unify them.
#[test]
fn reproduce_and_test_builds_resolve_the_same_features() {
    let build = resolved_features(&["-p", "xtask", "-e", "no-dev"]);
    let test = resolved_features(&["--workspace"]);
    assert!(build.len() > 50, "cargo tree printed too little: {build:?}");
    let differ: Vec<String> = build
        .iter()
        .filter_map(|(pkg, f)| match test.get(pkg) {
            Some(t) if t != f => Some(format!("{pkg}: reproduce {f:?}, test {t:?}")),
            _ => None,
        })
        .collect();
    assert!(
        differ.is_empty(),
        "features that differ between `cargo xtask reproduce` and `cargo test --workspace` \
         (each makes the test build recompile the crate and its dependents; \
         unify them in xtask/Cargo.toml):\n{}",
        differ.join("\n")
    );
}

/// A crate whose library says `test = false` (xtask, gensplit-eigen: their
/// unit tests live in integration tests) must have no test module in src/,
/// or `cargo test` would silently never run it.
#[test]
fn crates_without_a_unit_test_harness_have_no_unit_tests() {
    let mut dirs = vec![root().join("xtask")];
    for e in std::fs::read_dir(root().join("crates")).unwrap() {
        dirs.push(e.unwrap().path());
    }
    let mut checked = 0;
    for dir in dirs {
        let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap();
        let Some(lib) = manifest.split("[lib]").nth(1) else {
            continue;
        };
        let lib = lib.split("\n[").next().unwrap_or("");
        if !lib.lines().any(|l| l.trim().replace(' ', "") == "test=false") {
            continue;
        }
        checked += 1;
        let mut files = Vec::new();
        rust_files(&dir.join("src"), &mut files);
        for f in files {
            let text = std::fs::read_to_string(&f).unwrap();
            let bad = text
                .lines()
                .map(str::trim)
                .find(|l| l.starts_with("#[test]") || l.starts_with("#[cfg(test)]"));
            assert!(
                bad.is_none(),
                "{} has a unit test, but its crate's [lib] says `test = false`: move it to tests/",
                f.display()
            );
        }
    }
    assert!(checked >= 2, "expected xtask and gensplit-eigen to have `test = false`");
}
