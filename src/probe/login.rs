//! Who logs in: nothing, a plain user name, or an EnOS device (its keys, secure mode and
//! secret), and a sub-device to log in through a gateway.

use std::borrow::Cow;
use std::sync::Arc;

use super::Failure;
use crate::capabilities::Capabilities;
use crate::credentials::{CredentialRequest, PreparedLogin};
use crate::measurement::ErrorKind;
use crate::secret::Secret;

/// How to log in: nothing, a plain user name with a password, or the EnOS login.
#[derive(Clone)]
pub enum Login {
    None,
    Plain {
        username: String,
        password: Option<Secret>,
    },
    Enos {
        // Shared, not copied: a load's every probe has a copy of the login.
        product_key: Arc<str>,
        device_key: Arc<str>,
        mode: Arc<str>,
        secret: Arc<Secret>,
        timestamp: u64,
        client_id: Option<String>,
        /// The login worked out once for the probes of a load, each with its own client id
        /// ([`Login::prepare`]); `None` computes it at each login.
        prepared: Option<Arc<PreparedLogin>>,
    },
}

impl Login {
    /// The EnOS login material for `protocol`, when the login is an EnOS one.
    pub fn enos_credentials(
        &self,
        caps: &Capabilities,
        protocol: &str,
    ) -> Option<Result<crate::credentials::Credentials, Failure>> {
        let Login::Enos { secret, .. } = self else {
            return None;
        };
        Some(
            crate::credentials::compute(caps, &self.request(protocol)?, secret)
                .map_err(|e| Failure::new(ErrorKind::Auth, e.to_string())),
        )
    }

    /// The login's output fields for `protocol` (`client_id`, `username`, `password`, ...),
    /// from the prepared login when there is one for it: what a CONNECT carries.
    pub fn enos_fields(&self, caps: &Capabilities, protocol: &str) -> Option<Result<Fields<'_>, Failure>> {
        if let Login::Enos {
            mode,
            secret,
            client_id: Some(client_id),
            prepared: Some(prepared),
            ..
        } = self
            && prepared.is_for(protocol, mode)
        {
            let fields = prepared.fields(client_id, secret);
            return Some(Ok(fields
                .into_iter()
                .map(|(n, v)| (Cow::Borrowed(n), v))
                .collect()));
        }
        let creds = self.enos_credentials(caps, protocol)?;
        Some(creds.map(|c| c.fields.into_iter().map(|(n, v)| (Cow::Owned(n), v)).collect()))
    }

    /// Work out the login for `protocol` once, for many logins that differ only in their client
    /// id (a load's probes, [`super::ProbeOptions::for_load`]). A login that cannot be prepared
    /// (not EnOS, a recipe with more than fields and a sign, or one whose checks fail) is left
    /// to be computed, and to fail, at each login.
    pub fn prepare(&mut self, caps: &Capabilities, protocol: &str) {
        let Some(req) = self.request(protocol) else {
            return;
        };
        if let Login::Enos { prepared, .. } = self {
            *prepared = PreparedLogin::new(caps, &req).ok().flatten().map(Arc::new);
        }
    }

    /// The credential request of an EnOS login over `protocol`.
    fn request(&self, protocol: &str) -> Option<CredentialRequest> {
        let Login::Enos {
            product_key,
            device_key,
            mode,
            timestamp,
            client_id,
            ..
        } = self
        else {
            return None;
        };
        Some(CredentialRequest {
            protocol: protocol.into(),
            product_key: product_key.to_string(),
            device_key: device_key.to_string(),
            mode: mode.to_string(),
            client_id: client_id.clone(),
            timestamp: *timestamp,
            lifetime: None,
        })
    }
}

/// A login's output fields by name, in the recipe's order.
pub(crate) type Fields<'a> = Vec<(Cow<'a, str>, String)>;

/// A sub-device to log in through the gateway's connection (`--subdevice PK/DK`).
#[derive(Clone)]
pub struct SubDevice {
    pub product_key: String,
    pub device_key: String,
    pub secret: Secret,
}

impl Login {
    /// The secure mode of an EnOS login (`static`, `dynamic`).
    pub fn mode(&self) -> Option<&str> {
        match self {
            Login::Enos { mode, .. } => Some(&**mode),
            _ => None,
        }
    }

    /// The product and device keys of an EnOS login.
    pub fn enos_keys(&self) -> Option<(&str, &str)> {
        match self {
            Login::Enos {
                product_key,
                device_key,
                ..
            } => Some((&**product_key, &**device_key)),
            _ => None,
        }
    }

    /// The same login with the same secret, signed as a securemode-2 login: what a device
    /// trying dynamic activation sends over a protocol whose recipe has no securemode 3.
    pub fn signed_as_static(&self) -> Login {
        let mut l = self.clone();
        if let Login::Enos { mode, prepared, .. } = &mut l {
            *mode = "static".into();
            *prepared = None;
        }
        l
    }

    /// The same EnOS device, logging in with securemode 2 and `secret` (after activation).
    pub fn with_device_secret(&self, secret: Secret) -> Login {
        match self {
            Login::Enos {
                product_key,
                device_key,
                client_id,
                ..
            } => Login::Enos {
                product_key: product_key.clone(),
                device_key: device_key.clone(),
                mode: "static".into(),
                secret: Arc::new(secret),
                timestamp: crate::credentials::now_ms(),
                client_id: client_id.clone(),
                prepared: None,
            },
            Login::None => Login::None,
            Login::Plain { username, .. } => Login::Plain {
                username: username.clone(),
                password: Some(secret),
            },
        }
    }
}
