//! `credentials` against the reference vectors of the EnOS documentation, and the secret
//! never showing up in any output, format or error path.

use crate::common::{OkStdout, bin, json_of, no_secret_in};
use predicates::prelude::*;

fn creds_json(args: &[&str], env: (&str, &str)) -> serde_json::Value {
    let out = bin()
        .arg("credentials")
        .args(args)
        .args(["--format", "json"])
        .env(env.0, env.1)
        .ok_stdout();
    json_of(&out)
}

#[test]
fn mqtt_static_login_matches_the_documented_example() {
    let v = creds_json(
        &[
            "mqtt",
            "--product-key",
            "654321",
            "--device-key",
            "test",
            "--client-id",
            "123456",
            "--timestamp",
            "1548753362502",
        ],
        ("ENOS_DEVICE_SECRET", "abcdefg"),
    );
    assert_eq!(
        v["client_id"],
        "123456|securemode=2,signmethod=sha256,timestamp=1548753362502|"
    );
    assert_eq!(v["username"], "test&654321");
    assert_eq!(
        v["password"],
        "B99032D49C706F7B27B22AB5CD2DD3C56A31E1BCBBC83BA0A2A6BB3272FBB166"
    );
}

#[test]
fn mqtt_dynamic_login_uses_the_product_secret_and_securemode_3() {
    let v = creds_json(
        &[
            "mqtt",
            "--product-key",
            "123",
            "--device-key",
            "test",
            "--client-id",
            "123",
            "--timestamp",
            "1524448722000",
            "--secure-mode",
            "dynamic",
        ],
        ("ENOS_PRODUCT_SECRET", "abcdefg"),
    );
    assert_eq!(
        v["client_id"],
        "123|securemode=3,signmethod=sha256,timestamp=1524448722000|"
    );
    assert_eq!(
        v["password"],
        "A4F9AD91051E3CA89440E0157029DD358C3A2C556D3C543B9FD5A38484785AC9"
    );
}

#[test]
fn mqtt_client_id_defaults_to_the_device_key() {
    // SDK style: content clientIdtest...; the reference gives the lowercase digest 43fb2e19...
    let v = creds_json(
        &[
            "mqtt",
            "--product-key",
            "654321",
            "--device-key",
            "test",
            "--timestamp",
            "1548753362502",
        ],
        ("ENOS_DEVICE_SECRET", "abcdefg"),
    );
    assert_eq!(
        v["client_id"],
        "test|securemode=2,signmethod=sha256,timestamp=1548753362502|"
    );
    assert_eq!(
        v["password"],
        "43fb2e1948ba71b03287931fb588504034f0bfc70063e3ef1b213e2c0d86e021".to_uppercase()
    );
}

#[test]
fn http_sign_and_auth_request_match_the_reference() {
    let v = creds_json(
        &["http", "--product-key", "654321", "--device-key", "test"],
        ("ENOS_DEVICE_SECRET", "abcdefg"),
    );
    let sign = "16404832b8978a5e6c372fecb4160dbad69f408aad5f499ee557ad826177a048".to_uppercase();
    assert_eq!(v["sign"], sign.as_str());
    assert_eq!(v["lifetime"], 300000);
    assert_eq!(v["request"]["method"], "POST");
    assert_eq!(v["request"]["path"], "/auth/654321/test");
    let body: serde_json::Value =
        serde_json::from_str(v["request"]["body"].as_str().unwrap_or_default()).expect("body is JSON");
    assert_eq!(
        body,
        serde_json::json!({"signMethod": "sha256", "lifetime": 300000, "sign": sign})
    );
}

#[test]
fn coap_psk_identity_key_and_sign_match_the_reference() {
    let v = creds_json(
        &["coap", "--product-key", "654321", "--device-key", "test"],
        ("ENOS_DEVICE_SECRET", "abcdefg"),
    );
    assert_eq!(v["psk_identity"], "654321,test,2,3600");
    // python3 -c 'import hashlib; print(hashlib.sha256(b"abcdefg").digest()[8:24].hex())'
    assert_eq!(v["psk_key"], "f5b79b5fb0803061152a44f92b37e23c");
    assert_eq!(
        v["sign"],
        "0D78395DB84722CAE3D304E5F654E63247BE34A9ECD34BFDE137F4B804A5B134"
    );
    let v = creds_json(
        &[
            "coap",
            "--product-key",
            "MuGsF6W4",
            "--device-key",
            "15bBZlRknc",
            "--lifetime",
            "600",
        ],
        ("ENOS_DEVICE_SECRET", "abcdefg"),
    );
    assert_eq!(v["psk_identity"], "MuGsF6W4,15bBZlRknc,2,600");
}

#[test]
fn the_secret_file_is_read_and_wins_over_the_environment() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("secret");
    std::fs::write(&file, "abcdefg\n").expect("write");
    let out = bin()
        .args([
            "credentials",
            "http",
            "--product-key",
            "654321",
            "--device-key",
            "test",
            "-f",
            "json",
            "--secret-file",
        ])
        .arg(&file)
        .env("ENOS_DEVICE_SECRET", "something-else")
        .ok_stdout();
    assert_eq!(
        json_of(&out)["sign"],
        "16404832B8978A5E6C372FECB4160DBAD69F408AAD5F499EE557AD826177A048"
    );
}

#[test]
fn no_secret_and_no_terminal_is_a_usage_error_not_a_prompt() {
    bin()
        .args(["credentials", "mqtt", "--product-key", "p", "--device-key", "d"])
        .write_stdin("")
        .assert()
        .code(2)
        .stderr(
            predicate::str::contains("no device secret given")
                .and(predicate::str::contains("ENOS_DEVICE_SECRET")),
        );
    bin()
        .args([
            "credentials",
            "mqtt",
            "--product-key",
            "p",
            "--device-key",
            "d",
            "--secure-mode",
            "dynamic",
        ])
        .env("ENOS_DEVICE_SECRET", "x")
        .assert()
        .code(2)
        .stderr(predicate::str::contains("ENOS_PRODUCT_SECRET"));
}

#[test]
fn there_is_no_flag_that_takes_a_secret() {
    bin()
        .args([
            "credentials",
            "mqtt",
            "--product-key",
            "p",
            "--device-key",
            "d",
            "--secret",
            "x",
        ])
        .assert()
        .code(2);
    let help = bin().args(["credentials", "--help"]).ok_stdout();
    let help = String::from_utf8_lossy(&help);
    assert!(
        help.contains("--secret-file") && help.contains("never from an argument"),
        "{help}"
    );
}

const CANARY: &str = "Canary-S3cret-9f8e7d";

/// Every credential kind in every format, and every error path, with a recognisable secret.
#[test]
fn the_secret_never_appears_in_any_output() {
    let dir = tempfile::tempdir().expect("tempdir");
    let secret_file = dir.path().join("s");
    std::fs::write(&secret_file, CANARY).expect("write");
    let mut runs: Vec<Vec<String>> = Vec::new();
    for protocol in ["mqtt", "http", "coap"] {
        for format in ["table", "json", "markdown"] {
            runs.push(
                [
                    "credentials",
                    protocol,
                    "--product-key",
                    "pk",
                    "--device-key",
                    "dk",
                    "-f",
                    format,
                ]
                .map(String::from)
                .to_vec(),
            );
        }
    }
    let errors: &[&[&str]] = &[
        &[
            "credentials",
            "http",
            "--product-key",
            "pk",
            "--device-key",
            "dk",
            "--secure-mode",
            "dynamic",
        ],
        &[
            "credentials",
            "coap",
            "--product-key",
            "pk",
            "--device-key",
            "dk",
            "--lifetime",
            "5",
        ],
        &[
            "credentials",
            "lorawan",
            "--product-key",
            "pk",
            "--device-key",
            "dk",
        ],
        &["credentials", "mqtt", "--product-key", "", "--device-key", "dk"],
        &[
            "credentials",
            "mqtt",
            "--product-key",
            "pk",
            "--device-key",
            "dk",
            "--secret-file",
            "/nonexistent/secret",
        ],
        &[
            "credentials",
            "mqtt",
            "--product-key",
            "pk",
            "--device-key",
            "dk",
            "--timestamp",
            "soon",
        ],
        &[
            "plan",
            "-a",
            "network=tcp",
            "-a",
            "enos_format=yes",
            "-a",
            "enos_version=3",
            "-f",
            "json",
        ],
    ];
    runs.extend(errors.iter().map(|r| r.iter().map(|s| s.to_string()).collect()));
    for args in &runs {
        for (var, value) in [("ENOS_DEVICE_SECRET", CANARY), ("ENOS_PRODUCT_SECRET", CANARY)] {
            let out = bin().args(args).env(var, value).output().expect("runs");
            no_secret_in(&out, &[CANARY], &format!("{args:?} with {var}"));
        }
        let out = bin()
            .args(args)
            .arg("--secret-file")
            .arg(&secret_file)
            .output()
            .expect("runs");
        no_secret_in(&out, &[CANARY], &format!("{args:?} with --secret-file"));
    }
}
