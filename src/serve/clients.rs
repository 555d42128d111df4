//! MQTT client ids and sessions across connections: which live connection holds a client id
//! (a newer one takes it over, MQTT-3.1.4-2), the subscriptions clean-session-0 clients left
//! behind (CONNACK's session present, MQTT-3.2.2), and the protocol level of a CONNECT read
//! before the codec, so another level gets CONNACK 0x01 (MQTT-3.1.2-2).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use rumqttc::mqttbytes::QoS;
use tokio::sync::Notify;

use super::Endpoint;

/// The most clean-session-0 sessions kept for clients that left; the oldest goes first.
pub const MAX_KEPT_SESSIONS: usize = 10_000;
/// The most subscriptions kept per session.
pub(super) const MAX_KEPT_FILTERS: usize = 1000;

/// A connection's subscriptions, shared with the client id table so that a connection that
/// takes over a clean-session-0 client gets its session.
pub type Subscriptions = Arc<Mutex<Vec<(String, QoS)>>>;

/// A live connection's claim on its client id: told when a newer connection takes it over.
pub struct Takeover {
    connection: u64,
    taken: Arc<Notify>,
    clean: bool,
    subscriptions: Subscriptions,
}

/// What a new connection's CONNECT found: whether it took a live connection over, and the
/// session it continues (CONNACK's session present), if any.
pub(super) struct Claimed {
    pub(super) took_over: bool,
    pub(super) session: Option<Vec<(String, QoS)>>,
}

/// The subscriptions of clean-session-0 clients that left, by client id, oldest out first.
#[derive(Default)]
pub struct KeptSessions {
    map: HashMap<String, Vec<(String, QoS)>>,
    order: VecDeque<String>,
}

impl KeptSessions {
    fn keep(&mut self, client_id: &str, subscriptions: Vec<(String, QoS)>) {
        if self.map.insert(client_id.to_string(), subscriptions).is_none() {
            self.order.push_back(client_id.to_string());
        }
        while self.map.len() > MAX_KEPT_SESSIONS {
            let Some(old) = self.order.pop_front() else { break };
            self.map.remove(&old);
        }
    }

    fn take(&mut self, client_id: &str) -> Option<Vec<(String, QoS)>> {
        let kept = self.map.remove(client_id)?;
        self.order.retain(|c| c != client_id);
        Some(kept)
    }
}

impl Endpoint {
    /// Claim `client_id` for a new connection; an older connection holding it is told to close
    /// (MQTT-3.1.4-2). A clean-session-0 CONNECT continues the session of the connection it
    /// took over, or the one kept since the client left; a clean-session-1 CONNECT drops both.
    pub(super) fn claim_client(
        &self,
        client_id: &str,
        connection: u64,
        taken: Arc<Notify>,
        clean: bool,
        subscriptions: Subscriptions,
    ) -> Claimed {
        let old = self.clients.lock().ok().and_then(|mut c| {
            c.insert(
                client_id.to_string(),
                Takeover {
                    connection,
                    taken,
                    clean,
                    subscriptions,
                },
            )
        });
        if let Some(old) = &old {
            old.taken.notify_one();
        }
        let kept = self.sessions_kept.lock().ok().and_then(|mut k| k.take(client_id));
        let live = old
            .as_ref()
            .filter(|o| !o.clean)
            .map(|o| o.subscriptions.lock().map(|s| s.clone()).unwrap_or_default());
        Claimed {
            took_over: old.is_some(),
            session: if clean { None } else { live.or(kept) },
        }
    }

    pub(super) fn release_client(&self, client_id: &str, connection: u64) {
        if let Ok(mut c) = self.clients.lock()
            && c.get(client_id).is_some_and(|t| t.connection == connection)
        {
            c.remove(client_id);
        }
    }

    pub(super) fn keep_session(&self, client_id: &str, subscriptions: Vec<(String, QoS)>) {
        if let Ok(mut kept) = self.sessions_kept.lock() {
            kept.keep(client_id, subscriptions);
        }
    }
}

/// A connection number, for the client id table.
pub(super) fn next_connection() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// The protocol name and level of a CONNECT at the start of `buf`, read without the codec
/// (which refuses levels other than 4 and 5 before anyone can answer them).
pub(super) fn connect_level(buf: &[u8]) -> Option<(String, u8)> {
    if buf.first()? >> 4 != 1 {
        return None;
    }
    // The remaining length: one to four bytes.
    let mut i = 1;
    loop {
        let b = *buf.get(i)?;
        i += 1;
        if b & 0x80 == 0 {
            break;
        }
        if i > 4 {
            return None;
        }
    }
    let len = usize::from(u16::from_be_bytes([*buf.get(i)?, *buf.get(i + 1)?]));
    let start = i + 2;
    let name = buf.get(start..start.checked_add(len)?)?;
    let level = *buf.get(start + len)?;
    Some((String::from_utf8_lossy(name).into_owned(), level))
}
