//! The examples in `README.md` and `docs/*.md` run as tests, so an example cannot drift from the
//! program: every ```` ```console ```` block is a `trycmd` case (`$ ` starts a command, `> `
//! continues it, `? N` is the exit code, the lines after are stdout and stderr together; `[..]`
//! and `...` elide what varies). `TRYCMD=overwrite cargo test --test it docs` rewrites the
//! blocks from what the program prints: read the diff before committing it.
//!
//! The examples run in a process of their own (the body is `docs_in_this_process`) with a clean
//! environment, so no `ENOS_CONNECT_*` variable or config file of the machine leaks into them,
//! in a temporary folder holding a copy of `examples/` and of `capabilities.toml`, a private CA
//! (`ca.pem`) and a certificate for `localhost` it signed (`server.pem`, `server.key`). Examples
//! that need a peer probe one `serve`, started from the command line `docs/serve.md` shows
//! ([`SERVE`]) on fixed loopback ports, with the secrets of `examples/registry.toml` in the
//! environment as that page says. A port already taken fails the test, naming it. Besides
//! `enos-connect`, an example may run `curl` (the history endpoint of `docs/serve.md`): the
//! machine's, which must be installed (`.ci/run` installs it).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The `serve` the examples probe, exactly as `docs/serve.md` and `docs/probing.md` show it.
const SERVE: &str = "enos-connect serve --registry examples/registry.toml --mqtt 127.0.0.1:21883 \
                     --mqtts 127.0.0.1:28883 --tls-cert server.pem --tls-key server.key \
                     --http 127.0.0.1:28080 --https 127.0.0.1:28443 --coap 127.0.0.1:25683 \
                     --coaps 127.0.0.1:25684 \
                     --console 127.0.0.1:28090 --record events.jsonl --data serve.db";

/// The secrets of `examples/registry.toml`, in the environment of every example as
/// `docs/serve.md` tells the reader to set them. No example's output may show one.
const SECRETS: [(&str, &str); 3] = [
    ("ENOS_DEVICE_SECRET", "Example-Device-Secret"),
    ("ENOS_PRODUCT_SECRET", "Example-Product-Secret"),
    ("ENOS_SUBDEVICE_SECRET", "Example-Subdevice-Secret"),
];

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// The pages whose examples run: the README and every page under `docs/`.
fn pages() -> Vec<PathBuf> {
    let mut pages = vec![Path::new(ROOT).join("README.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(Path::new(ROOT).join("docs"))
        .expect("docs/")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    pages.extend(docs);
    pages
}

#[test]
fn examples_in_the_readme_and_docs_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let home = dir.path().join("home");
    std::fs::create_dir(&home).expect("home");
    let exe = std::env::current_exe().expect("the test binary");
    let mut cmd = Command::new(exe);
    cmd.args([
        "--exact",
        "docs::docs_in_this_process",
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ])
    .env_clear()
    .env("PATH", std::env::var("PATH").unwrap_or_default())
    .env("HOME", &home)
    .env("XDG_CONFIG_HOME", home.join(".config"))
    .env("DOCS_WORKDIR", dir.path().join("work"))
    // Inherited by every example; an example's own `VAR=value` wins over it (a value given
    // with TestCases::env would win over the example's).
    .envs(SECRETS);
    for var in ["TRYCMD", "RUST_BACKTRACE"] {
        if let Ok(value) = std::env::var(var) {
            cmd.env(var, value);
        }
    }
    let out = cmd.output().expect("runs the docs examples");
    assert!(
        out.status.success(),
        "an example in the README or docs/ does not match the program \
         (TRYCMD=overwrite cargo test --test it docs rewrites them; read the diff):\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A newcomer reads the README from the top: the first probe example must come after the lines
/// that start `serve` and export the device's secret, or following the page in order gives "no
/// device secret given" and then "port unreachable".
#[test]
fn the_readme_starts_serve_before_its_first_probe() {
    let readme = std::fs::read_to_string(Path::new(ROOT).join("README.md")).expect("README.md");
    let at = |what: &str| {
        readme
            .find(what)
            .unwrap_or_else(|| panic!("README.md has no `{what}`"))
    };
    let probe = at("$ enos-connect probe");
    for before in ["enos-connect serve --registry", "export ENOS_DEVICE_SECRET="] {
        assert!(
            at(before) < probe,
            "README.md's first probe example comes before `{before}`: a reader following the page \
             in order runs it first"
        );
    }
}

/// A shell line of the docs that writes into a folder under `~` makes that folder first: on a
/// fresh account `~/.local/share/bash-completion/completions` does not exist.
#[test]
fn shell_lines_that_write_under_home_make_the_folder_first() {
    for page in pages() {
        let text = std::fs::read_to_string(&page).expect("page");
        let mut made: Vec<String> = Vec::new();
        for line in text.lines() {
            if let Some(dir) = line.trim().strip_prefix("mkdir -p ") {
                made.push(dir.trim().to_string());
            }
            let Some((_, target)) = line.split_once(" > ~/") else {
                continue;
            };
            let file = format!("~/{}", target.split_whitespace().next().unwrap_or_default());
            let dir = file.rsplit_once('/').map_or("~", |(d, _)| d);
            assert!(
                made.iter().any(|m| m == dir),
                "{}: `{}` writes into {dir}, which no `mkdir -p {dir}` before it makes",
                page.display(),
                line.trim()
            );
        }
    }
}

#[test]
#[ignore = "the body of examples_in_the_readme_and_docs_run, which runs it in a clean environment"]
fn docs_in_this_process() {
    let work =
        PathBuf::from(std::env::var("DOCS_WORKDIR").expect("started by examples_in_the_readme_and_docs_run"));
    std::fs::create_dir_all(work.join("examples")).expect("workdir");
    for entry in std::fs::read_dir(Path::new(ROOT).join("examples")).expect("examples/") {
        let path = entry.expect("entry").path();
        std::fs::copy(&path, work.join("examples").join(path.file_name().expect("name"))).expect("copy");
    }
    std::fs::copy(
        Path::new(ROOT).join("capabilities.toml"),
        work.join("capabilities.toml"),
    )
    .expect("copy");
    let pki = crate::peers::pki(&["localhost"], false);
    std::fs::copy(&pki.ca, work.join("ca.pem")).expect("ca");
    std::fs::copy(&pki.server_cert, work.join("server.pem")).expect("cert");
    std::fs::copy(&pki.server_key, work.join("server.key")).expect("key");
    std::env::set_current_dir(&work).expect("cd");

    let serve = Serve::start(&work);
    let cases = trycmd::TestCases::new();
    cases
        .register_bin(
            "enos-connect",
            trycmd::cargo::cargo_bin!("enos-connect").to_path_buf(),
        )
        .register_bin("curl", curl())
        .env("PATH", test_device_on_path(&work))
        // docs/device-test.md runs the whole catalogue against a test device.
        .timeout(Duration::from_secs(120));
    for page in pages() {
        cases.case(page);
    }
    cases.run();
    the_command_answer_is_the_documented_one();
    the_twin_is_the_documented_one();
    let record = serve.stop();
    record_matches_the_page(&record);
}

/// `test-device` in `work/bin`, the test suite's well-behaved device as a process
/// (`test_device::device_process` of this test binary), for docs/device-test.md's `--run`: the
/// PATH the examples run with.
fn test_device_on_path(work: &Path) -> String {
    use std::os::unix::fs::PermissionsExt;
    let bin = work.join("bin");
    std::fs::create_dir_all(&bin).expect("bin/");
    let exe = std::env::current_exe().expect("the test binary");
    let script = bin.join("test-device");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nexec '{}' --exact test_device::device_process --ignored --nocapture\n",
            exe.display()
        ),
    )
    .expect("test-device");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default())
}

/// The machine's `curl`, for the examples that read serve's HTTP API: a missing one fails.
fn curl() -> PathBuf {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join("curl"))
        .find(|p| p.is_file())
        .expect("curl is not on PATH: docs/serve.md's history example runs it (apt-get install curl)")
}

/// One HTTP/1.1 request to the docs' serve, by hand (the page shows it as `curl`): the body
/// of the answer.
fn http(request: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect("127.0.0.1:28080").expect("serve's HTTP listener");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    stream.write_all(request.as_bytes()).expect("send");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("answer");
    answer
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// The `curl` of `docs/serve.md`'s session (a command for a device that is not connected), sent
/// by hand, answers what the page says.
fn the_command_answer_is_the_documented_one() {
    let body = r#"{"method":"thing.service.measurepoint.set","params":{"temp":30}}"#;
    let json = http(&format!(
        "POST /twin/commands/Pk7Xy2/gw-01?timeout=2 HTTP/1.1\r\nHost: 127.0.0.1\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    ));
    let page = std::fs::read_to_string(Path::new(ROOT).join("docs/serve.md")).expect("docs/serve.md");
    assert!(
        page.contains(&format!("# {json}\n")),
        "docs/serve.md: the command's answer is {json}"
    );
}

/// `docs/serve.md`'s `curl` of `meter-0043`'s twin, sent by hand after every example ran: the
/// JSON, pretty-printed, matches the page's ```` ```json ```` block line by line (`[..]` for times).
fn the_twin_is_the_documented_one() {
    let body =
        http("GET /twin/devices/Pk7Xy2/meter-0043 HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    let json: serde_json::Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    let got = serde_json::to_string_pretty(&json).expect("pretty");
    let page = std::fs::read_to_string(Path::new(ROOT).join("docs/serve.md")).expect("docs/serve.md");
    let block = page
        .split("```json\n")
        .nth(1)
        .and_then(|rest| rest.split("\n```").next())
        .expect("docs/serve.md shows the twin in a ```json block");
    let same = block.lines().count() == got.lines().count()
        && block
            .lines()
            .zip(got.lines())
            .all(|(want, got)| matches(want, got));
    assert!(
        same,
        "docs/serve.md shows meter-0043's twin as:\n{block}\nserve answers:\n{got}"
    );
    for (_, secret) in SECRETS {
        assert!(!got.contains(secret), "the twin shows a secret");
    }
}

/// `serve` started from [`SERVE`], stopped with SIGTERM (or killed if the test fails first).
struct Serve {
    child: Option<Child>,
    record: PathBuf,
}

impl Serve {
    fn start(work: &Path) -> Serve {
        let args: Vec<&str> = SERVE.split_whitespace().skip(1).collect();
        let mut child = Command::new(env!("CARGO_BIN_EXE_enos-connect"))
            .args(&args)
            .current_dir(work)
            .envs(SECRETS)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("serve starts");
        let stdout = child.stdout.take().expect("stdout");
        let mut first = String::new();
        let _ = BufReader::new(stdout).read_line(&mut first);
        if !first.contains("\"listening\"") {
            let _ = child.wait();
            let mut err = String::new();
            if let Some(mut stderr) = child.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut stderr, &mut err);
            }
            panic!(
                "the docs' serve did not start (are its fixed ports 21883, 28883, 28080, 28443, \
                 25683, 25684 and 28090 on 127.0.0.1 free?): {SERVE}\n{first}{err}"
            );
        }
        let page = std::fs::read_to_string(Path::new(ROOT).join("docs/serve.md")).expect("docs/serve.md");
        assert!(
            page.contains(&format!("```text\n{first}```")),
            "docs/serve.md shows serve's first line as it is:\n{first}"
        );
        assert!(
            page.contains(&format!("```sh\n{SERVE}\n```")),
            "docs/serve.md shows the command line:\n{SERVE}"
        );
        Serve {
            child: Some(child),
            record: work.join("events.jsonl"),
        }
    }

    /// SIGTERM, then the record it flushed.
    fn stop(mut self) -> String {
        let mut child = self.child.take().expect("running");
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while child.try_wait().expect("wait").is_none() {
            assert!(Instant::now() < deadline, "serve did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
        std::fs::read_to_string(&self.record).expect("the record")
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The ```` ```jsonl ```` block under "events.jsonl then holds" in `docs/serve.md`: each of its
/// lines (with `[..]` eliding what varies) is a line of the record, in that order (the other
/// pages' examples add lines of their own in between).
fn record_matches_the_page(record: &str) {
    let page = std::fs::read_to_string(Path::new(ROOT).join("docs/serve.md")).expect("docs/serve.md");
    let block = page
        .split("```jsonl\n")
        .nth(1)
        .and_then(|rest| rest.split("\n```").next())
        .expect("docs/serve.md shows the record in a ```jsonl block");
    let mut lines = record.lines();
    for want in block.lines() {
        assert!(
            lines.any(|got| matches(want, got)),
            "docs/serve.md shows this record line, which serve did not write (in this order):\n\
             {want}\nthe record:\n{record}"
        );
    }
    for (_, secret) in SECRETS {
        assert!(!record.contains(secret), "the record shows a secret");
    }
}

/// `want` with `[..]` matching any run of characters.
fn matches(want: &str, got: &str) -> bool {
    let parts: Vec<&str> = want.split("[..]").collect();
    let Some(rest) = got.strip_prefix(parts[0]) else {
        return false;
    };
    let mut rest = rest;
    for (i, part) in parts.iter().enumerate().skip(1) {
        if i == parts.len() - 1 {
            return rest.ends_with(part);
        }
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.is_empty()
}

/// The Mermaid picture in `docs/deciding.md` is what `flow --format mermaid` draws.
#[test]
fn the_flow_picture_in_the_docs_is_what_flow_draws() {
    let page = std::fs::read_to_string(Path::new(ROOT).join("docs/deciding.md")).expect("docs/deciding.md");
    let block = page
        .split("```mermaid\n")
        .nth(1)
        .and_then(|rest| rest.split("```\n").next())
        .expect("docs/deciding.md draws the flow in a ```mermaid block");
    let drawn = crate::common::bin()
        .args(["flow", "--format", "mermaid"])
        .assert()
        .success();
    assert_eq!(
        String::from_utf8_lossy(&drawn.get_output().stdout),
        block,
        "docs/deciding.md: paste the output of `enos-connect flow --format mermaid`"
    );
}

/// trycmd runs only the commands whose program it knows and skips the others in silence, so a
/// console block that runs anything but `enos-connect` or `curl` (or misspells them) would test
/// nothing.
/// Blocks with output shown must be real console blocks; and no example may show a secret.
#[test]
fn every_console_command_runs_enos_connect_and_shows_no_secret() {
    for page in pages() {
        let text = std::fs::read_to_string(&page).expect("page");
        let name = page.strip_prefix(ROOT).unwrap_or(&page).display().to_string();
        let mut fence: Option<String> = None;
        let mut console = false;
        for (n, line) in text.lines().enumerate() {
            let ticks = line.chars().take_while(|&c| c == '`').count();
            match &fence {
                None if ticks >= 3 => {
                    let info = line[ticks..].trim();
                    assert!(
                        !info.is_empty(),
                        "{name}:{}: a code block needs a language (trycmd runs a bare ``` block)",
                        n + 1
                    );
                    console = info.split(',').next() == Some("console") || info.starts_with("trycmd");
                    fence = Some(line[..ticks].to_string());
                }
                // As trycmd reads it: the first line starting with the opening run of backticks.
                Some(f) if line.starts_with(f.as_str()) => fence = None,
                Some(_) if console => {
                    if let Some(cmd) = line.strip_prefix("$ ") {
                        let program = cmd.split_whitespace().find(|w| !w.contains('='));
                        assert!(
                            matches!(program, Some("enos-connect" | "curl")),
                            "{name}:{}: a console example runs only enos-connect (or curl, for serve's HTTP API)",
                            n + 1
                        );
                    }
                    for (_, secret) in SECRETS {
                        assert!(
                            !line.contains(secret),
                            "{name}:{}: an example shows a secret",
                            n + 1
                        );
                    }
                }
                _ => {}
            }
        }
        assert!(fence.is_none(), "{name}: a code block is not closed");
    }
}

/// `python3 scripts/perf_doc.py check --doc DOC`: its status and what it printed.
fn perf_doc_check(doc: &Path) -> (bool, String) {
    let out = Command::new("python3")
        .arg(Path::new(ROOT).join("scripts/perf_doc.py"))
        .args(["check", "--doc"])
        .arg(doc)
        .output()
        .expect("python3 runs (the benchmark scripts and this check need it)");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), said)
}

/// No figure in docs/performance.md's tables is typed by hand: each is what
/// docs/performance.json (written by the benchmark scripts, with the date and command of
/// their run) renders, and the figures of issue 31 are all there.
#[test]
fn the_performance_tables_are_what_the_benchmarks_wrote() {
    let doc = Path::new(ROOT).join("docs/performance.md");
    let (ok, said) = perf_doc_check(&doc);
    assert!(ok, "{said}");
    let json: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(Path::new(ROOT).join("docs/performance.json"))
            .expect("docs/performance.json"),
    )
    .expect("docs/performance.json is JSON");
    for id in [
        "fleet_rss_3000",
        "fleet_cpu",
        "load",
        "data_load",
        "startup_version",
        "probe_coap",
        "batch_random",
    ] {
        let f = &json["figures"][id];
        assert!(
            f["command"]
                .as_str()
                .is_some_and(|c| c.contains("scripts/bench-"))
                && f["date"].is_string(),
            "docs/performance.json: figure `{id}` is missing or has no script and date: {f}"
        );
    }
}

/// The check fails when a figure in the doc is changed by hand.
#[test]
fn a_performance_figure_edited_by_hand_fails_the_check() {
    let page =
        std::fs::read_to_string(Path::new(ROOT).join("docs/performance.md")).expect("docs/performance.md");
    let begin = page
        .find("<!-- perf:begin")
        .expect("docs/performance.md has its perf:begin marker");
    let row = begin + page[begin..].find("\n| `").expect("the summary has a row") + 1;
    let end = row + page[row..].find('\n').expect("a row ends");
    let edited = format!(
        "{}{}{}",
        &page[..row],
        page[row..end].replacen(" | ", " | 0.01 ", 1),
        &page[end..]
    );
    let dir = tempfile::tempdir().expect("a temporary folder");
    let doc = dir.path().join("performance.md");
    std::fs::write(&doc, edited).expect("writes");
    let (ok, said) = perf_doc_check(&doc);
    assert!(!ok, "a row edited by hand passed the check");
    assert!(
        said.contains("differs from what docs/performance.json renders"),
        "{said}"
    );
}
