//! The login rows of the comparison table against `serve` in process: dynamic activation over
//! CoAP (DTLS with the product secret's key, then the GET that answers the device secret),
//! HTTP's refusal of a product-secret login, two-way TLS on `--mqtts` (serve's `--client-ca`)
//! and one-way TLS measured as `partial`, and `probe --matrix` proving every cell of the shipped
//! table with logins of each kind (HTTP's `mutual_tls` over serve's one-way `--https`).

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use enos_connect::capabilities::Support;
use serde_json::Value;

use crate::common::{assert_failed, assert_ok, bin, caps, json_of, no_secret_in, probe, stage_names};
use crate::peers::{Enos, REGISTRY, SECRETS, enos, enos_mqtts, enos_tls, pki};

/// Wait (bounded) until serve's events hold `needle`: events are written as the endpoint
/// handles a connection, which may end after the probe's process did.
fn await_event(e: &Enos, needle: &str) -> String {
    let until = Instant::now() + Duration::from_secs(5);
    loop {
        let events = e.events();
        if events.contains(needle) || Instant::now() > until {
            return events;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn coap_dynamic_activation_stores_the_secret_and_mode_2_then_logs_in_with_it() {
    let e = enos(REGISTRY);
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("fresh1.secret");
    let url = format!("coaps://{}", e.coaps);
    let dynamic = |file: &std::path::Path| {
        bin()
            .arg("probe")
            .arg(&url)
            .args(["--product-key", "pk1", "--device-key", "fresh1"])
            .args(["--secure-mode", "dynamic", "--activate-to"])
            .arg(file)
            .args(["-m", "temp=3", "-f", "json", "--timeout", "5"])
            .env("ENOS_PRODUCT_SECRET", "Product-Canary-7f3")
            .output()
            .expect("runs")
    };
    let out = dynamic(&file);
    let secret = std::fs::read_to_string(&file).expect("the secret was written");
    let secret = secret.trim().to_string();
    assert!(secret.len() >= 16, "a fresh secret");
    let mode = std::fs::metadata(&file).expect("meta").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "owner-only");
    let all = no_secret_in(&out, &[&secret, "Product-Canary-7f3"], "coap activation");
    let v = json_of(&out.stdout);
    assert_ok(out.status.code().unwrap_or(-1), &v);
    assert_eq!(
        stage_names(&v),
        [
            "resolve", "connect", "tls", "activate", "relogin", "reply", "total"
        ],
        "{all}"
    );
    assert_eq!(v["enos"]["code"], 200, "the post after the second login: {v:#}");
    let events = await_event(&e, r#""event":"activated","protocol":"coaps""#);
    assert!(
        events.contains(r#""event":"activated","protocol":"coaps""#),
        "{events}"
    );
    assert!(!events.contains(&secret), "the endpoint's events hold no secret");
    // Once activated, securemode 3 is refused at the DTLS handshake, and no file is made...
    let again = dir.path().join("again.secret");
    let out = dynamic(&again);
    let v = json_of(&out.stdout);
    assert_failed(
        out.status.code().unwrap_or(-1),
        &v,
        "auth",
        "tls",
        "DTLS-PSK login was refused",
    );
    assert!(!again.exists());
    // ...and securemode 2 with the stored secret logs in.
    let (code, v, _) = probe(
        &[
            &url,
            "--product-key",
            "pk1",
            "--device-key",
            "fresh1",
            "-m",
            "temp=4",
        ],
        &[("ENOS_DEVICE_SECRET", &secret)],
    );
    assert_ok(code, &v);
    assert_eq!(v["enos"]["code"], 200, "{v:#}");
}

#[test]
fn the_activation_get_needs_a_mode_3_session_of_the_same_device() {
    let e = enos(REGISTRY);
    // Plain CoAP: no DTLS session at all.
    let (code, v, _) = probe(
        &[
            &format!(
                "coap://{}/topic/ext/session/pk1/fresh2/thing/activate/info",
                e.coap
            ),
            "--timeout",
            "5",
        ],
        &[],
    );
    assert_failed(code, &v, "auth", "request", "4.01");
    // A securemode-2 DTLS session (dk1 has a secret) asking for another device's secret.
    let out = bin()
        .arg("probe")
        .arg(format!(
            "coaps://{}/topic/ext/session/pk1/fresh2/thing/activate/info",
            e.coaps
        ))
        .args(["--psk-identity", "pk1,dk1,2,3600", "-f", "json", "--timeout", "5"])
        .env(
            "ENOS_CONNECT_PSK",
            format!("hex:{}", psk_hex("Device-Canary-9a1")),
        )
        .output()
        .expect("runs");
    let v = json_of(&out.stdout);
    assert_failed(out.status.code().unwrap_or(-1), &v, "auth", "request", "4.03");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("securemode 2"),
        "{v:#}"
    );
    let events = await_event(&e, r#""event":"denied","protocol":"coaps""#);
    assert!(
        events.contains(r#""event":"denied","protocol":"coaps""#),
        "{events}"
    );
    assert!(!events.contains(r#""event":"activated""#), "{events}");
}

/// The DTLS key of `pk1,dk1,2,3600` from a secret, as the recipe makes it.
fn psk_hex(secret: &str) -> String {
    let c = crate::common::creds("coap", "pk1", "dk1", "static", secret);
    c.field("psk_key").expect("a psk key").to_string()
}

#[test]
fn http_refuses_a_login_signed_with_the_product_secret_with_code_770() {
    let e = enos(REGISTRY);
    let (code, v, _) = probe(
        &[
            &format!("http://{}", e.http),
            "--product-key",
            "pk1",
            "--device-key",
            "fresh2",
            "--secure-mode",
            "dynamic",
        ],
        &[("ENOS_PRODUCT_SECRET", "Product-Canary-7f3")],
    );
    assert_failed(code, &v, "auth", "handshake", "770");
    assert_eq!(v["details"]["auth_code"], 770, "{v:#}");
    let events = await_event(&e, "770");
    assert!(
        events.contains(r#""event":"login_refused","protocol":"http""#) && events.contains("770"),
        "{events}"
    );
    // --activate-to has no HTTP form: a usage error, before any traffic.
    bin()
        .args(["probe", &format!("http://{}", e.http), "--product-key", "pk1"])
        .args([
            "--device-key",
            "fresh2",
            "--secure-mode",
            "dynamic",
            "--activate-to",
            "/tmp/x",
        ])
        .env("ENOS_PRODUCT_SECRET", "Product-Canary-7f3")
        .assert()
        .code(2)
        .stderr(predicates::str::contains("--activate-to activates over MQTT"));
}

#[test]
fn mqtts_with_a_client_ca_refuses_a_device_without_a_certificate_and_takes_one_it_signed() {
    let pki = pki(&["localhost"], false);
    let e = enos_mqtts(REGISTRY, pki.mutual_config.clone());
    let port = e.mqtts.expect("mqtts").port();
    let url = format!("mqtts://localhost:{port}");
    let ca = pki.ca.to_str().expect("utf-8");
    let device = ["--product-key", "pk1", "--device-key", "dk1", "-m", "temp=5"];
    let secret = [("ENOS_DEVICE_SECRET", "Device-Canary-9a1")];
    let mut args = vec![&url[..], "--ca", ca, "--timeout", "5"];
    args.extend(device);
    let (code, v, _) = probe(&args, &secret);
    assert_failed(code, &v, "tls", "handshake", "certificate");
    let events = await_event(&e, r#""event":"login_refused","protocol":"mqtts""#);
    assert!(
        events.contains(r#""event":"login_refused","protocol":"mqtts""#)
            && events.contains("the TLS handshake failed"),
        "{events}"
    );
    let (cert, key) = (
        pki.client_cert.to_str().expect("utf-8"),
        pki.client_key.to_str().expect("utf-8"),
    );
    args.extend(["--cert", cert, "--key", key, "--need", "mutual_tls"]);
    let (code, v, _) = probe(&args, &secret);
    assert_ok(code, &v);
    assert_eq!(v["needs"][0]["measured"], "supported", "{v:#}");
    assert_eq!(
        v["details"]["client_certificate"], "requested by the server, sent",
        "{v:#}"
    );
    // A server without --client-ca asks for no certificate: the login is one-way TLS, and
    // mutual_tls is measured as partial, not as proven by a certificate nobody checked.
    let one_way = enos_mqtts(REGISTRY, pki.server_config.clone());
    let url = format!("mqtts://localhost:{}", one_way.mqtts.expect("mqtts").port());
    args[0] = &url;
    let (code, v, _) = probe(&args, &secret);
    assert_eq!(code, 1, "{v:#}");
    assert_eq!(v["needs"][0]["measured"], "partial", "{v:#}");
    assert!(
        v["needs"][0]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("one-way"),
        "{v:#}"
    );
}

/// The registry with three more devices that activate dynamically.
fn registry() -> String {
    let mut r = REGISTRY.to_string();
    for dk in ["act1", "act2", "act3"] {
        r.push_str(&format!("\n[[devices]]\nproduct = \"pk1\"\nkey = \"{dk}\"\n"));
    }
    r
}

fn matrix(e: &Enos, pki: &crate::peers::Pki, dir: &std::path::Path, extra: &[&str]) -> (i32, Value, String) {
    let out = bin()
        .current_dir(dir)
        .args(extra)
        .args(["probe", "--matrix"])
        .arg(format!("mqtts://localhost:{}", e.mqtts.expect("mqtts").port()))
        .arg(format!("https://localhost:{}", e.https.expect("https").port()))
        .arg(format!("coaps://{}", e.coaps))
        .args(["--product-key", "pk1", "--device-key", "dk1"])
        .args([
            "-m",
            "temp=21.5",
            "--file-point",
            "label",
            "--activate",
            "act1,act2,act3",
        ])
        .arg("--cert")
        .arg(&pki.client_cert)
        .arg("--key")
        .arg(&pki.client_key)
        .arg("--ca")
        .arg(&pki.ca)
        .arg("--command-api")
        .arg(format!(
            "https://localhost:{}/twin/commands",
            e.https.expect("https").port()
        ))
        .args(["-f", "json", "--timeout", "5"])
        .env("ENOS_DEVICE_SECRET", "Device-Canary-9a1")
        .env("ENOS_PRODUCT_SECRET", "Product-Canary-7f3")
        .output()
        .expect("runs");
    let activated: Vec<String> = ["act1", "act3"]
        .iter()
        .filter_map(|dk| std::fs::read_to_string(dir.join(format!("{dk}.secret"))).ok())
        .map(|s| s.trim().to_string())
        .collect();
    let mut secrets: Vec<&str> = SECRETS.to_vec();
    secrets.extend(activated.iter().map(String::as_str));
    let all = no_secret_in(&out, &secrets, "matrix with every login");
    let v = if out.stdout.starts_with(b"{") {
        json_of(&out.stdout)
    } else {
        Value::Null
    };
    (out.status.code().unwrap_or(-1), v, all)
}

#[test]
fn the_matrix_with_every_login_kind_reproduces_the_table_cell_for_cell() {
    let pki = pki(&["localhost"], false);
    // MQTTS two-way (--client-ca), HTTPS one-way (as EnOS's HTTP broker), CoAP DTLS-PSK.
    let e = enos_tls(
        &registry(),
        pki.mutual_config.clone(),
        pki.server_config.clone(),
        None,
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let (code, v, all) = matrix(&e, &pki, dir.path(), &[]);
    assert_eq!(code, 0, "{v:#}{all}");
    assert_eq!(v["mismatches"], 0, "{v:#}");
    // Every cell measured: HTTP's mutual_tls too, over serve's one-way HTTPS, and the downlinks
    // by commands serve's API sent over MQTTS and DTLS; only what no protocol can carry is not.
    assert_eq!(v["untested"], 0, "{v:#}");
    assert_eq!(v["not_carried"], 4, "{v:#}");
    assert_eq!(v["measured"], 29, "{v:#}");
    let caps = caps();
    let rows = v["rows"].as_array().expect("rows");
    for (row, f) in rows.iter().zip(&caps.features) {
        for (cell, protocol) in row["cells"]
            .as_array()
            .expect("cells")
            .iter()
            .zip(["mqtt", "http", "coap"])
        {
            let table = f.support_for(protocol);
            // What the protocol cannot carry at all is not measured: no exchange over it.
            let carried = caps.exchange(&f.id).is_some_and(|x| {
                x.steps.iter().all(|s| {
                    caps.exchanges
                        .carried_by
                        .of(s.kind)
                        .is_none_or(|c| c.iter().any(|p| p == protocol))
                })
            });
            let (want, verdict) = match table {
                _ if !carried => ("not_carried", "not_carried"),
                Support::Supported => ("supported", "match"),
                Support::Partial => ("partial", "match"),
                Support::NotSupported | Support::NotApplicable => ("refused", "match"),
            };
            assert_eq!(cell["measured"], want, "{} over {protocol}: {cell}", f.id);
            assert_eq!(cell["verdict"], verdict, "{cell}");
        }
    }
    // The login rows came from logins of their own: act1 and act3 activated (their secrets in
    // files), act2 refused by HTTP, and a certificate handshake refused by serve's DTLS-PSK.
    let row = |v: &Value, feature: &str| -> Value {
        v["rows"]
            .as_array()
            .and_then(|r| r.iter().find(|r| r["feature"] == feature))
            .cloned()
            .expect("row")
    };
    assert_eq!(row(&v, "dynamic_auth")["cells"][1]["code"], 770, "HTTP's refusal");
    assert!(
        row(&v, "mutual_tls")["cells"][2]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("client certificate was refused"),
        "{v:#}"
    );
    let one_way = &row(&v, "mutual_tls")["cells"][1];
    assert_eq!(one_way["measured"], "partial", "{one_way}");
    assert!(
        one_way["message"]
            .as_str()
            .unwrap_or_default()
            .contains("one-way"),
        "{one_way}"
    );
    let logins = v["logins"].as_array().expect("logins");
    assert_eq!(logins.len(), 4, "{v:#}");
    for dk in ["act1", "act3"] {
        let secret = std::fs::read_to_string(dir.path().join(format!("{dk}.secret"))).expect("secret");
        assert!(secret.trim().len() >= 16, "{dk}");
    }
    assert!(!dir.path().join("act2.secret").exists());
    let events = e.events();
    assert_eq!(events.matches(r#""event":"activated""#).count(), 2, "{events}");
    // Run again: the devices are activated now, so their dynamic logins are refused, and the
    // cells that say "supported" show it as a MISMATCH (exit 1).
    let (code, _, all) = matrix(&e, &pki, dir.path(), &[]);
    assert_eq!(code, 2, "the secret files exist: {all}");
    assert!(
        all.contains("--activate act1") && all.contains("--force"),
        "{all}"
    );
    for dk in ["act1", "act3"] {
        std::fs::remove_file(dir.path().join(format!("{dk}.secret"))).expect("removes");
    }
    let (code, v, _) = matrix(&e, &pki, dir.path(), &[]);
    assert_eq!(code, 1, "{v:#}");
    assert_eq!(v["mismatches"], 2, "{v:#}");
    let dynamic = row(&v, "dynamic_auth");
    assert_eq!(dynamic["cells"][0]["verdict"], "mismatch", "{dynamic}");
    assert_eq!(dynamic["cells"][2]["verdict"], "mismatch", "{dynamic}");
}

/// `probe --matrix URLS... ARGS` as pk1/dk1 with its secret: the exit code, stdout and stderr.
fn matrix_run(urls: &[String], args: &[&str], secret: &str) -> (i32, String, String) {
    let out = bin()
        .arg("probe")
        .arg("--matrix")
        .args(urls)
        .args(["--product-key", "pk1", "--device-key", "dk1", "--timeout", "5"])
        .args(args)
        .env("ENOS_DEVICE_SECRET", secret)
        .output()
        .expect("runs");
    no_secret_in(&out, &SECRETS, "matrix");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The table line of `feature` (`│ ota  ┆ ... │`).
fn table_row<'a>(text: &'a str, feature: &str) -> &'a str {
    text.lines()
        .find(|l| l.starts_with(&format!("│ {feature} ")))
        .unwrap_or_else(|| panic!("no row {feature} in\n{text}"))
}

#[test]
fn a_table_that_alone_claims_ota_over_coap_is_a_mismatch_on_that_cell() {
    // serve refuses by the shipped table; the probe reads a copy that claims OTA over CoAP. The
    // matrix must catch a table changed alone, not agree with itself.
    let dir = tempfile::tempdir().expect("tempdir");
    let shipped = enos_connect::capabilities::EMBEDDED;
    let ota = "support = { mqtt = \"supported\", coap = \"not_supported\", http = \"not_supported\" }\ntopics.mqtt = [\"/sys/{pk}/{dk}/ota/device/inform\"";
    assert!(shipped.contains(ota), "the ota row is in the shipped file");
    let claims = shipped.replacen(
        ota,
        &ota.replacen("coap = \"not_supported\"", "coap = \"supported\"", 1),
        1,
    );
    let file = dir.path().join("ota-over-coap.toml");
    std::fs::write(&file, claims).expect("writes");
    bin().arg("check").arg(&file).assert().code(0);
    let e = enos(REGISTRY);
    let urls = [format!("coap://{}", e.coap)];
    let (code, text, err) = matrix_run(
        &urls,
        &["--capabilities", file.to_str().expect("utf-8")],
        "Device-Canary-9a1",
    );
    assert_eq!(code, 1, "{text}{err}");
    assert!(
        table_row(&text, "ota").contains("supported: MISMATCH (refused)"),
        "{text}"
    );
    assert!(text.contains("1 MISMATCH(es)"), "{text}");
    // With the shipped table the same endpoint agrees, cell for cell.
    let (code, text, err) = matrix_run(&urls, &[], "Device-Canary-9a1");
    assert_eq!(code, 0, "{text}{err}");
    assert!(
        table_row(&text, "ota").contains("not_supported: refused"),
        "{text}"
    );
}

#[test]
fn a_url_that_fails_shows_its_cause_in_its_column() {
    let e = enos(REGISTRY);
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a closed port");
    // A closed port, and TLS spoken to serve's plain HTTP listener.
    let urls = [
        format!("mqtt://{closed}"),
        format!("https://{}", e.http),
        format!("coap://{}", e.coap),
    ];
    let (code, text, err) = matrix_run(&urls, &[], "Device-Canary-9a1");
    assert_eq!(code, 1, "{text}{err}");
    let row = table_row(&text, "(connection)");
    let cells: Vec<&str> = row.split('┆').map(str::trim).collect();
    assert!(cells[1].contains("FAILED: refused at connect"), "{row}");
    assert!(cells[2].contains("FAILED: tls at tls"), "{row}");
    assert!(cells[3].starts_with("ok"), "{row}");
    assert!(
        text.contains(&format!("MQTT mqtt://{closed}: connect: ")) && text.contains("connection refused"),
        "{text}"
    );
    // A login refused: the wrong secret, over every URL.
    let (code, text, _) = matrix_run(&[format!("http://{}", e.http)], &[], "Wrong-Secret-000");
    assert_eq!(code, 1, "{text}");
    assert!(
        table_row(&text, "(connection)").contains("FAILED: auth at handshake"),
        "{text}"
    );
}
