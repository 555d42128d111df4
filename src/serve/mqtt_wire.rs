//! MQTT's bytes on one connection: packets read and written with rumqttc's codec ([`Wire`]),
//! and the protocol level of a CONNECT read before the codec ([`connect_level`]), so a CONNECT
//! for another level gets CONNACK 0x01 (MQTT-3.1.2-2) instead of a codec error. A held
//! connection holds no buffer between packets: the socket is read into a buffer on the stack
//! that lives only while it is polled, what came is copied into one allocated to its size, and
//! that one is freed once its packets are handled; what it writes likewise.

use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::{Buf, BytesMut};
use rumqttc::mqttbytes::v4::{Packet, Publish};
use rumqttc::mqttbytes::{Error as CodecError, QoS};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::MAX_PACKET;

/// The most bytes one read takes, into a buffer on the stack (a measure point post fits).
const READ_CHUNK: usize = 4096;
/// How long a write may wait for a client that does not read.
pub(crate) const WRITE_WAIT: Duration = Duration::from_secs(10);

/// The packets of one connection, read and written with the codec.
pub(crate) struct Wire<I> {
    pub io: I,
    pub buf: BytesMut,
    pub out: BytesMut,
}

/// What the next read found.
pub(crate) enum Read {
    Packet(Packet),
    Closed,
    /// Not MQTT, or larger than the bound: the connection ends.
    Broken(Broken),
}

/// Why bytes from a client cannot be a packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Broken {
    /// The codec refused them (its reason).
    NotMqtt(String),
    /// A packet larger than [`MAX_PACKET`].
    TooLarge,
}

impl std::fmt::Display for Broken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Broken::NotMqtt(e) => write!(f, "not MQTT 3.1.1: {e}"),
            Broken::TooLarge => write!(f, "a packet larger than {MAX_PACKET} bytes"),
        }
    }
}

impl<I: AsyncRead + AsyncWrite + Unpin> Wire<I> {
    pub(crate) fn new(io: I) -> Self {
        Wire {
            io,
            buf: BytesMut::new(),
            out: BytesMut::new(),
        }
    }

    /// Write one packet, after any queued ones; a client that stops reading for
    /// [`WRITE_WAIT`] is given up.
    pub(crate) async fn send(&mut self, packet: Packet) -> bool {
        self.queue(packet) && self.write_out().await
    }

    /// Add a packet to what the next write sends: a PUBACK and the reply that follows it go
    /// out in one segment instead of two system calls.
    pub(crate) fn queue(&mut self, packet: Packet) -> bool {
        packet.write(&mut self.out, MAX_PACKET).is_ok()
    }

    /// Write what is queued, if anything, within [`WRITE_WAIT`]; the buffer is freed once
    /// written (a held connection holds none between packets).
    pub(crate) async fn write_out(&mut self) -> bool {
        if self.out.is_empty() {
            return true;
        }
        let write = std::future::poll_fn(|cx| self.poll_write_out(cx));
        let ok = tokio::time::timeout(WRITE_WAIT, write).await.unwrap_or(false);
        self.out = BytesMut::new();
        ok
    }

    /// Write and flush what is queued: `false` when the connection failed. The caller bounds
    /// the wait ([`WRITE_WAIT`]); what is not written yet stays queued.
    pub(crate) fn poll_write_out(&mut self, cx: &mut Context<'_>) -> Poll<bool> {
        while !self.out.is_empty() {
            match ready!(Pin::new(&mut self.io).poll_write(cx, &self.out)) {
                Ok(0) | Err(_) => return Poll::Ready(false),
                Ok(n) => self.out.advance(n),
            }
        }
        let flushed = ready!(Pin::new(&mut self.io).poll_flush(cx)).is_ok();
        self.out = BytesMut::new();
        Poll::Ready(flushed)
    }

    /// Queue a QoS 0 PUBLISH; it leaves with the next write, after the record has its event.
    pub(crate) fn publish(&mut self, topic: &str, payload: Vec<u8>) -> bool {
        self.queue(Packet::Publish(Publish::new(topic, QoS::AtMostOnce, payload)))
    }

    /// Whether a whole packet is already read, so the loop can answer it before writing.
    pub(crate) fn has_packet(&self) -> bool {
        rumqttc::mqttbytes::check(self.buf.iter(), MAX_PACKET).is_ok()
    }

    /// Read once from the socket into the buffer: `Ready(false)` when the client closed (or
    /// the connection failed). The bytes go through a buffer on the stack, so a connection
    /// waiting for its next packet holds no buffer at all.
    fn poll_fill(&mut self, cx: &mut Context<'_>, missing: usize) -> Poll<bool> {
        let mut chunk = [0u8; READ_CHUNK];
        let mut read = ReadBuf::new(&mut chunk);
        match ready!(Pin::new(&mut self.io).poll_read(cx, &mut read)) {
            Ok(()) if !read.filled().is_empty() => {
                // A packet that is still coming: room for all of it at once.
                if !self.buf.is_empty() {
                    self.buf.reserve(missing.min(MAX_PACKET + 5));
                }
                self.buf.extend_from_slice(read.filled());
                Poll::Ready(true)
            }
            _ => Poll::Ready(false),
        }
    }

    /// Read until the buffer holds a whole packet (or bytes that cannot be one); `None` when
    /// the client closes first.
    pub(crate) async fn whole_packet(&mut self) -> Option<()> {
        loop {
            let missing = match rumqttc::mqttbytes::check(self.buf.iter(), MAX_PACKET) {
                Err(CodecError::InsufficientBytes(n)) if self.buf.len() <= MAX_PACKET + 5 => n,
                _ => return Some(()),
            };
            if !std::future::poll_fn(|cx| self.poll_fill(cx, missing)).await {
                return None;
            }
        }
    }

    /// The next packet; cancel-safe (bytes read so far stay in the buffer).
    pub(crate) async fn next(&mut self) -> Read {
        std::future::poll_fn(|cx| self.poll_next(cx)).await
    }

    /// [`Wire::next`] for a loop that polls the socket beside other things.
    pub(crate) fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Read> {
        loop {
            let missing = match Packet::read(&mut self.buf, MAX_PACKET) {
                Ok(p) => return Poll::Ready(Read::Packet(p)),
                Err(CodecError::InsufficientBytes(n)) => n,
                Err(e) => return Poll::Ready(Read::Broken(Broken::NotMqtt(e.to_string()))),
            };
            if self.buf.len() > MAX_PACKET + 5 {
                return Poll::Ready(Read::Broken(Broken::TooLarge));
            }
            if !ready!(self.poll_fill(cx, missing)) {
                return Poll::Ready(Read::Closed);
            }
        }
    }
}

/// The protocol name and level of a CONNECT at the start of `buf`, read without the codec
/// (which refuses levels other than 4 and 5 before anyone can answer them).
pub(crate) fn connect_level(buf: &[u8]) -> Option<(String, u8)> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_level_of_a_connect_is_read_and_anything_else_is_not() {
        // MQTT 3.1.1, MQTT 5, MQTT 3.1 (`MQIsdp` level 3), as their clients send them.
        assert_eq!(
            connect_level(b"\x10\x0c\x00\x04MQTT\x04\x02\x00\x3c\x00\x00"),
            Some(("MQTT".into(), 4))
        );
        assert_eq!(
            connect_level(b"\x10\x0d\x00\x04MQTT\x05"),
            Some(("MQTT".into(), 5))
        );
        assert_eq!(
            connect_level(b"\x10\x80\x01\x00\x06MQIsdp\x03"),
            Some(("MQIsdp".into(), 3))
        );
        // Not a CONNECT, cut short, a remaining length of five bytes, a name past the end.
        assert_eq!(connect_level(b"\x30\x02\x00\x04"), None);
        assert_eq!(connect_level(b"\x10\x0c\x00\x04MQ"), None);
        assert_eq!(connect_level(b"\x10\xff\xff\xff\xff\x01\x00\x04MQTT\x04"), None);
        assert_eq!(connect_level(b"\x10\x02\xff\xff"), None);
    }
}
