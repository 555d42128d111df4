//! The seam where a harness that examines a device (`device-test`) changes what serve does.
//! serve answers as EnOS does; a harness plugs a [`Policy`] into the endpoint
//! ([`super::Endpoint::with_policy`]) and is asked at the points where a device's behaviour is
//! tested. The default, [`Faithful`], changes nothing, and costs a call per PUBLISH.
//!
//! What a harness does rather than decides is on the parts: it drops a device's connection
//! with [`super::commands::Mailboxes::hang_up`], sends a command and awaits the device's reply
//! with [`super::Endpoint::send_command`], and hears every event with
//! [`super::events::EventLog::subscribe`]. The listeners are `serve`'s own
//! ([`super::bind`], [`super::serve`]).

use std::net::SocketAddr;
use std::sync::Arc;

use rumqttc::mqttbytes::QoS;

use super::{Identity, Protocol};

/// A PUBLISH a logged-in device sent, as the policy sees it.
#[derive(Debug, Clone, Copy)]
pub struct Inbound<'a> {
    pub device: &'a Identity,
    pub protocol: Protocol,
    pub topic: &'a str,
    pub qos: QoS,
    pub pkid: u16,
    pub dup: bool,
}

/// What becomes of a PUBLISH.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// Acknowledged and answered, as EnOS does.
    Answer,
    /// As if it never arrived: no PUBACK, not processed (a `withheld` event says so). A device
    /// that follows MQTT resends it with DUP and the same packet id.
    Lose,
}

/// Where a harness changes what serve does. Every method has the faithful default.
pub trait Policy: Send + Sync + 'static {
    /// A PUBLISH from a logged-in MQTT device.
    fn publish(&self, _p: &Inbound<'_>) -> Fate {
        Fate::Answer
    }

    /// The TLS configuration a new `--mqtts` connection is served with (a certificate the
    /// device should not trust, say); `None` keeps the listener's own.
    fn mqtts_config(&self, _peer: SocketAddr) -> Option<Arc<rustls::ServerConfig>> {
        None
    }
}

/// Answers as EnOS does.
pub struct Faithful;

impl Policy for Faithful {}
