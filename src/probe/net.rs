//! The network stages every TCP protocol shares: resolve, connect address by address, TLS;
//! a second connection for a relogin; and the time left before the deadline.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::net::TcpStream;

use super::{Failure, ProbeOptions, Recorder, Target, tls};
use crate::measurement::ErrorKind;

/// Resolve the host: every address, in the order the resolver gives them.
pub(crate) async fn resolve(rec: &mut Recorder, target: &Target) -> Result<Vec<SocketAddr>, Failure> {
    rec.begin("resolve");
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((target.host.as_str(), target.port))
        .await
        .map_err(|e| {
            Failure::new(
                ErrorKind::Resolve,
                format!("cannot resolve `{}`: {e}", target.host),
            )
        })?
        .collect();
    if addrs.is_empty() {
        return Err(Failure::new(
            ErrorKind::Resolve,
            format!("`{}` resolves to no address", target.host),
        ));
    }
    rec.note(format_args!("{} -> {:?}", target.host, addrs));
    rec.end();
    Ok(addrs)
}

/// Connect over TCP address by address, as curl does; the first that accepts wins.
pub(crate) async fn connect_tcp(
    rec: &mut Recorder,
    addrs: &[SocketAddr],
    deadline: Instant,
) -> Result<TcpStream, Failure> {
    rec.begin("connect");
    let mut last = Failure::new(ErrorKind::Io, "no address to connect to");
    for (i, addr) in addrs.iter().enumerate() {
        rec.address = Some(*addr);
        let left = deadline.saturating_duration_since(Instant::now());
        // Leave the later addresses a share of the time, so one black-holed address cannot eat it all.
        let share = left / u32::try_from(addrs.len() - i).unwrap_or(1);
        match tokio::time::timeout(share, TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => {
                let _ = stream.set_nodelay(true);
                rec.note(format_args!("connected to {addr}"));
                rec.end();
                return Ok(stream);
            }
            Ok(Err(e)) => {
                rec.note(format_args!("{addr}: {e}"));
                last = Failure::io(&e);
                last.message = format!("{addr}: {}", last.message);
            }
            Err(_) => {
                rec.note(format_args!("{addr}: no answer"));
                last = Failure::new(
                    ErrorKind::Timeout,
                    format!("{addr}: the TCP connection was not accepted in time"),
                );
            }
        }
    }
    Err(last)
}

/// A byte stream to the peer: plain TCP or TLS over it.
pub(crate) trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Io for T {}

/// Resolve, connect over TCP, and run TLS when the scheme asks for it: the stages every
/// TCP protocol shares.
pub(crate) async fn connect_stream(
    rec: &mut Recorder,
    target: &Target,
    opts: &ProbeOptions,
    deadline: Instant,
    alpn: &[&[u8]],
) -> Result<Box<dyn Io>, Failure> {
    let addrs = resolve(rec, target).await?;
    let tcp = connect_tcp(rec, &addrs, deadline).await?;
    if !target.secure {
        return Ok(Box::new(tcp));
    }
    let (config, asked) =
        tls::client_config_asked(&opts.tls, alpn).map_err(|e| Failure::new(ErrorKind::Tls, e))?;
    let stream = tls::handshake(rec, config, &target.host, tcp).await?;
    if let Some(asked) = asked {
        let asked = asked.load(std::sync::atomic::Ordering::Relaxed);
        rec.client_cert_requested = Some(asked);
        rec.detail(
            "client_certificate",
            if asked {
                "requested by the server, sent"
            } else {
                "not requested by the server (one-way TLS)"
            },
        );
    }
    Ok(Box::new(stream))
}

/// A second connection to the address that answered, with TLS where the scheme asks: timed
/// as part of the stage running (dynamic activation's `relogin`), not as stages of its own.
pub(crate) async fn reconnect(
    rec: &mut Recorder,
    target: &Target,
    opts: &ProbeOptions,
) -> Result<Box<dyn Io>, Failure> {
    let addr = rec
        .address
        .ok_or_else(|| Failure::new(ErrorKind::Io, "no address to connect to again"))?;
    let tcp = TcpStream::connect(addr).await.map_err(|e| Failure::io(&e))?;
    let _ = tcp.set_nodelay(true);
    if !target.secure {
        return Ok(Box::new(tcp));
    }
    let config = tls::client_config(&opts.tls, &[]).map_err(|e| Failure::new(ErrorKind::Tls, e))?;
    Ok(Box::new(tls::connect(config, &target.host, tcp).await?))
}

/// Time left before the deadline, as an error when there is none.
pub(crate) fn time_left(deadline: Instant) -> Result<Duration, Failure> {
    let d = deadline.saturating_duration_since(Instant::now());
    if d.is_zero() {
        Err(Failure::new(ErrorKind::Timeout, "the timeout ran out"))
    } else {
        Ok(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn connect_tries_each_address_and_names_the_one_that_answered() {
        let open = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let open_addr = open.local_addr().expect("addr");
        let closed_addr = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("closed");
        let mut rec = Recorder::new(false);
        let deadline = Instant::now() + Duration::from_secs(5);
        let stream = connect_tcp(&mut rec, &[closed_addr, open_addr], deadline).await;
        assert!(stream.is_ok());
        assert_eq!(rec.address, Some(open_addr));
        let mut rec = Recorder::new(false);
        let err = connect_tcp(&mut rec, &[closed_addr], deadline)
            .await
            .expect_err("refused");
        assert_eq!(err.kind, ErrorKind::Refused);
    }
}
