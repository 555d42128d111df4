//! The needs' transport over CoAP (`probe --need`): a child of `coap.rs`, over its exchange.

use std::time::Instant;

use coap_lite::{CoapOption, RequestType};

use super::{Exchanged, Link, code_text, exchange_with};
use crate::enos::COAP_COMMAND_OPTION as COMMAND_OPTION;
use crate::probe::{ErrorKind, Failure, Recorder};

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
    /// of a response to any request. What can be proven without one pending is that channel: a
    /// read-only request (the device's attribute query) answered.
    async fn subscribe(&mut self, topics: &[String], rec: &mut Recorder) -> Result<(), Failure> {
        let Some((pk, dk)) = topics
            .first()
            .and_then(|t| crate::enos::split(t))
            .map(|t| (t.product_key.to_string(), t.device_key.to_string()))
        else {
            return Err(Failure::new(ErrorKind::Protocol, "no downlink topic"));
        };
        let topic = format!("/sys/{pk}/{dk}/thing/attribute/query");
        let request = crate::enos::Request::new(
            crate::enos::new_id(),
            "thing.attribute.query",
            serde_json::json!({"attributes": []}),
        );
        let body = self.post(&topic, request.to_bytes(), rec).await?;
        rec.enos_reply(&body, None)?;
        rec.detail(
            "downlink",
            "the response channel that carries option 2100 answers (CoAP has no subscription)",
        );
        Ok(())
    }

    /// EnOS announces a command in option 2100 (`/topic/{RequestTopic}`) of the response to
    /// the device's next request: a light request (the attribute query) about once a second
    /// until one comes or `until`, then `GET` the command and answer it 200 on `_reply`.
    async fn await_command(
        &mut self,
        topics: &[String],
        until: Instant,
        rec: &mut Recorder,
    ) -> Result<(), Failure> {
        let Some((pk, dk)) = topics
            .first()
            .and_then(|t| crate::enos::split(t))
            .map(|t| (t.product_key.to_string(), t.device_key.to_string()))
        else {
            return Err(Failure::new(ErrorKind::Protocol, "no downlink topic"));
        };
        let query = format!("{}/topic/sys/{pk}/{dk}/thing/attribute/query", self.prefix);
        let mut polls = 0u32;
        let announced = loop {
            let request = crate::enos::Request::new(
                crate::enos::new_id(),
                "thing.attribute.query",
                serde_json::json!({"attributes": []}),
            );
            let answer = exchange_with(
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
            if let Exchanged::Response(p) = &answer
                && let Some(value) = p
                    .get_option(CoapOption::Unknown(COMMAND_OPTION))
                    .and_then(|v| v.front())
            {
                break String::from_utf8_lossy(value).into_owned();
            }
            let now = Instant::now();
            if now >= until {
                return Err(Failure::new(
                    ErrorKind::Timeout,
                    format!("no command announced (CoAP option 2100) in {polls} request(s)"),
                ));
            }
            tokio::time::sleep((until - now).min(POLL)).await;
        };
        // The option names the command's path from the root: `/topic/{RequestTopic}`.
        let path = format!("{}{announced}", self.prefix);
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
        let command: serde_json::Value = serde_json::from_slice(&p.payload)
            .map_err(|_| Failure::new(ErrorKind::Protocol, "the command is not JSON"))?;
        let id = crate::enos::reply_id(&command).unwrap_or_default();
        rec.note(&format!(
            "command {} on {announced}",
            command.get("method").and_then(|m| m.as_str()).unwrap_or("?")
        ));
        let reply = crate::enos::Reply::new(id, crate::enos::SUCCESS, serde_json::json!({})).with_message("");
        exchange_with(
            self.link,
            rec,
            self.deadline,
            Some(RequestType::Post),
            &format!("{path}_reply"),
            reply.to_bytes(),
            false,
        )
        .await?;
        Ok(())
    }
}
