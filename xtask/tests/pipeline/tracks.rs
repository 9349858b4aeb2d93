//! Stages on two tracks ([`Ctx::fork`]): each track records its own runs,
//! the merged record is in plan order, and a failure on one track stops the
//! other's stages that have not started.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use xtask::artifact::{Key, Store};
use xtask::pipeline::{estimate_phrase, estimate_seconds, Cancelled, Ctx, Pace};

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("gensplit-tracks-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

const ORDER: [&str; 4] = [
    "train_cnn_mixed_only",
    "train_modadd",
    "hessian_modadd",
    "hessian_digits",
];

fn ctx(dir: &std::path::Path) -> Ctx {
    let mut ctx = Ctx::new(Store::open(dir).unwrap(), false, true);
    for (i, s) in ORDER.iter().enumerate() {
        ctx.keys.insert(s.to_string(), Key::of(s, 1, &i, &[]).unwrap());
    }
    ctx.order = ORDER.iter().map(|s| s.to_string()).collect();
    ctx
}

#[test]
fn two_tracks_record_their_stages_in_plan_order() {
    let dir = tmp("order");
    let mut main = ctx(&dir);
    let mut other = main.fork();
    std::thread::scope(|s| {
        let h = s.spawn(|| {
            other.stage("train_modadd", || Ok(vec![1u32])).unwrap();
            other.stage("hessian_modadd", || Ok(vec![2u32])).unwrap();
        });
        main.stage("hessian_digits", || Ok(vec![4u32])).unwrap();
        main.stage("train_cnn_mixed_only", || Ok(vec![3u32])).unwrap();
        h.join().unwrap();
    });
    main.absorb(other);
    let stages: Vec<&str> = main.runs.iter().map(|r| r.stage.as_str()).collect();
    assert_eq!(stages, ORDER);
    assert!(main.runs.iter().all(|r| !r.cached && r.payload_sha256.is_some()));
    // both tracks wrote to the one store: a second run is served from it
    let mut again = ctx(&dir);
    let (_, v) = again
        .stage("train_modadd", || -> anyhow::Result<Vec<u32>> {
            panic!("must be cached")
        })
        .unwrap();
    assert_eq!(v, [1]);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_failure_on_one_track_stops_the_stages_the_other_has_not_started() {
    let dir = tmp("cancel");
    let mut main = ctx(&dir);
    let mut other = main.fork();
    let err = other
        .stage("train_modadd", || -> anyhow::Result<Vec<u32>> {
            anyhow::bail!("diverged")
        })
        .unwrap_err();
    assert!(format!("{err:#}").contains("diverged"));
    // what the driver does when a track returns an error
    other.cancel.store(true, Ordering::Relaxed);
    let mut computed = false;
    let err = main
        .stage("hessian_digits", || {
            computed = true;
            Ok(vec![0u32])
        })
        .unwrap_err();
    assert!(!computed);
    // typed, so the driver reports the failure rather than the cancellation
    assert_eq!(
        err.downcast_ref::<Cancelled>().map(|c| c.stage.as_str()),
        Some("hessian_digits")
    );
    let msg = format!("{err:#}");
    assert!(
        msg.contains("hessian_digits") && msg.contains("other track failed"),
        "{msg}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The machine's pace is shared by the tracks of a run: a foreground stage
/// adds its wall time and its estimate, a background stage adds nothing,
/// and a cached stage adds nothing.
#[test]
fn the_pace_counts_computed_foreground_stages_of_every_track() {
    let dir = tmp("pace");
    let mut main = ctx(&dir);
    let mut background = main.fork();
    background.background = true;
    let mut other = main.fork();
    background.stage("train_modadd", || Ok(vec![1u32])).unwrap();
    assert_eq!(*main.pace.lock().unwrap(), Pace::default());
    // two foreground stages, on two tracks (the quick preset's estimates)
    other.stage("train_cnn_mixed_only", || Ok(vec![2u32])).unwrap();
    main.stage("hessian_digits", || Ok(vec![3u32])).unwrap();
    let p = *main.pace.lock().unwrap();
    let want =
        estimate_seconds("train_cnn_mixed_only", true).unwrap() + estimate_seconds("hessian_digits", true).unwrap();
    assert_eq!(p.estimated, want);
    assert!(p.actual > 0.0 && p.actual < 60.0, "{p:?}");
    // served from the cache: no change
    let mut again = ctx(&dir);
    again.pace = main.pace.clone();
    again
        .stage("hessian_digits", || -> anyhow::Result<Vec<u32>> {
            panic!("must be cached")
        })
        .unwrap();
    assert_eq!(*main.pace.lock().unwrap(), p);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The progress line's estimate: the reference machine's until the pace
/// has [`Pace::MIN_EVIDENCE`] estimated seconds behind it, then scaled by
/// it (within 0.25–8 times).
#[test]
fn estimates_follow_the_measured_pace() {
    let none = Pace::default();
    assert_eq!(estimate_phrase(Some(50.0), &none, false), " (about 50 s on 2 cores)");
    assert_eq!(estimate_phrase(Some(0.5), &none, false), " (about a second)");
    assert_eq!(estimate_phrase(None, &none, false), "");
    assert_eq!(estimate_phrase(None, &none, true), " in the background");
    let little = Pace {
        actual: 30.0,
        estimated: 10.0,
    };
    assert_eq!(little.scale(50.0), None);
    assert_eq!(estimate_phrase(Some(50.0), &little, false), " (about 50 s on 2 cores)");
    // twice as slow as the reference
    let slow = Pace {
        actual: 100.0,
        estimated: 50.0,
    };
    assert_eq!(slow.scale(50.0), Some(100.0));
    assert_eq!(
        estimate_phrase(Some(300.0), &slow, false),
        " (about 10 min at this machine's pace so far)"
    );
    assert_eq!(
        estimate_phrase(Some(30.0), &slow, true),
        " in the background, on CPU the CNN stages leave idle (about 60 s alone, at this machine's pace so far)"
    );
    // held within 0.25–8 times
    assert_eq!(
        Pace {
            actual: 1.0,
            estimated: 100.0
        }
        .scale(40.0),
        Some(10.0)
    );
    assert_eq!(
        Pace {
            actual: 1e4,
            estimated: 100.0
        }
        .scale(10.0),
        Some(80.0)
    );
}
