//! The needs' transport over HTTP (`probe --need`): a child of `http.rs`, over its client and
//! session; and the multipart body of a file upload.

use super::{Client, Request};
use crate::probe::{ErrorKind, Failure, Recorder};

/// The needs' exchanges over an HTTP session: `POST /topic/...` and `POST /multipart/...`.
pub(super) struct Needs<'c> {
    pub(super) client: &'c mut Client,
    /// Percent-encoded.
    pub(super) session: String,
    pub(super) prefix: String,
    pub(super) host: String,
}

impl Needs<'_> {
    async fn post(
        &mut self,
        kind: &str,
        topic: &str,
        body: Vec<u8>,
        content_type: Option<String>,
    ) -> Result<Vec<u8>, Failure> {
        let req = Request {
            method: "POST".into(),
            path: format!("{}/{kind}{topic}?sessionId={}", self.prefix, self.session),
            host: self.host.clone(),
            body,
            close: false,
            content_type,
        };
        let response = self.client.send(&req).await?;
        // EnOS (and serve) refuse a feature the protocol does not offer with 403 and an EnOS
        // body: its code is the verdict.
        let enos_body = serde_json::from_slice::<serde_json::Value>(&response.body)
            .is_ok_and(|v| v.get("code").is_some());
        if (200..300).contains(&response.status) || (response.status == 403 && enos_body) {
            return Ok(response.body);
        }
        Err(Failure::new(
            ErrorKind::Protocol,
            format!("the request was answered {} {}", response.status, response.reason),
        ))
    }
}

impl crate::probe::needs::Transport for Needs<'_> {
    const PROTOCOL: &'static str = "HTTP";

    async fn request(
        &mut self,
        topic: &str,
        request: &crate::enos::Request,
        rec: &mut Recorder,
    ) -> Result<(), Failure> {
        let body = self.post("topic", topic, request.to_bytes(), None).await?;
        rec.enos_reply(&body, None).map(|_| ())
    }

    async fn raw(&mut self, topic: &str, bytes: &[u8], rec: &mut Recorder) -> Result<(), Failure> {
        let body = self
            .post(
                "topic",
                topic,
                bytes.to_vec(),
                Some("application/octet-stream".into()),
            )
            .await?;
        crate::probe::mqtt::raw_reply(&body, rec)
    }

    async fn upload(
        &mut self,
        topic: &str,
        message: &crate::enos::Request,
        file: (&str, &[u8]),
        rec: &mut Recorder,
    ) -> Result<(), Failure> {
        let (body, content_type) = multipart(message, file);
        let reply = self.post("multipart", topic, body, Some(content_type)).await?;
        rec.enos_reply(&reply, None).map(|_| ())
    }
}

/// A `multipart/form-data` body as the SDKs send it: an `enos-message` part with the request,
/// and an `enos-file` part with the file and its `Content-MD5` (base64 of the digest, RFC 1864).
pub(super) fn multipart(message: &crate::enos::Request, (name, bytes): (&str, &[u8])) -> (Vec<u8>, String) {
    use base64::Engine;
    use md5::Digest;
    let boundary = format!("enos-connect-{:016x}", crate::random::random_u64());
    let md5 = base64::engine::general_purpose::STANDARD.encode(md5::Md5::digest(bytes));
    let name = name.replace(['"', '\r', '\n'], "_");
    let mut body = Vec::new();
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"enos-message\"\r\nContent-Type: application/json\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(&message.to_bytes());
    body.extend_from_slice(
        format!(
            "\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"enos-file\"; filename=\"{name}\"\r\nContent-Type: application/octet-stream\r\nContent-MD5: {md5}\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(bytes);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (body, format!("multipart/form-data; boundary={boundary}"))
}
