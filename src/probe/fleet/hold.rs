//! A fleet device's connection after its login (a child of `fleet/mod.rs`): held for
//! `--hold`, a measure point posted every `--every`, each PUBACK and EnOS reply matched to its
//! post in flight and timed, then the answers still due awaited (bounded).

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::time::Instant;

use rumqttc::SubscribeFilter;
use rumqttc::mqttbytes::QoS;
use rumqttc::mqttbytes::v4::{Packet, PubAck, Publish, Subscribe};

use super::{FleetDevice, Got, MAX_IN_FLIGHT, Shared, Tally, Wire};

/// Hold the connection and post every interval until the hold ends, then wait (bounded) for
/// the answers still due. `None` when the device held to the end; else why it ended.
pub(super) async fn hold(s: &Shared, d: &FleetDevice, w: &mut Wire) -> Option<String> {
    let login = Instant::now();
    let end = login.checked_add(s.opts.hold).unwrap_or(login);
    let last = end.checked_add(s.opts.timeout).unwrap_or(end);
    let mut h = Held::new(d, login);
    let posting = !s.opts.measurepoints.is_empty();
    loop {
        let now = Instant::now();
        let draining = now >= end;
        // After the hold: the answers still due, within the timeout. A server that never
        // answered with an EnOS reply (a plain broker) is waited on for PUBACKs only.
        if draining && (h.answered_all() || now >= last) {
            return None;
        }
        // Nothing to post: the device only holds, until the hold ends.
        let wake = if draining {
            last
        } else if posting {
            h.next_post.min(end)
        } else {
            end
        };
        tokio::select! {
            got = w.next() => match got {
                Got::Closed(why) => return Some(why),
                Got::Packet(p) => h.on_packet(s, d, w, p),
            },
            () = tokio::time::sleep_until(wake.into()) => {
                if posting && !draining && Instant::now() >= h.next_post && Instant::now() < end {
                    h.post(s, w, end);
                }
            }
        }
        if let Err(why) = w.flush(s.opts.timeout).await {
            return Some(why);
        }
    }
}

/// Write the device secret of an activation push to its file under `dir` (0600, a new file).
fn keep(dir: &std::path::Path, d: &FleetDevice, push: Option<&serde_json::Value>) -> Result<(), String> {
    let file = super::kept_secret(dir, d);
    let secret = push
        .and_then(|v| v.pointer("/params/deviceSecret"))
        .and_then(|s| s.as_str())
        .filter(|s| !s.is_empty())
        .map(|s| crate::base::Secret::new(s.to_string()))
        .ok_or("the activation push has no params.deviceSecret")?;
    crate::probe::secret_file(&file, false)
        .and_then(|f| crate::probe::write_secret(f, &secret))
        .map_err(|e| format!("cannot write the device secret to {}: {e}", file.display()))
}

/// A held device's posts in flight: packet ids waiting for PUBACK and request ids waiting for
/// EnOS's reply, each with when it was sent.
struct Held {
    topic: String,
    reply_topic: String,
    activate: String,
    acks: VecDeque<(u16, Instant)>,
    replies: VecDeque<(u64, Instant)>,
    pkid: u16,
    request: u64,
    replied_once: bool,
    next_post: Instant,
    subscribed: bool,
}

impl Held {
    fn new(d: &FleetDevice, login: Instant) -> Self {
        let topic = crate::enos::measurepoint_post(&d.product_key, &d.device_key);
        Held {
            reply_topic: crate::enos::reply_topic(&topic),
            topic,
            activate: crate::enos::activate_info(&d.product_key, &d.device_key),
            acks: VecDeque::new(),
            replies: VecDeque::new(),
            pkid: 0,
            request: 0,
            replied_once: false,
            next_post: login,
            subscribed: false,
        }
    }

    /// Nothing is due: every PUBACK came, and every reply (unless no reply ever came).
    fn answered_all(&self) -> bool {
        self.acks.is_empty() && (self.replies.is_empty() || !self.replied_once)
    }

    /// A PUBACK or a reply to a post in flight, counted and timed; the activation's push
    /// acknowledged.
    fn on_packet(&mut self, s: &Shared, d: &FleetDevice, w: &mut Wire, packet: Packet) {
        match packet {
            Packet::PubAck(a) => {
                if let Some(at) = self.acks.iter().position(|(p, _)| *p == a.pkid)
                    && let Some((_, sent)) = self.acks.remove(at)
                {
                    s.counts.acked.fetch_add(1, Ordering::Relaxed);
                    s.tally(|t| t.time("puback", sent.elapsed()));
                }
            }
            Packet::Publish(p) => {
                if p.qos == QoS::AtLeastOnce {
                    w.queue(Packet::PubAck(PubAck::new(p.pkid)));
                }
                if p.topic == self.reply_topic {
                    self.on_reply(s, &p.payload);
                } else if p.topic == self.activate {
                    self.on_activation(s, d, w, &p.payload);
                }
            }
            _ => {}
        }
    }

    /// The secret dynamic activation pushes: written first under `--activate-to` (a secret
    /// that cannot be kept is not acknowledged), then acknowledged; without it, acknowledged
    /// and forgotten.
    fn on_activation(&self, s: &Shared, d: &FleetDevice, w: &mut Wire, payload: &[u8]) {
        let push = serde_json::from_slice::<serde_json::Value>(payload).ok();
        if let Some(dir) = &s.opts.activate_to
            && let Err(why) = keep(dir, d, push.as_ref())
        {
            s.tally(|t| t.error("activate_to", why));
            return;
        }
        let id = push.as_ref().and_then(crate::enos::reply_id).unwrap_or_default();
        let ack = serde_json::json!({"id": id, "code": crate::enos::SUCCESS, "data": {}});
        w.queue(Packet::Publish(Publish::new(
            crate::enos::reply_topic(&self.activate),
            QoS::AtMostOnce,
            ack.to_string().into_bytes(),
        )));
        s.tally(|t| Tally::count(&mut t.codes, "activated".into()));
    }

    fn on_reply(&mut self, s: &Shared, payload: &[u8]) {
        if let Ok(r) = serde_json::from_slice::<crate::enos::Reply>(payload)
            && let Ok(id) = r.id.parse::<u64>()
            && let Some(at) = self.replies.iter().position(|(q, _)| *q == id)
            && let Some((_, sent)) = self.replies.remove(at)
        {
            self.replied_once = true;
            s.counts.answered.fetch_add(1, Ordering::Relaxed);
            s.tally(|t| {
                t.time("reply", sent.elapsed());
                Tally::count(&mut t.codes, format!("enos:{}", r.code));
            });
        }
    }

    /// The next post (after the subscription to its replies, once), and when the one after is.
    fn post(&mut self, s: &Shared, w: &mut Wire, end: Instant) {
        if !self.subscribed {
            self.subscribed = true;
            w.queue(Packet::Subscribe(Subscribe {
                pkid: 1,
                filters: vec![SubscribeFilter::new(self.reply_topic.clone(), QoS::AtMostOnce)],
            }));
        }
        self.pkid = self.pkid.wrapping_add(1).max(2);
        self.request = self.request.saturating_add(1);
        let body = crate::enos::Request::new(
            self.request.to_string(),
            crate::enos::MEASUREPOINT_POST,
            serde_json::json!({"measurepoints": s.opts.measurepoints, "time": crate::credentials::now_ms()}),
        );
        let mut publish = Publish::new(self.topic.clone(), QoS::AtLeastOnce, body.to_bytes());
        publish.pkid = self.pkid;
        w.queue(Packet::Publish(publish));
        let sent = Instant::now();
        if self.acks.len() >= MAX_IN_FLIGHT {
            self.acks.pop_front();
        }
        if self.replies.len() >= MAX_IN_FLIGHT {
            self.replies.pop_front();
        }
        self.acks.push_back((self.pkid, sent));
        self.replies.push_back((self.request, sent));
        s.counts.offered.fetch_add(1, Ordering::Relaxed);
        self.next_post = self.next_post.checked_add(s.opts.every).unwrap_or(end);
        if self.next_post < sent {
            // Late (a busy machine): the next post is an interval from now, not a burst.
            self.next_post = sent.checked_add(s.opts.every).unwrap_or(end);
        }
    }
}
