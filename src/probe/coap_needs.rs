//! The needs' transport over CoAP (`probe --need`): a child of `coap.rs`, over its exchange.

use std::time::Instant;

use coap_lite::RequestType;

use super::{Exchanged, Link, code_text, exchange_with};
use crate::probe::{ErrorKind, Failure, Recorder};

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

    async fn await_command(
        &mut self,
        _topics: &[String],
        _until: Instant,
        _rec: &mut Recorder,
    ) -> Result<(), Failure> {
        Err(Failure::new(
            ErrorKind::Protocol,
            "waiting for a command over CoAP (option 2100, then GET) is not implemented: use --await-command over MQTT",
        ))
    }
}
