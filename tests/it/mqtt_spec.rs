//! serve's MQTT side against the MQTT 3.1.1 specification: takeover on a repeated client id
//! (MQTT-3.1.4-2), CONNACK 0x01 for another protocol level (MQTT-3.1.2-2), a QoS 2 message sent
//! again before PUBREL processed once (MQTT-4.3.3-2), and session present answered truthfully
//! (MQTT-3.2.2). Packet by packet on rumqttc's codec, and through a real generic client, paho
//! (scripts/mqtt_spec_check.py, in the SDK's virtual environment).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Stdio;
use std::time::{Duration, Instant};

use rumqttc::mqttbytes::QoS;
use rumqttc::mqttbytes::v4::{Connect, Packet, PubRel, Publish};

use crate::peers::{REGISTRY, enos, enos_login, send_packet};

struct Client {
    stream: TcpStream,
    buf: bytes::BytesMut,
}

impl Client {
    fn connect(addr: SocketAddr, client_id: &str, clean: bool) -> (Client, Option<(u8, bool)>) {
        let stream = TcpStream::connect(addr).expect("connects");
        let _ = stream.set_read_timeout(Some(Duration::from_secs(3)));
        let mut c = Client {
            stream,
            buf: bytes::BytesMut::new(),
        };
        let (cid, user, pass) = enos_login("pk1", "dk1", "static", "Device-Canary-9a1");
        // The EnOS client id with our own name before the `|` would change the sign: the test
        // reuses the signed one (`cid`) when asked for "same", else its own valid login.
        let id = if client_id == "same" {
            cid
        } else {
            client_id.to_string()
        };
        let mut connect = Connect::new(id);
        connect.clean_session = clean;
        connect.set_login(user, pass);
        send_packet(&mut c.stream, Packet::Connect(connect));
        let ack = match c.next() {
            Some(Packet::ConnAck(a)) => Some((a.code as u8, a.session_present)),
            _ => None,
        };
        (c, ack)
    }

    fn next(&mut self) -> Option<Packet> {
        let mut chunk = [0u8; 8192];
        loop {
            if let Ok(p) = Packet::read(&mut self.buf, 1 << 20) {
                return Some(p);
            }
            match self.stream.read(&mut chunk) {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }
}

#[test]
fn a_second_connection_with_the_same_client_id_takes_over_the_first() {
    let e = enos(REGISTRY);
    let (cid, user, pass) = enos_login("pk1", "dk1", "static", "Device-Canary-9a1");
    let connect = |clean: bool| {
        let stream = TcpStream::connect(e.mqtt).expect("connects");
        let _ = stream.set_read_timeout(Some(Duration::from_secs(3)));
        let mut c = Client {
            stream,
            buf: bytes::BytesMut::new(),
        };
        let mut p = Connect::new(cid.clone());
        p.clean_session = clean;
        p.set_login(user.clone(), pass.clone());
        send_packet(&mut c.stream, Packet::Connect(p));
        let ack = match c.next() {
            Some(Packet::ConnAck(a)) => (a.code as u8, a.session_present),
            other => panic!("CONNACK, not {other:?}"),
        };
        (c, ack)
    };
    let (mut first, ack) = connect(true);
    assert_eq!(ack, (0, false));
    let (mut second, ack) = connect(true);
    assert_eq!(ack.0, 0);
    assert!(first.next().is_none(), "the first connection is closed");
    send_packet(&mut second.stream, Packet::PingReq);
    assert!(
        matches!(second.next(), Some(Packet::PingResp)),
        "the second one lives"
    );
    let events = e.events();
    assert!(
        events.contains("taken over: a new connection logged in with the same client id"),
        "{events}"
    );
    assert!(
        events.contains("took over a connection with the same client id"),
        "{events}"
    );
    // Session present: a clean-session-0 client that subscribed finds its session again.
    drop(second);
    let (mut kept, ack) = connect(false);
    assert_eq!(ack, (0, false), "nothing kept yet");
    send_packet(
        &mut kept.stream,
        Packet::Subscribe(rumqttc::mqttbytes::v4::Subscribe::new(
            "/sys/pk1/dk1/thing/service/#",
            QoS::AtLeastOnce,
        )),
    );
    assert!(matches!(kept.next(), Some(Packet::SubAck(_))));
    send_packet(&mut kept.stream, Packet::Disconnect);
    let _ = kept.stream.write_all(&[]);
    drop(kept);
    let deadline = Instant::now() + Duration::from_secs(5);
    let back = loop {
        let (c, ack) = connect(false);
        if ack.1 || Instant::now() > deadline {
            break (c, ack);
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(
        back.1,
        (0, true),
        "session present after a clean-session-0 return"
    );
    // A clean-session-0 takeover continues the live connection's session.
    let (mut newer, ack) = connect(false);
    assert_eq!(ack, (0, true), "the session of the connection taken over");
    let mut older = back.0;
    assert!(older.next().is_none(), "the older connection is closed");
    send_packet(&mut newer.stream, Packet::PingReq);
    assert!(matches!(newer.next(), Some(Packet::PingResp)));
    drop(newer);
    let (_c, ack) = connect(true);
    assert_eq!(ack, (0, false), "a clean session drops what was kept");
}

#[test]
fn a_connect_at_another_protocol_level_gets_connack_1() {
    let e = enos(REGISTRY);
    // MQTT 3.1 (MQIsdp, level 3) and MQTT 5 (level 5), written by hand.
    for (name, level) in [(&b"MQIsdp"[..], 3u8), (&b"MQTT"[..], 5u8)] {
        let mut body = Vec::new();
        body.extend_from_slice(&(name.len() as u16).to_be_bytes());
        body.extend_from_slice(name);
        body.push(level);
        body.push(0x02); // clean session
        body.extend_from_slice(&60u16.to_be_bytes());
        if level == 5 {
            body.push(0); // no properties
        }
        body.extend_from_slice(&2u16.to_be_bytes());
        body.extend_from_slice(b"c1");
        let mut packet = vec![0x10, body.len() as u8];
        packet.extend_from_slice(&body);
        let mut s = TcpStream::connect(e.mqtt).expect("connects");
        let _ = s.set_read_timeout(Some(Duration::from_secs(3)));
        s.write_all(&packet).expect("writes");
        let mut ack = [0u8; 4];
        s.read_exact(&mut ack).expect("a CONNACK");
        assert_eq!(ack, [0x20, 0x02, 0x00, 0x01], "level {level}");
        let mut more = [0u8; 1];
        assert!(matches!(s.read(&mut more), Ok(0) | Err(_)), "then closed");
    }
    let events = e.events();
    assert!(
        events.contains("level 3: serve speaks MQTT 3.1.1 (level 4) only"),
        "{events}"
    );
    assert!(
        events.contains("level 5: serve speaks MQTT 3.1.1 (level 4) only"),
        "{events}"
    );
    assert!(!events.contains("the first packet is not"), "{events}");
}

#[test]
fn a_qos_2_message_sent_again_before_pubrel_is_processed_once() {
    let e = enos(REGISTRY);
    let (mut c, ack) = Client::connect(e.mqtt, "same", true);
    assert_eq!(ack.map(|a| a.0), Some(0));
    let topic = "/sys/pk1/dk1/thing/measurepoint/post";
    let body = br#"{"id":"q2","method":"thing.measurepoint.post","params":{"measurepoints":{"temp":2}}}"#;
    let mut p = Publish::new(topic, QoS::ExactlyOnce, body.to_vec());
    p.pkid = 7;
    send_packet(&mut c.stream, Packet::Publish(p.clone()));
    let mut replies = 0;
    // Read until a packet `want` says is the one awaited, counting the replies on the way.
    let mut until = |c: &mut Client, want: fn(&Packet) -> bool| loop {
        match c.next() {
            Some(Packet::Publish(r)) => {
                assert_eq!(r.topic, format!("{topic}_reply"));
                replies += 1;
            }
            Some(p) if want(&p) => return,
            other => panic!("unexpected {other:?}"),
        }
    };
    until(&mut c, |p| matches!(p, Packet::PubRec(r) if r.pkid == 7));
    p.dup = true;
    send_packet(&mut c.stream, Packet::Publish(p));
    until(&mut c, |p| matches!(p, Packet::PubRec(r) if r.pkid == 7));
    send_packet(&mut c.stream, Packet::PubRel(PubRel::new(7)));
    until(&mut c, |p| matches!(p, Packet::PubComp(r) if r.pkid == 7));
    send_packet(&mut c.stream, Packet::PingReq);
    until(&mut c, |p| matches!(p, Packet::PingResp));
    assert_eq!(replies, 1, "one reply");
    let posts = e
        .events()
        .lines()
        .filter(|l| l.contains(r#""event":"request""#) && l.contains("thing.measurepoint.post"))
        .count();
    assert_eq!(posts, 1, "processed once: {}", e.events());
    assert!(e.events().contains(r#""event":"duplicate""#));
}

/// The same cases through paho-mqtt 1.6, a generic client (in the SDK's environment).
#[test]
fn paho_sees_takeover_and_connack_1_for_mqtt_3_and_5() {
    let Some(python) = crate::common::outside_peer(
        "ENOS_CONNECT_SDK_PYTHON",
        ".ci/run installs paho-mqtt with the official EnOS Python SDK",
    ) else {
        return;
    };
    let e = enos(REGISTRY);
    let (cid, user, pass) = enos_login("pk1", "dk1", "static", "Device-Canary-9a1");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/mqtt_spec_check.py");
    let mut child = std::process::Command::new(python)
        .arg(script)
        .arg(e.mqtt.port().to_string())
        .env("MQTT_CLIENT_ID", cid)
        .env("MQTT_USERNAME", user)
        .env("MQTT_PASSWORD", pass)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python runs");
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Ok(Some(s)) = child.try_wait() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the paho check did not finish in 60 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let (mut out, mut err) = (String::new(), String::new());
    let _ = child.stdout.take().map(|mut s| s.read_to_string(&mut out));
    let _ = child.stderr.take().map(|mut s| s.read_to_string(&mut err));
    assert!(
        status.success() && out.contains("all checks passed"),
        "{out}\n{err}\n{}",
        e.events()
    );
    for line in [
        "ok: takeover",
        "ok: MQTT 3.1 refused with CONNACK 1",
        "ok: MQTT 5 refused",
        "ok: QoS 2 publish answered once",
    ] {
        assert!(out.contains(line), "`{line}` in {out}");
    }
}
