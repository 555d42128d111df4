//! The binary: every command, every outcome through `recommend --format json`, answers files,
//! and the errors for bad input (exit 2, with where and what to do).

use crate::common::{OkStdout, bin, json_of, strings};
use enos_connect::capabilities::EMBEDDED;
use predicates::prelude::*;
use std::path::PathBuf;

fn recommend_json(args: &[&str]) -> serde_json::Value {
    let mut cmd = bin();
    cmd.arg("recommend").args(args).args(["--format", "json"]);
    let out = cmd.ok_stdout();
    json_of(&out)
}

fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, text).expect("write temp file");
    path
}

/// (answers, needs, recommendation, protocols, unmet).
type PathCase = (
    &'static [&'static str],
    &'static [&'static str],
    &'static str,
    &'static [&'static str],
    &'static [&'static str],
);

/// One case per outcome and flow path.
const PATHS: &[PathCase] = &[
    (
        &["network=tcp", "enos_format=yes", "enos_version=2"],
        &["ota"],
        "mqtt",
        &["mqtt"],
        &[],
    ),
    (
        &[
            "network=tcp",
            "enos_format=yes",
            "enos_version=3",
            "long_connection=no",
        ],
        &["file_upload"],
        "http",
        &["http"],
        &[],
    ),
    (
        &["network=tcp", "enos_format=yes", "enos_version=2"],
        &["ota", "file_upload"],
        "mqtt",
        &["mqtt", "http"],
        &[],
    ),
    (
        &[
            "network=udp",
            "enos_format=yes",
            "enos_version=2",
            "constrained=yes",
        ],
        &["report_data"],
        "coap",
        &["coap"],
        &[],
    ),
    (
        &["network=udp", "enos_format=yes", "enos_version=3"],
        &[],
        "none",
        &[],
        &[],
    ),
    (
        &["network=tcp", "enos_format=no", "third_party_cloud=yes"],
        &[],
        "message_integration",
        &[],
        &[],
    ),
    (
        &["network=tcp", "enos_format=no", "third_party_cloud=no"],
        &[],
        "edge_gateway",
        &[],
        &[],
    ),
    (
        &["network=none", "third_party_cloud=yes"],
        &[],
        "message_integration",
        &[],
        &[],
    ),
    (&["network=none"], &["ota"], "edge_gateway", &[], &["ota"]),
    (
        &["network=udp", "enos_format=yes", "enos_version=2"],
        &["ota"],
        "coap",
        &["coap"],
        &["ota"],
    ),
];

#[test]
fn recommend_json_covers_every_flow_path_and_outcome() {
    for (answers, needs, rec, protocols, unmet) in PATHS {
        let mut args = Vec::new();
        for a in *answers {
            args.extend(["--answer", a]);
        }
        for n in *needs {
            args.extend(["--need", n]);
        }
        let v = recommend_json(&args);
        assert_eq!(v["recommendation"], *rec, "{answers:?} {needs:?}: {v}");
        assert_eq!(strings(&v["protocols"]), *protocols, "{answers:?} {needs:?}");
        assert_eq!(strings(&v["unmet"]), *unmet, "{answers:?} {needs:?}");
        assert!(!strings(&v["reasons"]).is_empty());
        assert!(v["trace"].as_array().is_some_and(|t| !t.is_empty()));
    }
}

#[test]
fn recommend_prints_table_and_markdown() {
    let args = [
        "recommend",
        "-a",
        "network=tcp",
        "-a",
        "enos_format=yes",
        "-a",
        "enos_version=2",
        "-n",
        "ota,file_upload",
    ];
    bin()
        .args(args)
        .assert()
        .success()
        .stdout(predicate::str::contains("Recommendation").and(predicate::str::contains("MQTT + HTTP")))
        .stdout(
            predicate::str::contains("Decision path:").and(predicate::str::contains("file_upload -> HTTP")),
        );
    bin()
        .args(args)
        .args(["--format", "markdown"])
        .assert()
        .success()
        .stdout(predicate::str::starts_with("## Recommendation: MQTT (`mqtt`)"))
        .stdout(predicate::str::contains("### Decision path"));
}

#[test]
fn answers_file_replays_and_flags_win() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = write(
        &dir,
        "device.toml",
        "network = \"tcp\"\nenos_format = true\nenos_version = 2\nneeds = [\"ota\"]\n",
    );
    let file = file.to_str().expect("utf-8 path");
    let v = recommend_json(&["--answers", file]);
    assert_eq!(v["recommendation"], "mqtt");
    let v = recommend_json(&[
        "--answers",
        file,
        "--answer",
        "network=udp",
        "--need",
        "report_data",
    ]);
    assert_eq!(v["recommendation"], "coap", "flags override the file: {v}");
    assert_eq!(strings(&v["needs"]), ["report_data"]);
}

#[test]
fn missing_answers_exit_2_and_name_the_flags() {
    bin()
        .args(["recommend", "--answer", "network=tcp"])
        .assert()
        .code(2)
        .stdout("")
        .stderr(predicate::str::contains(
            "missing answers for: enos_format, enos_version",
        ))
        .stderr(predicate::str::contains("--answer enos_format=yes|no"));
}

#[test]
fn unknown_ids_and_values_suggest_the_nearest() {
    bin()
        .args(["recommend", "--answer", "netwrok=tcp"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "unknown question `netwrok` (did you mean `network`?)",
        ));
    bin()
        .args(["recommend", "--answer", "network=tpc"])
        .assert()
        .code(2)
        .stderr(
            predicate::str::contains("did you mean `tcp`?")
                .and(predicate::str::contains("tcp, udp, both, none")),
        );
    bin()
        .args(["recommend", "--need", "fileupload"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("did you mean `file_upload`?"));
    bin()
        .args(["recommend", "--answer", "network"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("ID=VALUE"));
}

#[test]
fn answers_file_errors_have_file_line_and_column() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bad_value = write(&dir, "a.toml", "network = \"tcp\"\nenos_format = \"maybe\"\n");
    bin()
        .args(["recommend", "--answers"])
        .arg(&bad_value)
        .assert()
        .code(2)
        .stderr(predicate::str::contains("a.toml:2:15:").and(predicate::str::contains("yes, no")));
    let bad_key = write(&dir, "b.toml", "network = \"tcp\"\nversion = \"2\"\n");
    bin()
        .args(["recommend", "--answers"])
        .arg(&bad_key)
        .assert()
        .code(2)
        .stderr(
            predicate::str::contains("b.toml:2:1:")
                .and(predicate::str::contains("unknown question `version`")),
        );
    let syntax = write(&dir, "c.toml", "network = \"tcp\nx");
    bin()
        .args(["recommend", "--answers"])
        .arg(&syntax)
        .assert()
        .code(2)
        .stderr(predicate::str::contains("c.toml:2:2: key with no value"));
    bin()
        .args(["recommend", "--answers", "/nonexistent/answers.toml"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("cannot read answers file"));
}

#[test]
fn check_accepts_the_shipped_file() {
    bin()
        .arg("check")
        .assert()
        .success()
        .stdout(predicate::str::contains("ok:").and(predicate::str::contains("11 features")));
    bin()
        .args(["check", "capabilities.toml"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .assert()
        .success();
}

#[test]
fn check_reports_toml_syntax_errors_with_line_and_column() {
    let dir = tempfile::tempdir().expect("tempdir");
    let text = EMBEDDED.replacen("transport = \"tcp\"", "transport = tcp", 1);
    let file = write(&dir, "caps.toml", &text);
    let line = text.lines().position(|l| l == "transport = tcp").expect("line") + 1;
    bin()
        .arg("check")
        .arg(&file)
        .assert()
        .code(2)
        .stderr(predicate::str::contains(format!("caps.toml:{line}:13:")));
}

#[test]
fn check_reports_every_semantic_problem_at_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let text = EMBEDDED
        // a feature naming an unknown protocol
        .replacen("support = { mqtt = \"supported\", coap = \"supported\", http = \"supported\" }", "support = { mqtt = \"supported\", coap = \"supported\", http = \"supported\", lorawan = \"supported\" }", 1)
        // a missing support value
        .replacen("support = { mqtt = \"not_supported\", coap = \"not_supported\", http = \"supported\" }", "support = { mqtt = \"not_supported\", http = \"supported\" }", 1)
        // a flow edge to a missing node
        .replacen("to = \"message_integration\"", "to = \"integration\"", 1)
        // a cycle: prefer leads back to the start
        .replacen("from = \"prefer\"\nto = \"direct\"", "from = \"prefer\"\nto = \"network\"", 1);
    let file = write(&dir, "broken.toml", &text);
    let out = bin()
        .arg("check")
        .arg(&file)
        .assert()
        .code(2)
        .get_output()
        .stderr
        .clone();
    let err = String::from_utf8_lossy(&out);
    for expected in [
        "unknown protocol `lorawan`",
        "no support value for protocol `coap`",
        "leads to missing node `integration`",
        "closes a cycle",
        "node `message_integration` cannot be reached",
        "node `direct` cannot be reached",
    ] {
        assert!(err.contains(expected), "missing `{expected}` in:\n{err}");
    }
    assert!(err.contains("broken.toml:"), "problems carry the file: {err}");
    // JSON form for CI.
    let out = bin()
        .args(["check", "--format", "json"])
        .arg(&file)
        .assert()
        .code(2)
        .get_output()
        .stdout
        .clone();
    let v = json_of(&out);
    assert_eq!(v["ok"], false);
    assert!(
        v["problems"]
            .as_array()
            .is_some_and(|p| p.len() >= 6 && p.iter().all(|x| x["line"].as_u64().is_some()))
    );
}

#[test]
fn check_rejects_a_flow_that_reaches_a_choice_with_no_protocol_left() {
    let dir = tempfile::tempdir().expect("tempdir");
    // by_version's "none" branch sent on to the cover and prefer nodes: a UDP device on EnOS 3
    // would get there with nothing open. Every node is still reachable and every edge valid.
    let text = EMBEDDED.replacen(
        "from = \"by_version\"\nto = \"no_protocol\"\nwhen = [\"none\"]",
        "from = \"by_version\"\nto = \"by_needs\"\nwhen = [\"none\"]",
        1,
    );
    assert_ne!(text, EMBEDDED, "the edge to change is in the shipped file");
    let file = write(&dir, "empty-choice.toml", &text);
    let out = bin()
        .arg("check")
        .arg(&file)
        .assert()
        .code(2)
        .get_output()
        .stderr
        .clone();
    let err = String::from_utf8_lossy(&out);
    for expected in [
        "empty-choice.toml:",
        "cover node `by_needs` can be reached with no protocol left",
        "by_version[enos_version=",
    ] {
        assert!(err.contains(expected), "missing `{expected}` in:\n{err}");
    }
    // Every command that reads the file refuses it the same way: none can reach the engine
    // and its choice with nothing to choose from.
    for args in [
        &[
            "recommend",
            "-a",
            "network=udp",
            "-a",
            "enos_format=yes",
            "-a",
            "enos_version=3",
        ][..],
        &["recommend", "--batch", "-"][..],
    ] {
        bin()
            .args(args)
            .arg("--capabilities")
            .arg(&file)
            .write_stdin("id,network,enos_format,enos_version\nd1,udp,yes,3\n")
            .assert()
            .code(2)
            .stderr(predicate::str::contains("no protocol left"));
    }
}

#[test]
fn a_broken_capabilities_file_fails_every_command_with_exit_2() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = write(&dir, "bad.toml", "[meta]\nversion = 3\n");
    bin()
        .args(["questions", "--capabilities"])
        .arg(&file)
        .assert()
        .code(2)
        .stderr(predicate::str::contains("bad.toml:2:11:"));
    bin()
        .arg("compare")
        .env("ENOS_CONNECT_CAPABILITIES", &file)
        .assert()
        .code(2)
        .stderr(predicate::str::contains("bad.toml"));
    bin()
        .args(["check", "/nonexistent/caps.toml"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("cannot read"));
}

#[test]
fn a_replaced_capabilities_file_changes_the_decision_and_the_picture() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Pretend EnOS 3 gained CoAP.
    let text = EMBEDDED
        .replacen("enos_versions = [\"2\"]", "enos_versions = [\"2\", \"3\"]", 1)
        .replacen(
            "label = \"Keep protocols the EnOS version offers\"",
            "label = \"Keep protocols offered by this EnOS\"",
            1,
        );
    let file = write(&dir, "caps.toml", &text);
    let out = bin()
        .args([
            "recommend",
            "-f",
            "json",
            "-a",
            "network=udp",
            "-a",
            "enos_format=yes",
            "-a",
            "enos_version=3",
        ])
        .env("ENOS_CONNECT_CAPABILITIES", &file)
        .ok_stdout();
    assert_eq!(json_of(&out)["recommendation"], "coap");
    bin()
        .args(["flow", "--capabilities"])
        .arg(&file)
        .assert()
        .success()
        .stdout(predicate::str::contains("Keep protocols offered by this EnOS"));
}

#[test]
fn compare_marks_needed_rows_and_shows_security() {
    bin()
        .args(["compare", "--need", "ota"])
        .assert()
        .success()
        .stdout(predicate::str::contains("* ota").and(predicate::str::contains("Firmware OTA update")))
        .stdout(predicate::str::contains("security").and(predicate::str::contains("pre-shared key")));
    let out = bin().args(["compare", "--need", "ota", "-f", "json"]).ok_stdout();
    let v = json_of(&out);
    let features = v["features"].as_array().expect("features");
    assert_eq!(features.len(), 11);
    let ota = features.iter().find(|f| f["id"] == "ota").expect("ota");
    assert_eq!(ota["needed"], true);
    assert_eq!(ota["support"]["coap"], "not_supported");
    let mtls = features
        .iter()
        .find(|f| f["id"] == "mutual_tls")
        .expect("mutual_tls");
    assert_eq!(mtls["support"]["http"], "partial");
    assert_eq!(mtls["support"]["coap"], "not_applicable");
    bin()
        .args(["compare", "-f", "markdown"])
        .assert()
        .success()
        .stdout(predicate::str::starts_with("| Feature | MQTT | CoAP | HTTP |"));
}

#[test]
fn flow_is_drawn_from_the_data_in_every_format() {
    let caps = crate::common::caps();
    let mermaid = bin().args(["flow", "--format", "mermaid"]).ok_stdout();
    let mermaid = String::from_utf8_lossy(&mermaid);
    assert!(mermaid.starts_with("flowchart TD"));
    for e in &caps.flow.edges {
        assert!(
            mermaid.contains(&format!("{} -- \"{}\" --> {}", e.from, e.when.join(", "), e.to)),
            "{e:?}"
        );
    }
    let dot = bin().args(["flow", "--format", "dot"]).ok_stdout();
    let dot = String::from_utf8_lossy(&dot);
    assert!(dot.starts_with("digraph") && dot.trim_end().ends_with('}'));
    assert_eq!(dot.matches(" -> ").count(), caps.flow.edges.len());
    bin()
        .args(["flow", "--format", "text"])
        .assert()
        .success()
        .stdout(
            predicate::str::contains("network [question on network]")
                .and(predicate::str::contains("none -> third_party")),
        );
}

#[test]
fn questions_list_ids_values_and_features() {
    bin().arg("questions").assert().success().stdout(
        predicate::str::contains("tcp | udp | both | none")
            .and(predicate::str::contains("subdevice_management")),
    );
    let out = bin().args(["questions", "-f", "json"]).ok_stdout();
    let v = json_of(&out);
    let ids: Vec<&str> = v["questions"]
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|q| q["id"].as_str())
        .collect();
    assert_eq!(
        ids,
        [
            "network",
            "enos_format",
            "third_party_cloud",
            "enos_version",
            "constrained",
            "long_connection"
        ]
    );
    assert_eq!(v["features"].as_array().map(Vec::len), Some(11));
}

#[test]
fn help_documents_the_exit_codes() {
    bin()
        .arg("--help")
        .assert()
        .success()
        .stdout(predicate::str::contains("Exit codes:").and(predicate::str::contains("130")));
    bin()
        .args(["recommend", "--help"])
        .assert()
        .success()
        .stdout(predicate::str::contains("2    usage or input error"));
    bin()
        .arg("--version")
        .assert()
        .success()
        .stdout(predicate::str::contains(env!("CARGO_PKG_VERSION")));
    bin().arg("frobnicate").assert().code(2);
}

/// The config file is read where it is used: a command whose flags it cannot fill and that
/// reads no model never opens it, so a stale `ENOS_CONNECT_CONFIG` does not stop `man`; a
/// command that reads the model (the config may name its file) or takes the flags it fills
/// still says the file is missing.
#[test]
fn the_config_file_is_read_only_where_it_is_used() {
    let dir = tempfile::tempdir().expect("tempdir");
    let nope = dir.path().join("nope.toml");
    for args in [
        &["man"][..],
        &["schema", "registry"],
        &["check", "capabilities.toml"],
    ] {
        bin()
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .args(args)
            .env("ENOS_CONNECT_CONFIG", &nope)
            .assert()
            .success();
    }
    for args in [
        &["recommend", "-a", "network=none"][..],
        &["plan", "-a", "network=none"],
    ] {
        bin()
            .args(args)
            .env("ENOS_CONNECT_CONFIG", &nope)
            .assert()
            .code(2)
            .stderr(predicate::str::contains("nope.toml"));
    }
}

/// The binary does not load `libgcc_s.so.1`: build.rs links the unwinder in, because loading
/// that library runs its `cpuid`s, which cost a virtual machine 0.15 ms or more of every start
/// (docs/performance.md). `readelf -d` lists the libraries the binary needs.
#[test]
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn the_binary_does_not_load_libgcc_s() {
    let exe = env!("CARGO_BIN_EXE_enos-connect");
    let out = std::process::Command::new("readelf")
        .args(["-d", exe])
        .output()
        .expect("readelf runs (binutils, which links every Rust binary here)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("[libc.so.6]"),
        "readelf -d {exe} lists what it needs:\n{text}"
    );
    assert!(
        !text.contains("libgcc_s"),
        "the binary needs libgcc_s again:\n{text}"
    );
}

/// `--capabilities`, `--config` and `--color` go before the command or after it, and the
/// command's own wins (they are flattened into each command, not clap globals).
#[test]
fn the_flags_every_command_takes_go_before_or_after_it() {
    for args in [
        &["--capabilities", "/nonexistent/a.toml", "compare"][..],
        &["compare", "--capabilities", "/nonexistent/a.toml"],
        &[
            "--capabilities",
            "capabilities.toml",
            "compare",
            "--capabilities",
            "/nonexistent/a.toml",
        ],
    ] {
        bin()
            .args(args)
            .assert()
            .code(2)
            .stderr(predicate::str::contains("/nonexistent/a.toml"));
    }
    let model = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("capabilities.toml");
    bin()
        .args([
            "--capabilities",
            "/nonexistent/a.toml",
            "compare",
            "--capabilities",
        ])
        .arg(&model)
        .assert()
        .success();
    for color in [
        &["--color", "always", "compare"][..],
        &["compare", "--color", "always"],
    ] {
        let out = bin().args(color).assert().success().get_output().stdout.clone();
        assert!(out.contains(&0x1b), "{color:?} colours the table");
    }
    let plain = bin()
        .args(["--color", "always", "compare", "--color", "never"])
        .assert()
        .success();
    assert!(
        !plain.get_output().stdout.contains(&0x1b),
        "the command's --color never wins"
    );
}
