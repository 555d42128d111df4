//! The needs' transport over CoAP (`probe --need`): a child of `coap.rs`, over its exchange.

use std::time::Instant;

use coap_lite::RequestType;

use super::{Exchanged, Link, code_text, exchange_with};
use crate::measurement::ErrorKind;
use crate::probe::needs::filter_matches;
use crate::probe::{Failure, Recorder};

/// How often a device waiting for a command sends its light request.
const POLL: std::time::Duration = std::time::Duration::from_secs(1);

/// The needs' exchanges over CoAP: `POST /topic/...`, each answer's EnOS payload read whatever
/// its code (EnOS refuses a feature CoAP does not offer with 4.05 and an EnOS body).
pub(super) struct Needs<'l> {
    pub(super) link: &'l Link,
    pub(super) prefix: String,
    pub(super) deadline: Instant,
}

impl Needs<'_> {
    async fn post(&mut self, topic: &str, body: Vec<u8>, rec: &mut Recorder) -> Result<Vec<u8>, Failure> {
        let path = format!("{}/topic{topic}", self.prefix);
        match exchange_with(
            self.link,
            rec,
            self.deadline,
            Some(RequestType::Post),
            &path,
            body,
            true,
        )
        .await?
        {
            Exchanged::Response(p) => {
                let raw: u8 = p.header.code.into();
                let enos_body = serde_json::from_slice::<serde_json::Value>(&p.payload)
                    .is_ok_and(|v| v.get("code").is_some());
                if raw >> 5 == 2 || enos_body {
                    Ok(p.payload)
                } else {
                    Err(Failure::new(
                        ErrorKind::Protocol,
                        format!("the server answered {}", code_text(p.header.code)),
                    ))
                }
            }
            Exchanged::Pong => Err(Failure::new(
                ErrorKind::Protocol,
                "the request was answered as a ping",
            )),
        }
    }
}

impl crate::probe::needs::Transport for Needs<'_> {
    const PROTOCOL: &'static str = "CoAP";

    async fn request(
        &mut self,
        topic: &str,
        request: &crate::enos::Request,
        rec: &mut Recorder,
    ) -> Result<(), Failure> {
        let body = self.post(topic, request.to_bytes(), rec).await?;
        rec.enos_reply(&body, None).map(|_| ())
    }

    async fn raw(&mut self, topic: &str, bytes: &[u8], rec: &mut Recorder) -> Result<(), Failure> {
        let body = self.post(topic, bytes.to_vec(), rec).await?;
        crate::probe::mqtt::raw_reply(&body, rec)
    }

    /// CoAP has no subscription: a command waiting for the device is announced in option 2100
    /// of a response to any request. Nothing to send.
    async fn subscribe(&mut self, _topics: &[String], rec: &mut Recorder) -> Result<bool, Failure> {
        rec.note("CoAP has no subscription: a command comes announced in option 2100");
        Ok(false)
    }

    /// EnOS announces a command in option 2100 (`/topic/{RequestTopic}`) of the response to
    /// the device's next request: a light request (the attribute query) about once a second
    /// until one on `topics` comes or `until`, then `GET` the command and answer it on
    /// `_reply` (200, or the raw bytes for a raw command).
    async fn await_command(
        &mut self,
        topics: &[String],
        raw: bool,
        until: Instant,
        rec: &mut Recorder,
    ) -> Result<String, Failure> {
        let Some((pk, dk)) = topics
            .first()
            .and_then(|t| crate::enos::split(t))
            .map(|t| (t.product_key.to_string(), t.device_key.to_string()))
        else {
            return Err(Failure::new(ErrorKind::Protocol, "no downlink topic"));
        };
        let announced = self.announced(topics, (&pk, &dk), until, rec).await?;
        // The option names the command's path from the root: `/topic/{RequestTopic}`.
        let path = format!("{}/topic{announced}", self.prefix);
        let Exchanged::Response(p) = exchange_with(
            self.link,
            rec,
            self.deadline,
            Some(RequestType::Get),
            &path,
            Vec::new(),
            false,
        )
        .await?
        else {
            return Err(Failure::new(
                ErrorKind::Protocol,
                "the command GET was answered as a ping",
            ));
        };
        let (what, reply) = if raw {
            (format!("{} raw bytes", p.payload.len()), p.payload.clone())
        } else {
            let command: serde_json::Value = serde_json::from_slice(&p.payload)
                .map_err(|_| Failure::new(ErrorKind::Protocol, "the command is not JSON"))?;
            let id = crate::enos::reply_id(&command).unwrap_or_default();
            let method = command
                .get("method")
                .and_then(|m| m.as_str())
                .unwrap_or("?")
                .to_string();
            let reply =
                crate::enos::Reply::new(id, crate::enos::SUCCESS, serde_json::json!({})).with_message("");
            (method, reply.to_bytes())
        };
        rec.note(format_args!("command {what} on {announced}"));
        exchange_with(
            self.link,
            rec,
            self.deadline,
            Some(RequestType::Post),
            &format!("{path}_reply"),
            reply,
            false,
        )
        .await?;
        Ok(what)
    }
}

impl Needs<'_> {
    /// Light requests about once a second until a response announces a command on one of
    /// `topics` (option 2100), or `until`: the command's topic.
    async fn announced(
        &mut self,
        topics: &[String],
        (pk, dk): (&str, &str),
        until: Instant,
        rec: &mut Recorder,
    ) -> Result<String, Failure> {
        let query = format!("{}/topic/sys/{pk}/{dk}/thing/attribute/query", self.prefix);
        let mut polls = 0u32;
        // A command announced on an earlier response (the login's, a need's) waits here.
        for value in self.link.take_announced() {
            if let Some(topic) = awaited(&value, topics, rec)? {
                return Ok(topic);
            }
        }
        loop {
            let request = crate::enos::Request::new(
                crate::enos::new_id(),
                "thing.attribute.query",
                serde_json::json!({"attributes": []}),
            );
            exchange_with(
                self.link,
                rec,
                until.min(self.deadline),
                Some(RequestType::Post),
                &query,
                request.to_bytes(),
                true,
            )
            .await?;
            polls += 1;
            // The link kept this answer's announcement too: every response passes there.
            for value in self.link.take_announced() {
                if let Some(topic) = awaited(&value, topics, rec)? {
                    return Ok(topic);
                }
            }
            let now = Instant::now();
            if now >= until {
                return Err(Failure::new(
                    ErrorKind::Timeout,
                    format!("no command announced (CoAP option 2100) in {polls} request(s)"),
                ));
            }
            tokio::time::sleep((until - now).min(POLL)).await;
        }
    }
}

/// The topic an option 2100 `value` announces, when it is one of `topics`; an announcement
/// that is not a topic is a protocol failure.
fn awaited(value: &[u8], topics: &[String], rec: &mut Recorder) -> Result<Option<String>, Failure> {
    let topic = announced_topic(value).map_err(|why| {
        Failure::new(
            ErrorKind::Protocol,
            format!("the endpoint announced a command in option 2100 that is not one: {why}"),
        )
    })?;
    if topics.iter().any(|f| filter_matches(f, &topic)) {
        return Ok(Some(topic));
    }
    rec.note(format_args!("a command on {topic} is not the one awaited"));
    Ok(None)
}

/// The longest option 2100 value read: a topic of EnOS's is well under it.
pub const MAX_ANNOUNCED: usize = 512;

/// The topic a command announced in CoAP option 2100 is on: the option is
/// `/topic/{RequestTopic}`, the request topic an EnOS topic (`/sys/...` or `/ext/session/...`)
/// of printable ASCII with no empty level and no `.` or `..` level, which the probe then
/// requests as a path. What the endpoint sends is outside input: anything else is refused.
pub fn announced_topic(value: &[u8]) -> Result<String, String> {
    if value.len() > MAX_ANNOUNCED {
        return Err(format!("{} bytes, over {MAX_ANNOUNCED}", value.len()));
    }
    let text = std::str::from_utf8(value).map_err(|_| "not UTF-8".to_string())?;
    if !text.bytes().all(|b| b.is_ascii_graphic()) || text.contains(['?', '#']) {
        return Err(format!("{text:?} holds a byte a topic path cannot"));
    }
    let topic = text
        .strip_prefix("/topic/")
        .map(|t| format!("/{t}"))
        .ok_or_else(|| format!("{text:?} does not start with /topic/"))?;
    if topic
        .split('/')
        .skip(1)
        .any(|level| level.is_empty() || level == "." || level == "..")
    {
        return Err(format!("{text:?} has an empty, `.` or `..` level"));
    }
    if crate::enos::split(&topic).is_none() {
        return Err(format!("{text:?} names no EnOS topic"));
    }
    Ok(topic)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_announced_command_is_an_enos_topic_or_refused() {
        assert_eq!(
            announced_topic(b"/topic/sys/pk1/dk1/thing/service/measurepoint/set"),
            Ok("/sys/pk1/dk1/thing/service/measurepoint/set".into())
        );
        for bad in [
            &b"/sys/pk1/dk1/thing/model/down_raw"[..],
            b"/topic/sys/pk1/../x",
            b"/topic/sys/pk1//dk1/thing",
            b"/topic/sys/pk1/dk1/thing?x=1",
            b"/topic/nowhere/x",
            b"/topic/sys/pk\xff",
            &[0xff, 0xfe][..],
            &[b'a'; MAX_ANNOUNCED + 1][..],
        ] {
            assert!(
                announced_topic(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
