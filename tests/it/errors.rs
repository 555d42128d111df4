//! Errors that point at the cause (issue 32, items 6 to 9), each pinned by a test that failed
//! before its fix: a plain scheme against a TLS or DTLS port, a client certificate rustls
//! refuses, every problem of a file in one run (registry, capabilities, answers), and typo help
//! wherever a name is typed.

use std::time::Duration;

use crate::common::{bin, json_of, probe};
use crate::peers::{REGISTRY, enos_mqtts, pki};

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

#[test]
fn a_plain_scheme_against_a_tls_or_dtls_port_says_which_scheme_to_use() {
    // mqtt:// against MQTT over TLS: the server's first bytes are a TLS record (an alert), not a
    // CONNACK. It said "the peer is not MQTT: expected CONNACK (0x20), got 0x15".
    let pki = pki(&["localhost"], false);
    let e = enos_mqtts(REGISTRY, pki.server_config.clone());
    let mqtts = e.mqtts.expect("an MQTTS listener");
    let (code, v, _) = probe(&[&format!("mqtt://{mqtts}")], &[]);
    assert_eq!(code, 1, "{v:#}");
    let message = v["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("looks like TLS") && message.contains(&format!("mqtts://{mqtts}")),
        "{v:#}"
    );
    // coap:// against CoAP over DTLS: nothing answers a plain datagram, so after the timeout.
    let (code, v, took) = probe(&[&format!("coap://{}", e.coaps), "--timeout", "2"], &[]);
    assert_eq!(code, 3, "{v:#}");
    assert!(took < Duration::from_secs(5), "{took:?}");
    let message = v["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains(&format!("coaps://{}", e.coaps)), "{v:#}");
}

#[test]
fn a_client_certificate_rustls_refuses_is_named_in_plain_words() {
    let Some(openssl) = which("openssl") else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let (key, csr, cert) = (
        dir.path().join("device.key"),
        dir.path().join("device.csr"),
        dir.path().join("device.pem"),
    );
    let sh = |args: &[&str]| {
        let out = std::process::Command::new(&openssl)
            .args(args)
            .current_dir(dir.path())
            .output()
            .expect("openssl runs");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    };
    sh(&[
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        "device.key",
        "-out",
        "device.csr",
        "-subj",
        "/CN=meter-0042",
    ]);
    // `x509 -req` without extensions writes an X.509 v1 certificate, which WebPKI refuses.
    sh(&[
        "x509",
        "-req",
        "-in",
        "device.csr",
        "-signkey",
        "device.key",
        "-out",
        "device.pem",
        "-days",
        "2",
    ]);
    assert!(csr.exists());
    let (code, _, err) = run(
        &[
            "probe",
            "mqtts://127.0.0.1:1",
            "--cert",
            &cert.display().to_string(),
            "--key",
            &key.display().to_string(),
        ],
        &[],
    );
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains(&format!("{} is an X.509 v1 certificate", cert.display()))
            && err.contains("extendedKeyUsage=clientAuth"),
        "{err}"
    );
    assert!(
        !err.contains("OtherError") && !err.contains("Unsupported"),
        "{err}"
    );
}

fn which(name: &str) -> Option<String> {
    let found = std::process::Command::new("sh")
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
fn a_registry_with_a_misspelled_key_reports_it_with_every_other_problem() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("registry.toml");
    std::fs::write(
        &file,
        "[[products]]\nkey = \"pk1\"\n\n[[products]]\nkey = \"pk1\"\n\n\
         [[devices]]\nproduct = \"pk1\"\nkey = \"d1\"\nsecrte = \"Registry-Canary\"\n\n\
         [[devices]]\nproduct = \"pkx\"\nkey = \"d2\"\nsecret = \"s\"\n",
    )
    .expect("write");
    let (code, _, err) = run(
        &[
            "serve",
            "--registry",
            &file.display().to_string(),
            "--console",
            "off",
        ],
        &[],
    );
    assert_eq!(code, 2, "{err}");
    let name = file.display().to_string();
    for expected in [
        format!("{name}:10:1: unknown key `secrte` (did you mean `secret`?)"),
        format!("{name}:5:1: product `pk1` is listed twice"),
        format!("{name}:13:1: device `d2` names product `pkx`"),
    ] {
        assert!(err.contains(&expected), "`{expected}` in:\n{err}");
    }
    assert!(!err.contains("Registry-Canary"), "{err}");
}

#[test]
fn a_capabilities_file_with_a_misspelled_key_reports_it_with_every_other_problem() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("caps.toml");
    let text = enos_connect::capabilities::EMBEDDED
        .replacen("suits = \"devices that keep", "siuts = \"devices that keep", 1)
        .replacen(
            "from = \"network\"\nto = \"enos_format\"",
            "from = \"network\"\nto = \"enos_fromat\"",
            1,
        );
    assert_ne!(text, enos_connect::capabilities::EMBEDDED);
    std::fs::write(&file, &text).expect("write");
    let (code, out, err) = run(&["check", &file.display().to_string()], &[]);
    assert_eq!(code, 2, "{out}{err}");
    let all = format!("{out}{err}");
    assert!(
        all.contains("unknown key `siuts` (did you mean `suits`?)"),
        "{all}"
    );
    assert!(all.contains("enos_fromat"), "the flow's problem too:\n{all}");
}

#[test]
fn an_answers_file_reports_every_problem_at_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("device.toml");
    std::fs::write(
        &file,
        "netwrok = \"tcp\"\nenos_format = \"mabye\"\nneeds = [\"fileupload\"]\n",
    )
    .expect("write");
    let (code, _, err) = run(&["recommend", "--answers", &file.display().to_string()], &[]);
    assert_eq!(code, 2, "{err}");
    let name = file.display().to_string();
    for expected in [
        format!("{name}:1:1: unknown question `netwrok` (did you mean `network`?)"),
        format!("{name}:2:15: `mabye` is not an answer to `enos_format`"),
        format!("{name}:3:9: unknown feature `fileupload` (did you mean `file_upload`?)"),
    ] {
        assert!(err.contains(&expected), "`{expected}` in:\n{err}");
    }
}

#[test]
fn typos_get_help_wherever_a_name_is_typed() {
    // probe --need, as recommend --need already did.
    let (code, _, err) = run(&["probe", "mqtt://127.0.0.1:1", "--need", "fileupload"], &[]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("did you mean `file_upload`?"), "{err}");
    // A config file's key.
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("config.toml");
    std::fs::write(&config, "prodcut_key = \"Pk7Xy2\"\n").expect("write");
    let (code, _, err) = run(
        &["plan", "-a", "network=tcp"],
        &[("ENOS_CONNECT_CONFIG", &config.display().to_string())],
    );
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains(":1:1: unknown key `prodcut_key` (did you mean `product_key`?)"),
        "{err}"
    );
    // credentials names a protocol, not a URL scheme; checked before the keys are asked for.
    let (code, _, err) = run(&["credentials", "mqtts"], &[]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("`mqtts` is the URL scheme of MQTT over TLS") && err.contains("credentials mqtt"),
        "{err}"
    );
    let (code, _, err) = run(&["credentials", "htpp"], &[]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("did you mean `http`?"), "{err}");
    // schema's argument is a kind of file, not a file.
    let (code, _, err) = run(&["schema", "capabilities.toml"], &[]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("schema takes a kind of file, not a file")
            && err.contains("capabilities, answers, registry")
            && err.contains("check capabilities.toml"),
        "{err}"
    );
    let (code, _, err) = run(&["schema", "foo"], &[]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("capabilities, answers, registry"), "{err}");
    let (code, _, err) = run(&["schema", "registy"], &[]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("did you mean `registry`?"), "{err}");
    let v = json_of(&bin().args(["schema", "registry"]).output().expect("runs").stdout);
    assert!(v["$defs"].is_object(), "{v:#}");
}
