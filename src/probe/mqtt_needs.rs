//! The needs' transport over MQTT (`probe --need`): a child of `mqtt.rs`, over its connection.

use std::time::Instant;

use rumqttc::mqttbytes::QoS;
use rumqttc::mqttbytes::v4::{Packet, Publish};

use super::{Conn, granted};
use crate::measurement::ErrorKind;
use crate::probe::needs::filter_matches;
use crate::probe::{Failure, Recorder};

impl crate::probe::needs::Transport for Conn {
    const PROTOCOL: &'static str = "MQTT";

    async fn request(
        &mut self,
        topic: &str,
        request: &crate::enos::Request,
        rec: &mut Recorder,
    ) -> Result<(), Failure> {
        Conn::request(self, topic, request, rec).await
    }

    async fn raw(&mut self, topic: &str, bytes: &[u8], rec: &mut Recorder) -> Result<(), Failure> {
        let (reply_topic, sub_pkid) = self.publish_for_reply(topic, bytes.to_vec()).await?;
        rec.note(format_args!("{} raw bytes sent on {topic}", bytes.len()));
        loop {
            match self.next("the raw reply").await? {
                Packet::SubAck(ack) if ack.pkid == sub_pkid => granted(&ack, &reply_topic)?,
                Packet::Publish(p) if p.topic == reply_topic => {
                    if p.qos == QoS::AtLeastOnce {
                        self.send(Packet::PubAck(rumqttc::PubAck::new(p.pkid))).await?;
                    }
                    return raw_reply(&p.payload, rec);
                }
                Packet::Publish(p) if p.qos == QoS::AtLeastOnce => {
                    self.send(Packet::PubAck(rumqttc::PubAck::new(p.pkid))).await?;
                }
                _ => {}
            }
        }
    }

    async fn subscribe(&mut self, topics: &[String], rec: &mut Recorder) -> Result<bool, Failure> {
        for topic in topics {
            Conn::subscribe(self, topic, QoS::AtLeastOnce).await?;
            rec.note(format_args!("subscribed to {topic}"));
        }
        Ok(true)
    }

    async fn await_command(
        &mut self,
        topics: &[String],
        raw: bool,
        until: Instant,
        rec: &mut Recorder,
    ) -> Result<String, Failure> {
        let wait = async {
            loop {
                let Packet::Publish(p) = self.next("a command").await? else {
                    continue;
                };
                if p.qos == QoS::AtLeastOnce {
                    self.send(Packet::PubAck(rumqttc::PubAck::new(p.pkid))).await?;
                }
                if !topics.iter().any(|f| filter_matches(f, &p.topic)) {
                    continue;
                }
                if raw {
                    // A raw command is answered with raw bytes (`down_raw_reply`): its own.
                    let mut publish = Publish::new(
                        crate::enos::reply_topic(&p.topic),
                        QoS::AtLeastOnce,
                        p.payload.to_vec(),
                    );
                    publish.pkid = self.pkid();
                    self.send(Packet::Publish(publish)).await?;
                    rec.note(format_args!(
                        "answered {} raw bytes on {}",
                        p.payload.len(),
                        p.topic
                    ));
                    return Ok(format!("{} raw bytes", p.payload.len()));
                }
                let v: serde_json::Value = serde_json::from_slice(&p.payload).map_err(|_| {
                    Failure::new(
                        ErrorKind::Protocol,
                        format!("the command on {} is not JSON", p.topic),
                    )
                })?;
                let id = crate::enos::reply_id(&v).unwrap_or_default();
                let method = v
                    .get("method")
                    .and_then(|m| m.as_str())
                    .unwrap_or_default()
                    .to_string();
                let reply =
                    crate::enos::Reply::new(id, crate::enos::SUCCESS, serde_json::json!({})).with_message("");
                let mut publish = Publish::new(
                    crate::enos::reply_topic(&p.topic),
                    QoS::AtLeastOnce,
                    reply.to_bytes(),
                );
                publish.pkid = self.pkid();
                self.send(Packet::Publish(publish)).await?;
                rec.detail("command", method.clone());
                rec.note(format_args!("answered {method} on {} with 200", p.topic));
                return Ok(method);
            }
        };
        match tokio::time::timeout_at(until.into(), wait).await {
            Ok(r) => r,
            Err(_) => Err(Failure::new(
                ErrorKind::Timeout,
                "no command arrived in the --await-command time",
            )),
        }
    }
}

/// A raw reply (`up_raw_reply`): EnOS's JSON reply when the product's script makes one, else
/// the bytes the script returned, which prove the round trip as well.
pub(in crate::probe) fn raw_reply(payload: &[u8], rec: &mut Recorder) -> Result<(), Failure> {
    match serde_json::from_slice::<serde_json::Value>(payload) {
        Ok(v) if v.get("code").is_some() => rec.enos_reply(payload, None).map(|_| ()),
        _ => {
            rec.detail("raw_reply_bytes", payload.len());
            Ok(())
        }
    }
}
