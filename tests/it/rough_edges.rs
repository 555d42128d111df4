//! The rough edges a new user hit (issue 23), each pinned by a test that failed before its fix:
//! help and man pages, completion in real shells, exit codes, input rules, output shapes, and
//! the decision path drawn over the flow.

use std::process::Command as StdCommand;
use std::time::{Duration, Instant};

use crate::common::{OkStdout, bin, json_of, probe};
use expectrl::session::OsSession as Session;
use expectrl::{Eof, Expect};
use predicates::prelude::*;

fn stdout_of(args: &[&str]) -> String {
    String::from_utf8_lossy(&bin().args(args).ok_stdout()).into_owned()
}

/// Exit code, stdout and stderr of a run.
fn run(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut cmd = bin();
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A shell or tool from Debian's packages that `.ci/run` installs: its path; a missing one
/// fails the test unless skips are allowed ([`crate::common::peer_missing`]).
fn tool(name: &str) -> Option<String> {
    let found = StdCommand::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    if found.is_none() {
        crate::common::peer_missing(&format!("`{name}` is not installed (apt-get install {name})"));
    }
    found
}

#[test]
fn help_and_man_pages_start_with_the_commands_description() {
    for (cmd, about) in [
        ("recommend", "Recommend how a device connects"),
        ("compare", "Show the protocol comparison table"),
        ("plan", "Turn the recommendation into endpoints"),
        ("credentials", "Compute EnOS login material"),
        ("probe", "Prove a connection"),
    ] {
        let help = stdout_of(&[cmd, "--help"]);
        assert!(
            help.starts_with(about),
            "{cmd} --help starts with: {}",
            help.lines().next().unwrap_or("")
        );
        assert!(
            !help.contains("shared by"),
            "{cmd}: an internal comment leaks into --help"
        );
        let man = stdout_of(&["man", cmd]);
        let name = man.split(".SH NAME").nth(1).unwrap_or_default();
        let name_line = name.lines().nth(1).unwrap_or_default();
        assert!(
            name_line.contains(&about.replace('-', "\\-")),
            "{cmd} man NAME: {name_line}"
        );
    }
}

#[test]
fn a_subcommands_version_is_the_programs() {
    let top = stdout_of(&["-V"]);
    assert!(top.starts_with("enos-connect 0."), "{top}");
    assert_eq!(stdout_of(&["recommend", "-V"]), top);
}

#[test]
fn global_flags_only_where_they_mean_something_and_in_man_pages() {
    assert!(!stdout_of(&["serve", "--help"]).contains("--no-input"));
    assert!(stdout_of(&["recommend", "--help"]).contains("--no-input"));
    assert!(stdout_of(&["probe", "--help"]).contains("--no-input"));
    bin().args(["serve", "--no-input"]).assert().code(2);
    let serve_help = stdout_of(&["serve", "--help"]);
    for var in [
        "ENOS_CONNECT_MQTT",
        "ENOS_CONNECT_HTTP",
        "ENOS_CONNECT_COAP",
        "ENOS_CONNECT_RECORD",
    ] {
        assert!(serve_help.contains(var), "serve --help lacks {var}");
    }
    let man_serve = stdout_of(&["man", "serve"]);
    assert!(
        man_serve.contains("\\-\\-capabilities"),
        "global flags missing from the subcommand page"
    );
    assert!(!man_serve.contains("no\\-input"));
    let top = stdout_of(&["man"]);
    assert!(
        !top.contains("enos\\-connect\\-help"),
        "lists a help(1) page nobody writes"
    );
    assert!(
        top.contains(".SH \"EXIT STATUS\"") && !top.contains(".SH EXTRA"),
        "{top}"
    );
    assert!(man_serve.contains(".SH NOTES") && man_serve.contains(".SH \"EXIT STATUS\""));
    let schema = stdout_of(&["schema", "--help"]);
    assert!(schema.contains("<KIND>") && !schema.contains("<OF>"), "{schema}");
}

#[test]
fn bash_completes_after_a_subcommand() {
    let dir = tempfile::tempdir().expect("tempdir");
    let script = dir.path().join("enos-connect.bash");
    std::fs::write(&script, bin().args(["completions", "bash"]).ok_stdout()).expect("write");
    let complete = |words: &str, cword: usize| -> String {
        let words_list: Vec<&str> = words.split(' ').collect();
        let cur = words_list.get(cword).copied().unwrap_or("");
        let prev = words_list.get(cword - 1).copied().unwrap_or("");
        let program = format!(
            "source '{}'; COMP_WORDS=({words}); COMP_CWORD={cword}; _enos__connect enos-connect '{cur}' '{prev}'; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
            script.display()
        );
        let out = StdCommand::new("bash")
            .args(["--norc", "-c", &program])
            .output()
            .expect("bash runs");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert!(
        complete("enos-connect recommend --ne", 2)
            .lines()
            .any(|l| l == "--need")
    );
    let needs = complete("enos-connect recommend -n ''", 3);
    for id in ["ota", "file_upload", "report_data"] {
        assert!(
            needs.lines().any(|l| l == id),
            "-n <TAB> offers feature ids: {needs}"
        );
    }
    // `-a` completes a question id with its `=` first (issue 32, item 15; it offered every pair).
    let answers = complete("enos-connect plan -a net", 3);
    assert_eq!(answers.lines().collect::<Vec<_>>(), ["network="], "{answers}");
    let formats = complete("enos-connect recommend --format ''", 3);
    assert_eq!(formats.lines().collect::<Vec<_>>(), ["table", "json", "markdown"]);
}

/// An interactive bash in a pseudo-terminal with the completion script loaded and
/// `enos-connect` a function that prints its arguments: what Tab puts on the line is what runs.
fn bash_with_completion(script: &std::path::Path) -> Option<Session> {
    let bash = tool("bash")?;
    let mut cmd = StdCommand::new(bash);
    cmd.args(["--norc", "--noprofile", "-i"])
        .env("TERM", "dumb")
        .env("PS1", "$ ");
    let mut s = Session::spawn(cmd).expect("bash in a pty");
    s.set_expect_timeout(Some(Duration::from_secs(10)));
    let setup = format!(
        "bind 'set enable-bracketed-paste off'; bind 'set show-all-if-ambiguous on'; source '{}'; enos-connect() {{ printf 'RAN:%s|\\n' \"$*\"; }}; echo READY\n",
        script.display()
    );
    s.send(setup).expect("setup");
    s.expect("READY\r\n").expect("bash is ready");
    Some(s)
}

/// Type `line`, press Tab, and return what bash listed (candidates) and ran (the line).
fn tab(s: &mut Session, line: &str) -> (String, String) {
    s.send(format!("{line}\t")).expect("type");
    std::thread::sleep(Duration::from_millis(400));
    s.send("\n").expect("enter");
    let ran = s
        .expect(expectrl::Regex(r"RAN:([^|]*)\|"))
        .expect("the function runs");
    let all = String::from_utf8_lossy(ran.before()).replace('\r', "");
    let line = String::from_utf8_lossy(ran.get(1).unwrap_or_default()).to_string();
    (all, line)
}

#[test]
fn bash_completes_protocols_question_ids_and_answers_after_the_equals_sign() {
    // Issue 32, item 15: `credentials <Tab>` offered only flags, `-a network=<Tab>` inserted
    // `-` (bash splits words at `=`, COMP_WORDBREAKS), `-a network=t<Tab>` did nothing.
    let dir = tempfile::tempdir().expect("tempdir");
    let script = dir.path().join("enos-connect.bash");
    std::fs::write(&script, bin().args(["completions", "bash"]).ok_stdout()).expect("write");
    let Some(mut s) = bash_with_completion(&script) else {
        return;
    };
    let (_, ran) = tab(&mut s, "enos-connect recommend -a network=t");
    assert_eq!(ran, "recommend -a network=tcp", "-a network=t<Tab>");
    let (_, ran) = tab(&mut s, "enos-connect recommend -a enos_f");
    assert_eq!(
        ran, "recommend -a enos_format=",
        "-a ID<Tab> completes the id and `=`"
    );
    let (listed, _) = tab(&mut s, "enos-connect recommend -a network=");
    for value in ["tcp", "udp", "both", "none"] {
        assert!(
            listed.split_whitespace().any(|w| w == value),
            "{value} in:\n{listed}"
        );
    }
    assert!(
        !listed.contains("network=tcp"),
        "only the values after `=`:\n{listed}"
    );
    let (listed, _) = tab(&mut s, "enos-connect recommend -a ");
    for id in ["network=", "enos_format="] {
        assert!(listed.split_whitespace().any(|w| w == id), "{id} in:\n{listed}");
    }
    let (listed, _) = tab(&mut s, "enos-connect credentials ");
    for kind in ["mqtt", "http", "coap", "subdevice"] {
        assert!(
            listed.split_whitespace().any(|w| w == kind),
            "{kind} in:\n{listed}"
        );
    }
    assert!(
        !listed.contains("--product-key"),
        "a word that is not a flag gets the protocols:\n{listed}"
    );
    let (_, ran) = tab(&mut s, "enos-connect credentials sub");
    assert_eq!(ran, "credentials subdevice");
    s.send("exit\n").expect("exit");
    let _ = s.expect(Eof);

    // The values come from the capabilities in use: a file whose question is called otherwise.
    let caps = dir.path().join("caps.toml");
    let text = enos_connect::capabilities::EMBEDDED.replace("long_connection", "keeps_connection");
    std::fs::write(&caps, &text).expect("write");
    bin().arg("check").arg(&caps).assert().success();
    let other = String::from_utf8_lossy(
        &bin()
            .arg("--capabilities")
            .arg(&caps)
            .args(["completions", "bash"])
            .ok_stdout(),
    )
    .to_string();
    assert!(
        other.contains("keeps_connection=yes")
            && other.contains("keeps_connection=")
            && !other.contains("long_connection"),
        "the file's questions"
    );
}

#[test]
fn fish_and_zsh_load_the_completions() {
    if let Some(fish) = tool("fish") {
        let dir = tempfile::tempdir().expect("tempdir");
        let script = dir.path().join("enos-connect.fish");
        std::fs::write(&script, bin().args(["completions", "fish"]).ok_stdout()).expect("write");
        let program = format!(
            "source '{}'; complete -C 'enos-connect recommend --ne'",
            script.display()
        );
        let out = StdCommand::new(&fish)
            .args(["--no-config", "-c", &program])
            .env("HOME", dir.path())
            .output()
            .expect("fish runs");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.lines().any(|l| l.starts_with("--need")), "fish: {text}");
        // Issue 32, item 15: the protocols of `credentials`, the values after `-a ID=`.
        for (line, want) in [
            ("enos-connect credentials ", "subdevice"),
            ("enos-connect recommend -a network=t", "network=tcp"),
        ] {
            let program = format!("source '{}'; complete -C '{line}'", script.display());
            let out = StdCommand::new(&fish)
                .args(["--no-config", "-c", &program])
                .env("HOME", dir.path())
                .output()
                .expect("fish runs");
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(
                text.lines().any(|l| l.split('\t').next() == Some(want)),
                "fish `{line}`: {text}"
            );
        }
    }
    if let Some(zsh) = tool("zsh") {
        // zsh completes only in an interactive line editor; this checks that compsys loads
        // the script and binds its function to the command.
        let dir = tempfile::tempdir().expect("tempdir");
        let script = dir.path().join("_enos-connect");
        let text = bin().args(["completions", "zsh"]).ok_stdout();
        // Issue 32, item 15: `credentials`' protocols are its argument's values.
        assert!(
            String::from_utf8_lossy(&text).contains(":(coap http mqtt subdevice)"),
            "zsh: the protocols of credentials"
        );
        std::fs::write(&script, text).expect("write");
        let program = format!(
            "fpath=('{}' $fpath); autoload -Uz compinit; compinit -u -d '{}/dump'; print -r -- $_comps[enos-connect]",
            dir.path().display(),
            dir.path().display()
        );
        let out = StdCommand::new(&zsh)
            .args(["-f", "-c", &program])
            .env("HOME", dir.path())
            .output()
            .expect("zsh runs");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            "_enos-connect",
            "{out:?}"
        );
    }
}

#[test]
fn coaps_to_a_closed_port_is_refused_at_once() {
    let (code, v, took) = probe(
        &["coaps://127.0.0.1:1", "--psk-identity", "id", "--timeout", "8"],
        &[("ENOS_CONNECT_PSK", "key")],
    );
    assert_eq!(code, 1, "{v}");
    assert_eq!(v["error"]["kind"], "refused", "{v}");
    assert!(
        took < Duration::from_secs(3),
        "took {took:?}: waited for the timeout"
    );
}

#[test]
fn markdown_is_markdown_for_probe_check_and_merge() {
    let (_, out, _) = run(&["probe", "coap://127.0.0.1:1", "-f", "markdown"], &[]);
    assert!(out.starts_with("### FAILED: coap"), "{out}");
    assert!(out.contains("| stage | ms |"), "{out}");
    let out = stdout_of(&["check", "-f", "markdown"]);
    assert!(out.starts_with("**ok**"), "{out}");
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "x = 1\n").expect("write");
    let (code, out, _) = run(
        &["check", bad.to_str().unwrap_or_default(), "-f", "markdown"],
        &[],
    );
    assert_eq!(code, 2);
    assert!(
        // An unknown key, and the `meta` the file lacks: both in one run (issue 32, item 8).
        out.starts_with("**2 problem(s)**") && out.contains("```text"),
        "{out}"
    );
    // A load report to merge: refused probes still make one, with histograms.
    let report = dir.path().join("load.json");
    let (_, load, _) = run(
        &["probe", "coap://127.0.0.1:1", "--count", "3", "-f", "json"],
        &[],
    );
    std::fs::write(&report, load).expect("write");
    let path = report.to_str().unwrap_or_default();
    let (_, md, _) = run(&["merge", path, "-f", "markdown"], &[]);
    assert!(md.starts_with("### FAILED: 3 x coap"), "{md}");
    assert!(md.contains("| merged from | 1 report |"), "{md}");
    let (_, table, _) = run(&["merge", path], &[]);
    assert!(table.contains("merged from 1 report:"), "{table}");
}

#[test]
fn credentials_subdevice_reads_its_own_secret_and_says_each_field_once() {
    assert!(stdout_of(&["credentials", "--help"]).contains("subdevice"));
    let args = [
        "credentials",
        "subdevice",
        "--product-key",
        "pk",
        "--device-key",
        "dk",
        "--timestamp",
        "1",
        "-f",
        "json",
    ];
    let (code, _, err) = run(&args, &[("ENOS_DEVICE_SECRET", "gateway-secret")]);
    assert_eq!(code, 2, "the gateway's secret must not sign a sub-device: {err}");
    assert!(err.contains("ENOS_SUBDEVICE_SECRET"), "{err}");
    let (code, out, err) = run(&args, &[("ENOS_SUBDEVICE_SECRET", "sub-secret")]);
    assert_eq!(code, 0, "{err}");
    assert!(!out.contains("sub-secret"));
    let v = json_of(out.as_bytes());
    assert_eq!(v["timestamp"], 1, "{v}");
    assert_eq!(v["secure_mode"], 2, "{v}");
    assert!(v.get("secureMode").is_none(), "{v}");
    // The wire's strings sit apart, under `params`: once at the top, once as sent.
    assert_eq!(v["params"]["timestamp"], "1", "{v}");
    assert_eq!(v["params"]["secureMode"], "2", "{v}");
    assert_eq!(out.matches("\"timestamp\"").count(), 2, "{out}");
    let table = String::from_utf8_lossy(
        &bin()
            .args(&args[..8])
            .env("ENOS_SUBDEVICE_SECRET", "sub-secret")
            .ok_stdout(),
    )
    .into_owned();
    assert_eq!(table.matches("timestamp").count(), 1, "{table}");
}

#[test]
fn a_huge_bad_line_is_not_echoed_whole() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("huge.toml");
    std::fs::write(&file, format!("{}\n", "a".repeat(5_000_000))).expect("write");
    let (code, _, err) = run(&["check", file.to_str().unwrap_or_default()], &[]);
    assert_eq!(code, 2);
    assert!(err.len() < 2_000, "{} bytes on stderr", err.len());
    assert!(err.contains(":1:5000001:"), "{}", &err[..err.len().min(300)]);
}

#[test]
fn compare_reads_at_80_columns_piped_and_on_a_terminal_without_a_width() {
    let piped = stdout_of(&["compare", "-n", "ota"]);
    let check = |text: &str, how: &str| {
        for line in text.lines() {
            assert!(
                line.chars().count() <= 80,
                "{how}: {} columns: {line}",
                line.chars().count()
            );
        }
        for id in [
            "subdevice_management",
            "batch_offline_points",
            "downlink_commands",
        ] {
            assert!(text.contains(id), "{how}: `{id}` not whole:\n{text}");
        }
        assert!(!text.contains("mistranslation"), "{how}: an internal note");
        assert!(text.contains("[1]"), "{how}: notes are numbered");
    };
    check(&piped, "piped");
    assert!(piped.contains("* ota"), "the need is marked");
    // A pseudo-terminal that reports 0 columns, as `script` does.
    let mut cmd = StdCommand::new(env!("CARGO_BIN_EXE_enos-connect"));
    cmd.args(["compare", "--color", "never"]).env("TERM", "xterm");
    let mut s = Session::spawn(cmd).expect("spawn in a pty");
    s.set_expect_timeout(Some(Duration::from_secs(10)));
    let out = s.expect(Eof).expect("compare ends");
    let text = String::from_utf8_lossy(out.as_bytes()).replace('\r', "");
    check(&text, "pty");
}

#[test]
fn exit_codes_agree_with_the_table() {
    let dir = tempfile::tempdir().expect("tempdir");
    let registry = dir.path().join("registry.toml");
    std::fs::write(&registry, "").expect("write");
    let reg = registry.to_str().unwrap_or_default();
    let (code, _, err) = run(
        &[
            "serve",
            "--registry",
            reg,
            "--record",
            "/no/such/dir/x",
            "--mqtt",
            "127.0.0.1:0",
            "--http",
            "off",
            "--coap",
            "off",
            "--console",
            "off",
        ],
        &[],
    );
    assert_eq!(code, 74, "{err}");
    let start = Instant::now();
    let (code, _, err) = run(
        &[
            "serve",
            "--registry",
            reg,
            "--mqtt",
            "off",
            "--http",
            "off",
            "--coap",
            "off",
            "--console",
            "off",
        ],
        &[],
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("every listener is off"), "{err}");
    assert!(start.elapsed() < Duration::from_secs(5));
    let help = stdout_of(&["--help"]);
    assert!(help.contains("also `ask` without a terminal"), "{help}");
    bin().arg("ask").assert().code(2);
}

#[test]
fn one_rule_for_answers_from_flags_files_and_the_environment() {
    let base = ["recommend", "-a", "enos_version=2", "-f", "json"];
    let (code, _, err) = run(
        &[
            &base[..],
            &["-a", "network=tcp", "-a", "network=udp", "-a", "enos_format=yes"],
        ]
        .concat(),
        &[],
    );
    assert_eq!(code, 2);
    assert!(
        err.contains("`network` is answered twice, `tcp` and `udp`"),
        "{err}"
    );
    let (code, out, err) = run(
        &[&base[..], &["-a", "network=tcp", "-a", "enos_format=true"]].concat(),
        &[],
    );
    assert_eq!(code, 0, "true is yes on the command line as in a file: {err}");
    assert_eq!(json_of(out.as_bytes())["recommendation"], "mqtt");
    // Values as people type them (y, 3.0, TCP) are read; a value that names no choice is
    // refused with the nearest.
    let (code, out, err) = run(
        &[
            "recommend",
            "-f",
            "json",
            "-a",
            "network=TCP",
            "-a",
            "enos_format=y",
            "-a",
            "enos_version=3.0",
        ],
        &[],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(json_of(out.as_bytes())["recommendation"], "mqtt");
    let (_, _, err) = run(&["recommend", "-a", "network=tcp", "-a", "enos_format=yess"], &[]);
    assert!(err.contains("did you mean `yes`?"), "{err}");
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("a.toml");
    std::fs::write(&file, "network = tcp\n").expect("write");
    let (code, _, err) = run(
        &["recommend", "--answers", file.to_str().unwrap_or_default()],
        &[],
    );
    assert_eq!(code, 2);
    assert!(err.contains("needs quotes: network = \"tcp\""), "{err}");
    let (_, _, err) = run(&["recommend"], &[("ENOS_CONNECT_ANSWER", "network=tcpx")]);
    assert!(err.contains("ENOS_CONNECT_ANSWER (--answer)"), "{err}");
    let (code, _, err) = run(
        &["probe", "coap://127.0.0.1:1"],
        &[("ENOS_CONNECT_TIMEOUT", "soon")],
    );
    assert_eq!(code, 2);
    assert!(err.contains("ENOS_CONNECT_TIMEOUT"), "{err}");
}

#[test]
fn batch_only_flags_are_refused_without_batch() {
    bin()
        .arg("recommend")
        .args(["--shard", "1/2"])
        .args(["-a", "network=tcp"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("works only with --batch FILE"));
}

#[test]
fn flow_png_is_not_written_to_a_terminal() {
    let mut cmd = StdCommand::new(env!("CARGO_BIN_EXE_enos-connect"));
    cmd.args(["flow", "-f", "png"]).env("TERM", "xterm");
    let mut s = Session::spawn(cmd).expect("spawn in a pty");
    s.set_expect_timeout(Some(Duration::from_secs(10)));
    let out = s.expect(Eof).expect("flow ends");
    let text = String::from_utf8_lossy(out.as_bytes());
    assert!(text.contains("flow -f png > flow.png"), "{text}");
    assert!(!text.contains("PNG\r\n\u{1a}"), "raw PNG bytes on the terminal");
}

#[test]
fn flow_draws_a_devices_decision_path() {
    let answers = [
        "-a",
        "network=tcp",
        "-a",
        "enos_format=yes",
        "-a",
        "enos_version=2",
        "-n",
        "ota,file_upload",
    ];
    let decision = json_of(
        &bin()
            .arg("recommend")
            .args(answers)
            .args(["-f", "json"])
            .ok_stdout(),
    );
    let trace: Vec<String> = decision["trace"]
        .as_array()
        .map(|t| {
            t.iter()
                .filter_map(|s| s["node"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    assert!(trace.len() >= 5, "{decision}");
    let mermaid = stdout_of(&[&["flow"][..], &answers[..]].concat());
    assert!(
        mermaid.contains("recommendation: mqtt (MQTT + HTTP)"),
        "{mermaid}"
    );
    assert!(
        mermaid.contains(&format!("class {} outcome", trace[trace.len() - 1])),
        "{mermaid}"
    );
    assert!(mermaid.contains("linkStyle "), "{mermaid}");
    let plain = stdout_of(&["flow"]);
    assert!(!plain.contains("classDef"), "no highlight without answers");
    let Some(_dot) = tool("dot") else { return };
    let svg = stdout_of(&[&["flow", "-f", "svg"][..], &answers[..]].concat());
    // Graphviz carries the `class` attribute into the SVG: the taken nodes are the trace.
    let mut taken_nodes = Vec::new();
    let mut rest = svg.as_str();
    while let Some(at) = rest.find("<g id=\"node") {
        rest = &rest[at..];
        let head = &rest[..rest.find('>').unwrap_or(rest.len())];
        let title = rest
            .split("<title>")
            .nth(1)
            .and_then(|t| t.split("</title>").next())
            .unwrap_or_default()
            .to_string();
        if head.contains("class=\"node taken\"") {
            taken_nodes.push(title);
        }
        rest = &rest[1..];
    }
    let mut expected = trace.clone();
    expected.sort();
    taken_nodes.sort();
    assert_eq!(taken_nodes, expected, "the bold nodes are the decision path");
    assert_eq!(
        svg.matches("class=\"edge taken\"").count(),
        trace.len() - 1,
        "one edge per step"
    );
    assert!(svg.contains("#c8e6c9"), "the outcome is filled");
    assert!(svg.contains("recommendation: mqtt (MQTT + HTTP)"), "the caption");
}
