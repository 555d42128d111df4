//! The EnOS device protocol, in one place for `probe`, `serve` and `plan`: the message envelope,
//! topics and the method each implies, the reply codes and what they mean, and the MQTT login
//! as the SDKs send it. The signs themselves are computed from the recipes in
//! `capabilities.toml` ([`crate::credentials`]), so a recipe is written once.
//!
//! Facts from the EnOS device-connection documentation and the official SDKs; see
//! `shared/reference/enos-device-protocol.md`. "Assumed" marks what no source states.
//!
//! Why one file of over 600 lines: the upstream and downstream tables are the one place that
//! says what EnOS accepts and sends, and they sit beside the envelope and codes they use; a
//! fifth of the file is their tests.

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

/// What a client reads of a reply, straight from its bytes: the id (a string, or a number read
/// as its text, as [`reply_id`]), the code and the message; `data` is skipped unread. A probe
/// reads a reply per request, and a tree of `Value`s for each was a tenth of a load probe's
/// work (docs/performance.md).
#[derive(Debug, Deserialize)]
pub struct ReplyHead<'a> {
    #[serde(default, borrow, deserialize_with = "id_text")]
    pub id: Option<std::borrow::Cow<'a, str>>,
    #[serde(deserialize_with = "int_or_string")]
    pub code: i64,
    #[serde(default, borrow)]
    pub message: std::borrow::Cow<'a, str>,
}

fn id_text<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<std::borrow::Cow<'de, str>>, D::Error> {
    use std::borrow::Cow;
    struct Text;
    impl<'de> serde::de::Visitor<'de> for Text {
        type Value = Option<Cow<'de, str>>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a string or a number")
        }
        fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
            Ok(Some(Cow::Borrowed(v)))
        }
        fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
            Ok(Some(Cow::Owned(v.to_string())))
        }
        fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
            Ok(Some(Cow::Owned(v.to_string())))
        }
        fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
            Ok(Some(Cow::Owned(v.to_string())))
        }
        fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
            Ok(Some(Cow::Owned(
                serde_json::Number::from_f64(v).map_or_else(String::new, |n| n.to_string()),
            )))
        }
        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
            Ok(None)
        }
    }
    d.deserialize_any(Text)
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

/// A request's JSON from borrowed parts: what [`Request::to_bytes`] gives for a request of
/// version 1.0 with these fields, without building `params` as a tree of values first (a load
/// probe posts one per probe).
pub fn request_bytes(id: &str, method: &str, params: &impl Serialize) -> Vec<u8> {
    #[derive(Serialize)]
    struct Borrowed<'a, P> {
        id: &'a str,
        version: &'a str,
        method: &'a str,
        params: &'a P,
    }
    let request = Borrowed {
        id,
        version: "1.0",
        method,
        params,
    };
    serde_json::to_vec(&request).unwrap_or_default()
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
pub(crate) fn new_id() -> String {
    (crate::random::random_u64() % 1_000_000_000).to_string()
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

pub(crate) const SUCCESS: i64 = 200;
pub(crate) const TOO_LARGE: i64 = 1008;
pub(crate) const NO_PERMISSION: i64 = 1009;
pub(crate) const MODEL_INVALID: i64 = 1204;
pub(crate) const BAD_FORMAT: i64 = 1220;
pub(crate) const EMPTY: i64 = 1251;
pub(crate) const METHOD_MISMATCH: i64 = 1260;
pub(crate) const SUB_NO_DEVICE: i64 = 705;
pub(crate) const SUB_DISABLED: i64 = 723;
pub(crate) const SUB_NOT_IN_TOPOLOGY: i64 = 740;
pub(crate) const SUB_BAD_SIGN: i64 = 742;
/// Dynamic activation is not allowed (documented among the login codes).
pub(crate) const DYNAMIC_NOT_ALLOWED: i64 = 770;
/// The login and parameter codes of EnOS's HTTP and CoAP answers, and of serve's own limits.
pub(crate) const INTERNAL_ERROR: i64 = 400;
pub(crate) const AUTH_FAILED: i64 = 401;
pub(crate) const DEVICE_NOT_FOUND: i64 = 402;
pub(crate) const TOO_MANY_REQUESTS: i64 = 429;
pub(crate) const PARAMETER_ERROR: i64 = 460;

/// The documented meaning of an EnOS reply code.
pub(crate) fn meaning(code: i64) -> Option<&'static str> {
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
        770 => "dynamic activation is not allowed",
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
pub(crate) fn describe(code: i64, message: &str) -> String {
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
pub(crate) fn owns(topic: &str, pk: &str, dk: &str) -> bool {
    let of = |root: &str| {
        topic
            .strip_prefix(root)
            .and_then(|t| t.strip_prefix(pk))
            .and_then(|t| t.strip_prefix('/'))
            .and_then(|t| t.strip_prefix(dk))
            .is_some_and(|t| t.starts_with('/'))
    };
    if dk == INTEGRATION_DK {
        return topic
            .strip_prefix("/sys/")
            .and_then(|t| t.strip_prefix(pk))
            .is_some_and(|t| t.starts_with("/integration/"));
    }
    of("/sys/") || of("/ext/session/")
}

/// `topic` + `_reply`.
pub fn reply_topic(topic: &str) -> String {
    format!("{topic}_reply")
}

pub fn measurepoint_post(pk: &str, dk: &str) -> String {
    format!("/sys/{pk}/{dk}/thing/measurepoint/post")
}

/// The CoAP option in which EnOS announces a command waiting for the device, on the response
/// to its next request: `/topic/{RequestTopic}`, which the device then GETs.
pub(crate) const COAP_COMMAND_OPTION: u16 = 2100;

pub fn activate_info(pk: &str, dk: &str) -> String {
    format!("/ext/session/{pk}/{dk}/thing/activate/info")
}

pub(crate) fn combine_login(gw_pk: &str, gw_dk: &str) -> String {
    format!("/ext/session/{gw_pk}/{gw_dk}/combine/login")
}

pub(crate) const MEASUREPOINT_POST: &str = "thing.measurepoint.post";
pub(crate) const ACTIVATE_INFO: &str = "thing.activate.info";
pub(crate) const COMBINE_LOGIN: &str = "combine.login";
pub(crate) const MEASUREPOINT_SET: &str = "thing.service.measurepoint.set";
pub(crate) const MEASUREPOINT_GET: &str = "thing.service.measurepoint.get";
/// The canonical methods of the four measure point topics (post, batch, resume, resume batch),
/// as [`upstream`] names them.
pub(crate) const MEASUREPOINT_POSTS: [&str; 4] = [
    MEASUREPOINT_POST,
    "thing.measurepoint.post.batch",
    MEASUREPOINT_RESUME,
    "thing.measurepoint.resume.batch",
];
pub(crate) const MEASUREPOINT_RESUME: &str = "thing.measurepoint.resume";
/// The methods both SDKs send on `ota/device/progress` and `ota/device/inform` (the canonical
/// ones [`upstream`] names).
pub(crate) const OTA_PROGRESS: &str = "ota.progress";
pub(crate) const OTA_INFORM: &str = "ota.inform";
pub(crate) const OTA_UPGRADE: &str = "ota.device.upgrade";
/// The failure steps a device reports with `ota.progress` (the SDKs' OTAUpdateFailureCause).
pub(crate) const OTA_FAILURE_STEPS: [(i64, &str); 5] = [
    (-1, "undefined failure"),
    (-2, "firmware download failed"),
    (-3, "firmware verification failed"),
    (-4, "failed to write the firmware"),
    (-5, "the device declined the upgrade"),
];

/// Where a topic lives: `/sys/{pk}/{dk}/`, `/ext/session/{pk}/{dk}/`, or message
/// integration's `/sys/{pk}/integration/` (whose device key is `%channel%`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Root {
    Sys,
    Session,
    Integration,
}

/// The device key of a message integration login (securemode 4).
pub(crate) const INTEGRATION_DK: &str = "%channel%";

/// A topic split into its root, product key, device key and the rest (`thing/measurepoint/post`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topic<'t> {
    pub root: Root,
    pub product_key: &'t str,
    /// `INTEGRATION_DK` under [`Root::Integration`].
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
    if !session && device_key == "integration" && integration_topic(rest).is_some() {
        return Some(Topic {
            root: Root::Integration,
            product_key,
            device_key: INTEGRATION_DK,
            rest,
        });
    }
    Some(Topic {
        root: if session { Root::Session } else { Root::Sys },
        product_key,
        device_key,
        rest,
    })
}

fn integration_topic(rest: &str) -> Option<&'static UpstreamTopic> {
    UPSTREAM
        .iter()
        .find(|u| u.root == Root::Integration && u.pattern == rest)
}

/// One upstream topic of the EnOS device protocol and the methods accepted on it: what the
/// official SDKs send (Python 0.1.1, Java), then the forms the EnOS documentation writes where
/// they differ. Methods do not always follow the topic: both SDKs send `ota.inform` on
/// `ota/device/inform`, and `Ota.device.getversion` (capital O) on `ota/device/getversion`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct UpstreamTopic {
    pub root: Root,
    /// The topic after `/sys/{pk}/{dk}/` (or the other roots); `{id}` is one segment.
    pub pattern: &'static str,
    /// The methods accepted, the canonical one first; `{id}` is the segment's value.
    pub methods: &'static [&'static str],
    /// Raw bytes for the product's parsing script, not a JSON request.
    pub raw: bool,
}

const fn up(root: Root, pattern: &'static str, methods: &'static [&'static str]) -> UpstreamTopic {
    UpstreamTopic {
        root,
        pattern,
        methods,
        raw: false,
    }
}

const fn raw(root: Root, pattern: &'static str, method: &'static [&'static str]) -> UpstreamTopic {
    UpstreamTopic {
        root,
        pattern,
        methods: method,
        raw: true,
    }
}

/// Every upstream topic `serve` answers: topic to the methods accepted; the comment says what
/// the reply's `data` holds.
#[rustfmt::skip]
pub(crate) const UPSTREAM: &[UpstreamTopic] = &[
    up(Root::Sys, "thing/measurepoint/post", &["thing.measurepoint.post"]), // data null
    up(Root::Sys, "thing/measurepoint/post/batch", &["thing.measurepoint.post.batch"]), // data null; the first failing code
    up(Root::Sys, "thing/measurepoint/resume", &["thing.measurepoint.resume"]), // data null
    up(Root::Sys, "thing/measurepoint/resume/batch", &["thing.measurepoint.resume.batch"]), // data null
    // Python SDK 0.1.1 appends the id to the format: `thing.event.%s.post{id}`.
    up(Root::Sys, "thing/event/{id}/post", &["thing.event.{id}.post", "thing.event.%s.post{id}"]), // data null
    up(Root::Sys, "thing/attribute/update", &["thing.attribute.update"]), // data null
    up(Root::Sys, "thing/attribute/query", &["thing.attribute.query"]), // data {attrId: value}
    up(Root::Sys, "thing/attribute/delete", &["thing.attribute.delete"]), // data null
    up(Root::Sys, "thing/tag/update", &["thing.tag.update"]), // data null
    up(Root::Sys, "thing/tag/query", &["thing.tag.query"]), // data {tagKey: value}
    up(Root::Sys, "thing/tag/delete", &["thing.tag.delete"]), // data null
    up(Root::Sys, "thing/topo/add", &["thing.topo.add"]), // data null
    up(Root::Sys, "thing/topo/delete", &["thing.topo.delete"]), // data null
    up(Root::Sys, "thing/topo/get", &["thing.topo.get"]), // data [{productKey, deviceKey}]
    up(Root::Sys, "thing/device/register", &["thing.device.register"]), // data [{productKey, deviceKey, deviceSecret, assetId}]
    up(Root::Sys, "thing/tsltemplate/get", &["thing.tsltemplate.get"]), // data: the product's thing model
    // The Java SDK's device log, network and connection state reports (methods assumed from the
    // topics: the stored MethodConstants does not show the last two).
    up(Root::Sys, "thing/log/post", &["thing.log.post"]), // data null
    up(Root::Sys, "network/status/report", &["network.status.report"]), // data null
    up(Root::Sys, "connection/state/post", &["connection.state.post"]), // data null
    raw(Root::Sys, "thing/model/up_raw", &["thing.model.up_raw"]), // a raw reply on up_raw_reply
    up(Root::Sys, "ota/device/inform", &["ota.inform", "ota.device.inform"]), // data null
    up(Root::Sys, "ota/device/progress", &["ota.progress", "ota.device.progress"]), // data null
    up(Root::Sys, "ota/device/request", &["ota.request", "ota.device.request"]), // data [{version, signMethod, sign, fileUrl, fileSize}]
    up(Root::Sys, "ota/device/getversion", &["Ota.device.getversion", "ota.device.getversion"]), // data [{version, signMethod, sign, fileUrl, fileSize}]
    up(Root::Session, "combine/login", &["combine.login"]), // data {productKey, deviceKey}
    up(Root::Session, "combine/login/batch", &["combine.login.batch"]), // data {loginedSubDevices}
    up(Root::Session, "combine/logout", &["combine.logout"]), // data {productKey, deviceKey}
    up(Root::Integration, "measurepoint/post", &["integration.measurepoint.post"]), // params [{deviceKey, time, measurepoints}]
    up(Root::Integration, "event/post", &["integration.event.post"]), // params [{deviceKey, time, events}]
    up(Root::Integration, "attribute/post", &["integration.attribute.post"]), // params [{deviceKey, attributes}]
    raw(Root::Integration, "model/up_raw", &["integration.model.up_raw"]), // a raw reply on up_raw_reply
];

/// What a device may send on a topic and EnOS answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Upstream {
    /// A JSON request: the canonical method, and every method accepted (the canonical first).
    Request { method: String, accepted: Vec<String> },
    /// Raw bytes for the product's parsing script (`thing/model/up_raw`), answered with raw
    /// bytes on `up_raw_reply`.
    Raw(String),
}

impl Upstream {
    pub fn method(&self) -> &str {
        match self {
            Upstream::Request { method, .. } | Upstream::Raw(method) => method,
        }
    }
}

/// The upstream request a topic carries, from `UPSTREAM`. `None`: not an upstream topic.
pub fn upstream(topic: &Topic<'_>) -> Option<Upstream> {
    UPSTREAM.iter().filter(|u| u.root == topic.root).find_map(|u| {
        let id = match_pattern(u.pattern, topic.rest)?;
        let fill = |m: &&str| m.replace("{id}", id.unwrap_or_default());
        let accepted: Vec<String> = u.methods.iter().map(fill).collect();
        let method = accepted.first()?.clone();
        Some(if u.raw {
            Upstream::Raw(method)
        } else {
            Upstream::Request { method, accepted }
        })
    })
}

/// Whether `rest` matches `pattern` (whose `{id}` is one non-empty segment): the segment's
/// value, if the pattern has one.
fn match_pattern<'r>(pattern: &str, rest: &'r str) -> Option<Option<&'r str>> {
    let (mut p, mut r) = (pattern.split('/'), rest.split('/'));
    let mut id = None;
    loop {
        match (p.next(), r.next()) {
            (None, None) => return Some(id),
            (Some("{id}"), Some(seg)) if !seg.is_empty() => id = Some(seg),
            (Some(a), Some(b)) if a == b => {}
            _ => return None,
        }
    }
}

/// What EnOS sends a device (downstream), each answered on its topic + `_reply`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Downstream {
    MeasurepointSet,
    MeasurepointGet,
    /// `thing.service.{serviceId}` on `thing/service/{serviceId}`.
    Service,
    /// Raw bytes on `thing/model/down_raw`; the reply is raw bytes too.
    Raw,
    /// `ota.device.upgrade`, params the firmware `{version, signMethod, sign, fileUrl, fileSize}`.
    OtaUpgrade,
    /// `combine.enable|disable|delete` on the gateway's session topic, params the sub-device.
    SubLifecycle(Lifecycle),
    /// `thing.enable|disable|delete` on the device's own topic.
    Lifecycle(Lifecycle),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lifecycle {
    Enable,
    Disable,
    Delete,
}

/// One downstream method and where it goes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DownstreamMethod {
    /// `thing.service.{serviceId}` stands for every service.
    pub method: &'static str,
    /// After `/sys/{pk}/{dk}/` (or `/ext/session/{gwPk}/{gwDk}/` for `combine.*`).
    pub topic: &'static str,
    pub kind: Downstream,
}

/// Every command EnOS sends a device, from the SDKs' command classes.
#[rustfmt::skip]
pub(crate) const DOWNSTREAM: &[DownstreamMethod] = &[
    DownstreamMethod { method: "thing.service.measurepoint.set", topic: "thing/service/measurepoint/set", kind: Downstream::MeasurepointSet },
    DownstreamMethod { method: "thing.service.measurepoint.get", topic: "thing/service/measurepoint/get", kind: Downstream::MeasurepointGet },
    DownstreamMethod { method: "thing.service.{serviceId}", topic: "thing/service/{serviceId}", kind: Downstream::Service },
    DownstreamMethod { method: "thing.model.down_raw", topic: "thing/model/down_raw", kind: Downstream::Raw },
    DownstreamMethod { method: "ota.device.upgrade", topic: "ota/device/upgrade", kind: Downstream::OtaUpgrade },
    DownstreamMethod { method: "combine.enable", topic: "combine/enable", kind: Downstream::SubLifecycle(Lifecycle::Enable) },
    DownstreamMethod { method: "combine.disable", topic: "combine/disable", kind: Downstream::SubLifecycle(Lifecycle::Disable) },
    DownstreamMethod { method: "combine.delete", topic: "combine/delete", kind: Downstream::SubLifecycle(Lifecycle::Delete) },
    DownstreamMethod { method: "thing.enable", topic: "thing/enable", kind: Downstream::Lifecycle(Lifecycle::Enable) },
    DownstreamMethod { method: "thing.disable", topic: "thing/disable", kind: Downstream::Lifecycle(Lifecycle::Disable) },
    DownstreamMethod { method: "thing.delete", topic: "thing/delete", kind: Downstream::Lifecycle(Lifecycle::Delete) },
];

/// The downstream kind of `method`, and the service id of `thing.service.{serviceId}`.
pub(crate) fn downstream(method: &str) -> Option<(Downstream, Option<&str>)> {
    if let Some(d) = DOWNSTREAM.iter().find(|d| d.method == method) {
        return Some((d.kind, None));
    }
    let service = method.strip_prefix("thing.service.")?;
    let valid = !service.is_empty()
        && service
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    valid.then_some((Downstream::Service, Some(service)))
}

impl Downstream {
    /// The topic of a command for device `id` (the gateway for `combine.*`).
    pub fn topic(self, pk: &str, dk: &str, service: Option<&str>) -> String {
        let tail = DOWNSTREAM
            .iter()
            .find(|d| d.kind == self)
            .map(|d| d.topic)
            .unwrap_or_default();
        let tail = match service {
            Some(s) => tail.replace("{serviceId}", s),
            None => tail.to_string(),
        };
        match self {
            Downstream::SubLifecycle(_) => format!("/ext/session/{pk}/{dk}/{tail}"),
            _ => format!("/sys/{pk}/{dk}/{tail}"),
        }
    }
}

// --- the MQTT login ------------------------------------------------------------------------------

/// The EnOS fields of an MQTT CONNECT: `{clientId}|securemode=2,signmethod=sha256,timestamp=T|`
/// as the client id and `{dk}&{pk}` as the user name.
// Public for fuzz/fuzz_targets/serve_input.rs only.
#[doc(hidden)]
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
pub(crate) fn is_sha256(method: &str) -> bool {
    method.eq_ignore_ascii_case("sha256") || method.eq_ignore_ascii_case("hmacsha256")
}

/// Whether a sign the device sent is the one expected: hex compared without regard to case
/// (the Python and Java SDKs send lower case, Node and C upper case), in time that does not
/// depend on where the first difference is.
pub(crate) fn sign_matches(expected: &str, sent: &str) -> bool {
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
    fn a_request_from_borrowed_parts_is_the_request_to_bytes_writes() {
        let params = serde_json::json!({"measurepoints": {"temp": 21.5, "s": "x\"y"}, "time": 5});
        let request = Request::new("7", MEASUREPOINT_POST, params.clone());
        assert_eq!(request_bytes("7", MEASUREPOINT_POST, &params), request.to_bytes());
        // Another version is kept by to_bytes; request_bytes writes 1.0 only.
        let mut v2 = request.clone();
        v2.version = "2.0".into();
        assert!(String::from_utf8_lossy(&v2.to_bytes()).contains(r#""version":"2.0""#));
    }

    #[test]
    fn replies_take_the_code_as_a_number_or_a_string() {
        let r: Reply = serde_json::from_str(r#"{"id":"7","code":"200","data":null}"#).expect("string code");
        assert!(r.ok());
        let r: Reply = serde_json::from_str(r#"{"id":"7","code":1204,"message":"x"}"#).expect("int code");
        assert_eq!((r.code, r.message.as_str()), (1204, "x"));
        assert!(serde_json::from_str::<Reply>(r#"{"id":"7","code":"abc"}"#).is_err());
    }

    #[test]
    fn a_reply_head_reads_id_code_and_message_and_skips_data() {
        fn head(text: &str) -> Result<ReplyHead<'_>, serde_json::Error> {
            serde_json::from_str(text)
        }
        let r = head(r#"{"data":{"a":[1,{"b":2}]},"code":"200","id":"7"}"#).expect("string code");
        assert_eq!((r.id.as_deref(), r.code, &*r.message), (Some("7"), 200, ""));
        let r = head(r#"{"id":42,"code":1204,"message":"model \"x\""}"#).expect("number id");
        assert_eq!(
            (r.id.as_deref(), r.code, &*r.message),
            (Some("42"), 1204, "model \"x\"")
        );
        assert_eq!(head(r#"{"code":200}"#).expect("no id").id, None);
        assert!(
            head(r#"{"id":"7","code":"abc"}"#)
                .expect_err("bad code")
                .is_data()
        );
        assert!(head(r#"{"id":"7"}"#).expect_err("no code").is_data());
        assert!(head(r#"{"id":"7","#).expect_err("cut").is_eof());
    }

    #[test]
    fn topics_imply_their_methods() {
        let method = |t: &str| split(t).and_then(|t| upstream(&t));
        assert_eq!(
            method("/sys/pk/dk/thing/measurepoint/post"),
            Some(Upstream::Request {
                method: "thing.measurepoint.post".into(),
                accepted: vec!["thing.measurepoint.post".into()]
            })
        );
        assert_eq!(
            method("/sys/pk/dk/thing/event/overheat/post"),
            Some(Upstream::Request {
                method: "thing.event.overheat.post".into(),
                accepted: vec![
                    "thing.event.overheat.post".into(),
                    "thing.event.%s.postoverheat".into()
                ]
            })
        );
        assert_eq!(
            method("/ext/session/gp/gd/combine/login").map(|u| u.method().to_string()),
            Some("combine.login".into())
        );
        assert_eq!(
            method("/sys/pk/dk/thing/model/up_raw"),
            Some(Upstream::Raw("thing.model.up_raw".into()))
        );
        assert_eq!(
            method("/sys/pk/dk/ota/device/getversion").map(|u| u.method().to_string()),
            Some("Ota.device.getversion".into())
        );
        let t = split("/sys/pk/integration/measurepoint/post").expect("an integration topic");
        assert_eq!((t.root, t.device_key), (Root::Integration, INTEGRATION_DK));
        assert_eq!(
            split("/sys/pk/integration/thing/x").map(|t| t.root),
            Some(Root::Sys),
            "a device named integration"
        );
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
