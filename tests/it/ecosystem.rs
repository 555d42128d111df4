//! Fitting in beside git, cargo, ripgrep and curl: completions, the man page, colour rules,
//! environment variables, the config file, JSON Schemas and the flow picture.

use std::time::Duration;

use crate::common::{OkStdout, bin, json_of};
use expectrl::session::OsSession as Session;
use expectrl::{Eof, Expect};
use predicates::prelude::*;
use serde_json::Value;

#[test]
fn completions_for_every_shell() {
    for (shell, marker) in [
        ("bash", "complete -F"),
        ("zsh", "#compdef enos-connect"),
        ("fish", "complete -c enos-connect"),
        ("powershell", "Register-ArgumentCompleter"),
        ("elvish", "edit:completion:arg-completer"),
    ] {
        let out = String::from_utf8_lossy(&bin().args(["completions", shell]).ok_stdout()).into_owned();
        assert!(out.contains(marker), "{shell}: no `{marker}`");
        for sub in ["recommend", "probe", "plan"] {
            assert!(out.contains(sub), "{shell} completes {sub}");
        }
    }
    bin().args(["completions", "tcsh"]).assert().code(2);
}

#[test]
fn man_pages_for_the_tool_and_every_command() {
    let out = String::from_utf8_lossy(&bin().arg("man").ok_stdout()).into_owned();
    assert!(out.contains(".TH enos-connect 1"), "{out}");
    assert!(out.contains("recommend") && out.contains("probe"));
    let probe = String::from_utf8_lossy(&bin().args(["man", "probe"]).ok_stdout()).into_owned();
    assert!(probe.contains(".TH enos-connect-probe 1"), "{probe}");
    assert!(probe.contains("\\-\\-count"), "the command's own flags: {probe}");
    // The one-device gates, with their exit code in the page's table.
    let recommend = String::from_utf8_lossy(&bin().args(["man", "recommend"]).ok_stdout()).into_owned();
    for gate in [
        "\\-\\-fail\\-on\\-unmet",
        "\\-\\-fail\\-on\\-caveat",
        "an unmet need or a caveat",
    ] {
        assert!(recommend.contains(gate), "{gate} in:\n{recommend}");
    }
    bin()
        .args(["man", "probz"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("no command `probz`"));
    let dir = tempfile::tempdir().expect("tempdir");
    bin()
        .args(["man", "--out-dir"])
        .arg(dir.path())
        .assert()
        .success();
    for name in [
        "enos-connect",
        "enos-connect-recommend",
        "enos-connect-probe",
        "enos-connect-plan",
        "enos-connect-check",
    ] {
        let page = std::fs::read_to_string(dir.path().join(format!("{name}.1")))
            .unwrap_or_else(|e| panic!("{name}.1: {e}"));
        assert!(page.contains(&format!(".TH {name} 1")), "{name}");
    }
}

#[test]
fn version_names_the_capabilities_data_version() {
    let caps = crate::common::caps();
    bin()
        .arg("--version")
        .assert()
        .success()
        .stdout(predicate::str::contains(format!(
            "enos-connect {} (capabilities data {})",
            env!("CARGO_PKG_VERSION"),
            caps.meta.version
        )));
}

fn on_terminal(args: &[&str], env: &[(&str, &str)]) -> String {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_enos-connect"));
    cmd.args(args)
        .env("TERM", "xterm")
        .env_remove("NO_COLOR")
        .env_remove("CI");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut s = Session::spawn(cmd).expect("spawn in a pty");
    s.set_expect_timeout(Some(Duration::from_secs(10)));
    let found = s.expect(Eof).expect("ends");
    String::from_utf8_lossy(found.as_bytes()).into_owned()
}

#[test]
fn colour_only_on_a_terminal_and_never_with_no_color_or_a_dumb_terminal() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let url = format!("mqtt://127.0.0.1:{closed}");
    let args = ["probe", url.as_str()];
    assert!(
        on_terminal(&args, &[]).contains("\x1b[1;31mFAILED"),
        "coloured on a terminal"
    );
    assert!(
        !on_terminal(&args, &[("NO_COLOR", "1")]).contains("\x1b["),
        "NO_COLOR"
    );
    assert!(
        !on_terminal(&args, &[("TERM", "dumb")]).contains("\x1b["),
        "TERM=dumb"
    );
    assert!(
        !on_terminal(&["probe", &url, "--color", "never"], &[]).contains("\x1b["),
        "--color never"
    );
    // Piped: plain, unless asked for.
    let piped = bin().args(args).output().expect("runs");
    assert!(!String::from_utf8_lossy(&piped.stdout).contains('\x1b'));
    let forced = bin()
        .args(["probe", &url, "--color", "always"])
        .output()
        .expect("runs");
    assert!(String::from_utf8_lossy(&forced.stdout).contains("\x1b[1;31mFAILED"));
    let env_forced = bin()
        .args(args)
        .env("ENOS_CONNECT_COLOR", "always")
        .output()
        .expect("runs");
    assert!(String::from_utf8_lossy(&env_forced.stdout).contains('\x1b'));
}

#[test]
fn piped_tables_are_plain_and_stable() {
    let args = [
        "recommend",
        "-a",
        "network=tcp",
        "-a",
        "enos_format=yes",
        "-a",
        "enos_version=2",
        "-n",
        "ota",
    ];
    let first = bin().args(args).ok_stdout();
    assert!(!String::from_utf8_lossy(&first).contains('\x1b'));
    assert_eq!(
        first,
        bin().args(args).ok_stdout(),
        "the same input prints the same bytes"
    );
}

#[test]
fn every_ci_option_has_an_environment_variable() {
    let v = json_of(
        &bin()
            .arg("recommend")
            .env(
                "ENOS_CONNECT_ANSWER",
                "network=tcp,enos_format=yes,enos_version=2",
            )
            .env("ENOS_CONNECT_NEED", "ota,file_upload")
            .env("ENOS_CONNECT_FORMAT", "json")
            .ok_stdout(),
    );
    assert_eq!(v["protocols"], serde_json::json!(["mqtt", "http"]));
    bin()
        .args(["recommend", "-a", "network=tcp"])
        .env("ENOS_CONNECT_NO_INPUT", "true")
        .assert()
        .code(2);
    let help = String::from_utf8_lossy(&bin().args(["probe", "--help"]).ok_stdout()).into_owned();
    for var in [
        "ENOS_CONNECT_TIMEOUT",
        "ENOS_CONNECT_CA",
        "ENOS_CONNECT_PRODUCT_KEY",
        "ENOS_CONNECT_FORMAT",
        "ENOS_CONNECT_COLOR",
    ] {
        assert!(help.contains(var), "--help shows {var}");
    }
}

#[test]
fn the_config_file_gives_defaults_that_flags_override_and_holds_no_secrets() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        "env = \"eu2\"\nproduct_key = \"PKC\"\ndevice_key = \"DKC\"\n",
    )
    .expect("write");
    let plan = [
        "plan",
        "-a",
        "network=tcp",
        "-a",
        "enos_format=yes",
        "-a",
        "enos_version=2",
        "-n",
        "ota",
        "-f",
        "json",
    ];
    let v = json_of(&bin().args(plan).arg("--config").arg(&config).ok_stdout());
    assert_eq!(v["protocols"][0]["host"], "mqtt-eu2.envisioniot.com");
    assert!(
        v["protocols"][0]["probe"]
            .as_str()
            .is_some_and(|p| p.contains("--product-key PKC"))
    );
    let v = json_of(
        &bin()
            .args(plan)
            .args(["--env", "cn5"])
            .env("ENOS_CONNECT_CONFIG", &config)
            .ok_stdout(),
    );
    assert_eq!(
        v["protocols"][0]["host"], "mqtt-cn5.envisioniot.com",
        "a flag wins over the config"
    );

    // The default location: $XDG_CONFIG_HOME/enos-connect/config.toml.
    let xdg = dir.path().join("xdg");
    std::fs::create_dir_all(xdg.join("enos-connect")).expect("mkdir");
    std::fs::write(xdg.join("enos-connect/config.toml"), "env = \"ppe1\"\n").expect("write");
    let v = json_of(&bin().args(plan).env("XDG_CONFIG_HOME", &xdg).ok_stdout());
    assert_eq!(v["protocols"][0]["host"], "mqtt-ppe1.envisioniot.com");

    std::fs::write(&config, "env = \"eu2\"\ndevice_secret = \"Config-Canary-99\"\n").expect("write");
    let out = bin()
        .args(plan)
        .arg("--config")
        .arg(&config)
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("config.toml:2:1") && err.contains("never hold secrets"),
        "{err}"
    );
    assert!(
        !err.contains("Config-Canary-99"),
        "the secret is not echoed: {err}"
    );

    bin()
        .args(plan)
        .args(["--config", "/nonexistent/config.toml"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("cannot read config file"));
}

/// Every error a real JSON Schema validator (the `jsonschema` crate) finds in a TOML text.
fn errors_of(toml_text: &str, schema: &Value) -> Vec<String> {
    let value: Value = toml::from_str(toml_text).expect("TOML parses");
    let validator = jsonschema::validator_for(schema).expect("the schema itself is valid");
    validator
        .iter_errors(&value)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect()
}

#[test]
fn the_shipped_capabilities_file_matches_its_schema_and_broken_ones_do_not() {
    let schema = json_of(&bin().args(["schema", "capabilities"]).ok_stdout());
    let shipped =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/capabilities.toml")).expect("read");
    assert!(
        shipped.starts_with("#:schema ./schemas/capabilities.schema.json"),
        "editors are pointed to the schema"
    );
    assert_eq!(errors_of(&shipped, &schema), Vec::<String>::new());
    let on_disk: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/schemas/capabilities.schema.json"
        ))
        .expect("read"),
    )
    .expect("json");
    assert_eq!(
        on_disk, schema,
        "schemas/capabilities.schema.json is generated from the serde types: regenerate it with `enos-connect schema capabilities > schemas/capabilities.schema.json`"
    );
    let broken = shipped
        .replacen("mqtt = \"supported\"", "mqtt = \"yes\"", 1)
        .replacen("kind = \"filter\"", "kind = \"sieve\"", 1);
    let errors = errors_of(&broken, &schema);
    assert!(
        errors.iter().any(|e| e.contains("\"yes\"")) && errors.iter().any(|e| e.contains("sieve")),
        "{errors:?}"
    );
}

#[test]
fn answers_files_match_the_answers_schema() {
    let schema = json_of(&bin().args(["schema", "answers"]).ok_stdout());
    let shipped: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/schemas/answers.schema.json"
        ))
        .expect("read"),
    )
    .expect("json");
    assert_eq!(
        shipped, schema,
        "schemas/answers.schema.json is up to date: regenerate with `enos-connect schema answers`"
    );
    let example =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/device.toml")).expect("read");
    assert!(example.starts_with("#:schema "));
    assert_eq!(errors_of(&example, &schema), Vec::<String>::new());
    assert_eq!(
        errors_of(
            "network = \"tcp\"\nenos_version = 2\nenos_format = true\n",
            &schema
        ),
        Vec::<String>::new()
    );
    assert!(!errors_of("network = \"tpc\"\n", &schema).is_empty());
    assert!(!errors_of("needs = [\"otaa\"]\n", &schema).is_empty());
    assert!(!errors_of("netwrok = \"tcp\"\n", &schema).is_empty());
}

fn has_dot() -> bool {
    std::process::Command::new("dot")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn flow_pictures_need_graphviz_and_say_so_when_it_is_missing() {
    let empty = tempfile::tempdir().expect("tempdir");
    bin()
        .args(["flow", "--format", "svg"])
        .env("PATH", empty.path())
        .assert()
        .code(2)
        .stderr(predicate::str::contains("graphviz").and(predicate::str::contains("--format mermaid")));
    if !has_dot() {
        crate::common::peer_missing(
            "Graphviz `dot` is not installed (apt-get install graphviz); the svg/png rendering was not checked",
        );
        return;
    }
    let svg = String::from_utf8_lossy(&bin().args(["flow", "--format", "svg"]).ok_stdout()).into_owned();
    assert!(
        svg.contains("<svg") && svg.contains("Message integration"),
        "{svg}"
    );
    let png = bin().args(["flow", "--format", "png"]).ok_stdout();
    assert!(png.starts_with(b"\x89PNG"));
}

#[test]
fn decisions_match_the_decision_schema_with_set_aside_and_caveats() {
    let schema = json_of(&bin().args(["schema", "decision"]).ok_stdout());
    let shipped: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/schemas/decision.schema.json"
        ))
        .expect("read"),
    )
    .expect("json");
    assert_eq!(
        shipped, schema,
        "schemas/decision.schema.json is up to date: regenerate with `enos-connect schema decision`"
    );
    for field in ["set_aside", "caveats"] {
        assert!(
            schema["required"]
                .as_array()
                .is_some_and(|r| r.iter().any(|f| f == field)),
            "{field} is in the schema: {schema}"
        );
    }
    let validator = jsonschema::validator_for(&schema).expect("the schema itself is valid");
    for args in [
        &[
            "-a",
            "network=tcp",
            "-a",
            "enos_format=yes",
            "-a",
            "enos_version=3",
            "-a",
            "long_connection=no",
            "-a",
            "constrained=yes",
            "-a",
            "third_party_cloud=yes",
            "-n",
            "file_upload,downlink_commands",
        ][..],
        &[
            "-a",
            "network=udp",
            "-a",
            "enos_format=yes",
            "-a",
            "enos_version=3",
            "-n",
            "ota",
        ][..],
        &[
            "-a",
            "network=none",
            "-a",
            "third_party_cloud=yes",
            "-a",
            "enos_version=2",
            "-n",
            "ota,report_data",
        ][..],
    ] {
        let out = json_of(&bin().args(["recommend", "-f", "json"]).args(args).ok_stdout());
        let errors: Vec<String> = validator
            .iter_errors(&out)
            .map(|e| format!("{}: {e}", e.instance_path()))
            .collect();
        assert_eq!(errors, Vec::<String>::new(), "{args:?}");
        assert!(out["set_aside"].is_array() && out["caveats"].is_array(), "{out}");
    }
    // A broken object is caught: the schema can fail.
    let mut wrong = json_of(
        &bin()
            .args(["recommend", "-f", "json", "-a", "network=none"])
            .ok_stdout(),
    );
    wrong["caveats"] = serde_json::json!([{"protocol": 3}]);
    assert!(validator.iter_errors(&wrong).next().is_some());
}
