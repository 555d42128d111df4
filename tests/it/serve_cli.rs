//! `serve` as a command a person runs (issue 32, items 11 and 12): the optional console's
//! default port being taken is a warning, not the end of serve; and on a terminal each event
//! is one readable line (JSON stays on stdout when it is piped or redirected).

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common::bin;
use expectrl::session::OsSession as Session;
use expectrl::{Eof, Expect, Regex};

const REGISTRY: &str = "[[products]]\nkey = \"pk1\"\nmeasurepoints = [\"temp\"]\n\n\
                        [[devices]]\nproduct = \"pk1\"\nkey = \"dk1\"\nsecret = \"Serve-Cli-Canary\"\n";

/// The console's default address, as `serve --help` documents it.
const DEFAULT_CONSOLE: &str = "127.0.0.1:8090";

#[test]
fn the_default_console_port_taken_is_a_warning_and_an_address_asked_for_is_an_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let reg = dir.path().join("registry.toml");
    std::fs::write(&reg, REGISTRY).expect("write");
    // Whoever holds it (this test, or another program on the machine), the port is taken.
    let _held = std::net::TcpListener::bind(DEFAULT_CONSOLE);
    let mut child = Command::new(env!("CARGO_BIN_EXE_enos-connect"))
        .env_clear()
        .args(["serve", "--registry"])
        .arg(&reg)
        .args(["--mqtt", "127.0.0.1:0", "--http", "off", "--coap", "off"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("serve starts");
    let mut first = String::new();
    let _ = BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut first);
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let out = child.wait_with_output().expect("ends");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        first.contains("\"event\":\"listening\"") && first.contains("\"mqtt\""),
        "serve went on without its console: {first}{err}"
    );
    assert!(!first.contains("\"console\""), "{first}");
    assert!(
        err.contains(&format!(
            "warning: the console's default address {DEFAULT_CONSOLE} is taken"
        )) && err.contains("--console ADDR"),
        "{err}"
    );
    assert_eq!(out.status.code(), Some(0), "{err}");
    // The same address asked for: serve cannot do what it was asked, exit 2.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
    let addr = taken.local_addr().expect("addr").to_string();
    bin()
        .args(["serve", "--registry"])
        .arg(&reg)
        .args([
            "--mqtt",
            "127.0.0.1:0",
            "--http",
            "off",
            "--coap",
            "off",
            "--console",
            &addr,
        ])
        .assert()
        .code(2)
        .stderr(predicates::str::contains(format!(
            "cannot listen on {addr} (console)"
        )));
}

#[test]
fn on_a_terminal_each_event_is_one_readable_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let reg = dir.path().join("registry.toml");
    std::fs::write(&reg, REGISTRY).expect("write");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_enos-connect"));
    cmd.args(["serve", "--registry"])
        .arg(&reg)
        .args([
            "--mqtt",
            "127.0.0.1:0",
            "--http",
            "off",
            "--coap",
            "off",
            "--console",
            "off",
        ])
        .env("TERM", "xterm");
    let mut s = Session::spawn(cmd).expect("spawn in a pty");
    s.set_expect_timeout(Some(Duration::from_secs(10)));
    let found = s
        .expect(Regex(r"mqtt 127\.0\.0\.1:(\d+)"))
        .expect("the listening line names the MQTT address");
    let port = String::from_utf8_lossy(found.get(1).expect("a port")).to_string();
    bin()
        .args(["probe", &format!("mqtt://127.0.0.1:{port}")])
        .args(["--product-key", "pk1", "--device-key", "dk1", "-m", "temp=1"])
        .env("ENOS_DEVICE_SECRET", "Serve-Cli-Canary")
        .assert()
        .success();
    let seen = s.expect("thing.measurepoint.post").expect("the request shows");
    std::thread::sleep(Duration::from_millis(300));
    let _ = Command::new("kill")
        .args(["-INT", &s.get_process().pid().to_string()])
        .status();
    let rest = s.expect(Eof).expect("serve ends");
    let text = [found.as_bytes(), seen.as_bytes(), rest.as_bytes()]
        .map(String::from_utf8_lossy)
        .concat()
        .replace('\r', "");
    assert!(!text.contains("{\"event\""), "JSON on a terminal:\n{text}");
    let logins = text.lines().filter(|l| l.contains("mqtt login pk1/dk1")).count();
    assert_eq!(logins, 1, "the login once:\n{text}");
    let requests = text
        .lines()
        .filter(|l| l.contains("mqtt request pk1/dk1") && l.contains("thing.measurepoint.post"))
        .count();
    assert_eq!(requests, 1, "the request once:\n{text}");
    assert!(!text.contains("Serve-Cli-Canary"), "{text}");
}
