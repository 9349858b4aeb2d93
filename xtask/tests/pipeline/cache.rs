//! The artifact cache under damage: corrupt files are reported and
//! recomputed (never reused, never a panic), unreadable ones are errors.

use proptest::prelude::*;
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use xtask::artifact::{Key, Store};
use xtask::pipeline::Ctx;

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("gensplit-cache-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

type Payload = Vec<(String, Vec<f64>)>;

fn payload() -> Payload {
    (0..4)
        .map(|i| {
            (
                format!("block{i}"),
                (0..50).map(|j| (i * 50 + j) as f64 * 0.37).collect(),
            )
        })
        .collect()
}

const STAGE: &str = "train_modadd";

fn ctx(dir: &std::path::Path) -> (Ctx, Key) {
    let mut ctx = Ctx::new(Store::open(dir).unwrap(), false, true);
    let key = Key::of(STAGE, 1, &"cache test", &[]).unwrap();
    ctx.keys.insert(STAGE.to_string(), key);
    (ctx, key)
}

/// Log lines written while `f` runs (no colour codes).
fn capture_logs<R>(f: impl FnOnce() -> R) -> (R, String) {
    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buf = Buf::default();
    let w = buf.clone();
    let sub = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_writer(move || w.clone())
        .finish();
    let r = tracing::subscriber::with_default(sub, f);
    let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
    (r, text)
}

#[test]
fn an_unreadable_cached_artifact_is_an_error_naming_the_file() {
    let dir = tmp("unreadable");
    let (mut ctx, key) = ctx(&dir);
    // A directory where the artifact file should be: reading it fails with
    // an error other than NotFound, as a permission problem would (tests may
    // run as root, where chmod 000 does not stop reads).
    let path = ctx.store.path(STAGE, &key);
    std::fs::create_dir_all(&path).unwrap();
    let mut computed = false;
    let err = ctx
        .stage(STAGE, || {
            computed = true;
            Ok(payload())
        })
        .unwrap_err();
    let msg = format!("{err:#}");
    assert!(!computed, "an unreadable artifact must not be silently recomputed");
    assert!(msg.contains(&path.display().to_string()), "{msg}");
    assert!(msg.contains("cannot read cached artifact"), "{msg}");
    assert!(msg.contains(STAGE), "{msg}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_absent_artifact_is_a_plain_miss() {
    let dir = tmp("absent");
    let (mut ctx, _) = ctx(&dir);
    let (_, v) = ctx.stage(STAGE, || Ok(payload())).unwrap();
    assert_eq!(v, payload());
    assert!(!ctx.runs[0].cached);
    let _ = std::fs::remove_dir_all(&dir);
}

#[derive(Debug, Clone)]
enum Damage {
    /// XOR these bytes at these offsets (taken modulo the file length).
    Flip(Vec<(prop::sample::Index, u8)>),
    /// Keep this many bytes (strictly fewer than the file has).
    Truncate(prop::sample::Index),
}

fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        prop::collection::vec((any::<prop::sample::Index>(), 1u8..=255), 1..4).prop_map(Damage::Flip),
        any::<prop::sample::Index>().prop_map(Damage::Truncate),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn damaged_artifacts_are_reported_and_recomputed(d in damage()) {
        let dir = tmp("damage");
        let (mut ctx0, key) = ctx(&dir);
        ctx0.stage(STAGE, || Ok(payload())).unwrap();
        let path = ctx0.store.path(STAGE, &key);
        let good = std::fs::read(&path).unwrap();
        let mut bad = good.clone();
        match &d {
            Damage::Flip(flips) => {
                // distinct offsets, so no flip undoes another
                let mut seen = std::collections::BTreeSet::new();
                for (at, x) in flips {
                    let i = at.index(bad.len());
                    if seen.insert(i) {
                        bad[i] ^= x;
                    }
                }
            }
            Damage::Truncate(at) => bad.truncate(at.index(good.len())),
        }
        prop_assert_ne!(&bad, &good);
        std::fs::write(&path, &bad).unwrap();

        let (mut ctx1, _) = ctx(&dir);
        let mut computed = 0;
        let (res, logs) = capture_logs(|| {
            ctx1.stage(STAGE, || {
                computed += 1;
                Ok(payload())
            })
        });
        let (_, value) = res.unwrap();
        prop_assert_eq!(computed, 1, "a damaged artifact was reused");
        prop_assert_eq!(value, payload());
        prop_assert!(!ctx1.runs[0].cached);
        prop_assert!(logs.contains("WARN"), "{}", logs);
        prop_assert!(logs.contains("unusable cached artifact, recomputing"), "{}", logs);
        prop_assert!(logs.contains(&path.display().to_string()), "{}", logs);
        // the recomputed artifact replaced the damaged one
        prop_assert_eq!(std::fs::read(&path).unwrap(), good);
        prop_assert_eq!(xtask::artifact::verify_file(&path).unwrap(), key);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
