//! Crash safety, end to end: `xtask reproduce` killed with SIGKILL in the
//! middle of a stage, then rerun. The rerun completes, reuses exactly the
//! artifacts finished before the kill, and every one of them verifies. Also
//! checks that the log written to a pipe has no colour codes and shows one
//! progress line per stage and where the report is.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;
use xtask::config::ReproConfig;

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("gensplit-crash-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn command(out: &Path) -> Command {
    let cfg = out.join("tiny.toml");
    std::fs::write(&cfg, ReproConfig::tiny().to_toml()).unwrap();
    let mut c = Command::new(env!("CARGO_BIN_EXE_xtask"));
    c.args(["reproduce", "--quick", "--config"])
        .arg(&cfg)
        .arg("--out")
        .arg(out)
        .env("RUST_LOG", "info")
        .env_remove("NO_COLOR")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    c
}

/// Runs the pipeline and SIGKILLs it `delay` after the log says `stage`
/// started computing. Returns the log up to the kill.
fn run_and_kill(out: &Path, stage: &str, delay: Duration) -> String {
    let mut child = command(out).spawn().unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let marker = format!(" {stage}: computing");
    let mut log = String::new();
    loop {
        let line = rx
            .recv_timeout(Duration::from_secs(600))
            .unwrap_or_else(|_| panic!("`{stage}` never started; log so far:\n{log}"));
        log.push_str(&line);
        log.push('\n');
        if line.contains(&marker) {
            break;
        }
    }
    std::thread::sleep(delay);
    child.kill().unwrap(); // SIGKILL on Unix
    let status = child.wait().unwrap();
    assert!(!status.success(), "the run finished before the kill; log:\n{log}");
    log
}

/// Every complete artifact file (`.bin`) in `dir`: name → stored key (hex),
/// after verifying its header, length and checksum.
fn verified_artifacts(dir: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir.join("artifacts")).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        if name.ends_with(".bin") {
            let key = xtask::artifact::verify_file(&p).unwrap_or_else(|e| panic!("{name}: {e}"));
            out.push((name, key.hex()));
        }
    }
    out.sort();
    out
}

#[test]
fn sigkill_mid_stage_then_rerun_completes_and_reuses_only_verified_artifacts() {
    let out = tmp("kill");
    // two interruptions: in a Hessian stage, then (on the rerun) in steering
    let log = run_and_kill(&out, "hessian_patterns", Duration::from_millis(30));
    assert!(!log.contains("\x1b["), "colour codes in a piped log:\n{log}");
    assert!(log.contains("stage 1/18 data: computing"), "{log}");
    let before = verified_artifacts(&out);
    let names: Vec<&str> = before.iter().map(|(n, _)| n.as_str()).collect();
    // the CNN track's earlier stages (the modular-addition track's progress
    // by then depends on the machine's load: it runs at the lowest priority)
    for stage in ["data", "train_cnn_mixed_only", "train_cnn_pretrained"] {
        assert!(names.iter().any(|n| n.starts_with(&format!("{stage}-"))), "{names:?}");
    }
    run_and_kill(&out, "steer_pretrained", Duration::from_millis(200));
    let before = verified_artifacts(&out);
    assert!(before.len() >= 5, "{before:?}");

    // the rerun completes
    let o = command(&out).output().unwrap();
    let log = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "{log}");
    assert!(!log.contains("\x1b["), "colour codes in a piped log:\n{log}");
    assert!(log.contains("report written to"), "{log}");
    assert!(log.contains("report.md"), "{log}");
    for n in 1..=18 {
        assert!(log.contains(&format!("stage {n}/18 ")), "no progress line {n}:\n{log}");
    }
    // it reused exactly the artifacts that existed before it, each verified
    // and stored under the key the run asked for
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("report/summary.json")).unwrap()).unwrap();
    let stages = summary["stages"].as_object().unwrap();
    assert_eq!(stages.len(), 18);
    for (stage, s) in stages {
        let key = s["key"].as_str().unwrap();
        let file = format!("{stage}-{}.bin", &key[..16]);
        let existed = before.iter().find(|(n, _)| *n == file);
        assert_eq!(s["cached"].as_bool(), Some(existed.is_some()), "{stage}");
        if let Some((_, stored)) = existed {
            assert_eq!(stored, key, "{stage}");
        }
    }
    let after = verified_artifacts(&out);
    assert_eq!(after.len(), 18, "{after:?}");
    for b in &before {
        assert!(after.contains(b), "{b:?} changed");
    }
    let _ = std::fs::remove_dir_all(&out);
}
