//! EnOS login material computed from the recipes in `capabilities.toml`: the MQTT CONNECT
//! fields, the HTTP auth sign and request, the CoAP DTLS-PSK identity and key and its non-DTLS
//! auth sign. A sign is the uppercase hex SHA-256 of the recipe's content followed by the secret.
//!
//! The secret is held in [`Secret`] (from [`crate::secret`]), which never prints itself and is
//! wiped when dropped.

use std::collections::BTreeMap;

use serde::Serialize;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::capabilities::{Capabilities, CredentialRecipe, SecureMode};
use crate::secret::Secret;

#[derive(Debug, Clone)]
pub struct CredentialRequest {
    pub protocol: String,
    pub product_key: String,
    pub device_key: String,
    /// `static` or `dynamic` (the keys of `[secure_modes]`).
    pub mode: String,
    pub client_id: Option<String>,
    pub timestamp: u64,
    pub lifetime: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuthRequest {
    pub method: String,
    pub path: String,
    pub body: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub protocol: String,
    pub secure_mode: String,
    pub secure_mode_value: u8,
    pub timestamp: Option<u64>,
    pub lifetime: Option<(u64, String)>,
    /// Output fields in order (`client_id`, `username`, `password`; `sign`; `psk_identity`, ...).
    pub fields: Vec<(String, String)>,
    pub request: Option<AuthRequest>,
    pub steps: Vec<String>,
}

impl Credentials {
    /// The fields that say something the protocol, secure mode and timestamp rows do not: a
    /// sub-device login carries `secureMode` and `timestamp` among its fields, as strings, and
    /// a table or JSON object with both would say each twice, once as a number.
    pub fn fields_beside_metadata(&self) -> impl Iterator<Item = &(String, String)> {
        self.fields
            .iter()
            .filter(|(k, _)| !matches!(k.as_str(), "timestamp" | "secureMode"))
    }

    /// One output field (`client_id`, `password`, `psk_key`, ...).
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error("no credential recipe for `{name}`{}", .why.as_deref().map(|w| format!(": {w}")).unwrap_or_default())]
    UnknownProtocol {
        name: String,
        /// What the name is instead: a URL scheme, or the recipe it resembles.
        why: Option<String>,
        known: String,
    },
    #[error("{protocol} does not support --secure-mode {mode}")]
    Mode {
        protocol: String,
        mode: String,
        modes: String,
    },
    #[error("--lifetime {value} is out of range for {protocol}")]
    Lifetime {
        protocol: String,
        value: u64,
        min: u64,
        max: u64,
        unit: String,
    },
    #[error("{flag} is empty")]
    EmptyKey { flag: &'static str },
}

impl crate::help::Help for CredentialsError {
    fn help(&self) -> Option<String> {
        Some(match self {
            CredentialsError::UnknownProtocol { known, .. } => format!("use one of {known}"),
            CredentialsError::Mode { protocol, modes, .. } => format!("{protocol} supports {modes}"),
            CredentialsError::Lifetime { min, max, unit, .. } => format!("use {min} to {max} {unit}"),
            CredentialsError::EmptyKey { .. } => {
                "give the key shown for the device in the EnOS console".into()
            }
        })
    }
}

/// Replace `{name}` placeholders with the given values; unknown placeholders stay as they are.
/// One pass over the template, and a value is never searched for placeholders itself: every
/// login (the probe's, and serve checking one) fills several templates, and a `replace` per
/// variable was half of a load probe's instructions (docs/performance.md).
pub(crate) fn fill(template: &str, vars: &BTreeMap<&str, String>) -> String {
    let mut out = String::with_capacity(template.len() + 64);
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        match placeholder(after).and_then(|(name, end)| Some((vars.get(name)?, end))) {
            Some((value, end)) => {
                out.push_str(value);
                rest = &after[end + 1..];
            }
            None => {
                out.push('{');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// The name of the placeholder that `after` (what follows a `{`) opens, and where its `}` is.
fn placeholder(after: &str) -> Option<(&str, usize)> {
    after
        .find(['{', '}'])
        .filter(|&end| after.as_bytes()[end] == b'}')
        .map(|end| (&after[..end], end))
}

/// [`fill`], but every `{client_id}` left open: the filled text around its places, in order,
/// one more than the places.
fn fill_around_client_id(template: &str, vars: &BTreeMap<&str, String>) -> Vec<String> {
    let mut parts = vec![String::new()];
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let (done, after) = (&rest[..open], &rest[open + 1..]);
        let last = parts.len() - 1;
        parts[last].push_str(done);
        match placeholder(after) {
            Some(("client_id", end)) => {
                parts.push(String::new());
                rest = &after[end + 1..];
            }
            Some((name, end)) if vars.contains_key(name) => {
                parts[last].push_str(&vars[name]);
                rest = &after[end + 1..];
            }
            _ => {
                parts[last].push('{');
                rest = after;
            }
        }
    }
    let last = parts.len() - 1;
    parts[last].push_str(rest);
    parts
}

/// `parts` joined with `client_id` between them.
fn join_around(parts: &[String], client_id: &str, out: &mut String) {
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            out.push_str(client_id);
        }
        out.push_str(part);
    }
}

/// A device's login for one recipe, worked out once for many logins that differ only in their
/// client id: a load probe logs in thousands of times with the same keys, secret, secure mode
/// and timestamp, and each probe's own client id (`{deviceKey}.{n}`). The checks are made and
/// every other placeholder filled here; [`PreparedLogin::fields`] then puts the client id in
/// and signs. Its fields are those [`compute`] gives for the same request (a test holds it).
#[derive(Debug)]
pub struct PreparedLogin {
    protocol: String,
    mode: String,
    fields: Vec<(String, Vec<String>)>,
    sign_field: String,
    sign: Vec<String>,
}

impl PreparedLogin {
    /// `req`'s login with its client id left open; `None` for a recipe that derives more than
    /// fields and a sign (a PSK, an auth request), which [`compute`] then works out each time.
    pub fn new(caps: &Capabilities, req: &CredentialRequest) -> Result<Option<Self>, CredentialsError> {
        let recipe = recipe(caps, &req.protocol)?;
        let (mode, lifetime) = checked(caps, recipe, req)?;
        if recipe.psk_key.is_some() || recipe.request.is_some() {
            return Ok(None);
        }
        let vars = variables(req, mode, lifetime.as_ref().map(|(value, _)| *value));
        Ok(Some(PreparedLogin {
            protocol: req.protocol.clone(),
            mode: req.mode.clone(),
            fields: recipe
                .fields
                .iter()
                .map(|(name, t)| (name.clone(), fill_around_client_id(t, &vars)))
                .collect(),
            sign_field: recipe.sign.field.clone(),
            sign: fill_around_client_id(&recipe.sign.content, &vars),
        }))
    }

    /// Whether this is the login of `protocol`'s recipe in secure mode `mode`.
    pub fn is_for(&self, protocol: &str, mode: &str) -> bool {
        self.protocol == protocol && self.mode == mode
    }

    /// The output fields (as [`Credentials::fields`]) for one login as `client_id`.
    pub fn fields(&self, client_id: &str, secret: &Secret) -> Vec<(&str, String)> {
        let mut out = Vec::with_capacity(self.fields.len() + 1);
        for (name, parts) in &self.fields {
            let mut value =
                String::with_capacity(parts.iter().map(String::len).sum::<usize>() + client_id.len());
            join_around(parts, client_id, &mut value);
            out.push((name.as_str(), value));
        }
        let mut content = String::with_capacity(128);
        join_around(&self.sign, client_id, &mut content);
        out.push((self.sign_field.as_str(), sign(&content, secret)));
        out
    }
}

/// Whether `template` has the placeholder `{name}`.
fn names(template: &str, name: &str) -> bool {
    template
        .match_indices(name)
        .any(|(at, _)| template[..at].ends_with('{') && template[at + name.len()..].starts_with('}'))
}

/// Milliseconds since the epoch: the default login timestamp.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The sign method enos-connect sends: plain SHA-256 (EnOS also takes the SDKs' alias
/// `hmacsha256` for the same digest).
pub(crate) const SIGN_METHOD: &str = "sha256";

/// The sign a recipe expects for values a device sent (a server checks a login with it):
/// `vars` fill the recipe's sign content, as they filled it on the device.
pub fn expected_sign(
    caps: &Capabilities,
    recipe: &str,
    vars: &BTreeMap<&str, String>,
    secret: &Secret,
) -> Option<String> {
    let r = caps.credentials.get(recipe)?;
    Some(sign(&fill(&r.sign.content, vars), secret))
}

/// The DTLS pre-shared key a recipe derives from a secret (bytes of its SHA-256).
pub(crate) fn psk_key(psk: &crate::capabilities::PskKeyRecipe, secret: &Secret) -> Zeroizing<Vec<u8>> {
    let digest = Sha256::digest(secret.expose().as_bytes());
    let end = psk.digest_from.saturating_add(psk.len).min(digest.len());
    let from = psk.digest_from.min(end);
    Zeroizing::new(digest[from..end].to_vec())
}

/// Uppercase hex SHA-256 of `content` followed by the secret.
pub(crate) fn sign(content: &str, secret: &Secret) -> String {
    let mut input = Zeroizing::new(String::with_capacity(content.len() + secret.expose().len()));
    input.push_str(content);
    input.push_str(secret.expose());
    hex_upper(&Sha256::digest(input.as_bytes()))
}

fn hex_upper(bytes: &[u8]) -> String {
    hex(bytes, b"0123456789ABCDEF")
}

pub(crate) fn hex_lower(bytes: &[u8]) -> String {
    hex(bytes, b"0123456789abcdef")
}

/// Two digits a byte from `digits`, without the formatter: a sign is computed on every login.
/// The digits go in as bytes, not as `char`s, which `String::push` encodes one at a time.
fn hex(bytes: &[u8], digits: &[u8; 16]) -> String {
    let mut out = Vec::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.extend_from_slice(&[digits[usize::from(b >> 4)], digits[usize::from(b & 0x0f)]]);
    }
    // Every byte is one of `digits`, ASCII.
    String::from_utf8(out).unwrap_or_default()
}

/// The login recipe called `name` (`mqtt`, `http`, `coap`, `subdevice`). A URL scheme
/// (`mqtts`) is not one: the error names the protocol whose login it is; a typo gets "did you
/// mean".
pub(crate) fn recipe<'c>(
    caps: &'c Capabilities,
    name: &str,
) -> Result<&'c CredentialRecipe, CredentialsError> {
    if let Some(r) = caps.credentials.get(name) {
        return Ok(r);
    }
    let scheme_of = caps.protocols.iter().find_map(|p| {
        let port = p.ports.iter().find(|x| x.scheme == name && p.id != name)?;
        caps.credentials.contains_key(&p.id).then(|| {
            format!(
                "`{name}` is the URL scheme of {} over {}, and the login is the same with or without it: `credentials {}`",
                p.title,
                port.security.to_ascii_uppercase(),
                p.id
            )
        })
    });
    let why = scheme_of.or_else(|| {
        crate::source_text::nearest(name, caps.credentials.keys().map(String::as_str))
            .map(|n| format!("did you mean `{n}`?"))
    });
    Err(CredentialsError::UnknownProtocol {
        name: name.to_string(),
        why,
        known: caps.credentials.keys().cloned().collect::<Vec<_>>().join(", "),
    })
}

pub fn compute(
    caps: &Capabilities,
    req: &CredentialRequest,
    secret: &Secret,
) -> Result<Credentials, CredentialsError> {
    let recipe = recipe(caps, &req.protocol)?;
    let (mode, lifetime) = checked(caps, recipe, req)?;
    let mut vars = variables(req, mode, lifetime.as_ref().map(|(value, _)| *value));
    let mut fields: Vec<(String, String)> = recipe
        .fields
        .iter()
        .map(|(name, t)| (name.clone(), fill(t, &vars)))
        .collect();
    if let Some(psk) = &recipe.psk_key {
        fields.push((psk.field.clone(), hex_lower(&psk_key(psk, secret))));
    }
    let signed = sign(&fill(&recipe.sign.content, &vars), secret);
    fields.push((recipe.sign.field.clone(), signed.clone()));
    vars.insert("sign", signed);
    let uses = |name: &str| {
        std::iter::once(&recipe.sign.content)
            .chain(recipe.fields.values())
            .any(|t| names(t, name))
    };
    let steps = if req.mode == "dynamic" {
        recipe.dynamic_steps.iter().map(|s| fill(s, &vars)).collect()
    } else {
        Vec::new()
    };
    Ok(Credentials {
        protocol: req.protocol.clone(),
        secure_mode: req.mode.clone(),
        secure_mode_value: mode.value,
        timestamp: uses("timestamp").then_some(req.timestamp),
        lifetime,
        fields,
        request: recipe.request.as_ref().map(|r| AuthRequest {
            method: r.method.clone(),
            path: fill(&r.path, &vars),
            body: fill(&r.body, &vars),
        }),
        steps,
    })
}

/// A lifetime in its unit (`300000`, `ms`).
type LifetimeValue = (u64, String);

/// `req` checked against `recipe`: its secure mode (which the recipe must sign for), keys that
/// are not empty, and its lifetime.
fn checked<'c>(
    caps: &'c Capabilities,
    recipe: &CredentialRecipe,
    req: &CredentialRequest,
) -> Result<(&'c SecureMode, Option<LifetimeValue>), CredentialsError> {
    let mode = caps
        .secure_modes
        .get(&req.mode)
        .filter(|_| recipe.modes.contains(&req.mode))
        .ok_or_else(|| CredentialsError::Mode {
            protocol: req.protocol.clone(),
            mode: req.mode.clone(),
            modes: recipe.modes.join(", "),
        })?;
    if req.product_key.trim().is_empty() {
        return Err(CredentialsError::EmptyKey {
            flag: "--product-key",
        });
    }
    if req.device_key.trim().is_empty() {
        return Err(CredentialsError::EmptyKey { flag: "--device-key" });
    }
    Ok((mode, lifetime(recipe, req)?))
}

/// The lifetime the request asks for (or the recipe's default), in its unit, checked against
/// the recipe's range; `None` when the recipe has none.
fn lifetime(
    recipe: &CredentialRecipe,
    req: &CredentialRequest,
) -> Result<Option<(u64, String)>, CredentialsError> {
    let Some(l) = &recipe.lifetime else {
        return Ok(None);
    };
    let value = req.lifetime.unwrap_or(l.default);
    let (min, max) = (l.min.unwrap_or(1), l.max.unwrap_or(u64::MAX));
    if value < min || value > max {
        return Err(CredentialsError::Lifetime {
            protocol: req.protocol.clone(),
            value,
            min,
            max,
            unit: l.unit.clone(),
        });
    }
    Ok(Some((value, l.unit.clone())))
}

/// The values a recipe's templates name (`{pk}`, `{timestamp}`, ...), but the sign.
fn variables(
    req: &CredentialRequest,
    mode: &SecureMode,
    lifetime: Option<u64>,
) -> BTreeMap<&'static str, String> {
    let mut vars: BTreeMap<&str, String> = BTreeMap::new();
    vars.insert("pk", req.product_key.clone());
    vars.insert("dk", req.device_key.clone());
    vars.insert(
        "client_id",
        req.client_id.clone().unwrap_or_else(|| req.device_key.clone()),
    );
    vars.insert("timestamp", req.timestamp.to_string());
    vars.insert("secure_mode", mode.value.to_string());
    vars.insert("sign_method", SIGN_METHOD.to_string());
    if let Some(value) = lifetime {
        vars.insert("lifetime", value.to_string());
    }
    vars
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capabilities::embedded;

    fn field<'a>(c: &'a Credentials, name: &str) -> &'a str {
        c.field(name).unwrap_or_default()
    }

    fn request(protocol: &str, pk: &str, dk: &str, mode: &str) -> CredentialRequest {
        CredentialRequest {
            protocol: protocol.into(),
            product_key: pk.into(),
            device_key: dk.into(),
            mode: mode.into(),
            client_id: None,
            timestamp: 0,
            lifetime: None,
        }
    }

    #[test]
    fn secrets_never_print() {
        let s = Secret::new("hunter2".into());
        assert_eq!(format!("{s} {s:?}"), "(redacted) (redacted)");
    }

    #[test]
    fn fill_leaves_unknown_placeholders() {
        let vars = BTreeMap::from([("pk", "P".to_string())]);
        assert_eq!(fill("/sys/{pk}/{dk}", &vars), "/sys/P/{dk}");
    }

    #[test]
    fn fill_takes_each_placeholder_once_and_leaves_stray_braces() {
        let vars = BTreeMap::from([
            ("pk", "{dk}".to_string()),
            ("dk", "D".to_string()),
            ("x", "X".to_string()),
        ]);
        // A value is not searched again; a brace that opens no known name stays as it is.
        assert_eq!(fill("{pk}/{dk}", &vars), "{dk}/D");
        assert_eq!(fill("{{x}} {x {x}} } {", &vars), "{X} {x X} } {");
        assert_eq!(fill("", &vars), "");
        assert_eq!(fill("{x}{x}", &vars), "XX");
        assert!(names("a{x}b", "x") && names("{timestamp}", "timestamp"));
        assert!(!names("x {x", "x") && !names("{xy}", "x") && !names("", "x"));
    }

    #[test]
    fn a_prepared_login_gives_what_compute_gives_for_each_client_id() {
        let caps = embedded().expect("valid");
        let secret = Secret::new("s3cret".into());
        for (protocol, mode) in [("mqtt", "static"), ("mqtt", "dynamic"), ("subdevice", "static")] {
            let mut req = request(protocol, "pk{dk}", "dk", mode);
            req.timestamp = 1_700_000_000_123;
            let prepared = PreparedLogin::new(&caps, &req)
                .expect("checks")
                .expect("fields and a sign");
            assert!(prepared.is_for(protocol, mode) && !prepared.is_for(protocol, "other"));
            for client_id in ["dk.0", "dk.41", "{client_id}", ""] {
                req.client_id = Some(client_id.into());
                let computed = compute(&caps, &req, &secret).expect("computes").fields;
                let fields: Vec<(String, String)> = prepared
                    .fields(client_id, &secret)
                    .into_iter()
                    .map(|(n, v)| (n.to_string(), v))
                    .collect();
                assert_eq!(fields, computed, "{protocol} {mode} {client_id}");
            }
        }
        // A recipe that derives a PSK or an auth request is not prepared; a bad mode is refused.
        assert!(
            PreparedLogin::new(&caps, &request("coap", "p", "d", "static"))
                .expect("checks")
                .is_none()
        );
        assert!(
            PreparedLogin::new(&caps, &request("http", "p", "d", "static"))
                .expect("checks")
                .is_none()
        );
        assert!(PreparedLogin::new(&caps, &request("http", "p", "d", "dynamic")).is_err());
        assert!(PreparedLogin::new(&caps, &request("mqtt", "p", " ", "static")).is_err());
    }

    #[test]
    fn hex_digits_are_two_a_byte_in_order() {
        assert_eq!(hex_upper(&[0x00, 0x0f, 0xa5, 0xff]), "000FA5FF");
        assert_eq!(hex_lower(&[0x00, 0x0f, 0xa5, 0xff]), "000fa5ff");
        // python3: hashlib.sha256(b"abc").hexdigest().upper()
        assert_eq!(
            sign("ab", &Secret::new("c".into())),
            "BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD"
        );
    }

    #[test]
    fn psk_key_is_bytes_8_to_23_of_the_secret_digest() {
        // python3: hashlib.sha256(b"abcdefg").digest()[8:24].hex()
        let caps = embedded().expect("valid");
        let c = compute(
            &caps,
            &request("coap", "654321", "test", "static"),
            &Secret::new("abcdefg".into()),
        )
        .expect("computes");
        assert_eq!(field(&c, "psk_key"), "f5b79b5fb0803061152a44f92b37e23c");
        assert_eq!(field(&c, "psk_identity"), "654321,test,2,3600");
    }

    #[test]
    fn http_refuses_dynamic_mode_and_coap_checks_lifetime() {
        let caps = embedded().expect("valid");
        let secret = Secret::new("x".into());
        use crate::help::Help;
        let err = compute(&caps, &request("http", "p", "d", "dynamic"), &secret).expect_err("static only");
        assert!(
            err.to_string().contains("does not support --secure-mode dynamic"),
            "{err}"
        );
        assert_eq!(err.help().as_deref(), Some("http supports static"));
        let mut req = request("coap", "p", "d", "static");
        req.lifetime = Some(10);
        let err = compute(&caps, &req, &secret).expect_err("too short");
        assert_eq!(err.help().as_deref(), Some("use 30 to 86400 s"));
    }
}
