//! The seam where a harness that examines a device (`device-test`) changes what serve does, and
//! observes what serve's events do not carry. serve answers as EnOS does; a harness plugs a
//! [`Policy`] into the endpoint ([`super::Endpoint::with_policy`]) and is asked at the points
//! where a device's behaviour is tested. The default, [`Faithful`], changes nothing, and costs
//! a call per CONNECT, packet and answered request.
//!
//! What a harness does rather than decides is on the parts: it drops a device's connection
//! with [`super::commands::Mailboxes::hang_up`], sends a command and awaits the device's reply
//! with [`super::Endpoint::send_command`], and hears every event with
//! [`super::events::EventLog::subscribe`]. The listeners are `serve`'s own
//! ([`super::bind`], [`super::serve`]).

use std::net::SocketAddr;
use std::sync::Arc;

use rumqttc::mqttbytes::QoS;
use rumqttc::mqttbytes::v4::ConnectReturnCode;

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
    /// Its bytes (a command's reply: its id and code).
    pub payload: &'a [u8],
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

/// A CONNECT serve has read, before its login is checked: what the device asked for.
#[derive(Debug, Clone, Copy)]
pub struct Connecting<'a> {
    pub protocol: Protocol,
    pub peer: SocketAddr,
    pub client_id: &'a str,
    /// `{deviceKey}&{productKey}` for an EnOS login.
    pub user_name: &'a str,
    /// In seconds; 0 asks for none.
    pub keep_alive: u16,
    pub clean_session: bool,
}

/// What becomes of a CONNECT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Its login is checked, as EnOS does.
    Check,
    /// Refused with this CONNACK code whatever its login (a `login_refused` event says the
    /// policy refused it): a harness testing how a device backs off.
    Refuse(ConnectReturnCode),
}

/// A packet other than CONNECT that a logged-in MQTT device sent, by kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Received {
    Publish,
    PingReq,
    Subscribe,
    Unsubscribe,
    /// PUBACK, PUBREC, PUBREL, PUBCOMP.
    Acknowledgement,
    Other,
}

/// A request serve answered, over any protocol: what the device sent and the code it got.
#[derive(Debug, Clone, Copy)]
pub struct Answered<'a> {
    pub protocol: Protocol,
    /// The device the topic names (a sub-device's, when a gateway posts for it).
    pub device: &'a Identity,
    pub topic: &'a str,
    pub method: &'a str,
    pub payload: &'a [u8],
    /// The EnOS code of the reply.
    pub code: i64,
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

    /// A CONNECT as it arrives (its keep-alive, its client id), before the login is checked.
    fn connect(&self, _c: &Connecting<'_>) -> Admit {
        Admit::Check
    }

    /// Every packet a logged-in MQTT device sends, by kind, as it arrives (PINGREQ times).
    fn received(&self, _device: &Identity, _packet: Received) {}

    /// A request answered, whatever the protocol (the `time` a post carries, an OTA step).
    fn answered(&self, _a: &Answered<'_>) {}
}

/// Answers as EnOS does.
pub(crate) struct Faithful;

impl Policy for Faithful {}
