//! Replays the fuzz corpus on stable Rust (part of `make test`): every file
//! of `fuzz/corpus/<target>/` and `fuzz/artifacts/<target>/` goes through
//! the same function the cargo-fuzz target runs (`fuzz/harness.rs`), so a
//! crash once found stays fixed, and the corpus keeps exercising the
//! parsers without nightly.

#[path = "../../fuzz/harness.rs"]
mod harness;

use std::path::{Path, PathBuf};

/// A target whose corpus holds fewer files than this is a broken checkout
/// (or a corpus lost by a bad minimisation), not a pass.
const MIN_CORPUS_FILES: usize = 10;

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut v: Vec<PathBuf> = entries
        .map(|e| e.expect("readable directory entry").path())
        .filter(|p| p.is_file() && !p.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.')))
        .collect();
    v.sort();
    v
}

/// Runs `f` on each file; returns the files on which it panicked.
fn replay(f: harness::Target, paths: &[PathBuf]) -> Vec<String> {
    let mut failed = Vec::new();
    for p in paths {
        let data = std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        if std::panic::catch_unwind(|| f(&data)).is_err() {
            failed.push(p.display().to_string());
        }
    }
    failed
}

#[test]
fn corpus_and_artifacts_replay_without_panics() {
    let dir = fuzz_dir();
    let mut failed = Vec::new();
    let mut summary = Vec::new();
    for (name, f) in harness::TARGETS {
        let corpus = files(&dir.join("corpus").join(name));
        assert!(
            corpus.len() >= MIN_CORPUS_FILES,
            "fuzz/corpus/{name} holds {} files, fewer than {MIN_CORPUS_FILES}",
            corpus.len()
        );
        let artifacts = files(&dir.join("artifacts").join(name));
        failed.extend(replay(*f, &corpus));
        failed.extend(replay(*f, &artifacts));
        summary.push(format!("{name}: {} corpus + {} artifacts", corpus.len(), artifacts.len()));
    }
    eprintln!("replayed {}", summary.join(", "));
    assert!(failed.is_empty(), "the harness panicked on:\n  {}", failed.join("\n  "));
}

/// Every target of the harness is a `[[bin]]` of the fuzz crate and has a
/// corpus directory, and no corpus directory belongs to a removed target.
#[test]
fn targets_corpora_and_fuzz_crate_agree() {
    let dir = fuzz_dir();
    let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).expect("fuzz/Cargo.toml");
    let names: Vec<&str> = harness::TARGETS.iter().map(|(n, _)| *n).collect();
    for name in &names {
        assert!(manifest.contains(&format!("name = \"{name}\"")), "fuzz/Cargo.toml has no [[bin]] {name}");
        assert!(dir.join("fuzz_targets").join(format!("{name}.rs")).is_file(), "fuzz/fuzz_targets/{name}.rs missing");
    }
    for sub in ["corpus", "artifacts"] {
        let Ok(entries) = std::fs::read_dir(dir.join(sub)) else { continue };
        for e in entries {
            let n = e.expect("entry").file_name().to_string_lossy().into_owned();
            assert!(names.contains(&n.as_str()), "fuzz/{sub}/{n} belongs to no target");
        }
    }
}

/// The harness is not vacuous: its fixed key opens the vectors' envelopes
/// and verifies their tokens at its clock, so the deep checks (re-seal,
/// re-mint) are reached from the seeds; and the vectors pass them.
#[test]
fn the_harness_key_and_clock_fit_the_vectors() {
    use bm_proto::token::{self, TokenKind};
    use bm_proto::{Envelope, SiteSecret};
    let v: serde_json::Value =
        serde_json::from_str(include_str!("../../testdata/crypto-v1.json")).expect("vectors are JSON");
    let secret = SiteSecret::from_b64(harness::SECRET).expect("secret");
    let site = bm_proto::SiteId::new(harness::SITE).expect("site");
    let mut opened = 0;
    for e in v["envelopes"].as_array().expect("envelopes").iter().filter(|e| e["site"] == harness::SITE) {
        let json = e["envelope"].to_string();
        harness::envelope(json.as_bytes());
        if e["must_fail"] == true {
            continue;
        }
        let env = Envelope::parse(&json, usize::MAX / 2).expect("vector parses");
        env.open(&site, &secret.content_key().key_for(env.k), usize::MAX / 2).expect("vector opens");
        opened += 1;
    }
    assert!(opened >= 2, "only {opened} envelopes of {}", harness::SITE);
    let key = secret.relay_key();
    let mut verified = 0;
    for t in v["tokens"].as_array().expect("tokens").iter().filter(|t| t["site"] == harness::SITE) {
        let tok = t["token"].as_str().expect("token");
        let ok = [TokenKind::Connection, TokenKind::Thread]
            .into_iter()
            .filter(|k| token::verify(tok, *k, harness::NOW, |_| Some(&key)).is_ok())
            .count();
        assert_eq!(ok, 1, "a vector token verifies as exactly one kind");
        harness::token(tok.as_bytes());
        verified += 1;
    }
    assert!(verified >= 2);
}
