//! `--command-api URL`: the probe asks the endpoint to send the device a command, so that a
//! downlink need is proven by a command that really arrives and is answered. The endpoint is
//! `serve`'s `POST /twin/commands/{pk}/{dk}` (docs/serve-reference.md): it sends the command
//! over the connection that reaches the device and answers 200 with the device's reply, so a
//! 200 also says the reply got back. EnOS's own API for this is the tenant's, not a device's,
//! and is not spoken here: against EnOS, send the command from the console and use
//! `--await-command`.

use std::time::Instant;

use super::{Failure, ProbeOptions, Recorder, Target, http};
use crate::capabilities::Capabilities;
use crate::measurement::ErrorKind;

/// Where `serve`'s command API listens: an `http://` or `https://` URL; the path defaults to
/// `/twin/commands`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandApi {
    target: Target,
    path: String,
}

impl CommandApi {
    pub fn parse(caps: &Capabilities, url: &str) -> Result<Self, String> {
        let target = Target::parse(caps, url)?;
        if !matches!(target.scheme.as_str(), "http" | "https") {
            return Err(format!(
                "`{url}` is not an http:// or https:// URL: the command API is serve's HTTP /twin/commands"
            ));
        }
        let path = match target.path.trim_end_matches('/') {
            "" => "/twin/commands".to_string(),
            p => p.to_string(),
        };
        Ok(CommandApi { target, path })
    }

    pub fn url(&self) -> String {
        let mut t = self.target.clone();
        t.path = self.path.clone();
        t.url()
    }

    /// Ask for the command `body` (`{"method", "params"}`, or raw bytes as `payload_base64`)
    /// to device `pk`/`dk`, and wait until `until` for the answer: the device's reply (200).
    /// Not timed as a stage of its own: it runs while the need's `command` stage waits.
    pub async fn send(
        &self,
        opts: &ProbeOptions,
        (pk, dk): (&str, &str),
        body: &serde_json::Value,
        until: Instant,
    ) -> Result<serde_json::Value, Failure> {
        let work = async {
            let mut rec = Recorder::new(false);
            let io = super::connect_stream(&mut rec, &self.target, opts, until, &[b"http/1.1"]).await?;
            let mut client = http::Client::handshake(io).await?;
            let seconds = until.saturating_duration_since(Instant::now()).as_secs_f64();
            let req = http::Request {
                method: "POST".into(),
                path: format!("{}/{pk}/{dk}?timeout={:.1}", self.path, seconds.max(0.1)),
                host: http::host_header(&self.target),
                body: body.to_string().into_bytes(),
                close: true,
                content_type: None,
            };
            client.send(&req).await
        };
        let refused = |what: String| {
            Failure::new(
                ErrorKind::Protocol,
                format!("the command API at {} {what}", self.url()),
            )
        };
        let response = tokio::time::timeout_at(until.into(), work)
            .await
            .map_err(|_| {
                Failure::new(
                    ErrorKind::Timeout,
                    format!("the command API at {} did not answer in time", self.url()),
                )
            })?
            .map_err(|f| {
                Failure::new(
                    f.kind,
                    format!(
                        "the command API at {} could not be asked: {}",
                        self.url(),
                        f.message
                    ),
                )
            })?;
        let v: serde_json::Value = serde_json::from_slice(&response.body).unwrap_or_default();
        if response.status == 200 {
            return Ok(v);
        }
        let why = v
            .get("message")
            .and_then(|m| m.as_str())
            .map(|m| format!(": {m}"))
            .unwrap_or_default();
        Err(refused(format!(
            "answered {} {}{why}",
            response.status, response.reason
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_api_is_an_http_url_with_twin_commands_by_default() {
        let caps = crate::capabilities::embedded().expect("caps");
        let api = CommandApi::parse(&caps, "http://127.0.0.1:28080").expect("parses");
        assert_eq!(api.url(), "http://127.0.0.1:28080/twin/commands");
        let api = CommandApi::parse(&caps, "https://h:8443/twin/commands/").expect("parses");
        assert_eq!(api.url(), "https://h:8443/twin/commands");
        assert!(CommandApi::parse(&caps, "mqtt://h").is_err());
        assert!(CommandApi::parse(&caps, "h:80").is_err());
    }
}
