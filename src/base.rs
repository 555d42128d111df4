//! What every layer needs and nothing above it defines: the [`Help`] trait that keeps "what to
//! do" apart from "what went wrong", the [`Secret`] that never prints itself, and
//! `random_u64` for message ids. The bottom layer: it imports nothing from this crate.

use std::fmt;

use zeroize::Zeroizing;

/// What to do about an error, kept apart from what went wrong. Every layer's error implements
/// it; the CLI prints the error, then the help, once.
pub trait Help {
    fn help(&self) -> Option<String> {
        None
    }
}

/// A device or product secret. `Debug` and `Display` print `(redacted)`; the memory is zeroed
/// on drop.
pub struct Secret(Zeroizing<String>);

impl Secret {
    pub fn new(value: String) -> Self {
        Secret(Zeroizing::new(value))
    }

    /// The value, for hashing only.
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }

    /// The value, for a protocol field that carries it as it is (an MQTT password).
    pub fn expose_for_login(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("(redacted)")
    }
}

/// Read from a file as a plain string, held as a secret from then on. A value of another type
/// is refused without echoing it: an unquoted secret is still a secret.
impl<'de> serde::Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Text;
        impl serde::de::Visitor<'_> for Text {
            type Value = Secret;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a secret as a quoted string")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Secret, E> {
                Ok(Secret::new(v.to_string()))
            }
            fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<Secret, E> {
                Err(E::custom("a secret must be a quoted string"))
            }
            fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<Secret, E> {
                Err(E::custom("a secret must be a quoted string"))
            }
            fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<Secret, E> {
                Err(E::custom("a secret must be a quoted string"))
            }
            fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<Secret, E> {
                Err(E::custom("a secret must be a quoted string"))
            }
        }
        d.deserialize_str(Text)
    }
}

impl schemars::JsonSchema for Secret {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Secret".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({"type": "string", "minLength": 1, "description": "A secret: never printed by enos-connect"})
    }
}

impl Clone for Secret {
    fn clone(&self) -> Self {
        Secret::new(self.0.to_string())
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("(redacted)")
    }
}

/// A pseudo-random number for message ids, tokens and jitter (not for secrets).
pub(crate) fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.finish()
}
