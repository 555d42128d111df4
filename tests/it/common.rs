//! Shared helpers for the integration tests: the binary with a clean environment, JSON output,
//! probe results, and the check that no secret reaches any output.

use assert_cmd::Command;
use enos_connect::answers::Answers;
use enos_connect::capabilities::{Capabilities, embedded};
use std::io::Write as _;
use std::time::{Duration, Instant};

pub fn caps() -> Capabilities {
    embedded().expect("the embedded capabilities are valid")
}

pub fn answers(caps: &Capabilities, pairs: &[&str], needs: &[&str]) -> Answers {
    let mut a = Answers::default();
    let pairs: Vec<String> = pairs.iter().map(|s| s.to_string()).collect();
    let needs: Vec<String> = needs.iter().map(|s| s.to_string()).collect();
    a.apply_flags(caps, &pairs, &needs).expect("valid answers");
    a
}

/// The binary with a clean environment, so no ENOS_CONNECT_* variable or CI leaks in.
pub fn bin() -> Command {
    let mut cmd = Command::cargo_bin("enos-connect").expect("binary is built");
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .timeout(Duration::from_secs(20));
    cmd
}

pub fn json_of(output: &[u8]) -> serde_json::Value {
    serde_json::from_slice(output)
        .unwrap_or_else(|e| panic!("output is not JSON ({e}): {}", String::from_utf8_lossy(output)))
}

pub fn strings(v: &serde_json::Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|x| x.as_str().unwrap_or_default().to_string())
        .collect()
}

/// The stdout of a command that must succeed.
pub trait OkStdout {
    fn ok_stdout(&mut self) -> Vec<u8>;
}

impl OkStdout for Command {
    fn ok_stdout(&mut self) -> Vec<u8> {
        self.assert().success().get_output().stdout.clone()
    }
}

// --- probe results -------------------------------------------------------------------------

/// Runs `probe ARGS -f json` and returns (exit code, report, elapsed).
pub fn probe(args: &[&str], env: &[(&str, &str)]) -> (i32, serde_json::Value, Duration) {
    let start = Instant::now();
    let mut cmd = bin();
    cmd.arg("probe").args(args).args(["-f", "json"]);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("runs");
    let took = start.elapsed();
    let code = out.status.code().unwrap_or(-1);
    assert!(
        out.stdout.starts_with(b"{"),
        "no JSON (exit {code}): {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (code, json_of(&out.stdout), took)
}

pub fn stage_names(v: &serde_json::Value) -> Vec<String> {
    v["stages"]
        .as_array()
        .expect("stages")
        .iter()
        .filter_map(|s| s["name"].as_str().map(String::from))
        .collect()
}

pub fn assert_ok(code: i32, v: &serde_json::Value) {
    assert_eq!((code, &v["ok"]), (0, &serde_json::json!(true)), "{v:#}");
    assert!(v["error"].is_null());
    for s in v["stages"].as_array().expect("stages") {
        assert!(s["ms"].as_f64().is_some_and(|ms| ms >= 0.0), "{s}");
    }
}

pub fn assert_failed(code: i32, v: &serde_json::Value, kind: &str, stage: &str, words: &str) {
    assert_eq!(v["ok"], false, "{v:#}");
    assert_eq!(v["error"]["kind"], kind, "{v:#}");
    assert_eq!(v["error"]["stage"], stage, "{v:#}");
    let message = v["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains(words), "`{words}` not in `{message}`");
    assert_eq!(code, if kind == "timeout" { 3 } else { 1 }, "{v:#}");
}

/// The `total` the report gives, in milliseconds: time bounds check the probe's own clock, not
/// the wall clock of a process start on a busy machine.
pub fn total_ms(v: &serde_json::Value) -> f64 {
    v["stages"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["name"] == "total"))
        .and_then(|s| s["ms"].as_f64())
        .unwrap_or(f64::MAX)
}

// --- secrets -------------------------------------------------------------------------------

/// stdout and stderr of a finished command as one text, after checking that none of
/// `secrets` appears in it (nor a panic): every path that holds a secret goes through this.
pub fn no_secret_in(out: &std::process::Output, secrets: &[&str], context: &str) -> String {
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    for secret in secrets {
        assert!(!all.contains(secret), "a secret leaked ({context}):\n{all}");
    }
    assert!(!all.contains("panicked"), "panicked ({context}):\n{all}");
    all
}

// --- EnOS material and outside peers ------------------------------------------------------

/// EnOS login material for a device, computed from the embedded recipes.
pub fn creds(
    protocol: &str,
    pk: &str,
    dk: &str,
    mode: &str,
    secret: &str,
) -> enos_connect::credentials::Credentials {
    let req = enos_connect::credentials::CredentialRequest {
        protocol: protocol.into(),
        product_key: pk.into(),
        device_key: dk.into(),
        mode: mode.into(),
        client_id: None,
        timestamp: 1_700_000_000_000,
        lifetime: None,
    };
    enos_connect::credentials::compute(&caps(), &req, &enos_connect::secret::Secret::new(secret.into()))
        .expect("credentials")
}

/// The value of a variable `.ci/run` sets for an outside peer. A missing one fails the test
/// unless the run asked for skips with ENOS_CONNECT_ALLOW_SKIP=1 ([`peer_missing`]).
pub fn outside_peer(var: &str, what: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => Some(v),
        _ => {
            peer_missing(&format!("{var} is not set; {what}"));
            None
        }
    }
}

/// A peer a test needs is missing. That fails the test, unless skipping was asked for
/// explicitly with ENOS_CONNECT_ALLOW_SKIP=1 (CI never sets it): then the skip is written
/// where it shows and the caller returns without checking what needed the peer.
pub fn peer_missing(what: &str) {
    assert!(
        skips_allowed(),
        "{what}. This test needs that peer: `.ci/run` installs and starts every one; set \
         ENOS_CONNECT_ALLOW_SKIP=1 to skip the tests whose peer is missing instead"
    );
    // libtest captures `eprintln!`, not writes to the stderr handle itself: the skip shows in
    // the run's output, not only in a failure's.
    let _ = writeln!(
        std::io::stderr(),
        "test skipped (ENOS_CONNECT_ALLOW_SKIP=1): {what}"
    );
}

/// Whether this run asked for tests with a missing peer to be skipped.
pub fn skips_allowed() -> bool {
    std::env::var("ENOS_CONNECT_ALLOW_SKIP").as_deref() == Ok("1")
}
