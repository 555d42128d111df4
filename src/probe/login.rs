//! Who logs in: nothing, a plain user name, or an EnOS device (its keys, secure mode and
//! secret), and a sub-device to log in through a gateway.

use super::Failure;
use crate::capabilities::Capabilities;
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
        product_key: String,
        device_key: String,
        mode: String,
        secret: Secret,
        timestamp: u64,
        client_id: Option<String>,
    },
}

impl Login {
    /// The EnOS login material for `protocol`, when the login is an EnOS one.
    pub fn enos_credentials(
        &self,
        caps: &Capabilities,
        protocol: &str,
    ) -> Option<Result<crate::credentials::Credentials, Failure>> {
        let Login::Enos {
            product_key,
            device_key,
            mode,
            secret,
            timestamp,
            client_id,
        } = self
        else {
            return None;
        };
        let req = crate::credentials::CredentialRequest {
            protocol: protocol.into(),
            product_key: product_key.clone(),
            device_key: device_key.clone(),
            mode: mode.clone(),
            client_id: client_id.clone(),
            timestamp: *timestamp,
            lifetime: None,
        };
        Some(
            crate::credentials::compute(caps, &req, secret)
                .map_err(|e| Failure::new(ErrorKind::Auth, e.to_string())),
        )
    }
}

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
            Login::Enos { mode, .. } => Some(mode),
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
            } => Some((product_key, device_key)),
            _ => None,
        }
    }

    /// The same login with the same secret, signed as a securemode-2 login: what a device
    /// trying dynamic activation sends over a protocol whose recipe has no securemode 3.
    pub fn signed_as_static(&self) -> Login {
        let mut l = self.clone();
        if let Login::Enos { mode, .. } = &mut l {
            *mode = "static".into();
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
                secret,
                timestamp: crate::credentials::now_ms(),
                client_id: client_id.clone(),
            },
            Login::None => Login::None,
            Login::Plain { username, .. } => Login::Plain {
                username: username.clone(),
                password: Some(secret),
            },
        }
    }
}
