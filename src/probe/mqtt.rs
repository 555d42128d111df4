//! MQTT 3.1.1 probe. It drives rumqttc's packet codec over its own TCP (and TLS) connection:
//! rumqttc's event loop resolves, connects, negotiates TLS and logs in inside one `poll` and
//! reconnects on the next, so it can neither time those stages apart nor promise a single try.

use std::time::Instant;

use bytes::BytesMut;
use rumqttc::mqttbytes::v4::{Connect, Packet, Publish, Subscribe};
use rumqttc::mqttbytes::{Error as CodecError, QoS};
use rumqttc::{ConnectReturnCode, SubscribeReasonCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{ErrorKind, Failure, Io, Login, ProbeOptions, Recorder, Target, left};
use crate::capabilities::Capabilities;

/// Largest packet accepted from the broker: a peer that declares more is not an MQTT broker
/// answering a probe.
const MAX_PACKET: usize = 1 << 20;

/// Plain-word meaning of each MQTT 3.1.1 CONNACK refusal, and whether it is about the login.
pub fn refusal(code: ConnectReturnCode) -> (ErrorKind, &'static str) {
    match code {
        ConnectReturnCode::Success => (ErrorKind::Protocol, "accepted"),
        ConnectReturnCode::RefusedProtocolVersion => (
            ErrorKind::Protocol,
            "the broker refused the connection: it does not speak MQTT 3.1.1 (return code 1)",
        ),
        ConnectReturnCode::BadClientId => (
            ErrorKind::Auth,
            "the broker refused the client id (return code 2): check --client-id or the EnOS keys",
        ),
        ConnectReturnCode::ServiceUnavailable => (
            ErrorKind::Protocol,
            "the broker is unavailable (return code 3): try again later",
        ),
        ConnectReturnCode::BadUserNamePassword => (
            ErrorKind::Auth,
            "bad user name or password (return code 4): check the keys and the secret",
        ),
        ConnectReturnCode::NotAuthorized => (
            ErrorKind::Auth,
            "not authorised (return code 5): the broker rejected the login; check the keys, the secret and the secure mode",
        ),
    }
}

struct Conn {
    io: Box<dyn Io>,
    buf: BytesMut,
    out: BytesMut,
}

impl Conn {
    async fn send(&mut self, packet: Packet) -> Result<(), Failure> {
        self.out.clear();
        packet
            .write(&mut self.out, MAX_PACKET)
            .map_err(|e| Failure::new(ErrorKind::Protocol, format!("cannot encode {packet:?}: {e}")))?;
        self.io.write_all(&self.out).await.map_err(|e| Failure::io(&e))?;
        self.io.flush().await.map_err(|e| Failure::io(&e))
    }

    async fn next(&mut self, waiting_for: &str) -> Result<Packet, Failure> {
        loop {
            // The broker's first packet must be a CONNACK (0x20): say so at the first wrong
            // byte instead of waiting for a "packet" that will never complete.
            if waiting_for == "CONNACK"
                && let Some(&first) = self.buf.first()
                && first != 0x20
            {
                let shown: String = self
                    .buf
                    .iter()
                    .take(16)
                    .map(|b| {
                        if b.is_ascii_graphic() || *b == b' ' {
                            *b as char
                        } else {
                            '.'
                        }
                    })
                    .collect();
                return Err(Failure::new(
                    ErrorKind::Protocol,
                    format!("the peer is not MQTT: expected CONNACK (0x20), got 0x{first:02x} ({shown:?})"),
                ));
            }
            match Packet::read(&mut self.buf, MAX_PACKET) {
                Ok(p) => return Ok(p),
                Err(CodecError::InsufficientBytes(_)) => {}
                Err(e) => {
                    return Err(Failure::new(
                        ErrorKind::Protocol,
                        format!(
                            "the peer sent something that is not MQTT while waiting for {waiting_for}: {e}"
                        ),
                    ));
                }
            }
            let n = self
                .io
                .read_buf(&mut self.buf)
                .await
                .map_err(|e| Failure::io(&e))?;
            if n == 0 {
                let partial = if self.buf.is_empty() {
                    String::new()
                } else {
                    format!(" (after {} bytes of an unfinished packet)", self.buf.len())
                };
                return Err(Failure::new(
                    ErrorKind::Protocol,
                    format!("the peer closed the connection before {waiting_for}{partial}"),
                ));
            }
        }
    }
}

fn login(caps: &Capabilities, opts: &ProbeOptions, connect: &mut Connect) -> Result<(), Failure> {
    match &opts.login {
        Login::None => {}
        Login::Plain { username, password } => {
            let pw = password
                .as_ref()
                .map(|p| p.expose_for_login().to_string())
                .unwrap_or_default();
            connect.set_login(username.clone(), pw);
        }
        Login::Enos { .. } => {
            if let Some(creds) = opts.login.enos_credentials(caps, "mqtt") {
                let creds = creds?;
                let field = |name: &str| creds.field(name).unwrap_or_default().to_string();
                connect.client_id = field("client_id");
                connect.set_login(field("username"), field("password"));
            }
        }
    }
    Ok(())
}

pub async fn probe(
    caps: &Capabilities,
    target: &Target,
    opts: &ProbeOptions,
    rec: &mut Recorder,
    deadline: Instant,
) -> Result<(), Failure> {
    let io = super::connect_stream(rec, target, opts, deadline, &[]).await?;
    let mut conn = Conn {
        io,
        buf: BytesMut::with_capacity(4096),
        out: BytesMut::with_capacity(512),
    };

    rec.begin("handshake");
    let client_id = opts
        .client_id
        .clone()
        .unwrap_or_else(|| format!("enos-connect-{:08x}", super::random_u64() as u32));
    let mut connect = Connect::new(client_id);
    // Keep-alive only has to outlast the probe itself.
    connect.keep_alive = u16::try_from(left(deadline)?.as_secs() + 5).unwrap_or(u16::MAX);
    connect.clean_session = true;
    login(caps, opts, &mut connect)?;
    conn.send(Packet::Connect(connect)).await?;
    match conn.next("CONNACK").await? {
        Packet::ConnAck(ack) if ack.code == ConnectReturnCode::Success => {
            rec.detail("connack", 0);
            rec.note("CONNACK accepted");
        }
        Packet::ConnAck(ack) => {
            rec.detail("connack", ack.code as u8);
            let (kind, words) = refusal(ack.code);
            return Err(Failure::new(kind, words));
        }
        other => {
            return Err(Failure::new(
                ErrorKind::Protocol,
                format!("expected CONNACK, got {other:?}"),
            ));
        }
    }
    rec.end();

    let qos = if opts.qos >= 1 {
        QoS::AtLeastOnce
    } else {
        QoS::AtMostOnce
    };
    let payload = opts
        .payload
        .clone()
        .unwrap_or_else(|| b"enos-connect probe".to_vec());
    if let Some(topic) = &opts.roundtrip {
        rec.begin("roundtrip");
        conn.send(Packet::Subscribe(Subscribe {
            pkid: 1,
            filters: vec![rumqttc::SubscribeFilter::new(topic.clone(), qos)],
        }))
        .await?;
        loop {
            match conn.next("SUBACK").await? {
                Packet::SubAck(ack) if ack.pkid == 1 => {
                    if ack
                        .return_codes
                        .iter()
                        .any(|c| matches!(c, SubscribeReasonCode::Failure))
                    {
                        return Err(Failure::new(
                            ErrorKind::Auth,
                            format!("the broker refused the subscription to `{topic}`"),
                        ));
                    }
                    break;
                }
                _ => continue,
            }
        }
        let mut publish = Publish::new(topic.clone(), qos, payload.clone());
        publish.pkid = if qos == QoS::AtLeastOnce { 2 } else { 0 };
        conn.send(Packet::Publish(publish)).await?;
        let (mut acked, mut echoed) = (qos == QoS::AtMostOnce, false);
        while !(acked && echoed) {
            match conn.next("the message to come back").await? {
                Packet::PubAck(a) if a.pkid == 2 => acked = true,
                Packet::Publish(p) if p.topic == *topic && p.payload[..] == payload[..] => {
                    if p.qos == QoS::AtLeastOnce {
                        conn.send(Packet::PubAck(rumqttc::PubAck::new(p.pkid))).await?;
                    }
                    echoed = true;
                }
                _ => {}
            }
        }
        rec.note("the message came back");
        rec.end();
    } else if let Some(topic) = &opts.publish {
        rec.begin("roundtrip");
        let mut publish = Publish::new(topic.clone(), qos, payload.clone());
        publish.pkid = if qos == QoS::AtLeastOnce { 1 } else { 0 };
        conn.send(Packet::Publish(publish)).await?;
        if qos == QoS::AtLeastOnce {
            loop {
                if let Packet::PubAck(a) = conn.next("PUBACK").await?
                    && a.pkid == 1
                {
                    break;
                }
            }
            rec.note("PUBACK received");
        }
        rec.end();
    }
    // A clean goodbye; the result is already known, so a failure here changes nothing.
    let _ = conn.send(Packet::Disconnect).await;
    let _ = conn.io.shutdown().await;
    Ok(())
}
