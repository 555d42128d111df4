//! CoAP over DTLS-PSK (`--coaps`), with webrtc-dtls in server mode: the listener, each
//! session's handshake (the PSK identity `pk,dk,securemode,lifetime` says who the device is,
//! the key comes from its secret, or its product's for securemode 3) and its datagrams, each
//! answered by [`super::coap::datagram`] as plain CoAP's are. A session is bounded: its
//! handshake within 10 s, 5 minutes idle, [`super::MAX_CONNECTIONS`] sessions at once.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use coap_lite::Packet;
use tokio::sync::watch;
use webrtc_dtls::cipher_suite::CipherSuiteId;
use webrtc_dtls::config::{Config as DtlsConfig, ExtendedMasterSecretType};
use webrtc_util::conn::{Conn, Listener};

use super::coap::{Answered, DtlsSession, datagram};
use super::commands::Mailbox;
use super::{BindError, Endpoint, Event, EventKind, Protocol};
use crate::enos;

/// A DTLS handshake that takes longer is given up.
const HANDSHAKE_WAIT: Duration = Duration::from_secs(10);
/// A DTLS session idle this long is closed.
const DTLS_IDLE: Duration = Duration::from_secs(300);

/// The UDP listener under DTLS on `addr`: it hands out one connection per peer, and
/// [`serve_dtls`] runs each handshake in a task of its own (webrtc-dtls's own listener runs
/// the handshake inside `accept`, so one slow client would hold up the rest).
pub async fn dtls_listener(addr: SocketAddr) -> Result<Arc<dyn Listener + Send + Sync>, BindError> {
    let listener = webrtc_util::conn::conn_udp_listener::ListenConfig::default()
        .listen(addr)
        .await
        .map_err(|e| BindError {
            what: "coaps",
            addr,
            message: e.to_string(),
        })?;
    Ok(Arc::new(listener))
}

fn dtls_config(ep: &Arc<Endpoint>) -> DtlsConfig {
    let ep = ep.clone();
    DtlsConfig {
        // The identity is `pk,dk,securemode,lifetime`; the key comes from the secret.
        psk: Some(Arc::new(move |identity: &[u8]| {
            ep.psk_for(identity)
                .map(|(_, key)| key.to_vec())
                .ok_or_else(|| webrtc_dtls::Error::Other("unknown PSK identity".into()))
        })),
        psk_identity_hint: Some(b"enos-connect serve".to_vec()),
        cipher_suites: vec![
            CipherSuiteId::Tls_Psk_With_Aes_128_Ccm_8,
            CipherSuiteId::Tls_Psk_With_Aes_128_Gcm_Sha256,
        ],
        extended_master_secret: ExtendedMasterSecretType::Request,
        ..Default::default()
    }
}

pub async fn serve_dtls(
    listener: Arc<dyn Listener + Send + Sync>,
    ep: Arc<Endpoint>,
    shutdown: watch::Receiver<bool>,
) {
    let config = dtls_config(&ep);
    let l = listener.clone();
    let stop = shutdown.clone();
    let accept = move || {
        let l = l.clone();
        async move { l.accept().await.map_err(|e| std::io::Error::other(e.to_string())) }
    };
    let refusing = ep.clone();
    let refuse = move |conn: Arc<dyn Conn + Send + Sync>, peer| {
        refusing.events.emit(
            Event::new(EventKind::ConnectionRefused, Protocol::Coaps)
                .peer(peer)
                .message(format!(
                    "{} DTLS sessions are open, the most serve holds: this one is closed before its handshake",
                    super::MAX_CONNECTIONS
                )),
        );
        tokio::spawn(async move {
            let _ = conn.close().await;
        });
    };
    super::accept_each(
        accept,
        shutdown,
        super::slots(super::MAX_CONNECTIONS),
        move |conn, peer, slot| {
            let (ep, config, shutdown) = (ep.clone(), config.clone(), stop.clone());
            async move {
                dtls_session(conn, peer, &ep, config, shutdown).await;
                drop(slot);
            }
        },
        refuse,
    )
    .await;
    let _ = listener.close().await;
}

async fn dtls_session(
    conn: Arc<dyn Conn + Send + Sync>,
    peer: SocketAddr,
    ep: &Arc<Endpoint>,
    config: DtlsConfig,
    shutdown: watch::Receiver<bool>,
) {
    let Some((dtls, session)) = dtls_login(conn, peer, ep, config).await else {
        return;
    };
    let id = session.id.clone();
    // Commands for the device wait here until its next request (option 2100).
    let mailbox = Arc::new(Mailbox::default());
    ep.mailboxes.connect(&id, mailbox.clone());
    let mut buf = vec![0u8; 65536];
    let mut answered = Answered::default();
    loop {
        tokio::select! {
            () = super::stopped(shutdown.clone()) => break,
            got = tokio::time::timeout(DTLS_IDLE, dtls.read(&mut buf, None)) => {
                let Ok(Ok(n)) = got else { break };
                let Some(bytes) = buf.get(..n) else { continue };
                let key = Packet::from_bytes(bytes).ok().map(|p| (peer, p.header.message_id));
                if let Some(again) = key.and_then(|k| answered.get(&k)) {
                    let _ = dtls.write(again, None).await;
                    continue;
                }
                if let Some(answer) = datagram(ep, peer, bytes, Some(&session)) {
                    ep.committed().await;
                    let _ = dtls.write(&answer, None).await;
                    if let Some(k) = key {
                        answered.put(k, answer);
                    }
                }
            }
        }
    }
    let _ = dtls.close().await;
    ep.mailboxes.disconnect(&id, &mailbox);
    ep.coap_offered.forget(&id);
    ep.twin.disconnected(&id);
    ep.events.emit(
        Event::new(EventKind::Disconnect, Protocol::Coaps)
            .device(&id)
            .peer(peer),
    );
}

/// The DTLS handshake, within its wait, and who its PSK identity says the device is; the
/// device is online in the twin from then on. `None` when the session ends there.
async fn dtls_login(
    conn: Arc<dyn Conn + Send + Sync>,
    peer: SocketAddr,
    ep: &Endpoint,
    config: DtlsConfig,
) -> Option<(webrtc_dtls::conn::DTLSConn, DtlsSession)> {
    let handshake = webrtc_dtls::conn::DTLSConn::new(conn.clone(), config, false, None);
    let dtls = match tokio::time::timeout(HANDSHAKE_WAIT, handshake).await {
        Ok(Ok(d)) => d,
        failed => {
            let _ = conn.close().await;
            // DTLS-PSK only: a client offering certificate suites alone fails here too.
            let why = match failed {
                Ok(Err(e)) => format!(
                    "the DTLS handshake failed (unknown identity, wrong key, or no PSK cipher suite offered): {e}"
                ),
                _ => "the DTLS handshake failed: no handshake in time".to_string(),
            };
            ep.events.emit(
                Event::new(EventKind::LoginRefused, Protocol::Coaps)
                    .peer(peer)
                    .message(why),
            );
            return None;
        }
    };
    let identity = dtls.connection_state().await.identity_hint;
    let Some((id, _)) = ep.psk_for(&identity) else {
        let _ = dtls.close().await;
        return None;
    };
    // `psk_for` gave a key, so the identity's third field is the mode it checked: 2 or 3.
    let activating = identity.split(|b| *b == b',').nth(2) == Some(b"3".as_slice());
    let mut login = Event::new(EventKind::Login, Protocol::Coaps)
        .device(&id)
        .peer(peer)
        .code(enos::SUCCESS);
    if activating {
        login = login.message("securemode 3: activating");
    }
    ep.events.emit(login);
    ep.twin.connected(&id, Protocol::Coaps, None);
    Some((dtls, DtlsSession { id, activating }))
}
