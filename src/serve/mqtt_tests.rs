//! The unit tests of `mqtt.rs`: the policy seam at the CONNECT (what a harness sees of it, and
//! a refusal it asks for), and that the faithful default changes nothing.

use std::sync::Mutex;

use bytes::BytesMut;
use rumqttc::mqttbytes::v4::{Connect, Packet};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;
use crate::serve::policy::{Admit, Connecting, Policy};

fn endpoint(policy: impl Policy) -> (Arc<Endpoint>, Arc<std::sync::Mutex<Vec<String>>>) {
    let caps = crate::capabilities::embedded().expect("caps");
    let registry = crate::registry::Registry::parse(&crate::source_text::SourceFile::new(
        "r.toml",
        "[[products]]\nkey = \"p\"\n[[devices]]\nproduct = \"p\"\nkey = \"d\"\nsecret = \"s\"\n",
    ))
    .expect("registry");
    let (ep, lines) = Endpoint::in_memory(caps, registry, std::time::Duration::ZERO);
    (Arc::new(ep.with_policy(policy)), lines)
}

/// Refuses every CONNECT with CONNACK 3 and keeps what each asked for.
#[derive(Default)]
struct RefuseAll(Mutex<Vec<(String, u16, bool)>>);

impl Policy for Arc<RefuseAll> {
    fn connect(&self, c: &Connecting<'_>) -> Admit {
        if let Ok(mut seen) = self.0.lock() {
            seen.push((c.user_name.to_string(), c.keep_alive, c.clean_session));
        }
        Admit::Refuse(ConnectReturnCode::ServiceUnavailable)
    }
}

/// A CONNECT with the device's signed login, and the CONNACK code that comes back.
async fn connack_for(ep: &Arc<Endpoint>) -> u8 {
    let (io, mut device) = tokio::io::duplex(4096);
    let peer: SocketAddr = "127.0.0.1:1".parse().expect("addr");
    let admission = ep.limits.admit();
    let task = tokio::spawn({
        let ep = ep.clone();
        async move { connection(io, peer, Protocol::Mqtt, ep, admission).await }
    });
    let vars = std::collections::BTreeMap::from([
        ("client_id", "d".to_string()),
        ("dk", "d".to_string()),
        ("pk", "p".to_string()),
        ("timestamp", "1".to_string()),
    ]);
    let sign =
        crate::credentials::expected_sign(&ep.caps, "mqtt", &vars, &Secret::new("s".into())).expect("a sign");
    let mut c = Connect::new("d|securemode=2,signmethod=sha256,timestamp=1|");
    c.keep_alive = 42;
    c.set_login("d&p", sign);
    let mut out = BytesMut::new();
    Packet::Connect(c).write(&mut out, 1 << 20).expect("encodes");
    device.write_all(&out).await.expect("sent");
    let mut buf = BytesMut::new();
    let code = loop {
        if let Ok(Packet::ConnAck(a)) = Packet::read(&mut buf, 1 << 20) {
            break a.code as u8;
        }
        let n = tokio::time::timeout(std::time::Duration::from_secs(5), device.read_buf(&mut buf))
            .await
            .expect("a CONNACK in time")
            .expect("read");
        assert!(n > 0, "closed without a CONNACK");
    };
    drop(device);
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), task).await;
    code
}

#[tokio::test]
async fn a_policy_sees_the_connect_and_may_refuse_it_with_its_connack_code() {
    let policy = Arc::new(RefuseAll::default());
    let (ep, lines) = endpoint(policy.clone());
    assert_eq!(
        connack_for(&ep).await,
        3,
        "refused by the policy, whatever the login"
    );
    let seen = policy.0.lock().expect("lock").clone();
    assert_eq!(seen, [("d&p".to_string(), 42, true)]);
    let lines = lines.lock().expect("lock").join("\n");
    assert!(
        lines.contains(r#""event":"login_refused""#) && lines.contains("refused by serve's policy"),
        "{lines}"
    );
    // The faithful default checks the login: the same CONNECT gets in.
    let (faithful, _) = endpoint(crate::serve::policy::Faithful);
    assert_eq!(connack_for(&faithful).await, 0);
}

/// What a plain TCP connection's task holds while the connection is held: the held loop and
/// what it needs, nothing of the login or of TLS. It was 4,176 bytes (and the held loop boxed
/// beside it, 1,384 more) when the TLS handshake and the connection over TLS were in every
/// task.
#[tokio::test]
async fn a_plain_connection_s_task_is_as_small_as_its_held_loop() {
    let (ep, _) = endpoint(crate::serve::policy::Faithful);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("binds");
    let addr = listener.local_addr().expect("an address");
    let (client, accepted) = tokio::join!(tokio::net::TcpStream::connect(addr), listener.accept());
    let (_client, (tcp, peer)) = (client.expect("connects"), accepted.expect("accepts"));
    let admission = ep.limits.admit();
    let t = task(tcp, peer, Protocol::Mqtt, ep, None, admission);
    let size = std::mem::size_of_val(&t);
    println!("a connection's task future: {size} bytes");
    assert!(size <= 900, "a connection's task future is {size} bytes");
}
