//! Shared helpers for the integration tests.
#![allow(dead_code)]

pub mod peers;

use assert_cmd::Command;
use enos_connect::answers::Answers;
use enos_connect::capabilities::{Capabilities, load_embedded};
use std::time::Duration;

pub fn caps() -> Capabilities {
    load_embedded().expect("the embedded capabilities are valid")
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
