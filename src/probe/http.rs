//! HTTP probe: one HTTP/1.1 request over the probe's own TCP (and TLS) connection, so resolve,
//! connect, TLS and the response status are timed apart. With EnOS keys it makes the EnOS auth
//! call (`POST /auth/{pk}/{dk}`) and reports the session it got. Redirects are reported, not
//! followed: a smoke test must say where it was sent. Every read is bounded in size and time.

use std::time::Instant;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{ErrorKind, Failure, Io, Login, ProbeOptions, Recorder, Target};
use crate::capabilities::Capabilities;

const MAX_HEAD: usize = 64 * 1024;
const MAX_BODY: usize = 1024 * 1024;

pub struct Response {
    pub status: u16,
    pub reason: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// The request to send: the EnOS auth call when keys are given, else the URL's own.
fn build_request(
    caps: &Capabilities,
    target: &Target,
    opts: &ProbeOptions,
) -> Result<(String, String, Vec<u8>), Failure> {
    if let Some(creds) = opts.login.enos_credentials(caps, "http") {
        let r = creds?
            .request
            .ok_or_else(|| Failure::new(ErrorKind::Auth, "no HTTP auth request in the capabilities"))?;
        let prefix = target.path.trim_end_matches('/');
        return Ok((r.method, format!("{prefix}{}", r.path), r.body.into_bytes()));
    }
    let body = opts.payload.clone().unwrap_or_default();
    let method = opts
        .method
        .clone()
        .unwrap_or_else(|| if body.is_empty() { "GET" } else { "POST" }.into());
    let path = if target.path.is_empty() {
        "/".to_string()
    } else {
        target.path.clone()
    };
    Ok((method.to_ascii_uppercase(), path, body))
}

pub async fn probe(
    caps: &Capabilities,
    target: &Target,
    opts: &ProbeOptions,
    rec: &mut Recorder,
    deadline: Instant,
) -> Result<(), Failure> {
    let (method, path, body) = build_request(caps, target, opts)?;
    let mut io = super::connect_stream(rec, target, opts, deadline, &[b"http/1.1"]).await?;
    rec.begin("handshake");
    let host = if target.host.contains(':') {
        format!("[{}]", target.host)
    } else {
        target.host.clone()
    };
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}:{}\r\nUser-Agent: enos-connect/{}\r\nAccept: */*\r\nConnection: close\r\n",
        target.port,
        env!("CARGO_PKG_VERSION")
    );
    if !body.is_empty() || method == "POST" {
        head.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    head.push_str("\r\n");
    io.write_all(head.as_bytes()).await.map_err(|e| Failure::io(&e))?;
    io.write_all(&body).await.map_err(|e| Failure::io(&e))?;
    io.flush().await.map_err(|e| Failure::io(&e))?;
    let response = read_response(&mut io, rec).await?;
    rec.detail("status", response.status);
    rec.detail("body_bytes", response.body.len());
    let _ = io.shutdown().await;
    check(&response, matches!(opts.login, Login::Enos { .. }), rec)
}

fn check(r: &Response, enos_auth: bool, rec: &mut Recorder) -> Result<(), Failure> {
    let status = format!("{} {}", r.status, r.reason);
    match r.status {
        200..=299 => {}
        300..=399 => {
            let to = r.header("location").unwrap_or("(no Location header)");
            return Err(Failure::new(
                ErrorKind::Protocol,
                format!("{status}: redirected to {to}; probe that URL instead"),
            ));
        }
        401 | 403 => {
            return Err(Failure::new(
                ErrorKind::Auth,
                format!("the server refused the request: {status}"),
            ));
        }
        _ => {
            return Err(Failure::new(
                ErrorKind::Protocol,
                format!("the server answered {status}"),
            ));
        }
    }
    if enos_auth {
        // EnOS answers HTTP 200 with its own code in the JSON body.
        let json: serde_json::Value = serde_json::from_slice(&r.body)
            .map_err(|e| Failure::new(ErrorKind::Protocol, format!("the auth answer is not JSON: {e}")))?;
        let code = json.get("code").and_then(serde_json::Value::as_i64).unwrap_or(0);
        if code != 0 && code != 200 {
            let msg = json
                .get("msg")
                .or_else(|| json.get("message"))
                .and_then(|m| m.as_str())
                .unwrap_or("");
            return Err(Failure::new(
                ErrorKind::Auth,
                format!("EnOS refused the login: code {code} {msg}"),
            ));
        }
        let session = json
            .pointer("/data/sessionId")
            .and_then(|s| s.as_str())
            .unwrap_or("");
        if session.is_empty() {
            return Err(Failure::new(
                ErrorKind::Protocol,
                "the auth answer has no data.sessionId",
            ));
        }
        // Show only the start: the session id is a bearer credential for the lifetime.
        let shown: String = session.chars().take(6).collect();
        rec.detail(
            "session",
            format!("{shown}… ({} characters)", session.chars().count()),
        );
    }
    rec.end();
    Ok(())
}

async fn read_response(io: &mut Box<dyn Io>, rec: &mut Recorder) -> Result<Response, Failure> {
    let mut buf = Vec::with_capacity(4096);
    let head_end = loop {
        if let Some(i) = find(&buf, b"\r\n\r\n") {
            break i;
        }
        if buf.len() > MAX_HEAD {
            return Err(Failure::new(
                ErrorKind::Protocol,
                format!("the response head is larger than {MAX_HEAD} bytes"),
            ));
        }
        let n = read_some(io, &mut buf).await?;
        if n == 0 {
            let what = if buf.is_empty() {
                "before any response"
            } else {
                "in the middle of the response head"
            };
            return Err(Failure::new(
                ErrorKind::Protocol,
                format!("the server closed the connection {what}"),
            ));
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    let status = parts.next().and_then(|s| s.parse::<u16>().ok());
    let (true, Some(status)) = (version.starts_with("HTTP/1."), status) else {
        let shown: String = status_line.chars().take(60).collect();
        return Err(Failure::new(
            ErrorKind::Protocol,
            format!("not an HTTP response: {shown:?}"),
        ));
    };
    let reason = parts.next().unwrap_or_default().to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| {
            l.split_once(':')
                .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        })
        .collect();
    rec.note(&format!("status {status} {reason}"));
    let mut body = buf.split_off(head_end + 4);
    let mut response = Response {
        status,
        reason,
        headers,
        body: Vec::new(),
    };
    let chunked = response
        .header("transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    if chunked {
        response.body = read_chunked(io, body).await?;
    } else if let Some(len) = response.header("content-length") {
        let len: usize = len
            .parse()
            .map_err(|_| Failure::new(ErrorKind::Protocol, format!("bad Content-Length `{len}`")))?;
        if len > MAX_BODY {
            return Err(Failure::new(
                ErrorKind::Protocol,
                format!("the body is {len} bytes, more than a probe reads ({MAX_BODY})"),
            ));
        }
        while body.len() < len {
            if read_some(io, &mut body).await? == 0 {
                return Err(Failure::new(
                    ErrorKind::Protocol,
                    format!("the body ended after {} of {len} bytes", body.len()),
                ));
            }
        }
        body.truncate(len);
        response.body = body;
    } else {
        while read_some(io, &mut body).await? > 0 {
            if body.len() > MAX_BODY {
                return Err(Failure::new(
                    ErrorKind::Protocol,
                    format!("the body is larger than {MAX_BODY} bytes"),
                ));
            }
        }
        response.body = body;
    }
    Ok(response)
}

async fn read_some(io: &mut Box<dyn Io>, buf: &mut Vec<u8>) -> Result<usize, Failure> {
    let mut chunk = [0u8; 8192];
    let n = io.read(&mut chunk).await.map_err(|e| {
        // A TLS peer that closes without close_notify still ended the body.
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            Failure::new(ErrorKind::Io, "eof")
        } else {
            Failure::io(&e)
        }
    });
    match n {
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            Ok(n)
        }
        Err(f) if f.message == "eof" => Ok(0),
        Err(f) => Err(f),
    }
}

async fn read_chunked(io: &mut Box<dyn Io>, mut raw: Vec<u8>) -> Result<Vec<u8>, Failure> {
    let mut body = Vec::new();
    loop {
        let line_end = loop {
            if let Some(i) = find(&raw, b"\r\n") {
                break i;
            }
            if raw.len() > 1024 || read_some(io, &mut raw).await? == 0 {
                return Err(Failure::new(
                    ErrorKind::Protocol,
                    "a chunked body ended inside a chunk header",
                ));
            }
        };
        let size_text = String::from_utf8_lossy(&raw[..line_end]).into_owned();
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| Failure::new(ErrorKind::Protocol, format!("bad chunk size {size_text:?}")))?;
        raw.drain(..line_end + 2);
        if size == 0 {
            return Ok(body);
        }
        if body.len() + size > MAX_BODY {
            return Err(Failure::new(
                ErrorKind::Protocol,
                format!("the body is larger than {MAX_BODY} bytes"),
            ));
        }
        while raw.len() < size + 2 {
            if read_some(io, &mut raw).await? == 0 {
                return Err(Failure::new(
                    ErrorKind::Protocol,
                    "a chunked body ended inside a chunk",
                ));
            }
        }
        body.extend_from_slice(&raw[..size]);
        raw.drain(..size + 2);
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}
