//! MQTT's bytes on one connection: packets read and written with rumqttc's codec ([`Wire`]),
//! and the protocol level of a CONNECT read before the codec ([`connect_level`]), so a CONNECT
//! for another level gets CONNACK 0x01 (MQTT-3.1.2-2) instead of a codec error. A held
//! connection holds no buffer between packets: what it reads and writes is allocated when a
//! packet comes and freed once it is handled.

use std::time::Duration;

use bytes::BytesMut;
use rumqttc::mqttbytes::v4::{Packet, Publish};
use rumqttc::mqttbytes::{Error as CodecError, QoS};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::MAX_PACKET;

/// What a read reserves when the buffer is full: a measure point post fits in one read. A
/// connection holds no buffer at all between packets.
const READ_CHUNK: usize = 256;
/// How long a write may wait for a client that does not read.
const WRITE_WAIT: Duration = Duration::from_secs(10);

/// The packets of one connection, read and written with the codec.
pub struct Wire<I> {
    pub io: I,
    pub buf: BytesMut,
    pub out: BytesMut,
}

/// What the next read found.
pub enum Read {
    Packet(Packet),
    Closed,
    /// Not MQTT, or larger than the bound: the connection ends.
    Broken(Broken),
}

/// Why bytes from a client cannot be a packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Broken {
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
    pub fn new(io: I) -> Self {
        Wire {
            io,
            buf: BytesMut::new(),
            out: BytesMut::new(),
        }
    }

    /// Write one packet, after any queued ones; a client that stops reading for
    /// [`WRITE_WAIT`] is given up.
    pub async fn send(&mut self, packet: Packet) -> bool {
        self.queue(packet) && self.write_out().await
    }

    /// Add a packet to what the next write sends: a PUBACK and the reply that follows it go
    /// out in one segment instead of two system calls.
    pub fn queue(&mut self, packet: Packet) -> bool {
        packet.write(&mut self.out, MAX_PACKET).is_ok()
    }

    /// Write what is queued, if anything; the buffer is freed once written (a held
    /// connection holds none between packets).
    pub async fn write_out(&mut self) -> bool {
        if self.out.is_empty() {
            return true;
        }
        let write = async { self.io.write_all(&self.out).await.is_ok() && self.io.flush().await.is_ok() };
        let ok = tokio::time::timeout(WRITE_WAIT, write).await.unwrap_or(false);
        self.out = BytesMut::new();
        ok
    }

    /// Make room for a read: nothing is allocated until a packet starts coming, then what
    /// the packet still needs (read from its header), so one read usually takes it whole.
    fn reserve(&mut self, missing: usize) {
        if self.buf.is_empty() && self.buf.capacity() > 4 * READ_CHUNK {
            self.buf = BytesMut::new();
        }
        if self.buf.capacity() == self.buf.len() {
            self.buf.reserve(missing.clamp(READ_CHUNK, MAX_PACKET + 5));
        }
    }

    /// Queue a QoS 0 PUBLISH; it leaves with the next write, after the record has its event.
    pub fn publish(&mut self, topic: &str, payload: Vec<u8>) -> bool {
        self.queue(Packet::Publish(Publish::new(topic, QoS::AtMostOnce, payload)))
    }

    /// Whether a whole packet is already read, so the loop can answer it before writing.
    pub fn has_packet(&self) -> bool {
        rumqttc::mqttbytes::check(self.buf.iter(), MAX_PACKET).is_ok()
    }

    /// Read until the buffer holds a whole packet (or bytes that cannot be one); `None` when
    /// the client closes first.
    pub async fn whole_packet(&mut self) -> Option<()> {
        loop {
            match rumqttc::mqttbytes::check(self.buf.iter(), MAX_PACKET) {
                Err(CodecError::InsufficientBytes(n)) if self.buf.len() <= MAX_PACKET + 5 => self.reserve(n),
                _ => return Some(()),
            }
            match self.io.read_buf(&mut self.buf).await {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    }

    /// The next packet; cancel-safe (bytes read so far stay in the buffer).
    pub async fn next(&mut self) -> Read {
        loop {
            match Packet::read(&mut self.buf, MAX_PACKET) {
                Ok(p) => return Read::Packet(p),
                Err(CodecError::InsufficientBytes(n)) => self.reserve(n),
                Err(e) => return Read::Broken(Broken::NotMqtt(e.to_string())),
            }
            if self.buf.len() > MAX_PACKET + 5 {
                return Read::Broken(Broken::TooLarge);
            }
            match self.io.read_buf(&mut self.buf).await {
                Ok(0) | Err(_) => return Read::Closed,
                Ok(_) => {}
            }
        }
    }
}

/// The protocol name and level of a CONNECT at the start of `buf`, read without the codec
/// (which refuses levels other than 4 and 5 before anyone can answer them).
pub fn connect_level(buf: &[u8]) -> Option<(String, u8)> {
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
