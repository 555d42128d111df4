//! The unit tests of `mqtt_held.rs`: the size of a held connection's future, the end of a
//! connection, and the seam a harness plugs a policy into.

use super::*;
use crate::serve::limits::Admission;
use crate::serve::policy::Policy;
use tokio::io::{AsyncReadExt, DuplexStream};

fn endpoint() -> Endpoint {
    let caps = crate::capabilities::embedded().expect("caps");
    let registry = crate::registry::Registry::parse(&crate::source_text::SourceFile::new(
        "r.toml",
        "[[products]]\nkey = \"p\"\n[[devices]]\nproduct = \"p\"\nkey = \"d\"\nsecret = \"s\"\n",
    ))
    .expect("registry");
    Endpoint::in_memory(caps, registry, Duration::ZERO).0
}

/// A login that succeeded at once.
fn logged_in<I: Send + 'static>(ep: &Endpoint, io: I) -> Login<I> {
    let Admission::Admitted(w) = ep.limits.admit() else {
        panic!("admitted")
    };
    let l = LoggedIn {
        wire: Wire {
            io,
            buf: BytesMut::new(),
            out: BytesMut::new(),
        },
        client_id: "c".into(),
        clean_session: true,
        keep_alive: 60,
        id: Identity::new("p", "d"),
        secret: None,
        slot: w.log_in().expect("a slot"),
    };
    Box::pin(async move { Some(l) })
}

/// What one held connection's task costs in futures: the login's future is boxed apart
/// and freed once done, so the held loop is what stays. It was 1456 bytes before the
/// connection's parts moved apart, 1336 before the socket, the mailbox and one timer were
/// polled in place of a `select!` over four futures; it must not grow.
#[test]
fn a_held_connection_s_future_stays_small() {
    let ep = Arc::new(endpoint());
    let (io, _peer) = tokio::io::duplex(64);
    let peer: SocketAddr = "127.0.0.1:1".parse().expect("addr");
    let held_future = held(logged_in(&ep, io), peer, Protocol::Mqtt, &ep);
    let size = std::mem::size_of_val(&held_future);
    println!("held future: {size} bytes");
    assert!(size <= 800, "the held connection's future is {size} bytes");
}

#[test]
fn only_a_takeover_gives_the_session_away_and_only_a_leaving_client_needs_no_shutdown() {
    let all = [
        Ended::Disconnect,
        Ended::ClientClosed,
        Ended::Idle,
        Ended::Broken(Broken::TooLarge),
        Ended::Failed,
        Ended::TakenOver,
        Ended::Stopping,
        Ended::HungUp,
    ];
    let kept: Vec<_> = all.iter().filter(|e| !e.keeps_session()).collect();
    assert_eq!(kept, [&Ended::TakenOver]);
    let left: Vec<_> = all.iter().filter(|e| e.client_left()).collect();
    assert_eq!(left, [&Ended::Disconnect, &Ended::ClientClosed]);
    // The words of the disconnect event are documented (docs/serve-reference.md).
    assert_eq!(
        Ended::TakenOver.to_string(),
        "taken over: a new connection logged in with the same client id (MQTT-3.1.4-2)"
    );
    assert_eq!(Ended::Disconnect.to_string(), "DISCONNECT");
}

/// Loses the first PUBLISH with packet id 7 that is not a resend.
struct LoseFirst;

impl Policy for LoseFirst {
    fn publish(&self, p: &Inbound<'_>) -> Fate {
        if p.pkid == 7 && !p.dup {
            Fate::Lose
        } else {
            Fate::Answer
        }
    }
}

async fn next_packet(io: &mut DuplexStream, buf: &mut BytesMut) -> Packet {
    loop {
        if let Ok(p) = Packet::read(buf, 1 << 20) {
            return p;
        }
        let read = tokio::time::timeout(Duration::from_secs(5), io.read_buf(buf)).await;
        assert!(matches!(read, Ok(Ok(n)) if n > 0), "the connection ended");
    }
}

async fn send(io: &mut DuplexStream, p: Packet) {
    let mut out = BytesMut::new();
    p.write(&mut out, 1 << 20).expect("encodes");
    io.write_all(&out).await.expect("written");
}

/// A logged-in connection of device `p/d` served in a task, past its CONNACK: the task, the
/// device's end, and what was read after the CONNACK.
async fn connected(ep: &Arc<Endpoint>) -> (tokio::task::JoinHandle<()>, DuplexStream, BytesMut) {
    let (io, mut device) = tokio::io::duplex(4096);
    let peer: SocketAddr = "127.0.0.1:1".parse().expect("addr");
    let task = tokio::spawn({
        let ep = ep.clone();
        async move { held(logged_in(&ep, io), peer, Protocol::Mqtt, &ep).await }
    });
    let mut buf = BytesMut::new();
    assert!(matches!(
        next_packet(&mut device, &mut buf).await,
        Packet::ConnAck(_)
    ));
    (task, device, buf)
}

/// The seam a harness uses: a policy that loses a PUBLISH (no PUBACK until the resend), and
/// a connection it drops.
#[tokio::test]
async fn a_policy_withholds_a_puback_and_a_harness_drops_the_connection() {
    let ep = Arc::new(endpoint().with_policy(LoseFirst));
    let (task, mut device, mut buf) = connected(&ep).await;
    let post = br#"{"id":"1","version":"1.0","method":"thing.measurepoint.post","params":{"measurepoints":{"t":1}}}"#;
    let mut publish = Publish::new(
        "/sys/p/d/thing/measurepoint/post",
        QoS::AtLeastOnce,
        post.to_vec(),
    );
    publish.pkid = 7;
    send(&mut device, Packet::Publish(publish.clone())).await;
    send(&mut device, Packet::PingReq).await;
    // The PUBACK would come before the PINGRESP: it does not.
    let first = next_packet(&mut device, &mut buf).await;
    assert!(matches!(first, Packet::PingResp), "{first:?}");
    publish.dup = true;
    send(&mut device, Packet::Publish(publish)).await;
    let ack = next_packet(&mut device, &mut buf).await;
    assert!(matches!(ack, Packet::PubAck(ref a) if a.pkid == 7), "{ack:?}");
    assert!(
        matches!(next_packet(&mut device, &mut buf).await, Packet::Publish(ref r) if r.topic.ends_with("_reply"))
    );
    assert!(ep.mailboxes.hang_up(&Identity::new("p", "d")));
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("the connection ends")
        .expect("no panic");
    let mut rest = Vec::new();
    let _ = device.read_to_end(&mut rest).await;
    assert!(rest.is_empty(), "closed with nothing more sent");
}

/// Keeps what the policy is shown of a logged-in connection.
#[derive(Default)]
struct Watching(std::sync::Mutex<(Vec<crate::serve::policy::Received>, Vec<Request>)>);

/// A request's topic, code and payload.
type Request = (String, i64, Vec<u8>);

impl Policy for Arc<Watching> {
    fn received(&self, _device: &Identity, packet: crate::serve::policy::Received) {
        if let Ok(mut w) = self.0.lock() {
            w.0.push(packet);
        }
    }

    fn answered(&self, a: &crate::serve::policy::Answered<'_>) {
        if let Ok(mut w) = self.0.lock() {
            w.1.push((a.topic.to_string(), a.code, a.payload.to_vec()));
        }
    }
}

/// The observations a harness reads (every packet's kind, a request's payload and code) come
/// as the packets do.
#[tokio::test]
async fn a_policy_is_shown_every_packet_and_each_answered_request() {
    use crate::serve::policy::Received;
    let watching = Arc::new(Watching::default());
    let ep = Arc::new(endpoint().with_policy(watching.clone()));
    let (task, mut device, mut buf) = connected(&ep).await;
    let post = br#"{"id":"1","version":"1.0","method":"thing.measurepoint.post","params":{"measurepoints":{"t":1},"time":5}}"#;
    let mut publish = Publish::new(
        "/sys/p/d/thing/measurepoint/post",
        QoS::AtLeastOnce,
        post.to_vec(),
    );
    publish.pkid = 3;
    send(&mut device, Packet::PingReq).await;
    send(&mut device, Packet::Publish(publish)).await;
    assert!(matches!(
        next_packet(&mut device, &mut buf).await,
        Packet::PingResp
    ));
    assert!(matches!(
        next_packet(&mut device, &mut buf).await,
        Packet::PubAck(_)
    ));
    drop(device);
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("the connection ends")
        .expect("no panic");
    let (received, answered) = std::mem::take(&mut *watching.0.lock().expect("lock"));
    assert_eq!(received, [Received::PingReq, Received::Publish]);
    assert_eq!(
        answered,
        [("/sys/p/d/thing/measurepoint/post".to_string(), 200, post.to_vec())]
    );
}
