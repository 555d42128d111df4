//! The HTTP and HTTPS listeners of `serve`: accept under the bound on open connections
//! ([`super::limits::Limit`], `--max-connections`), run TLS for `--https` (one-way, bounded
//! in time), and hand each connection to the shared HTTP server ([`super::http`]). Past the
//! bound a new connection is answered `503 Service Unavailable` with `Retry-After` and a JSON
//! body naming the limit, a `connection_refused` event is written, and it is closed: never left
//! waiting in the accept queue. The connections already open keep working.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;

use hyper::StatusCode;

use super::limits::{Admission, MAX_REFUSING, Slot};
use super::{Endpoint, Event, EventKind, Protocol, http};

/// How long a client may take to finish its TLS handshake (as `--mqtts` waits for CONNECT).
pub(crate) const HANDSHAKE_WAIT: Duration = Duration::from_secs(10);
/// How long the 503 may take to be written to a client that does not read.
const REFUSAL_WRITE: Duration = Duration::from_secs(2);
/// After the 503, how long what the client still sends is read and dropped, so that closing
/// does not reset the connection before the client has read the answer.
const REFUSAL_DRAIN: Duration = Duration::from_secs(1);
/// What `Retry-After` says, in seconds.
pub(crate) const RETRY_AFTER_SECONDS: u32 = 1;
/// The status a connection past the bound gets.
pub(crate) const REFUSAL: StatusCode = StatusCode::SERVICE_UNAVAILABLE;

/// Accept on `listener` until shutdown; `tls` makes it `--https`. At shutdown the connections,
/// which see it too, get two seconds to close.
pub(crate) async fn accept(
    listener: tokio::net::TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    ep: Arc<Endpoint>,
    shutdown: watch::Receiver<bool>,
) {
    let protocol = if tls.is_some() {
        Protocol::Https
    } else {
        Protocol::Http
    };
    // A connection past the bound is admitted too, as a refusal: its 503 is written in a task
    // of its own (`connection` answers it), and only past MAX_REFUSING is it closed at once.
    let admit_ep = ep.clone();
    let admit = move || admit_ep.http_limits.admit().unless_closed();
    let refusing = ep.clone();
    let refuse = move |tcp: tokio::net::TcpStream, peer| {
        drop(tcp);
        refusing.events.emit(refused(protocol, peer).message(format!(
            "closed at once: {} HTTP connections are open (--max-connections) and {MAX_REFUSING} more are being refused",
            refusing.http_limits.max()
        )));
    };
    let stop = shutdown.clone();
    let handle = move |tcp: tokio::net::TcpStream, peer, admission| {
        let (ep, shutdown, tls) = (ep.clone(), stop.clone(), tls.clone());
        async move {
            let _ = tcp.set_nodelay(true);
            match tls {
                Some(acceptor) => match tokio::time::timeout(HANDSHAKE_WAIT, acceptor.accept(tcp)).await {
                    Ok(Ok(stream)) => connection(stream, peer, protocol, admission, &ep, shutdown).await,
                    Ok(Err(e)) => ep.events.emit(
                        Event::new(EventKind::Disconnect, protocol)
                            .peer(peer)
                            .message(format!("the TLS handshake failed: {e}")),
                    ),
                    Err(_) => ep.events.emit(
                        Event::new(EventKind::Disconnect, protocol)
                            .peer(peer)
                            .message("the TLS handshake failed: no handshake in time"),
                    ),
                },
                None => connection(tcp, peer, protocol, admission, &ep, shutdown).await,
            }
        }
    };
    let l = &listener;
    super::accept_each(|| l.accept(), shutdown, admit, handle, refuse).await;
}

/// The event of a connection refused at the bound: code 503, naming the limit.
fn refused(protocol: Protocol, peer: SocketAddr) -> Event {
    Event::new(EventKind::ConnectionRefused, protocol)
        .peer(peer)
        .code(i64::from(REFUSAL.as_u16()))
}

/// One accepted connection (TLS done for `--https`): served while it holds its slot, or
/// answered 503 and closed.
async fn connection<I>(
    io: I,
    peer: SocketAddr,
    protocol: Protocol,
    admission: Admission<Slot>,
    ep: &Arc<Endpoint>,
    shutdown: watch::Receiver<bool>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    match admission {
        Admission::Admitted(slot) => {
            let service_ep = ep.clone();
            let service = hyper::service::service_fn(move |req| {
                let ep = service_ep.clone();
                async move { Ok::<_, std::convert::Infallible>(http::route(&ep, protocol, req).await) }
            });
            http::serve_connection(io, service, shutdown).await;
            drop(slot);
        }
        Admission::Refused(refusing) => {
            let max = ep.http_limits.max();
            ep.events.emit(refused(protocol, peer).message(format!(
                "503: {max} HTTP connections are open (--max-connections); retry after {RETRY_AFTER_SECONDS} s"
            )));
            // The answer leaves after its event is in the record, as every answer does.
            ep.events.wait_written().await;
            refuse(io, max).await;
            drop(refusing);
        }
        Admission::Closed => {}
    }
}

/// The 503 a connection past the bound gets, whole: status line, headers and a JSON body.
/// Written by hand because it is sent without an HTTP server: the connection is refused
/// before hyper is given it.
pub(crate) fn refusal(max: usize) -> Vec<u8> {
    let body = serde_json::json!({
        "code": REFUSAL.as_u16(),
        "message": format!(
            "serve holds at most {max} HTTP connections at once (--max-connections); retry after {RETRY_AFTER_SECONDS} s"
        ),
        "limit": "max_connections",
        "max_connections": max,
    })
    .to_string();
    format!(
        "HTTP/1.1 {} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nRetry-After: {RETRY_AFTER_SECONDS}\r\nConnection: close\r\n\r\n{body}",
        REFUSAL.as_str(),
        REFUSAL.canonical_reason().unwrap_or_default(),
        body.len()
    )
    .into_bytes()
}

/// Write the 503 at once (bounded), close the writing side, and read what the client still
/// sends for a moment (bounded), so it gets the answer rather than a reset.
async fn refuse<I: AsyncRead + AsyncWrite + Unpin>(mut io: I, max: usize) {
    let answer = refusal(max);
    let wrote = tokio::time::timeout(REFUSAL_WRITE, async {
        io.write_all(&answer).await?;
        io.shutdown().await
    })
    .await;
    if !matches!(wrote, Ok(Ok(()))) {
        return;
    }
    let _ = tokio::time::timeout(REFUSAL_DRAIN, async {
        let mut buf = [0u8; 1024];
        let mut left = 64 * 1024usize;
        while left > 0 {
            match io.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_refusal_is_a_whole_http_response_naming_the_limit() {
        let text = String::from_utf8(refusal(7)).expect("utf-8");
        let (head, body) = text.split_once("\r\n\r\n").expect("head and body");
        assert!(head.starts_with("HTTP/1.1 503 Service Unavailable\r\n"), "{head}");
        assert!(head.contains("\r\nRetry-After: 1"), "{head}");
        assert!(
            head.contains(&format!("\r\nContent-Length: {}", body.len())),
            "{head}"
        );
        let v: serde_json::Value = serde_json::from_str(body).expect("JSON");
        assert_eq!(v["code"], 503);
        assert_eq!(v["max_connections"], 7);
        assert!(
            v["message"]
                .as_str()
                .unwrap_or_default()
                .contains("--max-connections")
        );
    }
}
