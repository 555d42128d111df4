//! The EnOS device protocol, in one place for `probe`, `serve` and `plan`: the message envelope,
//! topics and the method each implies, the reply codes and what they mean, and the MQTT login
//! as the SDKs send it. The signs themselves are computed from the recipes in
//! `capabilities.toml` ([`crate::credentials`]), so a recipe is written once.
//!
//! Facts from the EnOS device-connection documentation and the official SDKs; see
//! `shared/reference/enos-device-protocol.md`. "Assumed" marks what no source states.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A request, device to EnOS or (a command) EnOS to device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Request {
    /// A string; replies carry the same string.
    pub id: String,
    #[serde(default = "version")]
    pub version: String,
    pub method: String,
    #[serde(default)]
    pub params: Value,
}

fn version() -> String {
    "1.0".into()
}

/// A reply on the request topic + `_reply`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reply {
    pub id: String,
    /// EnOS sends an integer; the SDKs answer commands with a string (`"200"`): both are read.
    #[serde(deserialize_with = "int_or_string")]
    pub code: i64,
    #[serde(default)]
    pub data: Value,
    #[serde(default)]
    pub message: String,
}

fn int_or_string<'de, D: serde::Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    match Value::deserialize(d)? {
        Value::Number(n) => n
            .as_i64()
            .ok_or_else(|| serde::de::Error::custom("code is not an integer")),
        Value::String(s) => s
            .trim()
            .parse()
            .map_err(|_| serde::de::Error::custom(format!("code `{s}` is not a number"))),
        other => Err(serde::de::Error::custom(format!("code is {other}, not a number"))),
    }
}

impl Request {
    pub fn new(id: impl Into<String>, method: impl Into<String>, params: Value) -> Self {
        Request {
            id: id.into(),
            version: version(),
            method: method.into(),
            params,
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}

impl Reply {
    pub fn new(id: impl Into<String>, code: i64, data: Value) -> Self {
        Reply {
            id: id.into(),
            code,
            data,
            message: meaning(code).unwrap_or("").to_string(),
        }
    }

    pub fn with_message(mut self, message: impl Into<String>) -> Self {
        self.message = message.into();
        self
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub fn ok(&self) -> bool {
        self.code == SUCCESS
    }
}

/// A fresh request id: a string, as EnOS and the SDKs expect (not a secret).
pub fn new_id() -> String {
    (crate::base::random_u64() % 1_000_000_000).to_string()
}

/// A reply's id as sent: EnOS echoes the request's id string; a number is read as its text,
/// so a reply can still be matched (and reported) rather than ignored as noise.
pub fn reply_id(v: &Value) -> Option<String> {
    match v.get("id")? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

pub const SUCCESS: i64 = 200;
pub const TOO_LARGE: i64 = 1008;
pub const NO_PERMISSION: i64 = 1009;
pub const MODEL_INVALID: i64 = 1204;
pub const BAD_FORMAT: i64 = 1220;
pub const EMPTY: i64 = 1251;
pub const METHOD_MISMATCH: i64 = 1260;
pub const SUB_NO_DEVICE: i64 = 705;
pub const SUB_DISABLED: i64 = 723;
pub const SUB_NOT_IN_TOPOLOGY: i64 = 740;
pub const SUB_BAD_SIGN: i64 = 742;

/// The documented meaning of an EnOS reply code.
pub fn meaning(code: i64) -> Option<&'static str> {
    Some(match code {
        200 => "success",
        400 => "internal error",
        401 => "authentication failed",
        402 => "device not found",
        429 => "too many requests",
        460 => "parameter error",
        500 => "the command handler failed",
        705 => "sub-device login: no such device",
        723 => "sub-device login: the device is disabled",
        740 => "sub-device login: not a sub-device of this gateway (not in its topology)",
        742 => "sub-device login: the sign check failed",
        1008 => "message too large, discarded",
        1009 => "no permission to publish on that topic (or not logged in)",
        1101 => "no handler registered for the method",
        1204 => "model validation failed",
        1220 => "payload format error (not valid JSON, or the wrong shape)",
        1251 => "the payload is empty",
        1260 => "the method and the topic are not consistent",
        6205 | 6305 => "timed out",
        6207 => "the payload must be JSON",
        _ => return None,
    })
}

/// "code 1204 (model validation failed: ...)" for a report, from the code and EnOS's message.
pub fn describe(code: i64, message: &str) -> String {
    let known = meaning(code).unwrap_or("an EnOS code with no documented meaning");
    let message = message.trim();
    if message.is_empty() || message == known {
        format!("code {code} ({known})")
    } else {
        format!("code {code} ({known}): {message}")
    }
}

// --- topics ------------------------------------------------------------------------------------

/// The device's own topic prefixes: `/sys/{pk}/{dk}/` and `/ext/session/{pk}/{dk}/`.
pub fn owns(topic: &str, pk: &str, dk: &str) -> bool {
    let of = |root: &str| {
        topic
            .strip_prefix(root)
            .and_then(|t| t.strip_prefix(pk))
            .and_then(|t| t.strip_prefix('/'))
            .and_then(|t| t.strip_prefix(dk))
            .is_some_and(|t| t.starts_with('/'))
    };
    of("/sys/") || of("/ext/session/")
}

/// `topic` + `_reply`.
pub fn reply_topic(topic: &str) -> String {
    format!("{topic}_reply")
}

pub fn measurepoint_post(pk: &str, dk: &str) -> String {
    format!("/sys/{pk}/{dk}/thing/measurepoint/post")
}

pub fn activate_info(pk: &str, dk: &str) -> String {
    format!("/ext/session/{pk}/{dk}/thing/activate/info")
}

pub fn combine_login(gw_pk: &str, gw_dk: &str) -> String {
    format!("/ext/session/{gw_pk}/{gw_dk}/combine/login")
}

pub const MEASUREPOINT_POST: &str = "thing.measurepoint.post";
pub const ACTIVATE_INFO: &str = "thing.activate.info";
pub const COMBINE_LOGIN: &str = "combine.login";
pub const COMBINE_LOGIN_BATCH: &str = "combine.login.batch";
pub const COMBINE_LOGOUT: &str = "combine.logout";
pub const MEASUREPOINT_SET: &str = "thing.service.measurepoint.set";

/// A topic split into its root, product key, device key and the rest (`thing/measurepoint/post`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topic<'t> {
    pub session: bool,
    pub product_key: &'t str,
    pub device_key: &'t str,
    pub rest: &'t str,
}

pub fn split(topic: &str) -> Option<Topic<'_>> {
    let (session, tail) = match topic.strip_prefix("/sys/") {
        Some(t) => (false, t),
        None => (true, topic.strip_prefix("/ext/session/")?),
    };
    let mut parts = tail.splitn(3, '/');
    let product_key = parts.next().filter(|s| !s.is_empty())?;
    let device_key = parts.next().filter(|s| !s.is_empty())?;
    let rest = parts.next().filter(|s| !s.is_empty())?;
    Some(Topic {
        session,
        product_key,
        device_key,
        rest,
    })
}

/// What a device may send on a topic and EnOS answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Upstream {
    /// A JSON request whose method must be this one.
    Request(String),
    /// Raw bytes for the product's parsing script (`thing/model/up_raw`).
    Raw,
}

/// The upstream request a topic carries, with the method it implies (methods follow the
/// topic: `thing/event/{id}/post` is `thing.event.{id}.post`). `None`: not an upstream topic.
pub fn upstream(topic: &Topic<'_>) -> Option<Upstream> {
    const SYS: [&str; 16] = [
        "thing/measurepoint/post",
        "thing/measurepoint/post/batch",
        "thing/measurepoint/resume",
        "thing/measurepoint/resume/batch",
        "thing/attribute/update",
        "thing/attribute/delete",
        "thing/attribute/query",
        "thing/tag/update",
        "thing/tag/delete",
        "thing/tag/query",
        "thing/topo/add",
        "thing/topo/delete",
        "thing/topo/get",
        "thing/device/register",
        "ota/device/inform",
        "ota/device/progress",
    ];
    const SESSION: [&str; 3] = ["combine/login", "combine/login/batch", "combine/logout"];
    let rest = topic.rest;
    if !topic.session && rest == "thing/model/up_raw" {
        return Some(Upstream::Raw);
    }
    let listed = if topic.session {
        SESSION.contains(&rest)
    } else {
        SYS.contains(&rest) || rest == "ota/device/request" || is_event_post(rest)
    };
    listed.then(|| Upstream::Request(rest.replace('/', ".")))
}

fn is_event_post(rest: &str) -> bool {
    rest.strip_prefix("thing/event/")
        .and_then(|r| r.strip_suffix("/post"))
        .is_some_and(|id| !id.is_empty() && !id.contains('/'))
}

// --- the MQTT login ------------------------------------------------------------------------------

/// The EnOS fields of an MQTT CONNECT: `{clientId}|securemode=2,signmethod=sha256,timestamp=T|`
/// as the client id and `{dk}&{pk}` as the user name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MqttLogin {
    pub client_id: String,
    pub secure_mode: u8,
    pub sign_method: String,
    /// Opaque: the Python SDK sends a float string; it is signed as sent.
    pub timestamp: String,
    pub product_key: String,
    pub device_key: String,
}

/// Why a CONNECT is not an EnOS login at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoginFormat {
    #[error("the user name is not `deviceKey&productKey`")]
    UserName,
    #[error("the client id has no `|securemode=..,signmethod=..,timestamp=..|` part")]
    ClientId,
    #[error("secure mode `{0}` is not 2, 3 or 4")]
    SecureMode(String),
    #[error("sign method `{0}` is not sha256 (or its alias hmacsha256)")]
    SignMethod(String),
}

impl MqttLogin {
    pub fn parse(client_id: &str, username: &str) -> Result<Self, LoginFormat> {
        let (device_key, product_key) = username
            .split_once('&')
            .filter(|(d, p)| !d.is_empty() && !p.is_empty())
            .ok_or(LoginFormat::UserName)?;
        let (id, rest) = client_id.split_once('|').ok_or(LoginFormat::ClientId)?;
        let attrs = rest.strip_suffix('|').ok_or(LoginFormat::ClientId)?;
        let (mut mode, mut method, mut timestamp) = (None, None, None);
        for pair in attrs.split(',') {
            match pair.split_once('=') {
                Some(("securemode", v)) => mode = Some(v),
                Some(("signmethod", v)) => method = Some(v),
                Some(("timestamp", v)) => timestamp = Some(v),
                _ => {}
            }
        }
        let mode = mode.ok_or(LoginFormat::ClientId)?;
        let secure_mode = match mode {
            "2" => 2,
            "3" => 3,
            "4" => 4,
            other => return Err(LoginFormat::SecureMode(other.into())),
        };
        let sign_method = method.ok_or(LoginFormat::ClientId)?;
        if !is_sha256(sign_method) {
            return Err(LoginFormat::SignMethod(sign_method.into()));
        }
        Ok(MqttLogin {
            client_id: id.to_string(),
            secure_mode,
            sign_method: sign_method.to_string(),
            timestamp: timestamp.ok_or(LoginFormat::ClientId)?.to_string(),
            product_key: product_key.to_string(),
            device_key: device_key.to_string(),
        })
    }
}

/// The SDKs name plain SHA-256 `sha256` (Node, C) or `hmacsha256` (Python, Java): one method.
pub fn is_sha256(method: &str) -> bool {
    method.eq_ignore_ascii_case("sha256") || method.eq_ignore_ascii_case("hmacsha256")
}

/// Whether a sign the device sent is the one expected: hex compared without regard to case
/// (the Python and Java SDKs send lower case, Node and C upper case), in time that does not
/// depend on where the first difference is.
pub fn sign_matches(expected: &str, sent: &str) -> bool {
    let (a, b) = (expected.as_bytes(), sent.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| {
        acc | (x.to_ascii_lowercase() ^ y.to_ascii_lowercase())
    }) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_take_the_code_as_a_number_or_a_string() {
        let r: Reply = serde_json::from_str(r#"{"id":"7","code":"200","data":null}"#).expect("string code");
        assert!(r.ok());
        let r: Reply = serde_json::from_str(r#"{"id":"7","code":1204,"message":"x"}"#).expect("int code");
        assert_eq!((r.code, r.message.as_str()), (1204, "x"));
        assert!(serde_json::from_str::<Reply>(r#"{"id":"7","code":"abc"}"#).is_err());
    }

    #[test]
    fn topics_imply_their_methods() {
        let method = |t: &str| split(t).and_then(|t| upstream(&t));
        assert_eq!(
            method("/sys/pk/dk/thing/measurepoint/post"),
            Some(Upstream::Request("thing.measurepoint.post".into()))
        );
        assert_eq!(
            method("/sys/pk/dk/thing/event/overheat/post"),
            Some(Upstream::Request("thing.event.overheat.post".into()))
        );
        assert_eq!(
            method("/ext/session/gp/gd/combine/login"),
            Some(Upstream::Request("combine.login".into()))
        );
        assert_eq!(method("/sys/pk/dk/thing/model/up_raw"), Some(Upstream::Raw));
        assert_eq!(method("/sys/pk/dk/thing/service/measurepoint/set"), None);
        assert_eq!(method("/sys/pk/dk/thing/event//post"), None);
        assert_eq!(method("/sys/pk"), None);
        assert!(owns("/sys/pk/dk/thing/x", "pk", "dk"));
        assert!(!owns("/sys/pk/dk2/thing/x", "pk", "dk"));
        assert!(!owns("/sys/pk/dkx/thing", "pk", "dk"));
    }

    #[test]
    fn the_mqtt_login_parses_as_the_sdks_send_it() {
        let l = MqttLogin::parse(
            "dk1|securemode=2,signmethod=hmacsha256,timestamp=1795641004085.025|",
            "dk1&pk1",
        )
        .expect("the Python SDK's login");
        assert_eq!(
            (l.secure_mode, l.timestamp.as_str(), l.product_key.as_str()),
            (2, "1795641004085.025", "pk1")
        );
        assert_eq!(MqttLogin::parse("x", "dk&pk"), Err(LoginFormat::ClientId));
        assert_eq!(
            MqttLogin::parse("x|securemode=9,signmethod=sha256,timestamp=1|", "dk&pk"),
            Err(LoginFormat::SecureMode("9".into()))
        );
        assert_eq!(
            MqttLogin::parse("x|securemode=2|", "nope"),
            Err(LoginFormat::UserName)
        );
        assert!(sign_matches("ABCdef", "abcDEF"));
        assert!(!sign_matches("ABCdef", "abcDEE"));
        assert!(!sign_matches("ABC", "ABCD"));
    }
}
