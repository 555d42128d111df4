//! MQTT 3.1.1 probe. It drives rumqttc's packet codec over its own TCP (and TLS) connection:
//! rumqttc's event loop resolves, connects, negotiates TLS and logs in inside one `poll` and
//! reconnects on the next, so it can neither time those stages apart nor promise a single try.

use std::time::Instant;

use bytes::BytesMut;
use rumqttc::mqttbytes::v4::{Connect, Packet, Publish, Subscribe};

use crate::secret::Secret;
use rumqttc::mqttbytes::{Error as CodecError, QoS};
use rumqttc::{ConnectReturnCode, SubscribeReasonCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{ErrorKind, Failure, Io, Login, ProbeOptions, Recorder, Target, time_left};
use crate::capabilities::Capabilities;

/// Largest packet accepted from the broker: a peer that declares more is not an MQTT broker
/// answering a probe.
const MAX_PACKET: usize = 1 << 20;

/// Plain-word meaning of each MQTT 3.1.1 CONNACK refusal, and whether it is about the login.
pub(crate) fn refusal(code: ConnectReturnCode) -> (ErrorKind, &'static str) {
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
    pkid: u16,
}

impl Conn {
    fn new(io: Box<dyn Io>) -> Self {
        Conn {
            io,
            buf: BytesMut::with_capacity(4096),
            out: BytesMut::with_capacity(512),
            // Packet ids 1 and 2 belong to --publish and --roundtrip.
            pkid: 10,
        }
    }

    /// Whether what the peer sent first is a TLS record (an alert, 0x15, or a handshake, 0x16,
    /// of version 3.x): a TLS port answering a plain connection.
    fn got_tls(&self) -> bool {
        matches!(self.buf.get(..2), Some([0x15 | 0x16, 0x03]))
    }

    async fn send(&mut self, packet: Packet) -> Result<(), Failure> {
        self.send_all([packet]).await
    }

    /// Several packets in one write (one segment, one system call).
    async fn send_all<const N: usize>(&mut self, packets: [Packet; N]) -> Result<(), Failure> {
        self.out.clear();
        for packet in packets {
            packet
                .write(&mut self.out, MAX_PACKET)
                .map_err(|e| Failure::new(ErrorKind::Protocol, format!("cannot encode {packet:?}: {e}")))?;
        }
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

/// Put `login` into `connect`: whether it set the client id (an EnOS login does).
fn set_login(caps: &Capabilities, login: &Login, connect: &mut Connect) -> Result<bool, Failure> {
    match login {
        Login::None => {}
        Login::Plain { username, password } => {
            let pw = password
                .as_ref()
                .map(|p| p.expose_for_login().to_string())
                .unwrap_or_default();
            connect.set_login(username.clone(), pw);
        }
        Login::Enos { .. } => {
            if let Some(fields) = login.enos_fields(caps, "mqtt") {
                let mut fields = fields?;
                let mut field = |name: &str| {
                    let at = fields.iter().position(|(n, _)| n == name);
                    at.map(|i| fields.swap_remove(i).1).unwrap_or_default()
                };
                connect.client_id = field("client_id");
                let username = field("username");
                connect.set_login(username, field("password"));
                return Ok(true);
            }
        }
    }
    Ok(false)
}

/// CONNECT with `login`, and CONNACK read: the `handshake` (and `relogin`) stage's work.
async fn log_in(
    conn: &mut Conn,
    caps: &Capabilities,
    opts: &ProbeOptions,
    login: &Login,
    rec: &mut Recorder,
    deadline: Instant,
) -> Result<(), Failure> {
    let mut connect = Connect::new(String::new());
    // Keep-alive only has to outlast the probe itself.
    connect.keep_alive = u16::try_from(time_left(deadline)?.as_secs() + 5).unwrap_or(u16::MAX);
    connect.clean_session = true;
    if !set_login(caps, login, &mut connect)? {
        connect.client_id = opts
            .client_id
            .clone()
            .unwrap_or_else(|| format!("enos-connect-{:08x}", crate::random::random_u64() as u32));
    }
    conn.send(Packet::Connect(connect)).await?;
    match conn.next("CONNACK").await? {
        Packet::ConnAck(ack) if ack.code == ConnectReturnCode::Success => {
            rec.detail("connack", 0);
            rec.note("CONNACK accepted");
            Ok(())
        }
        Packet::ConnAck(ack) => {
            rec.detail("connack", ack.code as u8);
            let (kind, words) = refusal(ack.code);
            Err(Failure::new(kind, words))
        }
        other => Err(Failure::new(
            ErrorKind::Protocol,
            format!("expected CONNACK, got {other:?}"),
        )),
    }
}

/// A SUBACK's verdict on the one topic subscribed to: a refusal is an `auth` failure.
fn granted(ack: &rumqttc::mqttbytes::v4::SubAck, topic: &str) -> Result<(), Failure> {
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
    Ok(())
}

impl Conn {
    fn pkid(&mut self) -> u16 {
        self.pkid = self.pkid.wrapping_add(1).max(1);
        self.pkid
    }

    /// SUBSCRIBE to one topic and wait for its SUBACK; a refusal is an `auth` failure.
    async fn subscribe(&mut self, topic: &str, qos: QoS) -> Result<(), Failure> {
        let pkid = self.pkid();
        self.send(Packet::Subscribe(Subscribe {
            pkid,
            filters: vec![rumqttc::SubscribeFilter::new(topic.to_string(), qos)],
        }))
        .await?;
        loop {
            if let Packet::SubAck(ack) = self.next("SUBACK").await?
                && ack.pkid == pkid
            {
                return granted(&ack, topic);
            }
        }
    }

    /// Subscribe to `topic`'s reply topic and publish `payload` on `topic` at QoS 1: the reply
    /// topic and the SUBSCRIBE's packet id, for the SUBACK. SUBSCRIBE and the message leave
    /// together: a broker handles a connection's packets in order, so the subscription holds
    /// before the message is read, and the probe does not wait a round trip for the SUBACK.
    pub(super) async fn publish_for_reply(
        &mut self,
        topic: &str,
        payload: Vec<u8>,
    ) -> Result<(String, u16), Failure> {
        let reply_topic = crate::enos::reply_topic(topic);
        let sub_pkid = self.pkid();
        let subscribe = Subscribe {
            pkid: sub_pkid,
            filters: vec![rumqttc::SubscribeFilter::new(
                reply_topic.clone(),
                QoS::AtLeastOnce,
            )],
        };
        let mut publish = Publish::new(topic.to_string(), QoS::AtLeastOnce, payload);
        publish.pkid = self.pkid();
        self.send_all([Packet::Subscribe(subscribe), Packet::Publish(publish)])
            .await?;
        Ok((reply_topic, sub_pkid))
    }

    /// Publish an EnOS request at QoS 1 on `topic` and wait for the reply with its id on
    /// `topic_reply` (subscribed to first). Replies to other requests are ignored.
    async fn request(
        &mut self,
        topic: &str,
        request: &crate::enos::Request,
        rec: &mut Recorder,
    ) -> Result<(), Failure> {
        let (id, method) = (request.id.as_str(), request.method.as_str());
        self.request_bytes(topic, id, method, request.to_bytes(), rec)
            .await
    }

    /// [`Conn::request`] of a request already serialized as `payload`.
    async fn request_bytes(
        &mut self,
        topic: &str,
        id: &str,
        method: &str,
        payload: Vec<u8>,
        rec: &mut Recorder,
    ) -> Result<(), Failure> {
        let (reply_topic, sub_pkid) = self.publish_for_reply(topic, payload).await?;
        rec.note(format_args!("{method} {id} sent on {topic}"));
        loop {
            match self.next("EnOS's reply").await? {
                Packet::SubAck(ack) if ack.pkid == sub_pkid => granted(&ack, &reply_topic)?,
                Packet::Publish(p) => {
                    if p.qos == QoS::AtLeastOnce {
                        self.send(Packet::PubAck(rumqttc::PubAck::new(p.pkid))).await?;
                    }
                    if p.topic == reply_topic && rec.enos_reply(&p.payload, Some(id))?.is_some() {
                        return Ok(());
                    }
                }
                Packet::PubAck(_) => rec.note("PUBACK received"),
                _ => {}
            }
        }
    }
}

/// Dynamic activation: wait for the device secret EnOS pushes (unsubscribed) on
/// `/ext/session/{pk}/{dk}/thing/activate/info`, acknowledge it, and store it in `file`.
async fn activate(
    conn: &mut Conn,
    pk: &str,
    dk: &str,
    file: &std::path::Path,
    force: bool,
    rec: &mut Recorder,
) -> Result<Secret, Failure> {
    let topic = crate::enos::activate_info(pk, dk);
    loop {
        let Packet::Publish(p) = conn.next("the activation push").await? else {
            continue;
        };
        if p.qos == QoS::AtLeastOnce {
            conn.send(Packet::PubAck(rumqttc::PubAck::new(p.pkid))).await?;
        }
        if p.topic != topic {
            continue;
        }
        let v: serde_json::Value = serde_json::from_slice(&p.payload)
            .map_err(|_| Failure::new(ErrorKind::Protocol, "the activation push is not JSON"))?;
        let secret = v
            .pointer("/params/deviceSecret")
            .and_then(|s| s.as_str())
            .filter(|s| !s.is_empty())
            .map(|s| Secret::new(s.to_string()))
            .ok_or_else(|| {
                Failure::new(
                    ErrorKind::Protocol,
                    "the activation push has no params.deviceSecret",
                )
            })?;
        let io_failure = |e: std::io::Error| {
            Failure::new(
                ErrorKind::Io,
                format!("cannot write the device secret to {}: {e}", file.display()),
            )
        };
        // The file first: acknowledging a secret that cannot be stored would lose it.
        let out = super::secret_file(file, force).map_err(io_failure)?;
        let id = crate::enos::reply_id(&v).unwrap_or_default();
        let ack = crate::enos::Reply::new(id, crate::enos::SUCCESS, serde_json::Value::Null).with_message("");
        let mut reply = Publish::new(crate::enos::reply_topic(&topic), QoS::AtLeastOnce, ack.to_bytes());
        reply.pkid = conn.pkid();
        conn.send(Packet::Publish(reply)).await?;
        loop {
            if let Packet::PubAck(_) = conn.next("the acknowledgement of the activation reply").await? {
                break;
            }
        }
        super::write_secret(out, &secret).map_err(io_failure)?;
        rec.detail(
            "activated",
            format!("device secret written to {}", file.display()),
        );
        return Ok(secret);
    }
}

/// `combine.login` for a sub-device on the gateway's session topic.
async fn subdevice_login(
    conn: &mut Conn,
    caps: &Capabilities,
    gateway: (&str, &str),
    sub: &super::SubDevice,
    rec: &mut Recorder,
) -> Result<(), Failure> {
    let req = crate::credentials::CredentialRequest {
        protocol: "subdevice".into(),
        product_key: sub.product_key.clone(),
        device_key: sub.device_key.clone(),
        mode: "static".into(),
        client_id: None,
        timestamp: crate::credentials::now_ms(),
        lifetime: None,
    };
    let creds = crate::credentials::compute(caps, &req, &sub.secret)
        .map_err(|e| Failure::new(ErrorKind::Auth, e.to_string()))?;
    let mut params = serde_json::Map::new();
    for (k, v) in &creds.fields {
        params.insert(k.clone(), serde_json::Value::String(v.clone()));
    }
    params.insert("cleanSession".into(), serde_json::Value::String("true".into()));
    let request = crate::enos::Request::new(
        crate::enos::new_id(),
        crate::enos::COMBINE_LOGIN,
        serde_json::Value::Object(params),
    );
    conn.request(&crate::enos::combine_login(gateway.0, gateway.1), &request, rec)
        .await
}

pub(crate) async fn probe(
    caps: &Capabilities,
    target: &Target,
    opts: &ProbeOptions,
    rec: &mut Recorder,
    deadline: Instant,
) -> Result<(), Failure> {
    let io = super::connect_stream(rec, target, opts, deadline, &[]).await?;
    let mut conn = Conn::new(io);
    rec.begin("handshake");
    log_in(&mut conn, caps, opts, &opts.login, rec, deadline)
        .await
        .map_err(|f| match target.secure_url(caps) {
            Some(url) if conn.got_tls() => Failure::new(
                ErrorKind::Protocol,
                format!("the peer answered with TLS, not MQTT: this port looks like TLS; use {url}"),
            ),
            _ => f,
        })?;
    rec.end();
    let keys = opts.login.enos_keys();
    if let (Some(file), Some((pk, dk))) = (&opts.activate_to, keys) {
        rec.begin("activate");
        let secret = activate(&mut conn, pk, dk, file, opts.force, rec).await?;
        let _ = conn.send(Packet::Disconnect).await;
        let _ = conn.io.shutdown().await;
        rec.end();
        // Prove the new secret: a second login, with securemode 2.
        rec.begin("relogin");
        let io = super::reconnect(rec, target, opts).await?;
        conn = Conn::new(io);
        let login = opts.login.with_device_secret(secret);
        log_in(&mut conn, caps, opts, &login, rec, deadline).await?;
        rec.end();
    }
    let mut poster = keys;
    if let (Some(sub), Some(gw)) = (&opts.subdevice, keys) {
        rec.begin("subdevice_login");
        subdevice_login(&mut conn, caps, gw, sub, rec).await?;
        rec.end();
        poster = Some((sub.product_key.as_str(), sub.device_key.as_str()));
    }
    if let (Some(points), Some((pk, dk))) = (&opts.measurepoints, poster)
        && opts.needs.needs.is_empty()
    {
        rec.begin("reply");
        let post = super::measurepoint_request(points);
        let topic = crate::enos::measurepoint_post(pk, dk);
        conn.request_bytes(&topic, &post.id, post.method, post.payload, rec)
            .await?;
        rec.end();
    }
    if let Some(device) = poster
        && !opts.needs.needs.is_empty()
    {
        super::needs::run(caps, target, &mut conn, opts, device, rec, deadline).await;
    }
    publish(&mut conn, opts, rec).await?;
    // A clean goodbye; the result is already known, so a failure here changes nothing.
    let _ = conn.send(Packet::Disconnect).await;
    let _ = conn.io.shutdown().await;
    Ok(())
}

/// `--roundtrip TOPIC` (subscribe, publish, until the message comes back) or `--publish TOPIC`
/// (until its PUBACK): the probe's own message, timed as `roundtrip`.
async fn publish(conn: &mut Conn, opts: &ProbeOptions, rec: &mut Recorder) -> Result<(), Failure> {
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
        conn.subscribe(topic, qos).await?;
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
    Ok(())
}

#[path = "mqtt_needs.rs"]
mod needs_transport;
pub(super) use needs_transport::raw_reply;
