//! HTTP probe: HTTP/1.1 through hyper's client connection API over the probe's own TCP (and TLS)
//! stream, so resolve, connect, TLS and the request are timed apart. hyper parses the status
//! line, the headers and chunked or length-delimited bodies; this module only bounds what it
//! reads and turns the answer into a verdict. With EnOS keys it makes the EnOS auth call
//! (`POST /auth/{pk}/{dk}`) and reports the session it got. Redirects are reported, not
//! followed: a smoke test must say where it was sent. Every wait is under the probe's deadline.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;

use super::{ErrorKind, Failure, ProbeOptions, Recorder, Target};
use crate::capabilities::Capabilities;

/// The largest response head (status line and headers) the probe accepts.
pub(crate) const MAX_HEAD: usize = 64 * 1024;
/// The largest number of response headers the probe accepts.
pub(crate) const MAX_HEADERS: usize = 100;
/// The largest response body the probe reads.
pub(crate) const MAX_BODY: usize = 1024 * 1024;

/// One request to send.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    /// Origin-form: `/path?query`.
    pub path: String,
    /// The `Host` header: `host:port`.
    pub host: String,
    pub body: Vec<u8>,
    /// Ask the server to close after this answer.
    pub close: bool,
    /// The body's type [default: `application/json` for a POST or a body].
    pub content_type: Option<String>,
}

#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub reason: String,
    pub location: Option<String>,
    pub body: Vec<u8>,
}

/// An HTTP/1.1 client connection over a stream the caller connected: requests go one after
/// another on it. The connection task ends when this is dropped.
pub(crate) struct Client {
    sender: http1::SendRequest<Full<Bytes>>,
    driver: tokio::task::JoinHandle<()>,
    /// The first bytes the server sent, to show what answered when it is not HTTP.
    first: Arc<Mutex<Vec<u8>>>,
}

impl Drop for Client {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

impl Client {
    pub(crate) async fn handshake<I>(io: I) -> Result<Self, Failure>
    where
        I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let first = Arc::new(Mutex::new(Vec::new()));
        let wire = Wire {
            io,
            first: first.clone(),
        };
        let (sender, conn) = http1::Builder::new()
            .max_buf_size(MAX_HEAD)
            .max_headers(MAX_HEADERS)
            .handshake::<_, Full<Bytes>>(TokioIo::new(wire))
            .await
            .map_err(|e| failure(&e, &[]))?;
        // The connection future does the reading and writing; the request future only waits
        // for it. An error there reaches the waiting request as well.
        let driver = tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Client {
            sender,
            driver,
            first,
        })
    }

    /// Send one request and read the whole response, at most [`MAX_BODY`] bytes of body.
    pub(crate) async fn send(&mut self, req: &Request) -> Result<Response, Failure> {
        let method = hyper::Method::from_bytes(req.method.as_bytes()).map_err(|_| {
            Failure::new(
                ErrorKind::Protocol,
                format!("`{}` is not an HTTP method", req.method),
            )
        })?;
        let mut builder = hyper::Request::builder()
            .method(method)
            .uri(req.path.as_str())
            .header(hyper::header::HOST, req.host.as_str())
            .header(
                hyper::header::USER_AGENT,
                concat!("enos-connect/", env!("CARGO_PKG_VERSION")),
            )
            .header(hyper::header::ACCEPT, "*/*");
        if req.close {
            builder = builder.header(hyper::header::CONNECTION, "close");
        }
        if let Some(t) = &req.content_type {
            builder = builder.header(hyper::header::CONTENT_TYPE, t.as_str());
        } else if !req.body.is_empty() || req.method.eq_ignore_ascii_case("POST") {
            builder = builder.header(hyper::header::CONTENT_TYPE, "application/json");
        }
        let request = builder
            .body(Full::new(Bytes::from(req.body.clone())))
            .map_err(|e| Failure::new(ErrorKind::Protocol, format!("cannot build the request: {e}")))?;
        let mut response = self
            .sender
            .send_request(request)
            .await
            .map_err(|e| failure(&e, &self.first_bytes()))?;
        let status = response.status();
        let location = response
            .headers()
            .get(hyper::header::LOCATION)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
        // A declared length over the bound fails at once, before any of the body is read.
        if let Some(len) = hyper::body::Body::size_hint(response.body()).exact()
            && len > MAX_BODY as u64
        {
            return Err(Failure::new(
                ErrorKind::Protocol,
                format!("the body is {len} bytes, more than a probe reads ({MAX_BODY})"),
            ));
        }
        let mut body = Vec::new();
        while let Some(frame) = response.body_mut().frame().await {
            let frame = frame.map_err(|e| failure(&e, &[]))?;
            if let Some(data) = frame.data_ref() {
                if body.len().saturating_add(data.len()) > MAX_BODY {
                    return Err(Failure::new(
                        ErrorKind::Protocol,
                        format!("the body is larger than {MAX_BODY} bytes"),
                    ));
                }
                body.extend_from_slice(data);
            }
        }
        Ok(Response {
            status: status.as_u16(),
            reason: status.canonical_reason().unwrap_or("").to_string(),
            location,
            body,
        })
    }
}

impl Client {
    fn first_bytes(&self) -> Vec<u8> {
        self.first.lock().map(|b| b.clone()).unwrap_or_default()
    }
}

/// One request on a fresh connection: the path the fuzzer drives with arbitrary response bytes.
pub async fn exchange<I>(io: I, req: &Request) -> Result<Response, Failure>
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    Client::handshake(io).await?.send(req).await
}

/// A hyper error in the probe's words: what the server did wrong, or the I/O failure under it.
/// `first` is the start of what the server sent, shown when it is not HTTP at all.
fn failure(e: &hyper::Error, first: &[u8]) -> Failure {
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            // hyper reports a malformed body (a bad chunk size) as invalid data.
            if matches!(
                io.kind(),
                std::io::ErrorKind::InvalidData | std::io::ErrorKind::InvalidInput
            ) {
                return Failure::new(ErrorKind::Protocol, format!("not a valid HTTP response: {io}"));
            }
            return Failure::io(io);
        }
        source = s.source();
    }
    if e.is_parse() || e.is_parse_status() || e.is_parse_too_large() {
        let began = if first.is_empty() {
            String::new()
        } else {
            let shown: String = first
                .iter()
                .map(|&b| {
                    if b.is_ascii_graphic() || b == b' ' {
                        b as char
                    } else {
                        '.'
                    }
                })
                .collect();
            format!("; it began {shown:?}")
        };
        Failure::new(
            ErrorKind::Protocol,
            format!("not a valid HTTP response ({e}){began}"),
        )
    } else if e.is_incomplete_message() {
        Failure::new(
            ErrorKind::Protocol,
            "the server closed the connection before the response was complete",
        )
    } else if e.is_timeout() {
        Failure::new(ErrorKind::Timeout, format!("timed out: {e}"))
    } else {
        Failure::new(ErrorKind::Protocol, format!("HTTP failed: {e}"))
    }
}

/// The stream under hyper. It keeps the first bytes the server sent (to show them when they are
/// not HTTP), and a TLS peer that closes without close_notify has still ended a body that runs
/// to the close: that is reported as the end of the stream, as curl does, not as an error.
struct Wire<I> {
    io: I,
    first: Arc<Mutex<Vec<u8>>>,
}

const SHOWN: usize = 40;

impl<I: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for Wire<I> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        match std::pin::Pin::new(&mut self.io).poll_read(cx, buf) {
            std::task::Poll::Ready(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                std::task::Poll::Ready(Ok(()))
            }
            std::task::Poll::Ready(Ok(())) => {
                if let Ok(mut first) = self.first.lock()
                    && first.len() < SHOWN
                {
                    let new = buf.filled().get(before..).unwrap_or_default();
                    let room = SHOWN - first.len();
                    first.extend_from_slice(&new[..new.len().min(room)]);
                }
                std::task::Poll::Ready(Ok(()))
            }
            other => other,
        }
    }
}

impl<I: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for Wire<I> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// The `Host` header value for a target.
pub(crate) fn host_header(target: &Target) -> String {
    if target.host.contains(':') {
        format!("[{}]:{}", target.host, target.port)
    } else {
        format!("{}:{}", target.host, target.port)
    }
}

/// The request to send: the EnOS auth call when keys are given, else the URL's own.
pub(crate) fn build_request(
    caps: &Capabilities,
    target: &Target,
    opts: &ProbeOptions,
) -> Result<Request, Failure> {
    let host = host_header(target);
    // HTTP's recipe has no dynamic activation: a device trying it signs the auth call with
    // its product secret, and EnOS's answer to that is what is measured (serve: code 770).
    let dynamic_offered = caps
        .credentials
        .get("http")
        .is_some_and(|r| r.modes.iter().any(|m| m == "dynamic"));
    let login = match opts.login.mode() {
        Some("dynamic") if !dynamic_offered => opts.login.signed_as_static(),
        _ => opts.login.clone(),
    };
    if let Some(creds) = login.enos_credentials(caps, "http") {
        let r = creds?
            .request
            .ok_or_else(|| Failure::new(ErrorKind::Auth, "no HTTP auth request in the capabilities"))?;
        let prefix = target.path.trim_end_matches('/');
        return Ok(Request {
            method: r.method,
            path: format!("{prefix}{}", r.path),
            host,
            body: r.body.into_bytes(),
            close: true,
            content_type: None,
        });
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
    Ok(Request {
        method: method.to_ascii_uppercase(),
        path,
        host,
        body,
        close: true,
        content_type: None,
    })
}

/// Check a request before any traffic: a method hyper would refuse, or a path that is not a
/// valid request target, is an input error.
pub(crate) fn validate(req: &Request) -> Result<(), String> {
    hyper::Method::from_bytes(req.method.as_bytes()).map_err(|_| {
        format!(
            "--method `{}` is not an HTTP method (for example GET or POST)",
            req.method
        )
    })?;
    req.path
        .parse::<hyper::Uri>()
        .map_err(|e| format!("`{}` is not a valid HTTP path: {e}", req.path))?;
    Ok(())
}

pub(crate) async fn probe(
    caps: &Capabilities,
    target: &Target,
    opts: &ProbeOptions,
    rec: &mut Recorder,
    deadline: Instant,
) -> Result<(), Failure> {
    let mut request = build_request(caps, target, opts)?;
    let enos = opts.login.enos_keys();
    let needs = !opts.needs.needs.is_empty();
    let post = opts.measurepoints.as_ref().zip(enos).filter(|_| !needs);
    // The post and the needs go on the same connection as the auth call.
    request.close = post.is_none() && !needs;
    let io = super::connect_stream(rec, target, opts, deadline, &[b"http/1.1"]).await?;
    rec.begin(if enos.is_some() { "handshake" } else { "request" });
    let mut client = Client::handshake(io).await?;
    let response = client.send(&request).await?;
    rec.note(format_args!("status {} {}", response.status, response.reason));
    rec.detail("status", response.status);
    rec.detail("body_bytes", response.body.len());
    let session = check(&response, enos.is_some(), rec)?;
    rec.end();
    if let (true, Some(device), Some(session)) = (needs, enos, &session) {
        let mut t = Needs {
            client: &mut client,
            session: query_escape(session),
            prefix: target.path.trim_end_matches('/').to_string(),
            host: host_header(target),
        };
        super::needs::run(caps, target, &mut t, opts, device, rec, deadline).await;
    }
    if let (Some((points, (pk, dk))), Some(session)) = (post, session) {
        rec.begin("reply");
        let body = super::measurepoint_request(points);
        let prefix = target.path.trim_end_matches('/');
        let post = Request {
            method: "POST".into(),
            path: format!(
                "{prefix}/topic{}?sessionId={}",
                crate::enos::measurepoint_post(pk, dk),
                query_escape(&session)
            ),
            host: host_header(target),
            body: body.payload,
            close: true,
            content_type: None,
        };
        let response = client.send(&post).await?;
        rec.detail("status", response.status);
        if !(200..300).contains(&response.status) {
            return Err(Failure::new(
                ErrorKind::Protocol,
                format!("the post was answered {} {}", response.status, response.reason),
            ));
        }
        rec.enos_reply(&response.body, None)?;
        rec.end();
    }
    Ok(())
}

/// Percent-encode a query value (the session id EnOS issued).
fn query_escape(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            other => format!("%{other:02X}"),
        })
        .collect()
}

/// The verdict on a response: 2xx passes (with EnOS's own code checked for the auth call,
/// whose session id it returns), a redirect names where it points, 401/403 are authentication
/// failures.
fn check(r: &Response, enos_auth: bool, rec: &mut Recorder) -> Result<Option<String>, Failure> {
    let status = format!("{} {}", r.status, r.reason).trim_end().to_string();
    match r.status {
        200..=299 => {}
        300..=399 => {
            let to = r.location.as_deref().unwrap_or("(no Location header)");
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
            // A refused login is not a reply to a request (`enos` stays empty): the code is a detail.
            rec.detail("auth_code", code);
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
        return Ok(Some(session.to_string()));
    }
    Ok(None)
}

#[path = "http_needs.rs"]
mod needs_transport;
use needs_transport::Needs;
