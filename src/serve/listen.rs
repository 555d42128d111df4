//! The listeners: bind each one asked for, serve until shutdown, and accept connections with a
//! bound on how many are served at once. Each protocol's own handling is in [`super::mqtt`],
//! [`super::http`] and [`super::coap`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::watch;

use super::{Endpoint, Options, coap, coap_dtls, console, http_accept, mqtt};

/// The listeners, bound: their addresses are known before anything is served.
pub struct Listeners {
    pub mqtt: Option<tokio::net::TcpListener>,
    pub mqtts: Option<(tokio::net::TcpListener, Arc<rustls::ServerConfig>)>,
    pub http: Option<tokio::net::TcpListener>,
    pub https: Option<(tokio::net::TcpListener, Arc<rustls::ServerConfig>)>,
    pub coap: Option<tokio::net::UdpSocket>,
    pub coaps: Option<Arc<dyn webrtc_util::conn::Listener + Send + Sync>>,
    /// The web console, with who may use it.
    pub console: Option<(tokio::net::TcpListener, Arc<console::Access>)>,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {addr} ({what}): {message}")]
pub struct BindError {
    pub what: &'static str,
    pub addr: SocketAddr,
    pub message: String,
}

/// The listen backlog: connections the kernel completes while serve has not accepted them
/// yet (mio's default is 128; the kernel caps it at `net.core.somaxconn`).
pub(crate) const BACKLOG: u32 = 1024;

/// A TCP listener with a backlog of [`BACKLOG`], not mio's 128: a fleet connecting at once
/// waits in the kernel's queue instead of timing out in SYN retries.
pub(crate) fn listen_tcp(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}

/// Bind every listener asked for.
pub async fn bind(opts: &Options) -> Result<Listeners, BindError> {
    let tcp = |what: &'static str, addr: SocketAddr| async move {
        listen_tcp(addr).map_err(|e| BindError {
            what,
            addr,
            message: e.to_string(),
        })
    };
    let mqtt = match opts.mqtt {
        Some(a) => Some(tcp("mqtt", a).await?),
        None => None,
    };
    let mqtts = match &opts.mqtts {
        Some((a, config)) => Some((tcp("mqtts", *a).await?, config.clone())),
        None => None,
    };
    let http = match opts.http {
        Some(a) => Some(tcp("http", a).await?),
        None => None,
    };
    let https = match &opts.https {
        Some((a, config)) => Some((tcp("https", *a).await?, config.clone())),
        None => None,
    };
    let coap = match opts.coap {
        Some(addr) => Some(tokio::net::UdpSocket::bind(addr).await.map_err(|e| BindError {
            what: "coap",
            addr,
            message: e.to_string(),
        })?),
        None => None,
    };
    let coaps = match opts.coaps {
        Some(addr) => Some(coap_dtls::dtls_listener(addr).await?),
        None => None,
    };
    let console = match &opts.console {
        Some((a, token)) => {
            let l = tcp("console", *a).await?;
            let addr = l.local_addr().unwrap_or(*a);
            let access = console::Access {
                addr,
                token: token.clone(),
            };
            Some((l, Arc::new(access)))
        }
        None => None,
    };
    Ok(Listeners {
        console,
        mqtt,
        mqtts,
        http,
        https,
        coap,
        coaps,
    })
}

impl Listeners {
    /// The first line on stdout: every bound listener's address.
    pub async fn listening(&self) -> Value {
        let mut v = json!({"event": "listening"});
        let addr = |l: &tokio::net::TcpListener| l.local_addr().map(|a| a.to_string()).ok();
        if let Some(l) = &self.mqtt {
            v["mqtt"] = json!(addr(l));
        }
        if let Some((l, _)) = &self.mqtts {
            v["mqtts"] = json!(addr(l));
        }
        if let Some(l) = &self.http {
            v["http"] = json!(addr(l));
        }
        if let Some((l, _)) = &self.https {
            v["https"] = json!(addr(l));
        }
        if let Some(s) = &self.coap {
            v["coap"] = json!(s.local_addr().map(|a| a.to_string()).ok());
        }
        if let Some(l) = &self.coaps {
            v["coaps"] = json!(l.addr().await.map(|a| a.to_string()).ok());
        }
        if let Some((_, a)) = &self.console {
            v["console"] = json!(format!("http://{}/", a.addr));
        }
        v
    }
}

/// Serve until `shutdown` turns true; then stop accepting, close the connections and return.
pub async fn serve(bound: Listeners, endpoint: Arc<Endpoint>, shutdown: watch::Receiver<bool>) {
    let mut tasks = tokio::task::JoinSet::new();
    let flushing = endpoint.clone();
    let stop = shutdown.clone();
    tasks.spawn(async move { flushing.flusher(stop).await });
    if let Some(l) = bound.mqtt {
        tasks.spawn(mqtt::accept(l, None, endpoint.clone(), shutdown.clone()));
    }
    if let Some((l, config)) = bound.mqtts {
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        tasks.spawn(mqtt::accept(
            l,
            Some(acceptor),
            endpoint.clone(),
            shutdown.clone(),
        ));
    }
    if let Some(l) = bound.http {
        tasks.spawn(http_accept::accept(l, None, endpoint.clone(), shutdown.clone()));
    }
    if let Some((l, config)) = bound.https {
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        tasks.spawn(http_accept::accept(
            l,
            Some(acceptor),
            endpoint.clone(),
            shutdown.clone(),
        ));
    }
    if let Some((l, access)) = bound.console {
        tasks.spawn(console::accept(l, access, endpoint.clone(), shutdown.clone()));
    }
    if let Some(s) = bound.coap {
        tasks.spawn(coap::serve_udp(s, endpoint.clone(), shutdown.clone()));
    }
    if let Some(l) = bound.coaps {
        tasks.spawn(coap_dtls::serve_dtls(l, endpoint.clone(), shutdown.clone()));
    }
    while tasks.join_next().await.is_some() {}
    endpoint.events.flush();
}

/// Accept connections until shutdown, each handled in a task of its own, for every listener
/// of serve. `admit` decides, before anything is read, whether a connection gets in: it gives
/// what `handle` keeps for as long as the connection lives (a slot, a place in a limit), or
/// `None`, and then `refuse` says so (an event, a CONNACK 3, a 503) and closes it: never left
/// waiting in silence. At shutdown the listener stops accepting and the connections, which see
/// the shutdown too, get two seconds to close.
pub(crate) async fn accept_each<C, A, F, P, G, H, Fut, R>(
    mut accept: A,
    shutdown: watch::Receiver<bool>,
    mut admit: G,
    handle: H,
    refuse: R,
) where
    A: FnMut() -> F,
    F: std::future::Future<Output = std::io::Result<(C, SocketAddr)>>,
    G: FnMut() -> Option<P>,
    H: Fn(C, SocketAddr, P) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
    R: Fn(C, SocketAddr),
{
    // The connections' tasks, counted without a handle each: a `JoinSet` kept a 56-byte
    // entry and a join waker per held connection (docs/performance.md, *Second pass*).
    let conns = tokio_util::task::TaskTracker::new();
    loop {
        tokio::select! {
            () = stopped(shutdown.clone()) => break,
            accepted = accept() => {
                let (conn, peer) = match accepted {
                    Ok(c) => c,
                    // Out of file descriptors and the like: wait a moment rather than spin.
                    Err(_) => {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                };
                match admit() {
                    Some(admitted) => {
                        // A mark of its own: its replies wait for the changes it made or saw.
                        conns.spawn(super::twin::scoped(handle(conn, peer, admitted)));
                    }
                    None => refuse(conn, peer),
                }
            }
        }
    }
    conns.close();
    // What is still running then is dropped with the runtime, never polled again.
    let _ = tokio::time::timeout(Duration::from_secs(2), conns.wait()).await;
}

/// The admission of a listener that serves at most `max` connections at once (the DTLS
/// sessions, the console): a slot each, given back when the connection ends.
pub(crate) fn slots(max: usize) -> impl FnMut() -> Option<tokio::sync::OwnedSemaphorePermit> {
    let slots = Arc::new(tokio::sync::Semaphore::new(max));
    move || slots.clone().try_acquire_owned().ok()
}

/// Wait until `shutdown` says stop (or its sender is gone).
pub(crate) async fn stopped(mut shutdown: watch::Receiver<bool>) {
    while !*shutdown.borrow() {
        if shutdown.changed().await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn past_the_bound_a_connection_is_refused_not_left_waiting() {
        let (stop, shutdown) = watch::channel(false);
        let peer = SocketAddr::from(([127, 0, 0, 1], 9));
        let mut next = 0u32;
        let accept = move || {
            next += 1;
            let n = next;
            async move {
                if n > 3 {
                    // No more connections: wait for the shutdown.
                    std::future::pending::<()>().await;
                }
                Ok((n, peer))
            }
        };
        let refused = std::sync::Mutex::new(Vec::new());
        let (held_tx, mut held_rx) = tokio::sync::mpsc::unbounded_channel();
        let run = accept_each(
            accept,
            shutdown,
            slots(1),
            move |n, _, slot| {
                let held_tx = held_tx.clone();
                async move {
                    let _ = held_tx.send(n);
                    // Held until the shutdown ends it.
                    std::future::pending::<()>().await;
                    drop(slot);
                }
            },
            |n, _| refused.lock().expect("lock").push(n),
        );
        tokio::select! {
            () = run => {}
            () = async {
                assert_eq!(held_rx.recv().await, Some(1));
                tokio::time::sleep(Duration::from_millis(50)).await;
                let _ = stop.send(true);
                std::future::pending::<()>().await
            } => {}
        }
        assert_eq!(
            *refused.lock().expect("lock"),
            vec![2, 3],
            "the 2nd and 3rd are refused"
        );
    }
}
