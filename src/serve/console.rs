//! The web console (`serve --console ADDR`): a page for people, on a listener of its own, that
//! shows the fleet and each device live (measure points with charts, attributes, tags,
//! topology, events, firmware and OTA, its messages) and sends the commands of
//! `POST /twin/commands` to a device.
//!
//! - The page is four files embedded in the binary (`console/index.html`, `console.css`,
//!   `console.js`, `device.js`): no CDN, no build step. Charts are hand-drawn SVG polylines: a charting
//!   library would be larger than the whole console for what is one line per point.
//! - Live updates: every event `serve` emits is also published on the [`Hub`] (only while the
//!   console is on). Each browser's stream (`GET /console/api/stream`, Server-Sent Events) is a
//!   task that marks the devices the events name and, at most [`TICKS_PER_SECOND`] times a
//!   second, sends the twin view of each marked device once, plus the event lines of that
//!   tick (at most [`LOG_PER_TICK`]; the rest are counted as dropped). A browser that does not
//!   read holds one chunk in its queue; the task then only keeps marking devices (a set bounded
//!   by the twin's devices) and counting dropped lines, so a slow or closed browser costs
//!   nothing that grows. A stream that falls behind the hub's bounded ring is told to resync.
//! - Safety: loopback by default; any other address needs a token (`--console-token`, or one
//!   generated and printed on stderr). Every request's `Host` must be the console's own (no
//!   DNS rebinding); with a token, every request but the page's own files needs it
//!   (`X-Console-Token`, or `?token=` for the event stream), and every state-changing request
//!   an `Origin`, when the browser sends one, equal to the console's.

use std::collections::BTreeSet;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Frame, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc, watch};

use super::events::Published;
use super::{Endpoint, Event, EventKind, Identity, MAX_PACKET, Protocol, http};
use crate::base::Secret;

/// How many times a second a browser's stream sends what changed.
pub const TICKS_PER_SECOND: u64 = 4;
/// The most event lines one stream sends per tick; more are counted as dropped.
pub const LOG_PER_TICK: usize = 100;
/// A comment line this often keeps proxies and browsers from closing an idle stream.
const KEEP_ALIVE: Duration = Duration::from_secs(15);
const NEEDS_TOKEN: &str = "this console needs its token: open the address serve printed on stderr (?token=...), or send X-Console-Token";
/// The chunks a browser's stream holds before it coalesces instead.
const QUEUE: usize = 2;

const INDEX: &str = include_str!("console/index.html");
const CSS: &str = include_str!("console/console.css");
const JS: &str = include_str!("console/console.js");
const DEVICE_JS: &str = include_str!("console/device.js");

/// Who may use the console: its address and the token, when it needs one.
pub struct Access {
    pub addr: SocketAddr,
    pub token: Option<Secret>,
}

impl Access {
    /// Whether a `Host` header names this console: a loopback console answers to
    /// `localhost`, `127.0.0.1` and `[::1]` at its port; any console to its own address.
    fn host_ok(&self, host: Option<&str>) -> bool {
        let Some(host) = host else { return false };
        let port = self.addr.port();
        let (name, p) = match host.rsplit_once(':') {
            Some((n, p)) if !n.ends_with(']') || host.starts_with('[') => (n, p.parse::<u16>().ok()),
            _ => (host, Some(80)),
        };
        if p != Some(port) {
            return false;
        }
        let name = name.trim_start_matches('[').trim_end_matches(']');
        if name.eq_ignore_ascii_case("localhost") || name == "127.0.0.1" || name == "::1" {
            return true;
        }
        // A console on another address: the token guards it, so any name that reaches it.
        !self.addr.ip().is_loopback()
    }

    fn token_ok(&self, sent: Option<&str>) -> bool {
        match &self.token {
            None => true,
            Some(t) => sent.is_some_and(|s| {
                let (a, b) = (s.as_bytes(), t.expose_for_login().as_bytes());
                a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
            }),
        }
    }
}

/// Whether `ip` is loopback, so a console there needs no token.
pub fn needs_token(addr: SocketAddr) -> bool {
    !addr.ip().is_loopback()
}

type Body = BoxBody<Bytes, Infallible>;

fn full(r: Response<Full<Bytes>>) -> Response<Body> {
    r.map(|b| b.boxed())
}

fn asset(content_type: &'static str, text: &'static str) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from_static(text.as_bytes())).boxed());
    let h = r.headers_mut();
    h.insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(content_type),
    );
    h.insert(
        hyper::header::CACHE_CONTROL,
        hyper::header::HeaderValue::from_static("no-cache"),
    );
    h.insert(
        "content-security-policy",
        hyper::header::HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'",
        ),
    );
    h.insert(
        "x-content-type-options",
        hyper::header::HeaderValue::from_static("nosniff"),
    );
    r
}

pub async fn accept(
    listener: tokio::net::TcpListener,
    access: Arc<Access>,
    ep: Arc<Endpoint>,
    shutdown: watch::Receiver<bool>,
) {
    // The hub keeps the history a page reads when it opens from now on.
    ep.events.hub.open();
    let l = &listener;
    let stop = shutdown.clone();
    let refusing = ep.clone();
    super::accept_each(
        || l.accept(),
        shutdown,
        super::slots(super::MAX_CONNECTIONS),
        move |tcp, _peer, slot| {
            let (ep, access, shutdown) = (ep.clone(), access.clone(), stop.clone());
            async move {
                let sd = shutdown.clone();
                let service = hyper::service::service_fn(move |req| {
                    let (ep, access, sd) = (ep.clone(), access.clone(), sd.clone());
                    async move { Ok::<_, Infallible>(route(&ep, &access, req, sd).await) }
                });
                super::http::serve_connection(tcp, service, shutdown).await;
                drop(slot);
            }
        },
        // The socket closes as it drops; the event says why.
        move |_tcp, peer| {
            refusing.events.emit(
                Event::new(EventKind::ConnectionRefused, Protocol::Console)
                    .peer(peer)
                    .message(format!(
                        "{} console connections are open, the most serve holds: this one is closed",
                        super::MAX_CONNECTIONS
                    )),
            );
        },
    )
    .await;
}

fn header<'r>(req: &'r Request<Incoming>, name: &str) -> Option<&'r str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

async fn route(
    ep: &Arc<Endpoint>,
    access: &Access,
    req: Request<Incoming>,
    shutdown: watch::Receiver<bool>,
) -> Response<Body> {
    let host = header(&req, "host").map(str::to_string);
    if !access.host_ok(host.as_deref()) {
        return full(http::error(
            StatusCode::MISDIRECTED_REQUEST,
            "the Host header does not name this console (open it at the address serve printed)",
        ));
    }
    if req.method() == Method::GET {
        if let Some(r) = history(ep, access, &req).await {
            return r;
        }
        return get(ep, access, &req, shutdown);
    }
    if req.method() != Method::POST {
        return full(http::error(
            StatusCode::METHOD_NOT_ALLOWED,
            "the console takes GET and POST",
        ));
    }
    full(post(ep, access, host.as_deref(), req).await)
}

/// `GET /twin/devices/{pk}/{dk}/history/{point}` (with the token, when there is one): the
/// point's history, read off the async thread when it comes from the data file; `None` for
/// another path.
async fn history(ep: &Arc<Endpoint>, access: &Access, req: &Request<Incoming>) -> Option<Response<Body>> {
    let path = req.uri().path().to_string();
    if !path.contains("/history/") {
        return None;
    }
    let query = req.uri().query().unwrap_or_default().to_string();
    let sent = header(req, "x-console-token")
        .map(str::to_string)
        .or_else(|| param(&query, "token"));
    if !access.token_ok(sent.as_deref()) {
        return Some(full(http::error(StatusCode::FORBIDDEN, NEEDS_TOKEN)));
    }
    http::history_get(ep, &path, Some(&query)).await.map(full)
}

/// The page's files, and (with the token, when there is one) the data: the registry's
/// models, the event log, the live stream, the twin.
fn get(
    ep: &Arc<Endpoint>,
    access: &Access,
    req: &Request<Incoming>,
    shutdown: watch::Receiver<bool>,
) -> Response<Body> {
    let path = req.uri().path();
    let query = req.uri().query().unwrap_or_default();
    match path {
        "/" | "/index.html" => return asset("text/html; charset=utf-8", INDEX),
        "/console.css" => return asset("text/css; charset=utf-8", CSS),
        "/console.js" => return asset("text/javascript; charset=utf-8", JS),
        "/device.js" => return asset("text/javascript; charset=utf-8", DEVICE_JS),
        _ => {}
    }
    // The data needs the token too, when there is one (an EventSource cannot send a
    // header: the stream takes it as `?token=`).
    let sent = header(req, "x-console-token")
        .map(str::to_string)
        .or_else(|| param(query, "token"));
    if !access.token_ok(sent.as_deref()) {
        return full(http::error(StatusCode::FORBIDDEN, NEEDS_TOKEN));
    }
    let device = || param(query, "device").and_then(|d| http::identity_in_path(&d));
    match path {
        "/console/api/meta" => full(http::json_response(StatusCode::OK, &meta(ep, access))),
        "/console/api/log" => {
            let mut r = asset("application/json", "");
            *r.body_mut() = Full::new(Bytes::from(ep.events.hub.recent(device().as_ref()))).boxed();
            r
        }
        "/console/api/stream" => stream(ep, device(), shutdown),
        _ => {
            full(http::twin_get(ep, path).unwrap_or_else(|| {
                http::error(StatusCode::NOT_FOUND, "no such page: open / for the console")
            }))
        }
    }
}

/// A state-changing request: the token, then the `Origin`, then the command it sends.
async fn post(
    ep: &Endpoint,
    access: &Access,
    host: Option<&str>,
    req: Request<Incoming>,
) -> Response<Full<Bytes>> {
    if !access.token_ok(header(&req, "x-console-token")) {
        return http::error(StatusCode::FORBIDDEN, NEEDS_TOKEN);
    }
    if let Some(origin) = header(&req, "origin") {
        let own = host.map(|h| format!("http://{h}"));
        if own.as_deref() != Some(origin) {
            return http::error(
                StatusCode::FORBIDDEN,
                "the request comes from another site's page (Origin): the console sends commands only from its own",
            );
        }
    }
    let path = req.uri().path().to_string();
    let Some(rest) = path.strip_prefix("/twin/commands/") else {
        return http::error(
            StatusCode::NOT_FOUND,
            "commands are POST /twin/commands/{pk}/{dk}",
        );
    };
    let timeout = param(req.uri().query().unwrap_or_default(), "timeout").and_then(|t| t.parse::<f64>().ok());
    let collect = Limited::new(req.into_body(), MAX_PACKET).collect();
    let body = match tokio::time::timeout(Duration::from_secs(10), collect).await {
        Ok(Ok(b)) => b.to_bytes(),
        Ok(Err(_)) => return http::error(StatusCode::PAYLOAD_TOO_LARGE, "the body is too large"),
        Err(_) => {
            return http::error(StatusCode::REQUEST_TIMEOUT, "the body did not arrive in time");
        }
    };
    let r = http::send_command(ep, rest, &body, timeout).await;
    ep.committed().await;
    r
}

fn param(query: &str, key: &str) -> Option<String> {
    query
        .split('&')
        .find_map(|pair| pair.strip_prefix(key)?.strip_prefix('='))
        .map(|v| v.replace("%2F", "/").replace("%2f", "/"))
}

/// What the page needs of the registry: each product's model and firmwares (never a secret).
fn meta(ep: &Endpoint, access: &Access) -> Value {
    let products: serde_json::Map<String, Value> = ep
        .registry
        .products
        .iter()
        .map(|p| {
            let points: Vec<Value> = p
                .measurepoints
                .as_ref()
                .map(|m| {
                    m.entries()
                        .into_iter()
                        .map(|(id, s)| json!({"id": id, "type": s.kind, "unit": s.unit}))
                        .collect()
                })
                .unwrap_or_default();
            let services: Vec<&String> = p.services.iter().flat_map(|s| s.keys()).collect();
            let firmwares: Vec<&str> = ep
                .registry
                .firmwares_of(&p.key)
                .map(|f| f.version.as_str())
                .collect();
            (
                p.key.clone(),
                json!({"measurepoints": points, "services": services, "firmwares": firmwares}),
            )
        })
        .collect();
    let codes: serde_json::Map<String, Value> = (100..2000)
        .filter_map(|c| crate::enos::meaning(c).map(|m| (c.to_string(), json!(m))))
        .collect();
    // Where a command can reach a device: the URL schemes of the protocols that carry a
    // downlink (capabilities.toml, [exchanges.carried_by]), for the page to say so before a
    // command is sent to a device that has no such connection.
    let carriers: Vec<&crate::capabilities::Protocol> = ep
        .caps
        .protocols
        .iter()
        .filter(|p| ep.caps.exchanges.carried_by.downlink.contains(&p.id))
        .collect();
    let schemes: Vec<&str> = carriers
        .iter()
        .flat_map(|p| p.ports.iter().map(|x| x.scheme.as_str()))
        .collect();
    let titles: Vec<&str> = carriers.iter().map(|p| p.title.as_str()).collect();
    // The file's name only: where it lives on the machine is not the page's business.
    let saved_to = ep
        .twin
        .saved_to()
        .and_then(|p| p.file_name())
        .map(|n| n.to_string_lossy().into_owned());
    json!({
        "products": products,
        "codes": codes,
        "downlink": {"schemes": schemes, "over": titles.join(" or ")},
        "token_required": access.token.is_some(),
        "ticks_per_second": TICKS_PER_SECOND,
        "saved_to": saved_to,
        "retain": ep.twin.retention().to_string(),
    })
}

/// `GET /console/api/stream[?device=pk/dk]`: Server-Sent Events. `device` events carry a twin
/// view (coalesced per tick), `log` events a list of event lines, `dropped` how many lines
/// were not sent, `resync` that the page should read the twin again.
fn stream(ep: &Arc<Endpoint>, device: Option<Identity>, shutdown: watch::Receiver<bool>) -> Response<Body> {
    let (tx, rx) = mpsc::channel::<Bytes>(QUEUE);
    let events = ep.events.subscribe();
    let task = Feed {
        device,
        dirty: BTreeSet::new(),
        log: Vec::new(),
        dropped: 0,
        resync: false,
    };
    // The task ends when the browser goes or serve shuts down.
    tokio::spawn(task.run(ep.clone(), events, tx, shutdown));
    let body = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<_, Infallible>(Frame::data(b)), rx))
    });
    let mut r = Response::new(BodyExt::boxed(http_body_util::StreamBody::new(body)));
    let h = r.headers_mut();
    h.insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/event-stream"),
    );
    h.insert(
        hyper::header::CACHE_CONTROL,
        hyper::header::HeaderValue::from_static("no-cache"),
    );
    r
}

/// One browser's stream: what changed since the last tick.
struct Feed {
    device: Option<Identity>,
    dirty: BTreeSet<Identity>,
    log: Vec<Arc<Published>>,
    dropped: u64,
    resync: bool,
}

impl Feed {
    async fn run(
        mut self,
        ep: Arc<Endpoint>,
        mut events: broadcast::Receiver<Arc<Published>>,
        tx: mpsc::Sender<Bytes>,
        shutdown: watch::Receiver<bool>,
    ) {
        let hello = Bytes::from_static(b"retry: 2000\n: enos-connect console\n\n");
        if tx.send(hello).await.is_err() {
            return;
        }
        let mut tick = tokio::time::interval(Duration::from_millis(1000 / TICKS_PER_SECOND));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut since_sent = 0u64;
        let keep_alive_ticks = KEEP_ALIVE.as_secs() * TICKS_PER_SECOND;
        loop {
            tokio::select! {
                () = super::stopped(shutdown.clone()) => return,
                got = events.recv() => match got {
                    Ok(p) => self.note(p),
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        self.dropped = self.dropped.saturating_add(n);
                        self.resync = true;
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                _ = tick.tick() => {
                    if tx.is_closed() {
                        return;
                    }
                    since_sent += 1;
                    let idle = self.dirty.is_empty() && self.log.is_empty() && self.dropped == 0 && !self.resync;
                    if idle && since_sent < keep_alive_ticks {
                        continue;
                    }
                    // A browser that has not read the last chunks: keep coalescing.
                    let Ok(permit) = tx.try_reserve() else { continue };
                    permit.send(self.chunk(&ep));
                    since_sent = 0;
                }
            }
        }
    }

    fn note(&mut self, p: Arc<Published>) {
        if let Some(want) = &self.device
            && !p.names(want)
        {
            return;
        }
        if let Some(id) = p.device() {
            self.dirty.insert(id);
        }
        if self.log.len() < LOG_PER_TICK {
            self.log.push(p);
        } else {
            self.dropped = self.dropped.saturating_add(1);
        }
    }

    /// The SSE text of one tick, and the feed emptied.
    fn chunk(&mut self, ep: &Endpoint) -> Bytes {
        let mut out = String::new();
        if std::mem::take(&mut self.resync) {
            out.push_str("event: resync\ndata: {}\n\n");
        }
        for id in std::mem::take(&mut self.dirty) {
            let v = match ep.twin.view(&id) {
                Some(view) => serde_json::to_string(&view).unwrap_or_default(),
                None => json!({"product_key": id.product_key, "device_key": id.device_key, "gone": true})
                    .to_string(),
            };
            out.push_str("event: device\ndata: ");
            out.push_str(&v);
            out.push_str("\n\n");
        }
        if !self.log.is_empty() {
            out.push_str("event: log\ndata: [");
            for (i, p) in std::mem::take(&mut self.log).iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                p.push_json(&mut out);
            }
            out.push_str("]\n\n");
        }
        let dropped = std::mem::take(&mut self.dropped);
        if dropped > 0 {
            out.push_str(&format!("event: dropped\ndata: {{\"events\":{dropped}}}\n\n"));
        }
        if out.is_empty() {
            out.push_str(": keep-alive\n\n");
        }
        Bytes::from(out)
    }
}
