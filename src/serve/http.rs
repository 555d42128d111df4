//! The HTTP side of `serve`, on hyper's server: the EnOS device API (`POST /auth/{pk}/{dk}`
//! for a session, `POST /topic/...?sessionId=` with the same JSON as MQTT, and
//! `POST /multipart/...?sessionId=` for files); and for tests and the console the twin:
//! `GET /twin/devices`, `GET /twin/devices/{pk}/{dk}`, a point's history
//! (`GET /twin/devices/{pk}/{dk}/history/{point}`), and `POST /twin/commands/{pk}/{dk}`,
//! with which a test sends a command to a device connected over MQTT or CoAP and gets its reply.
//! A request for a feature the capabilities table does not offer over HTTP gets 403 with an
//! EnOS error body; every reply leaves after its request's event is in the record.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::sync::watch;

use super::twin::HistoryRead;
use super::{
    Answer, CommandFailed, Endpoint, Event, EventKind, Identity, MAX_PACKET, Protocol, history, random_hex,
};
use crate::enos;

/// A command waits this long for the device's reply unless `?timeout=` says otherwise.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest `?timeout=` a command waits.
const MAX_COMMAND_TIMEOUT: Duration = Duration::from_secs(300);
/// How long a request body may take to arrive.
const BODY_WAIT: Duration = Duration::from_secs(10);
/// The session lifetime when the auth request gives none (EnOS's default, in ms).
const DEFAULT_LIFETIME_MS: u64 = 300_000;
/// The longest session lifetime granted, in ms (a day).
const MAX_LIFETIME_MS: u64 = 86_400_000;

/// One HTTP/1.1 connection, bounded (10 s for a request head, 64 KiB of buffer), until it ends
/// or serve stops: then it gets a second to finish. The device API (over TCP or TLS) and the
/// console share it.
pub(super) async fn serve_connection<I, S, B>(io: I, service: S, shutdown: watch::Receiver<bool>)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    S: hyper::service::HttpService<Incoming, ResBody = B>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: hyper::body::Body + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(Duration::from_secs(10))
        .max_buf_size(64 * 1024)
        .serve_connection(TokioIo::new(io), service);
    let mut conn = std::pin::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => {}
        () = super::stopped(shutdown) => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(Duration::from_secs(1), conn).await;
        }
    }
}

pub(super) fn json_response(status: StatusCode, v: &Value) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(serde_json::to_vec(v).unwrap_or_default())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    r
}

pub(super) fn error(status: StatusCode, message: &str) -> Response<Full<Bytes>> {
    json_response(status, &json!({"code": status.as_u16(), "message": message}))
}

fn query<'q>(req: &'q Request<Incoming>, key: &str) -> Option<&'q str> {
    req.uri()
        .query()?
        .split('&')
        .find_map(|pair| pair.strip_prefix(key)?.strip_prefix('='))
}

/// One request of the device API; `protocol` (`http` or `https`) names the listener in events.
pub(super) async fn route(
    ep: &Endpoint,
    protocol: Protocol,
    req: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let response = route_request(ep, protocol, req).await;
    // No answer leaves before the events of its request are in the record and what it
    // changed is in the data file.
    ep.committed().await;
    response
}

async fn route_request(ep: &Endpoint, protocol: Protocol, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_string();
    if req.method() == Method::GET {
        if let Some(r) = history_get(ep, &path, req.uri().query()).await {
            return r;
        }
        if let Some(r) = twin_get(ep, &path) {
            return r;
        }
    }
    if req.method() != Method::POST {
        return error(
            StatusCode::METHOD_NOT_ALLOWED,
            "the EnOS device API takes POST; GET is for /twin/devices",
        );
    }
    let session = query(&req, "sessionId").map(str::to_string);
    let timeout = query(&req, "timeout").and_then(|t| t.parse::<f64>().ok());
    let content_type = req
        .headers()
        .get(hyper::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    // hyper times the headers out; the body gets its own bound here, so a client that
    // trickles it cannot hold a connection.
    let collect = Limited::new(req.into_body(), MAX_PACKET).collect();
    let body = match tokio::time::timeout(BODY_WAIT, collect).await {
        Ok(Ok(b)) => b.to_bytes(),
        Ok(Err(_)) => {
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "the body is larger than serve accepts",
            );
        }
        Err(_) => return error(StatusCode::REQUEST_TIMEOUT, "the body did not arrive in time"),
    };
    if let Some(rest) = path.strip_prefix("/auth/") {
        return auth(ep, protocol, rest, &body);
    }
    if let Some(topic) = path.strip_prefix("/topic") {
        return topic_request(ep, protocol, topic, session.as_deref(), &body);
    }
    if let Some(topic) = path.strip_prefix("/multipart") {
        return multipart(
            ep,
            protocol,
            topic,
            session.as_deref(),
            content_type.as_deref(),
            body,
        )
        .await;
    }
    if let Some(rest) = path.strip_prefix("/twin/commands/") {
        return send_command(ep, rest, &body, timeout).await;
    }
    error(
        StatusCode::NOT_FOUND,
        "no such path: the device API is /auth, /topic and /multipart; tests read GET /twin/devices and send commands on /twin/commands",
    )
}

/// `GET /twin/devices` and `GET /twin/devices/{pk}/{dk}` (also on the console); `None` for
/// another path.
pub(super) fn twin_get(ep: &Endpoint, path: &str) -> Option<Response<Full<Bytes>>> {
    if path == "/twin/devices" || path == "/twin/devices/" {
        return Some(json_response(
            StatusCode::OK,
            &json!({"devices": ep.twin.views()}),
        ));
    }
    let rest = path.strip_prefix("/twin/devices/")?;
    Some(match identity_in_path(rest).and_then(|id| ep.twin.view(&id)) {
        Some(v) => json_response(StatusCode::OK, &json!(v)),
        None => error(
            StatusCode::NOT_FOUND,
            "no such device: GET /twin/devices lists them",
        ),
    })
}

/// `GET /twin/devices/{pk}/{dk}/history/{point}[?from=MS&to=MS&limit=N&format=csv]` (also on
/// the console): the point's values, in time order, as `{"point", "values": [{"time",
/// "value"}...]}` or CSV; `None` for another path. A data file is read on a blocking thread.
pub(super) async fn history_get(
    ep: &Endpoint,
    path: &str,
    query: Option<&str>,
) -> Option<Response<Full<Bytes>>> {
    let rest = path.strip_prefix("/twin/devices/")?;
    let mut parts = rest.splitn(4, '/');
    let (pk, dk, word, point) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if word != "history" || pk.is_empty() || dk.is_empty() || point.is_empty() {
        return None;
    }
    let q = match history::Query::parse(query) {
        Ok(q) => q,
        Err(why) => return Some(error(StatusCode::BAD_REQUEST, &why)),
    };
    let id = Identity::new(pk, dk);
    let samples = match ep.twin.history(&id, point, &q) {
        None => {
            return Some(error(
                StatusCode::NOT_FOUND,
                "no such device: GET /twin/devices lists them",
            ));
        }
        Some(HistoryRead::Ready(samples)) => samples,
        Some(HistoryRead::Stored(reader)) => {
            let (who, point, q) = (id.clone(), point.to_string(), q.clone());
            match tokio::task::spawn_blocking(move || reader.history(&who, &point, &q)).await {
                Ok(Ok(samples)) => samples,
                Ok(Err(why)) => {
                    return Some(error(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        &format!("the data file cannot be read: {why}"),
                    ));
                }
                Err(_) => {
                    return Some(error(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "the history read failed",
                    ));
                }
            }
        }
    };
    Some(history_answer(q.format, &id, point, &samples))
}

/// The history's answer: JSON, or CSV as a download named after the device and the point.
fn history_answer(
    format: history::Format,
    id: &Identity,
    point: &str,
    samples: &[history::Sample],
) -> Response<Full<Bytes>> {
    match format {
        history::Format::Json => {
            let mut r = Response::new(Full::new(Bytes::from(history::json(point, samples))));
            r.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static("application/json"),
            );
            r
        }
        history::Format::Csv => {
            let mut r = Response::new(Full::new(Bytes::from(history::csv(samples))));
            let name: String = format!("{}-{}-{point}.csv", id.product_key, id.device_key)
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || "._-".contains(c) {
                        c
                    } else {
                        '_'
                    }
                })
                .collect();
            let h = r.headers_mut();
            h.insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static("text/csv; charset=utf-8"),
            );
            if let Ok(v) = hyper::header::HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
                h.insert(hyper::header::CONTENT_DISPOSITION, v);
            }
            r
        }
    }
}

pub(super) fn identity_in_path(rest: &str) -> Option<Identity> {
    let (pk, dk) = rest.split_once('/')?;
    (!pk.is_empty() && !dk.is_empty() && !dk.contains('/')).then(|| Identity::new(pk, dk))
}

/// `POST /auth/{pk}/{dk}` with `{"signMethod","lifetime","sign"}`: a session for the lifetime.
fn auth(ep: &Endpoint, protocol: Protocol, rest: &str, body: &[u8]) -> Response<Full<Bytes>> {
    let Some(id) = identity_in_path(rest) else {
        return error(StatusCode::NOT_FOUND, "use /auth/{productKey}/{deviceKey}");
    };
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        return json_response(
            StatusCode::OK,
            &json!({"code": enos::BAD_FORMAT, "message": "the auth body is not JSON"}),
        );
    };
    let method = v
        .get("signMethod")
        .and_then(Value::as_str)
        .unwrap_or("sha256")
        .to_string();
    let lifetime = v
        .get("lifetime")
        .and_then(Value::as_u64)
        .unwrap_or(DEFAULT_LIFETIME_MS)
        .clamp(1, MAX_LIFETIME_MS);
    let sign = v.get("sign").and_then(Value::as_str).unwrap_or_default();
    let refused = |code: i64, why: String| {
        ep.events.emit(
            Event::new(EventKind::LoginRefused, protocol)
                .device(&id)
                .code(code)
                .message(why.clone()),
        );
        json_response(StatusCode::OK, &json!({"code": code, "message": why}))
    };
    if !enos::is_sha256(&method) {
        return refused(enos::BAD_FORMAT, format!("sign method `{method}` is not sha256"));
    }
    let vars = BTreeMap::from([
        ("dk", id.device_key.clone()),
        ("pk", id.product_key.clone()),
        ("lifetime", lifetime.to_string()),
        ("sign_method", method),
    ]);
    if let Err(r) = ep.signed_login("http", &id, &vars, sign) {
        return refused(r.code, r.reason);
    }
    let Some(session) = random_hex(16) else {
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "no session can be issued: the system's random source failed",
        );
    };
    let until = Instant::now() + Duration::from_millis(lifetime);
    ep.http_sessions.grant(session.clone(), &id, until);
    ep.twin.session_opened(&id, protocol, until);
    ep.events.emit(
        Event::new(EventKind::Login, protocol)
            .device(&id)
            .code(enos::SUCCESS),
    );
    json_response(
        StatusCode::OK,
        &json!({"code": enos::SUCCESS, "message": "", "data": {"sessionId": session}}),
    )
}

/// The device a session belongs to, when it may use `topic`; else the EnOS answer (1009).
fn authorised(
    ep: &Endpoint,
    protocol: Protocol,
    topic: &str,
    session: Option<&str>,
) -> Result<Identity, Value> {
    let denied = |why: &str| {
        ep.events.emit(
            Event::new(EventKind::Denied, protocol)
                .topic(topic)
                .code(enos::NO_PERMISSION)
                .message(why),
        );
        json!({"code": enos::NO_PERMISSION, "message": why})
    };
    let Some(id) = session.and_then(|s| ep.http_sessions.holder(&s.to_string())) else {
        return Err(denied(
            "no session: POST /auth/{pk}/{dk} first and pass ?sessionId=",
        ));
    };
    if !enos::owns(topic, &id.product_key, &id.device_key) {
        return Err(denied("the topic is not the session's device's own"));
    }
    Ok(id)
}

fn topic_request(
    ep: &Endpoint,
    protocol: Protocol,
    topic: &str,
    session: Option<&str>,
    body: &[u8],
) -> Response<Full<Bytes>> {
    if let Err(v) = authorised(ep, protocol, topic, session) {
        return json_response(StatusCode::OK, &v);
    }
    answered(ep.answer(protocol, topic, body))
}

/// The HTTP response to an answer: 200 with the reply, 403 with an EnOS error body for a
/// feature not offered over HTTP.
fn answered(answer: Answer) -> Response<Full<Bytes>> {
    match answer {
        Answer::Reply(reply) => json_response(
            StatusCode::OK,
            &serde_json::to_value(&reply).unwrap_or(Value::Null),
        ),
        Answer::NotOffered(reply) => json_response(
            StatusCode::FORBIDDEN,
            &serde_json::to_value(&reply).unwrap_or(Value::Null),
        ),
        Answer::Raw(bytes) => {
            let mut r = Response::new(Full::new(Bytes::from(bytes)));
            r.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static("application/octet-stream"),
            );
            r
        }
        Answer::NotEnos => error(StatusCode::NOT_FOUND, "not an EnOS upstream topic"),
    }
}

/// `POST /multipart/...`: an `enos-message` part (the request, file values `local://NAME`) and
/// one `enos-file` part per file, each checked against its `Content-MD5` when it has one.
async fn multipart(
    ep: &Endpoint,
    protocol: Protocol,
    topic: &str,
    session: Option<&str>,
    content_type: Option<&str>,
    body: Bytes,
) -> Response<Full<Bytes>> {
    if let Err(v) = authorised(ep, protocol, topic, session) {
        return json_response(StatusCode::OK, &v);
    }
    match read_multipart(content_type, body).await {
        Ok(form) => answered(ep.answer_noted(protocol, topic, &form.message, Some(&form.summary()))),
        Err(FormRefused::Malformed(why)) => error(StatusCode::BAD_REQUEST, &why),
        Err(refused @ FormRefused::BadMd5(_)) => {
            let why = refused.to_string();
            ep.events.emit(
                Event::new(EventKind::Request, protocol)
                    .topic(topic)
                    .code(enos::BAD_FORMAT)
                    .message(why.clone()),
            );
            json_response(StatusCode::OK, &json!({"code": enos::BAD_FORMAT, "message": why}))
        }
        Err(refused) => json_response(
            StatusCode::OK,
            &json!({"code": enos::BAD_FORMAT, "message": refused.to_string()}),
        ),
    }
}

/// A multipart body read and checked: the request, and the files that came with it.
pub(super) struct Form {
    message: Bytes,
    files: Vec<String>,
    bytes: usize,
}

impl Form {
    /// What came with the request, for its event.
    pub(super) fn summary(&self) -> String {
        format!("{} file(s), {} bytes", self.files.len(), self.bytes)
    }
}

/// Why a multipart body is refused.
#[derive(Debug, thiserror::Error)]
pub(super) enum FormRefused {
    /// Not a multipart body serve can read (HTTP 400).
    #[error("{0}")]
    Malformed(String),
    /// A file whose bytes do not match its `Content-MD5` (EnOS code 1220, a `request` event).
    #[error("the Content-MD5 of file `{0}` does not match its bytes")]
    BadMd5(String),
    /// No `enos-message` part (EnOS code 1220).
    #[error("no enos-message part")]
    NoMessage,
    /// A `local://NAME` value that names no file sent (EnOS code 1220).
    #[error("measure point value local://{0} names no enos-file part")]
    MissingFile(String),
}

/// Read a multipart body: its parts, each file checked against its `Content-MD5`, and every
/// `local://NAME` value of the message naming a file sent along.
pub(super) async fn read_multipart(content_type: Option<&str>, body: Bytes) -> Result<Form, FormRefused> {
    let Some(boundary) = content_type.and_then(|c| multer::parse_boundary(c).ok()) else {
        return Err(FormRefused::Malformed(
            "the body must be multipart/form-data with a boundary".into(),
        ));
    };
    let stream = futures_util::stream::once(async move { Ok::<Bytes, std::convert::Infallible>(body) });
    let constraints = multer::Constraints::new()
        .allowed_fields(vec!["enos-message", "enos-file"])
        .size_limit(multer::SizeLimit::new().whole_stream(MAX_PACKET as u64));
    let mut form = multer::Multipart::with_constraints(stream, boundary, constraints);
    let mut message = None;
    let mut files: Vec<String> = Vec::new();
    let mut bytes = 0usize;
    loop {
        let field = match form.next_field().await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => return Err(FormRefused::Malformed(format!("bad multipart body: {e}"))),
        };
        let name = field.name().unwrap_or_default().to_string();
        let file_name = field.file_name().map(str::to_string).unwrap_or_default();
        let md5 = field
            .headers()
            .get("content-md5")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let Ok(data) = field.bytes().await else {
            return Err(FormRefused::Malformed("a multipart part ended early".into()));
        };
        if name == "enos-message" {
            message = Some(data);
            continue;
        }
        if let Some(sent) = md5
            && !md5_matches(&data, &sent)
        {
            return Err(FormRefused::BadMd5(file_name));
        }
        bytes = bytes.saturating_add(data.len());
        files.push(file_name);
    }
    let message = message.ok_or(FormRefused::NoMessage)?;
    if let Some(missing) = local_files(&message).into_iter().find(|w| !files.contains(w)) {
        return Err(FormRefused::MissingFile(missing));
    }
    Ok(Form {
        message,
        files,
        bytes,
    })
}

/// The `NAME`s of the message's `local://NAME` measure point values.
fn local_files(message: &[u8]) -> Vec<String> {
    serde_json::from_slice::<Value>(message)
        .ok()
        .and_then(|v| v.pointer("/params/measurepoints").cloned())
        .and_then(|m| m.as_object().cloned())
        .map(|m| {
            m.values()
                .filter_map(|v| v.as_str()?.strip_prefix("local://").map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// `Content-MD5` as RFC 1864 has it (base64 of the digest), or as hex.
fn md5_matches(data: &[u8], sent: &str) -> bool {
    use base64::Engine;
    use md5::Digest;
    let digest = md5::Md5::digest(data);
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    let b64 = base64::engine::general_purpose::STANDARD.encode(digest);
    sent.trim().eq_ignore_ascii_case(&hex) || sent.trim() == b64
}

/// `POST /twin/commands/{pk}/{dk}[?timeout=SECONDS]` with `{"method", "params"}` (raw bytes:
/// `"payload"` or `"payload_base64"`): the command goes to the device over the MQTT connection
/// that reaches it, and the answer is its reply (504 when none comes in time, 404 when the
/// device is not connected, 400 for a method EnOS does not send, with the list).
pub(super) async fn send_command(
    ep: &Endpoint,
    rest: &str,
    body: &[u8],
    timeout: Option<f64>,
) -> Response<Full<Bytes>> {
    let Some(id) = identity_in_path(rest) else {
        return error(
            StatusCode::NOT_FOUND,
            "use /twin/commands/{productKey}/{deviceKey}",
        );
    };
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        return error(
            StatusCode::BAD_REQUEST,
            "the body is not JSON: {\"method\": ..., \"params\": {...}}",
        );
    };
    let limit = timeout
        .filter(|t| t.is_finite() && *t > 0.0)
        .and_then(|t| Duration::try_from_secs_f64(t).ok())
        .unwrap_or(COMMAND_TIMEOUT)
        .min(MAX_COMMAND_TIMEOUT);
    match ep.send_command(&id, &v, limit).await {
        Ok(reply) => json_response(StatusCode::OK, &reply),
        Err(failed) => error(command_status(&failed), &failed.to_string()),
    }
}

/// The HTTP status of a command that got no reply.
fn command_status(failed: &CommandFailed) -> StatusCode {
    match failed {
        CommandFailed::Invalid(_) => StatusCode::BAD_REQUEST,
        CommandFailed::NotReached(_) => StatusCode::NOT_FOUND,
        CommandFailed::Gone => StatusCode::GONE,
        CommandFailed::TimedOut => StatusCode::GATEWAY_TIMEOUT,
    }
}
