//! Who may log in: the EnOS MQTT login (securemode 2 with the device secret, 3 with the
//! product secret for dynamic activation, 4 for message integration), the HTTP and CoAP signs,
//! DTLS-PSK keys, sub-devices through a gateway (checked against the twin's live topology and
//! enabled state), and the acknowledgement of the secrets dynamic activation issues. The
//! operations here read the parts (the twin, the activations) through their methods.

use std::collections::BTreeMap;

use rumqttc::mqttbytes::v4::ConnectReturnCode::{self, BadClientId, BadUserNamePassword, NotAuthorized};
use serde_json::Value;

use super::{Endpoint, Identity, text_field};
use crate::credentials;
use crate::enos;
use crate::secret::Secret;

/// Why a login was refused, in the words the event log and stderr show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The MQTT CONNACK code (4 bad sign, 5 not authorised, 2 bad client id).
    pub connack: ConnectReturnCode,
    /// The EnOS code for HTTP and CoAP (401 bad sign, 402 unknown device).
    pub code: i64,
    pub reason: String,
}

fn refusal(connack: ConnectReturnCode, code: i64, reason: impl Into<String>) -> Refusal {
    Refusal {
        connack,
        code,
        reason: reason.into(),
    }
}

impl Endpoint {
    /// The device secret a securemode-2 login is checked against: the one serve issued (by
    /// activation or registration), else the registry's.
    fn device_secret(&self, id: &Identity) -> Option<Secret> {
        if let Some(s) = self.twin.issued_secret(id) {
            return Some(s);
        }
        self.registry
            .device(&id.product_key, &id.device_key)
            .and_then(|d| d.secret.clone())
    }

    /// Whether the device has a device secret (the registry's, or one serve issued).
    pub fn is_activated(&self, id: &Identity) -> bool {
        self.device_secret(id).is_some()
    }

    /// Check the EnOS login of an MQTT CONNECT. `Ok` holds the identity and whether the device
    /// logged in to be activated (securemode 3).
    pub fn mqtt_login(
        &self,
        client_id: &str,
        username: &str,
        password: &str,
    ) -> Result<(Identity, bool), Refusal> {
        let login = enos::MqttLogin::parse(client_id, username).map_err(|e| {
            let connack = if matches!(e, enos::LoginFormat::UserName) {
                BadUserNamePassword
            } else {
                BadClientId
            };
            refusal(connack, enos::AUTH_FAILED, format!("not an EnOS login: {e}"))
        })?;
        let id = Identity::new(&login.product_key, &login.device_key);
        if login.secure_mode == 4 {
            return self.integration_login(&login, password).map(|id| (id, false));
        }
        self.known(&id)?;
        let secret = match login.secure_mode {
            2 => self.device_secret(&id).ok_or_else(|| {
                refusal(
                    NotAuthorized,
                    enos::AUTH_FAILED,
                    "the device has no device secret yet: activate it with securemode 3 first",
                )
            })?,
            3 => {
                if self.is_activated(&id) {
                    return Err(refusal(
                        NotAuthorized,
                        enos::AUTH_FAILED,
                        "the device is already activated: log in with securemode 2 and the device secret",
                    ));
                }
                self.registry
                    .product(&id.product_key)
                    .and_then(|p| p.secret.clone())
                    .ok_or_else(|| refusal(NotAuthorized, enos::AUTH_FAILED, "the product does not allow dynamic activation (no product secret in the registry)"))?
            }
            other => {
                return Err(refusal(
                    NotAuthorized,
                    enos::AUTH_FAILED,
                    format!("securemode {other} is not 2, 3 or 4"),
                ));
            }
        };
        self.check_password(&login, &secret, password)?;
        Ok((id, login.secure_mode == 3))
    }

    /// A message integration login (securemode 4): device key `%channel%`, the client id is
    /// the product key, signed with the product secret. The channel may post for every device
    /// of its product.
    fn integration_login(&self, login: &enos::MqttLogin, password: &str) -> Result<Identity, Refusal> {
        if login.device_key != enos::INTEGRATION_DK {
            return Err(refusal(
                BadUserNamePassword,
                enos::AUTH_FAILED,
                format!(
                    "securemode 4 (message integration) logs in with device key `{}`",
                    enos::INTEGRATION_DK
                ),
            ));
        }
        if login.client_id != login.product_key {
            return Err(refusal(
                BadClientId,
                enos::AUTH_FAILED,
                "securemode 4 (message integration): the client id before `|` is the product key",
            ));
        }
        let secret = self
            .registry
            .product(&login.product_key)
            .ok_or_else(|| {
                refusal(
                    NotAuthorized,
                    enos::DEVICE_NOT_FOUND,
                    format!("unknown product {}", login.product_key),
                )
            })?
            .secret
            .clone()
            .ok_or_else(|| {
                refusal(
                    NotAuthorized,
                    enos::AUTH_FAILED,
                    "message integration needs the product secret, and the registry gives none",
                )
            })?;
        self.check_password(login, &secret, password)?;
        Ok(Identity::new(&login.product_key, enos::INTEGRATION_DK))
    }

    fn check_password(
        &self,
        login: &enos::MqttLogin,
        secret: &Secret,
        password: &str,
    ) -> Result<(), Refusal> {
        let vars = BTreeMap::from([
            ("client_id", login.client_id.clone()),
            ("dk", login.device_key.clone()),
            ("pk", login.product_key.clone()),
            ("timestamp", login.timestamp.clone()),
        ]);
        // No recipe (a trimmed --capabilities file) means nothing can match, not "anything".
        let signed = credentials::expected_sign(&self.caps, "mqtt", &vars, secret)
            .is_some_and(|expected| enos::sign_matches(&expected, password));
        if signed {
            Ok(())
        } else {
            Err(refusal(
                BadUserNamePassword,
                enos::AUTH_FAILED,
                "the password is not the signed login (check the secret, the timestamp and the client id)",
            ))
        }
    }

    /// A device the twin holds (the registry's, or registered), enabled.
    fn known(&self, id: &Identity) -> Result<(), Refusal> {
        match self.twin.enabled(id) {
            None => Err(refusal(
                NotAuthorized,
                enos::DEVICE_NOT_FOUND,
                format!("unknown device {}/{}", id.product_key, id.device_key),
            )),
            Some(false) => Err(refusal(
                NotAuthorized,
                enos::AUTH_FAILED,
                "the device is disabled",
            )),
            Some(true) => Ok(()),
        }
    }

    /// Check a login made with a recipe's sign over `vars` (HTTP and CoAP auth), with the
    /// device secret.
    pub fn signed_login(
        &self,
        recipe: &str,
        id: &Identity,
        vars: &BTreeMap<&str, String>,
        sign: &str,
    ) -> Result<(), Refusal> {
        self.known(id)?;
        let signed_with = |secret: &Secret| {
            credentials::expected_sign(&self.caps, recipe, vars, secret)
                .is_some_and(|expected| enos::sign_matches(&expected, sign))
        };
        // Signed with the product secret: a device trying dynamic activation, which this
        // protocol's recipe does not offer (HTTP: the comparison table's "not supported").
        let dynamic = || {
            let offered = self
                .caps
                .credentials
                .get(recipe)
                .is_some_and(|r| r.modes.iter().any(|m| m == "dynamic"));
            !offered
                && self
                    .registry
                    .product(&id.product_key)
                    .and_then(|p| p.secret.as_ref())
                    .is_some_and(signed_with)
        };
        match self.device_secret(id) {
            Some(secret) if signed_with(&secret) => Ok(()),
            _ if dynamic() => Err(refusal(
                NotAuthorized,
                enos::DYNAMIC_NOT_ALLOWED,
                format!("dynamic activation is not allowed over {recipe}: sign with the device secret"),
            )),
            Some(_) => Err(refusal(
                BadUserNamePassword,
                enos::AUTH_FAILED,
                "the sign does not match (check the secret and the signed fields)",
            )),
            None => Err(refusal(
                NotAuthorized,
                enos::AUTH_FAILED,
                "the device has no device secret yet",
            )),
        }
    }

    /// The DTLS key for a PSK identity `pk,dk,securemode,lifetime`, when the device (mode 2)
    /// or its product (mode 3) has a secret.
    pub fn psk_for(&self, identity: &[u8]) -> Option<(Identity, zeroize::Zeroizing<Vec<u8>>)> {
        let text = std::str::from_utf8(identity).ok()?;
        let mut parts = text.split(',');
        let (pk, dk, mode) = (parts.next()?, parts.next()?, parts.next()?);
        let id = Identity::new(pk, dk);
        self.known(&id).ok()?;
        let secret = match mode {
            "2" => self.device_secret(&id)?,
            // As over MQTT: the product secret only for a device not activated yet.
            "3" if !self.is_activated(&id) => self.registry.product(pk)?.secret.clone()?,
            _ => return None,
        };
        let psk = self.caps.credentials.get("coap")?.psk_key.as_ref()?;
        Some((id, credentials::psk_key(psk, &secret)))
    }

    /// The device acknowledged the secret dynamic activation pushed: from now on only
    /// securemode 2 with it logs in (the twin keeps it). `false` when none was pushed.
    pub fn confirm_activation(&self, id: &Identity) -> bool {
        match self.activations.acknowledged(id) {
            Some(secret) => self.twin.set_issued_secret(id, secret),
            None => false,
        }
    }

    /// Check a sub-device's `combine.login` through the gateway `gw`: the reply code and the
    /// sub-device when it logged in.
    pub fn subdevice_login(&self, gw: &Identity, params: &Value) -> (i64, Option<Identity>, String) {
        let (Some(pk), Some(dk)) = (text_field(params, "productKey"), text_field(params, "deviceKey")) else {
            return (
                enos::BAD_FORMAT,
                None,
                "combine.login needs productKey, deviceKey and sign".into(),
            );
        };
        // In EnOS's order: no such device, disabled, not in the topology, then the sign.
        let id = Identity::new(&pk, &dk);
        match self.twin.enabled(&id) {
            None => {
                return (
                    enos::SUB_NO_DEVICE,
                    None,
                    format!("no device {}/{}", id.product_key, id.device_key),
                );
            }
            Some(false) => return (enos::SUB_DISABLED, None, "the sub-device is disabled".into()),
            Some(true) => {}
        }
        if self.twin.gateway_of(&id).as_ref() != Some(gw) {
            return (
                enos::SUB_NOT_IN_TOPOLOGY,
                None,
                format!(
                    "{}/{} is not in the topology of {}/{}",
                    id.product_key, id.device_key, gw.product_key, gw.device_key
                ),
            );
        }
        self.subdevice_signed(params)
    }

    /// Whether the sign of a sub-device's login fields (`combine.login`, `thing.topo.add`)
    /// is right: the sub-device when it is.
    pub fn subdevice_signed(&self, params: &Value) -> (i64, Option<Identity>, String) {
        let field = |k: &str| text_field(params, k);
        let (Some(pk), Some(dk), Some(sign)) = (field("productKey"), field("deviceKey"), field("sign"))
        else {
            return (
                enos::BAD_FORMAT,
                None,
                "combine.login needs productKey, deviceKey and sign".into(),
            );
        };
        let id = Identity::new(&pk, &dk);
        if !self.twin.exists(&id) {
            return (enos::SUB_NO_DEVICE, None, format!("no device {pk}/{dk}"));
        }
        if let Some(m) = field("signMethod")
            && !enos::is_sha256(&m)
        {
            return (enos::BAD_FORMAT, None, format!("sign method `{m}` is not sha256"));
        }
        let vars = BTreeMap::from([
            ("client_id", field("clientId").unwrap_or_default()),
            ("dk", dk.clone()),
            ("pk", pk.clone()),
            ("timestamp", field("timestamp").unwrap_or_default()),
        ]);
        let ok = self
            .device_secret(&id)
            .and_then(|s| credentials::expected_sign(&self.caps, "subdevice", &vars, &s))
            .is_some_and(|expected| enos::sign_matches(&expected, &sign));
        if ok {
            (enos::SUCCESS, Some(id), String::new())
        } else {
            (
                enos::SUB_BAD_SIGN,
                None,
                "the sub-device's sign check failed".into(),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capabilities::Capabilities;
    use crate::registry::Registry;
    use crate::serve::{Answer, Protocol};
    use crate::source_text::SourceFile;

    fn endpoint(caps: Capabilities) -> Endpoint {
        let registry = Registry::parse(&SourceFile::new(
            "r.toml",
            "[[products]]\nkey = \"p\"\nsecret = \"ps\"\n[[devices]]\nproduct = \"p\"\nkey = \"d\"\n",
        ))
        .expect("registry");
        Endpoint::in_memory(caps, registry, std::time::Duration::ZERO).0
    }

    #[test]
    fn without_a_recipe_no_login_matches_not_every_login() {
        let mut caps = crate::capabilities::embedded().expect("caps");
        caps.credentials.clear();
        let ep = endpoint(caps);
        let refused = ep.mqtt_login("d|securemode=3,signmethod=sha256,timestamp=1|", "d&p", "");
        assert_eq!(
            refused.map(|_| ()).map_err(|r| r.connack),
            Err(BadUserNamePassword)
        );
    }

    #[test]
    fn an_activated_device_gets_no_psk_for_the_product_secret() {
        let ep = endpoint(crate::capabilities::embedded().expect("caps"));
        assert!(ep.psk_for(b"p,d,3,3600").is_some(), "before activation");
        assert!(ep.psk_for(b"p,d,2,3600").is_none(), "no device secret yet");
        let id = Identity::new("p", "d");
        assert!(ep.activations.issue(&id).is_some());
        assert!(ep.confirm_activation(&id));
        assert!(
            ep.psk_for(b"p,d,3,3600").is_none(),
            "securemode 3 after activation"
        );
        assert!(ep.psk_for(b"p,d,2,3600").is_some());
    }

    #[test]
    fn sub_devices_log_in_over_mqtt_only() {
        let ep = endpoint(crate::capabilities::embedded().expect("caps"));
        let login =
            br#"{"id":"1","method":"combine.login","params":{"productKey":"p","deviceKey":"d","sign":"00"}}"#;
        // The table marks sub-device management not supported over HTTP and CoAP.
        let Answer::NotOffered(r) = ep.answer(Protocol::Http, "/ext/session/p/d/combine/login", login) else {
            panic!("refused by the table");
        };
        assert_eq!(r.code, enos::NO_PERMISSION);
        assert!(
            r.message.contains("subdevice_management") && r.message.contains("http"),
            "{}",
            r.message
        );
        // Without the table's row, the MQTT-only rule still holds.
        let mut caps = crate::capabilities::embedded().expect("caps");
        caps.features.retain(|f| f.id != "subdevice_management");
        let ep = endpoint(caps);
        let Answer::Reply(r) = ep.answer(Protocol::Http, "/ext/session/p/d/combine/login", login) else {
            panic!("a reply");
        };
        assert_eq!(r.code, enos::NO_PERMISSION);
    }
}
