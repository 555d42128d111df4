//! `recommend --batch`: CSV and JSON Lines in, JSON Lines or CSV out, bad rows by line number,
//! --fail-on-unmet, stdin, and a summary on stderr.

use crate::common::{OkStdout, bin};
use predicates::prelude::*;

const CSV: &str = "id,network,enos_format,third_party_cloud,enos_version,needs\n\
dev-1,tcp,yes,,2,ota;file_upload\n\
dev-2,udp,yes,,2,ota\n\
dev-3,none,no,yes,,\n";

#[test]
fn csv_file_to_json_lines_with_a_summary() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("fleet.csv");
    std::fs::write(&file, CSV).expect("write");
    let assert = bin().args(["recommend", "--batch"]).arg(&file).assert().success();
    let out = String::from_utf8_lossy(&assert.get_output().stdout).into_owned();
    let rows: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[0]["protocols"], serde_json::json!(["mqtt", "http"]));
    assert_eq!(rows[1]["unmet"], serde_json::json!(["ota"]));
    assert_eq!(rows[2]["recommendation"], "message_integration");
    assert_eq!(rows[2]["line"], 4);
    let err = String::from_utf8_lossy(&assert.get_output().stderr).into_owned();
    assert!(
        err.contains("3 rows") && err.contains("1 with unmet needs") && err.contains("message_integration 1"),
        "{err}"
    );
}

#[test]
fn stdin_csv_out_and_fail_on_unmet() {
    let out = bin()
        .args(["recommend", "--batch", "-", "--batch-format", "csv"])
        .write_stdin(CSV)
        .ok_stdout();
    assert_eq!(
        String::from_utf8_lossy(&out),
        "id,recommendation,protocols,unmet,caveats,set_aside\ndev-1,mqtt,mqtt;http,,,\ndev-2,coap,coap,ota,,\ndev-3,message_integration,,,,enos_format=no\n"
    );
    bin()
        .args(["recommend", "--batch", "-", "--fail-on-unmet"])
        .write_stdin(CSV)
        .assert()
        .code(1);
    let fine = "network,enos_format,enos_version,needs\ntcp,yes,3,report_data\n";
    bin()
        .args(["recommend", "--batch", "-", "--fail-on-unmet"])
        .write_stdin(fine)
        .assert()
        .success();
}

#[test]
fn bad_rows_are_reported_by_line_and_the_rest_go_on() {
    let input = "network,enos_format,enos_version,needs\ntcp,yes,2,ota\ntcp,maybe,2,\ntcp,yes,2,otaa\ntcp,yes\nudp,yes,2,\n";
    let assert = bin()
        .args(["recommend", "--batch", "-"])
        .write_stdin(input)
        .assert()
        .code(2);
    let out = String::from_utf8_lossy(&assert.get_output().stdout).into_owned();
    assert_eq!(out.lines().count(), 2, "the good rows are still written: {out}");
    let err = String::from_utf8_lossy(&assert.get_output().stderr).into_owned();
    for expected in [
        "-:3: enos_format",
        "-:4:",
        "did you mean `ota`",
        "-:5: 2 fields, but the header has 4",
    ] {
        assert!(err.contains(expected), "`{expected}` not in:\n{err}");
    }
}

#[test]
fn json_lines_input() {
    let input = "{\"id\":\"a\",\"network\":\"tcp\",\"enos_format\":true,\"enos_version\":2,\"needs\":[\"ota\"]}\n{\"id\":\"b\",\"network\":\"udp\"\n";
    let assert = bin()
        .args(["recommend", "--batch", "-"])
        .write_stdin(input)
        .assert()
        .code(2);
    let out = String::from_utf8_lossy(&assert.get_output().stdout).into_owned();
    assert!(
        out.contains("\"id\":\"a\"") && out.contains("\"recommendation\":\"mqtt\""),
        "{out}"
    );
    assert!(String::from_utf8_lossy(&assert.get_output().stderr).contains("-:2: not a JSON object"));
}

#[test]
fn batch_usage_errors() {
    bin()
        .args(["recommend", "--batch", "/nonexistent/fleet.csv"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("cannot read /nonexistent/fleet.csv"));
    bin()
        .args(["recommend", "--batch", "-"])
        .write_stdin("id,region\n")
        .assert()
        .code(2)
        .stderr(predicate::str::contains("-:1: unknown column `region`"));
    bin()
        .args(["recommend", "--batch", "-", "--format", "markdown"])
        .write_stdin(CSV)
        .assert()
        .code(2);
    bin()
        .args(["recommend", "--batch", "-", "-a", "network=tcp"])
        .assert()
        .code(2);
    // CSV is a batch format only: no other command offers it.
    bin()
        .args(["compare", "--format", "csv"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("possible values: table, json, markdown"));
    bin()
        .args(["recommend", "--batch", "-", "--batch-format", "markdown"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("possible values: jsonl, csv"));
}

#[test]
fn quoted_csv_fields_may_hold_commas_quotes_and_line_breaks() {
    // A spreadsheet export: the id column quotes a comma, a doubled quote and a line break.
    let input = "\n\nid,network,enos_format,enos_version,needs\n\"gw, hall \"\"A\"\"\",tcp,yes,2,ota\n\"meter\nroof\",udp,yes,2,report_data\nplain,tcp,yes,3,\n";
    let out = bin()
        .args(["recommend", "--batch", "-"])
        .write_stdin(input)
        .ok_stdout();
    let rows: Vec<serde_json::Value> = String::from_utf8_lossy(&out)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(rows.len(), 3, "{rows:?}");
    assert_eq!(rows[0]["id"], "gw, hall \"A\"");
    assert_eq!(rows[1]["id"], "meter\nroof");
    assert_eq!(rows[1]["recommendation"], "coap");
    // Line numbers are the file's, blank lines and the spanning field counted.
    assert_eq!(
        (
            rows[0]["line"].as_u64(),
            rows[1]["line"].as_u64(),
            rows[2]["line"].as_u64()
        ),
        (Some(4), Some(5), Some(7))
    );
}

#[test]
fn an_unclosed_quote_is_named_and_cannot_take_in_a_large_file() {
    // Small: the rest of the file becomes one record, reported with a hint at the quote.
    let small = "id,network,enos_format,enos_version,needs\n\"d1,tcp,yes,2,\nd2,tcp,yes,2,\n";
    bin()
        .args(["recommend", "--batch", "-"])
        .write_stdin(small)
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "-:2: 1 fields, but the header has 5 (a quoted field runs across lines: an unclosed quote?)",
        ));
    // Large: the record is cut off past 1 MiB instead of being held in memory whole.
    let mut big =
        String::from("id,network,enos_format,enos_version,needs\nok,tcp,yes,2,\n\"open,tcp,yes,2,\n");
    while big.len() < 2 << 20 {
        big.push_str("d,tcp,yes,2,report_data\n");
    }
    bin()
        .args(["recommend", "--batch", "-"])
        .write_stdin(big)
        .assert()
        .code(2)
        .stdout(predicate::str::contains("\"id\":\"ok\""))
        .stderr(predicate::str::contains(
            "-:3: a record runs past 1 MiB: an unclosed quote?",
        ));
}

/// `--shard K/N` (or ENOS_CONNECT_SHARD): N runs that together give exactly the unsharded
/// output, bad rows reported once with their line in the whole file.
#[test]
fn shards_join_to_the_unsharded_output() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("fleet.csv");
    let mut csv = String::from("id,network,enos_format,third_party_cloud,enos_version,needs\n");
    for i in 0..50 {
        let network = if i % 11 == 4 {
            "tpc"
        } else {
            ["tcp", "udp", "none"][i % 3]
        };
        csv.push_str(&format!("dev-{i},{network},yes,,2,ota\n"));
    }
    std::fs::write(&file, &csv).expect("write");
    let run = |shard: Option<&str>, format: &str| {
        let mut cmd = bin();
        cmd.args(["recommend", "--batch"])
            .arg(&file)
            .args(["--batch-format", format]);
        if let Some(s) = shard {
            cmd.env("ENOS_CONNECT_SHARD", s);
        }
        let out = cmd.output().expect("runs");
        assert_eq!(
            out.status.code(),
            Some(2),
            "bad rows make exit 2 in the shards that hold them"
        );
        (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    for format in ["jsonl", "csv"] {
        let (whole, whole_err) = run(None, format);
        let (mut joined, mut bad) = (String::new(), Vec::new());
        for k in 1..=3 {
            let (out, err) = run(Some(&format!("{k}/3")), format);
            assert!(err.contains(&format!("shard {k}/3: ")), "{err}");
            joined.push_str(&out);
            bad.extend(err.lines().filter(|l| l.contains("bad row")).map(str::to_string));
        }
        // Concatenated, the shards hold exactly the unsharded lines; in JSON Lines, ordering
        // by "line" restores the unsharded output byte for byte.
        let mut got: Vec<&str> = joined.lines().collect();
        let mut want: Vec<&str> = whole.lines().collect();
        if format == "jsonl" {
            got.sort_by_key(|l| crate::common::json_of(l.as_bytes())["line"].as_u64());
            assert_eq!(got.join("\n") + "\n", whole);
        } else {
            assert_eq!(
                got[0], "id,recommendation,protocols,unmet,caveats,set_aside",
                "shard 1 writes the header once"
            );
            got.sort();
            want.sort();
            assert_eq!(got, want);
        }
        let mut whole_bad: Vec<String> = whole_err
            .lines()
            .filter(|l| l.contains("bad row"))
            .map(str::to_string)
            .collect();
        whole_bad.sort();
        bad.sort();
        assert_eq!(bad, whole_bad, "bad rows keep the whole file's line numbers");
        assert!(bad.iter().any(|l| l.contains("fleet.csv:6:")), "{bad:?}");
    }
    // The flag wins over the environment, and a shard that is not K/N is a usage error.
    bin()
        .args(["recommend", "--batch"])
        .arg(&file)
        .args(["--shard", "4/3"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("`4/3` is not a shard"));
    bin()
        .args(["recommend", "--shard", "1/2"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--batch"));
}

#[test]
fn rows_carry_caveats_and_answers_set_aside_and_fail_on_caveat_gates_them() {
    let csv = "id,network,enos_format,third_party_cloud,enos_version,long_connection,needs\n\
               quiet,tcp,yes,,3,,report_data\n\
               short,tcp,yes,yes,3,no,downlink_commands\n";
    let out = bin()
        .args(["recommend", "--batch", "-", "--batch-format", "csv"])
        .write_stdin(csv)
        .ok_stdout();
    assert_eq!(
        String::from_utf8_lossy(&out),
        "id,recommendation,protocols,unmet,caveats,set_aside\n\
         quiet,mqtt,mqtt,,,\n\
         short,mqtt,mqtt,,downlink_commands -> mqtt (long_connection=no),third_party_cloud=yes;long_connection=no\n"
    );
    let assert = bin()
        .args(["recommend", "--batch", "-"])
        .write_stdin(csv)
        .assert()
        .success();
    let rows: Vec<serde_json::Value> = String::from_utf8_lossy(&assert.get_output().stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(rows[0]["caveats"], serde_json::json!([]));
    assert_eq!(rows[1]["caveats"][0]["need"], "downlink_commands");
    assert_eq!(rows[1]["caveats"][0]["question"], "long_connection");
    assert_eq!(rows[1]["set_aside"][0]["question"], "third_party_cloud");
    let err = String::from_utf8_lossy(&assert.get_output().stderr).into_owned();
    assert!(err.contains("1 with caveats"), "{err}");
    bin()
        .args(["recommend", "--batch", "-", "--fail-on-caveat"])
        .write_stdin(csv)
        .assert()
        .code(1);
    bin()
        .args(["recommend", "--batch", "-", "--fail-on-caveat"])
        .write_stdin("network,enos_format,enos_version\ntcp,yes,3\n")
        .assert()
        .success();
}
