//! The MQTT client table: which live connection holds each client id (a newer one takes it
//! over, MQTT-3.1.4-2), and the subscriptions clean-session-0 clients left behind (CONNACK's
//! session present, MQTT-3.2.2). [`ClientTable`] owns both.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use rumqttc::mqttbytes::QoS;

use super::commands::Mailbox;

/// The most clean-session-0 sessions kept for clients that left; the oldest goes first.
pub(crate) const MAX_KEPT_SESSIONS: usize = 10_000;
/// The most subscriptions kept per session.
pub(crate) const MAX_KEPT_FILTERS: usize = 1000;

/// A clean-session-0 connection's subscriptions, shared with the client id table so that a
/// connection that takes it over gets its session (a clean-session-1 connection keeps none:
/// nothing would ever read them).
pub(crate) type Subscriptions = Arc<Mutex<Vec<(String, QoS)>>>;

/// A live connection's claim on its client id: its mailbox is told when a newer connection
/// takes it over, or when serve stops.
pub(crate) struct Takeover {
    connection: u64,
    mailbox: Arc<Mailbox>,
    subscriptions: Option<Subscriptions>,
}

/// What a new connection's CONNECT found: whether it took a live connection over, and the
/// session it continues (CONNACK's session present), if any.
pub struct Claimed {
    pub took_over: bool,
    pub session: Option<Vec<(String, QoS)>>,
}

/// Client ids to their live connections, and the sessions kept for clients that left.
#[derive(Default)]
pub struct ClientTable {
    live: Mutex<Live>,
    kept: Mutex<KeptSessions>,
}

/// Every logged-in MQTT connection, by client id (the connection holds the same `Arc<str>`).
#[derive(Default)]
struct Live {
    by_client: HashMap<Arc<str>, Takeover>,
    /// serve is stopping: a connection that claims its client id now is told to stop at once.
    stopping: bool,
}

/// The subscriptions of clean-session-0 clients that left, by client id, oldest out first.
#[derive(Default)]
struct KeptSessions {
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

impl ClientTable {
    /// Claim `client_id` for a new connection; an older connection holding it is told to close
    /// (MQTT-3.1.4-2). A clean-session-0 CONNECT (`subscriptions` given) continues the session
    /// of the connection it took over, or the one kept since the client left; a
    /// clean-session-1 CONNECT drops both.
    pub fn claim(
        &self,
        client_id: &Arc<str>,
        connection: u64,
        mailbox: &Arc<Mailbox>,
        subscriptions: Option<Subscriptions>,
    ) -> Claimed {
        let clean = subscriptions.is_none();
        let old = self.live.lock().ok().and_then(|mut live| {
            if live.stopping {
                mailbox.stop();
            }
            live.by_client.insert(
                client_id.clone(),
                Takeover {
                    connection,
                    mailbox: mailbox.clone(),
                    subscriptions,
                },
            )
        });
        if let Some(old) = &old {
            old.mailbox.take_over();
        }
        let kept = self.kept.lock().ok().and_then(|mut k| k.take(client_id));
        let live = old
            .as_ref()
            .and_then(|o| o.subscriptions.as_ref())
            .map(|s| s.lock().map(|s| s.clone()).unwrap_or_default());
        Claimed {
            took_over: old.is_some(),
            session: if clean { None } else { live.or(kept) },
        }
    }

    /// The connection ended: its client id is free, unless a newer connection took it.
    pub fn release(&self, client_id: &str, connection: u64) {
        if let Ok(mut live) = self.live.lock()
            && live
                .by_client
                .get(client_id)
                .is_some_and(|t| t.connection == connection)
        {
            live.by_client.remove(client_id);
        }
    }

    /// serve is stopping: every logged-in connection is told to end, and one that logs in
    /// from now on at once.
    pub fn stop_all(&self) {
        if let Ok(mut live) = self.live.lock() {
            live.stopping = true;
            for t in live.by_client.values() {
                t.mailbox.stop();
            }
        }
    }

    /// Keep a clean-session-0 client's subscriptions for its return.
    pub fn keep(&self, client_id: &str, subscriptions: Vec<(String, QoS)>) {
        if let Ok(mut kept) = self.kept.lock() {
            kept.keep(client_id, subscriptions);
        }
    }
}

/// A connection number, for the client id table.
pub(crate) fn next_connection() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}
