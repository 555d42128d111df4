//! The `serve` registry: the products and devices a local EnOS endpoint knows, read from a
//! TOML file with every problem reported at once, with `file:line:col`. Secrets are read into
//! [`Secret`] and never echoed: problems carry no source line, since the line could hold one.

use std::collections::BTreeMap;
use std::path::Path;

use schemars::JsonSchema;
use serde::Deserialize;

use crate::base::Secret;
use crate::source::{Located, PathSeg, Problem, SourceFile, locate_problems, nearest};

/// The registry file.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Registry {
    /// The products: their keys, secrets and models.
    #[serde(default)]
    pub products: Vec<Product>,
    /// The devices, each of a listed product.
    #[serde(default)]
    pub devices: Vec<Device>,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Product {
    /// The product key.
    pub key: String,
    /// The product secret: allows dynamic activation (securemode 3) of its devices.
    #[serde(default)]
    pub secret: Option<Secret>,
    /// The product's model: the measure points it defines. A post naming another point gets
    /// 1204. Absent: any point is accepted.
    #[serde(default)]
    pub measurepoints: Option<Vec<String>>,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Device {
    /// The key of the device's product.
    pub product: String,
    /// The device key.
    pub key: String,
    /// The device secret; absent until the device activates dynamically.
    #[serde(default)]
    pub secret: Option<Secret>,
    /// `productKey/deviceKey` of the gateway whose topology holds this sub-device.
    #[serde(default)]
    pub gateway: Option<String>,
    /// A disabled device is refused (CONNACK 5; 723 as a sub-device).
    #[serde(default)]
    pub disabled: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("cannot read registry file {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Syntax(Located),
    #[error("{file}: {count} problem(s) in the registry:\n{list}", count = .problems.len(), list = crate::source::bullet_list(.problems))]
    Invalid { file: String, problems: Vec<Located> },
}

impl crate::base::Help for RegistryError {
    fn help(&self) -> Option<String> {
        match self {
            RegistryError::Read { .. } => Some("check the path given with --registry".into()),
            RegistryError::Syntax(_) | RegistryError::Invalid { .. } => {
                Some("`enos-connect schema registry` prints the file's JSON Schema".into())
            }
        }
    }
}

impl Registry {
    pub fn from_file(path: &Path) -> Result<Self, RegistryError> {
        let text = std::fs::read_to_string(path).map_err(|source| RegistryError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&SourceFile::new(path.display().to_string(), text))
    }

    pub fn parse(src: &SourceFile) -> Result<Self, RegistryError> {
        let registry: Registry = toml::from_str(&src.text)
            .map_err(|e| RegistryError::Syntax(src.locate(e.span(), e.message()).without_snippet()))?;
        let problems = registry.validate();
        if problems.is_empty() {
            return Ok(registry);
        }
        Err(RegistryError::Invalid {
            file: src.name.clone(),
            problems: locate_problems(src, &problems)
                .into_iter()
                .map(Located::without_snippet)
                .collect(),
        })
    }

    fn validate(&self) -> Vec<Problem> {
        let mut problems = Vec::new();
        let mut add = |path: Vec<PathSeg>, message: String| problems.push(Problem { path, message });
        let at = |table: &str, i: usize, field: &str| {
            vec![PathSeg::from(table), PathSeg::from(i), PathSeg::from(field)]
        };
        let mut products = BTreeMap::new();
        for (i, p) in self.products.iter().enumerate() {
            if p.key.trim().is_empty() {
                add(
                    at("products", i, "key"),
                    format!("products[{i}] has an empty key"),
                );
            } else if products.insert(p.key.as_str(), i).is_some() {
                add(
                    at("products", i, "key"),
                    format!("product `{}` is listed twice", p.key),
                );
            }
            if p.secret.as_ref().is_some_and(Secret::is_empty) {
                add(
                    at("products", i, "secret"),
                    format!("product `{}` has an empty secret", p.key),
                );
            }
            for (j, m) in p.measurepoints.iter().flatten().enumerate() {
                if m.trim().is_empty() {
                    add(
                        vec![
                            PathSeg::from("products"),
                            PathSeg::from(i),
                            PathSeg::from("measurepoints"),
                            PathSeg::from(j),
                        ],
                        format!("product `{}` lists an empty measure point", p.key),
                    );
                }
            }
        }
        let mut devices = BTreeMap::new();
        for (i, d) in self.devices.iter().enumerate() {
            if !products.contains_key(d.product.as_str()) {
                let hint = nearest(&d.product, products.keys().copied())
                    .map(|n| format!(" (did you mean `{n}`?)"))
                    .unwrap_or_default();
                add(
                    at("devices", i, "product"),
                    format!(
                        "device `{}` names product `{}`, which [[products]] does not list{hint}",
                        d.key, d.product
                    ),
                );
            }
            if d.key.trim().is_empty() {
                add(at("devices", i, "key"), format!("devices[{i}] has an empty key"));
            } else if devices.insert((d.product.as_str(), d.key.as_str()), i).is_some() {
                add(
                    at("devices", i, "key"),
                    format!("device `{}/{}` is listed twice", d.product, d.key),
                );
            }
            if d.secret.as_ref().is_some_and(Secret::is_empty) {
                add(
                    at("devices", i, "secret"),
                    format!("device `{}` has an empty secret", d.key),
                );
            }
        }
        for (i, d) in self.devices.iter().enumerate() {
            let Some(gw) = &d.gateway else { continue };
            match gw.split_once('/') {
                Some((pk, dk)) if devices.contains_key(&(pk, dk)) => {
                    if (pk, dk) == (d.product.as_str(), d.key.as_str()) {
                        add(
                            at("devices", i, "gateway"),
                            format!("device `{}` names itself as its gateway", d.key),
                        );
                    }
                }
                Some(_) => add(
                    at("devices", i, "gateway"),
                    format!(
                        "device `{}` names gateway `{gw}`, which [[devices]] does not list",
                        d.key
                    ),
                ),
                None => add(
                    at("devices", i, "gateway"),
                    format!("gateway `{gw}` is not `productKey/deviceKey`"),
                ),
            }
        }
        problems
    }

    pub fn product(&self, key: &str) -> Option<&Product> {
        self.products.iter().find(|p| p.key == key)
    }

    pub fn device(&self, product: &str, key: &str) -> Option<&Device> {
        self.devices.iter().find(|d| d.product == product && d.key == key)
    }
}

impl Device {
    /// Whether this device is a sub-device of the gateway `gw_pk/gw_dk`.
    pub fn under(&self, gw_pk: &str, gw_dk: &str) -> bool {
        self.gateway
            .as_deref()
            .and_then(|g| g.split_once('/'))
            .is_some_and(|(p, d)| p == gw_pk && d == gw_dk)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_problem_is_reported_with_its_place_and_no_secret() {
        let text = "[[products]]\nkey = \"pk1\"\nsecret = \"Registry-Canary\"\n\n[[products]]\nkey = \"pk1\"\n\n\
                    [[devices]]\nproduct = \"pkl\"\nkey = \"d1\"\n\n[[devices]]\nproduct = \"pk1\"\nkey = \"d2\"\ngateway = \"pk1/none\"\n";
        let err = Registry::parse(&SourceFile::new("r.toml", text))
            .expect_err("invalid")
            .to_string();
        for expected in [
            "r.toml:6:1: product `pk1` is listed twice",
            "r.toml:9:1: device `d1` names product `pkl`",
            "did you mean `pk1`?",
            "r.toml:15:1: device `d2` names gateway `pk1/none`",
        ] {
            assert!(err.contains(expected), "`{expected}` in:\n{err}");
        }
        assert!(!err.contains("Registry-Canary"), "{err}");
        let err = Registry::parse(&SourceFile::new(
            "r.toml",
            "[[products]]\nkey = 3 # Registry-Canary\n",
        ))
        .expect_err("syntax")
        .to_string();
        assert!(err.starts_with("r.toml:2:7:") && !err.contains("Canary"), "{err}");
        // An unquoted secret is refused without being echoed.
        let err = Registry::parse(&SourceFile::new(
            "r.toml",
            "[[products]]\nkey = \"p\"\nsecret = 918273645\n",
        ))
        .expect_err("a number")
        .to_string();
        assert!(
            err.contains("quoted string") && !err.contains("918273645"),
            "{err}"
        );
    }
}
