//! `ask` in a real pseudo-terminal, answered with keystrokes; the saved answers replayed through
//! `recommend`; questions skipped when they cannot change the outcome; and the non-terminal
//! cases failing fast instead of prompting.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{OkStdout, bin, json_of};
use expectrl::session::OsSession as Session;
use expectrl::{Eof, Expect};

const DOWN: &str = "\x1b[B";

fn spawn_ask(args: &[&str]) -> Session {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_enos-connect"));
    cmd.arg("ask").args(args);
    // CI=true would (rightly) turn prompts off; this test is the person at the terminal.
    cmd.env_remove("CI")
        .env_remove("ENOS_CONNECT_NO_INPUT")
        .env("TERM", "xterm");
    let mut s = Session::spawn(cmd).expect("spawn in a pty");
    s.set_expect_timeout(Some(Duration::from_secs(10)));
    s
}

/// A line as printed: escape sequences left out.
fn plain(line: &str) -> String {
    let mut out = String::new();
    let mut escape = false;
    for c in line.chars() {
        match (escape, c) {
            (false, '\x1b') => escape = true,
            (true, c) if c.is_ascii_alphabetic() => escape = false,
            (true, _) => {}
            (false, c) => out.push(c),
        }
    }
    out
}

fn send(s: &mut Session, keys: &str) {
    s.send(keys).expect("send keys");
}

/// Everything the session prints until it exits, with carriage returns dropped.
fn rest(s: &mut Session) -> String {
    let found = s.expect(Eof).expect("the program ends");
    String::from_utf8_lossy(found.as_bytes()).replace('\r', "")
}

/// The pretty-printed JSON object in the pty output (prompts and messages around it).
fn json_in(text: &str) -> serde_json::Value {
    let start = text
        .find("{\n  \"recommendation\"")
        .unwrap_or_else(|| panic!("no JSON in:\n{text}"));
    let end = text[start..]
        .find("\n}\n")
        .map(|i| start + i + 2)
        .unwrap_or_else(|| panic!("unterminated JSON:\n{text}"));
    json_of(&text.as_bytes()[start..end])
}

fn exit_code(s: &Session) -> Option<i32> {
    match s.get_process().wait() {
        Ok(expectrl::process::unix::WaitStatus::Exited(_, code)) => Some(code),
        other => panic!("unexpected status {other:?}"),
    }
}

#[test]
fn ask_walks_the_questions_saves_the_answers_and_recommend_replays_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let saved = dir.path().join("device.toml");
    let saved_str = saved.to_str().expect("utf-8");
    let mut s = spawn_ask(&["--format", "json", "--save", saved_str]);

    let first = s.expect("Which IP transport").expect("network prompt");
    // The help above a prompt wraps between words (at the pty's width, or 100 columns), its
    // later lines indented under its text.
    let help = plain(&String::from_utf8_lossy(first.before()).replace('\r', ""));
    let lines: Vec<&str> = help.lines().filter(|l| l.starts_with("  ")).collect();
    assert!(
        lines.len() >= 2
            && lines.iter().all(|l| l.chars().count() <= 100)
            && lines[0].starts_with("  ? EnOS direct connection")
            && lines[1].starts_with("    "),
        "{help:?}"
    );
    send(&mut s, "\r"); // first choice: TCP only
    s.expect("speak the EnOS device protocol format")
        .expect("enos_format prompt");
    send(&mut s, "y");
    s.expect("Which EnOS version").expect("version prompt");
    send(&mut s, "\r"); // EnOS 2.x
    s.expect("Which platform features").expect("needs prompt");
    // Tick file_upload (6th) and ota (11th), then confirm.
    send(&mut s, &DOWN.repeat(5));
    send(&mut s, " ");
    send(&mut s, &DOWN.repeat(5));
    send(&mut s, " ");
    send(&mut s, "\r");
    s.expect("persistent (long) connection")
        .expect("long_connection prompt: it picks the primary");
    send(&mut s, "\r"); // default: yes
    s.expect("resource-constrained")
        .expect("constrained prompt: MQTT and HTTP carry a caveat for a constrained device");
    send(&mut s, "\r"); // default: no
    let out = rest(&mut s);
    assert_eq!(exit_code(&s), Some(0), "{out}");

    let shown = json_in(&out);
    assert_eq!(shown["recommendation"], "mqtt");
    assert_eq!(shown["protocols"], serde_json::json!(["mqtt", "http"]));
    assert_eq!(shown["caveats"], serde_json::json!([]));
    assert!(
        out.contains("Skipped (could not change the outcome): third_party_cloud\n"),
        "{out}"
    );

    let file = std::fs::read_to_string(&saved).expect("answers saved");
    // docs/integration.md promises the schema line Taplo and Even Better TOML read.
    assert!(
        file.starts_with("#:schema ./answers.schema.json\n"),
        "the saved file starts with its schema line:\n{file}"
    );
    for line in [
        "network = \"tcp\"",
        "enos_format = \"yes\"",
        "enos_version = \"2\"",
        "long_connection = \"yes\"",
        "constrained = \"no\"",
        "needs = [\"file_upload\", \"ota\"]",
    ] {
        assert!(file.contains(line), "missing {line} in\n{file}");
    }
    let replay = bin()
        .args(["recommend", "--format", "json", "--answers", saved_str])
        .ok_stdout();
    assert_eq!(json_of(&replay), shown, "the replay gives the identical JSON");
}

/// Message integration carries some needs and not others: the needs are asked on this path
/// too, so the result never says `none` for needs it did not look at.
#[test]
fn a_device_headed_for_integration_is_asked_its_needs_not_its_version() {
    let dir = tempfile::tempdir().expect("tempdir");
    let saved = dir.path().join("integration.toml");
    let mut s = spawn_ask(&["--save", saved.to_str().expect("utf-8")]);
    s.expect("Which IP transport").expect("network prompt");
    send(&mut s, &DOWN.repeat(3)); // Neither (no IP stack)
    send(&mut s, "\r");
    s.expect("already report to another cloud")
        .expect("third_party_cloud prompt");
    send(&mut s, "y");
    s.expect("Which platform features")
        .expect("the needs are asked before the outcome");
    // Tick report_data (4th) and ota (11th), then confirm.
    send(&mut s, &DOWN.repeat(3));
    send(&mut s, " ");
    send(&mut s, &DOWN.repeat(7));
    send(&mut s, " ");
    send(&mut s, "\r");
    let out = rest(&mut s);
    assert_eq!(exit_code(&s), Some(0), "{out}");
    assert!(out.contains("Message integration (message_integration)"), "{out}");
    assert!(out.contains("Unmet needs    ┆ ota"), "{out}");
    assert!(
        out.contains("Skipped (could not change the outcome): enos_format, enos_version, constrained, long_connection\n"),
        "{out}"
    );
}

#[test]
fn ctrl_c_and_esc_exit_130_and_leave_no_file() {
    for key in ["\x03", "\x1b"] {
        let dir = tempfile::tempdir().expect("tempdir");
        let saved = dir.path().join("a.toml");
        let mut s = spawn_ask(&["--save", saved.to_str().expect("utf-8")]);
        s.expect("Which IP transport").expect("network prompt");
        send(&mut s, "\r");
        s.expect("speak the EnOS device protocol format")
            .expect("enos_format prompt");
        send(&mut s, key);
        let out = rest(&mut s);
        assert_eq!(exit_code(&s), Some(130), "{key:?}: {out}");
        assert!(
            out.contains("\x1b[?25h"),
            "{key:?}: the cursor is shown again:\n{out:?}"
        );
        assert!(!saved.exists(), "{key:?}: nothing is saved");
        let leftovers: Vec<_> = std::fs::read_dir(dir.path()).expect("dir").collect();
        assert!(
            leftovers.is_empty(),
            "{key:?}: nothing half-written: {leftovers:?}"
        );
    }
}

/// Runs the binary with no terminal at all and returns (code, stderr, elapsed).
fn without_terminal(args: &[&str]) -> (Option<i32>, String, Duration) {
    let start = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_enos-connect"))
        .args(args)
        .env_remove("CI")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .expect("runs");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        start.elapsed(),
    )
}

#[test]
fn ask_without_a_terminal_exits_2_at_once() {
    let (code, err, took) = without_terminal(&["ask"]);
    assert_eq!(code, Some(2));
    assert!(
        err.contains("needs a terminal") && err.contains("recommend --answers"),
        "{err}"
    );
    assert!(
        took < Duration::from_secs(5),
        "no terminal means an immediate answer, not a wait: {took:?}"
    );
}

#[test]
fn recommend_without_a_terminal_names_the_missing_ids_at_once() {
    let (code, err, took) = without_terminal(&["recommend", "--answer", "enos_format=yes"]);
    assert_eq!(code, Some(2));
    assert!(
        err.contains("missing answers for: network, enos_version"),
        "{err}"
    );
    assert!(err.contains("--answer network=tcp|udp|both|none"), "{err}");
    assert!(
        took < Duration::from_secs(5),
        "no terminal means an immediate answer, not a wait: {took:?}"
    );
}

#[test]
fn recommend_on_a_terminal_asks_only_for_what_is_missing() {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_enos-connect"));
    cmd.args([
        "recommend",
        "-f",
        "json",
        "-a",
        "network=tcp",
        "-a",
        "enos_format=yes",
        "-n",
        "ota",
    ]);
    cmd.env_remove("CI")
        .env_remove("ENOS_CONNECT_NO_INPUT")
        .env("TERM", "xterm");
    let mut s = Session::spawn(cmd).expect("spawn");
    s.set_expect_timeout(Some(Duration::from_secs(10)));
    s.expect("Which EnOS version")
        .expect("asks the one missing answer");
    send(&mut s, &format!("{DOWN}\r")); // EnOS 3.x
    let out = rest(&mut s);
    assert_eq!(exit_code(&s), Some(0), "{out}");
    assert!(
        !out.contains("Which IP transport") && !out.contains("persistent"),
        "asked more than missing:\n{out}"
    );
    assert_eq!(json_in(&out)["recommendation"], "mqtt");

    // --no-input turns the prompt off even on a terminal.
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_enos-connect"));
    cmd.args(["recommend", "--no-input", "-a", "network=tcp"])
        .env_remove("CI");
    let mut s = Session::spawn(cmd).expect("spawn");
    s.set_expect_timeout(Some(Duration::from_secs(10)));
    let out = rest(&mut s);
    assert_eq!(exit_code(&s), Some(2), "{out}");
    assert!(
        out.contains("missing answers for: enos_format, enos_version"),
        "{out}"
    );
}
