//! The `serve` registry: the products and devices a local EnOS endpoint knows, read from a
//! TOML file with every problem reported at once, with `file:line:col`. Secrets are read into
//! [`Secret`] and never echoed: problems carry no source line, since the line could hold one.

use std::collections::BTreeMap;
use std::path::Path;

use schemars::JsonSchema;
use serde::Deserialize;

use crate::secret::Secret;
use crate::source_text::{Located, SourceFile, locate_problems};

mod validate;

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
    /// Firmware versions a product's devices can be offered: they answer
    /// `ota/device/getversion` and `ota/device/request`, and a test pushes them with
    /// `ota.device.upgrade`.
    #[serde(default)]
    pub firmwares: Vec<Firmware>,
    /// The devices' positions in `devices`, sorted by (product, key) (a device listed twice
    /// is refused when the file is read), built then: a login looks its device up, and a
    /// fleet's registry lists tens of thousands. Four bytes a device, where a hash
    /// map keyed by copies of the keys took about 150 (and two copies for each lookup).
    #[serde(skip)]
    #[schemars(skip)]
    index: Vec<u32>,
}

/// The measure points of a product's model: a list of ids (any value accepted), or a table of
/// ids to their type and description.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum Measurepoints {
    /// `measurepoints = ["temp", "on"]`: the ids, values of any type.
    List(Vec<String>),
    /// `[products.measurepoints.temp] type = "float"`: each id with its type.
    Typed(BTreeMap<String, Point>),
}

/// A typed element of a model: a measure point, an attribute, or a field of an event or a
/// service.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Point {
    /// One of `int`, `float`, `double`, `string`, `bool`, `enum`, `date`, `array`, `struct`,
    /// `file`; absent: any value.
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    /// What the element means, for people and `thing.tsltemplate.get`.
    #[serde(default)]
    pub description: Option<String>,
    /// Its unit (`°C`, `kW`).
    #[serde(default)]
    pub unit: Option<String>,
}

/// An event of a product's model.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EventSpec {
    /// `INFO`, `WARN` or `ERROR` (EnOS's event types); absent: `INFO`.
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    /// The event's output parameters and their types.
    #[serde(default)]
    pub outputs: BTreeMap<String, Point>,
}

/// A service of a product's model, invoked with `thing.service.{id}`.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ServiceSpec {
    #[serde(default)]
    pub description: Option<String>,
    /// `sync` or `async`; absent: `async`.
    #[serde(default)]
    pub call: Option<String>,
    #[serde(default)]
    pub inputs: BTreeMap<String, Point>,
    #[serde(default)]
    pub outputs: BTreeMap<String, Point>,
}

/// A firmware version of a product.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Firmware {
    /// The key of the product it is for.
    pub product: String,
    /// The version string the device reports with `ota.inform`.
    pub version: String,
    /// Where the device downloads it (EnOS: HTTPS).
    pub url: String,
    /// The MD5 of the file, 32 hex digits (EnOS's `sign` with `signMethod` md5).
    pub md5: String,
    /// The file's size in bytes.
    pub size: u64,
}

/// The types a model element may have.
pub(crate) const TYPES: [&str; 10] = [
    "int", "float", "double", "string", "bool", "enum", "date", "array", "struct", "file",
];

impl Point {
    /// Whether `v` is a value of this element's type (an absent type takes anything).
    pub fn accepts(&self, v: &serde_json::Value) -> bool {
        match self.kind.as_deref() {
            None | Some("struct") => true,
            Some("int" | "enum" | "date") => v.is_i64() || v.is_u64(),
            Some("float" | "double") => v.is_number(),
            Some("string" | "file") => v.is_string(),
            Some("bool") => v.is_boolean() || matches!(v.as_i64(), Some(0 | 1)),
            Some("array") => v.is_array(),
            // Types outside TYPES are refused when the registry is read.
            Some(_) => true,
        }
    }
}

impl Measurepoints {
    /// The spec of point `id`, when the model defines it.
    pub fn get(&self, id: &str) -> Option<Point> {
        match self {
            Measurepoints::List(ids) => ids.iter().any(|i| i == id).then(Point::default),
            Measurepoints::Typed(map) => map.get(id).cloned(),
        }
    }

    /// Every id with its spec, in order.
    pub fn entries(&self) -> Vec<(String, Point)> {
        match self {
            Measurepoints::List(ids) => ids.iter().map(|i| (i.clone(), Point::default())).collect(),
            Measurepoints::Typed(map) => map.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Product {
    /// The product key.
    pub key: String,
    /// The product secret: allows dynamic activation (securemode 3) of its devices.
    #[serde(default)]
    pub secret: Option<Secret>,
    /// The product's model: the measure points it defines, as a list of ids or a table of ids
    /// to their types. A post naming another point, or a value of another type, gets 1204.
    /// Absent: any point is accepted.
    #[serde(default)]
    pub measurepoints: Option<Measurepoints>,
    /// The model's attributes (`thing.attribute.update` of another gets 1204 when given).
    #[serde(default)]
    pub attributes: Option<BTreeMap<String, Point>>,
    /// The model's events (`thing.event.{id}.post` of another gets 1204 when given).
    #[serde(default)]
    pub events: Option<BTreeMap<String, EventSpec>>,
    /// The model's services, which a test invokes with `thing.service.{id}`.
    #[serde(default)]
    pub services: Option<BTreeMap<String, ServiceSpec>>,
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
    #[error("{file}: {count} problem(s) in the registry:\n{list}", count = .problems.len(), list = crate::source_text::bullet_list(.problems))]
    Invalid { file: String, problems: Vec<Located> },
}

impl crate::help::Help for RegistryError {
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
        let (mut registry, mut unknown) = match toml::from_str::<Registry>(&src.text) {
            Ok(r) => (r, Vec::new()),
            // A misspelled key is reported with every other problem of the file.
            Err(e) => crate::source_text::reread(src, &Self::schema(), &e).map_err(|mut all| {
                all.iter_mut().for_each(|p| *p = p.clone().without_snippet());
                match all.len() {
                    1 => RegistryError::Syntax(all.remove(0)),
                    _ => RegistryError::Invalid {
                        file: src.name.clone(),
                        problems: all,
                    },
                }
            })?,
        };
        let problems = registry.validate();
        if problems.is_empty() && unknown.is_empty() {
            registry.index = sorted_index(&registry.devices);
            return Ok(registry);
        }
        unknown.extend(locate_problems(src, &problems));
        unknown.sort_by_key(|p| (p.line, p.col));
        Err(RegistryError::Invalid {
            file: src.name.clone(),
            problems: unknown.into_iter().map(Located::without_snippet).collect(),
        })
    }

    /// The registry's JSON Schema as a value, for reading a file with a misspelled key.
    fn schema() -> serde_json::Value {
        serde_json::to_value(schemars::schema_for!(Registry)).unwrap_or_default()
    }

    /// The firmwares of a product, in the order listed.
    pub fn firmwares_of<'r>(&'r self, product: &'r str) -> impl Iterator<Item = &'r Firmware> + 'r {
        self.firmwares.iter().filter(move |f| f.product == product)
    }

    pub fn product(&self, key: &str) -> Option<&Product> {
        self.products.iter().find(|p| p.key == key)
    }

    pub fn device(&self, product: &str, key: &str) -> Option<&Device> {
        if self.index.is_empty() {
            return self.devices.iter().find(|d| d.product == product && d.key == key);
        }
        let at = self
            .index
            .partition_point(|&i| keys_at(&self.devices, i).is_some_and(|k| k < (product, key)));
        let i = *self.index.get(at)?;
        self.devices
            .get(i as usize)
            .filter(|d| d.product == product && d.key == key)
    }
}

/// The positions of `devices` sorted by (product, key); empty (lookups then scan) past
/// `u32::MAX` devices.
fn sorted_index(devices: &[Device]) -> Vec<u32> {
    let Ok(n) = u32::try_from(devices.len()) else {
        return Vec::new();
    };
    let mut index: Vec<u32> = (0..n).collect();
    index.sort_by(|&a, &b| keys_at(devices, a).cmp(&keys_at(devices, b)));
    index
}

/// The (product, key) of the device at position `i`.
fn keys_at(devices: &[Device], i: u32) -> Option<(&str, &str)> {
    devices
        .get(i as usize)
        .map(|d| (d.product.as_str(), d.key.as_str()))
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

    #[test]
    fn devices_are_found_by_product_and_key_whatever_their_order() {
        let mut text = String::from("[[products]]\nkey = \"pb\"\n[[products]]\nkey = \"pa\"\n");
        // Listed out of order, across two products, one product's keys a prefix of another's.
        let listed = [
            ("pb", "d2"),
            ("pa", "d9"),
            ("pb", "d1"),
            ("pa", "d1"),
            ("pb", "d10"),
        ];
        for (i, (p, d)) in listed.iter().enumerate() {
            let disabled = i % 2 == 0;
            text.push_str(&format!(
                "[[devices]]\nproduct = \"{p}\"\nkey = \"{d}\"\ndisabled = {disabled}\n"
            ));
        }
        let r = Registry::parse(&SourceFile::new("r.toml", &text)).expect("valid");
        for (i, (p, d)) in listed.iter().enumerate() {
            let found = r.device(p, d).expect("listed device found");
            assert_eq!((found.product.as_str(), found.key.as_str()), (*p, *d));
            assert_eq!(found.disabled, i % 2 == 0, "{p}/{d} is the one listed");
        }
        for (p, d) in [
            ("pa", "d0"),
            ("pa", "d2"),
            ("pb", "d3"),
            ("pc", "d1"),
            ("", ""),
            ("pb", "d"),
        ] {
            assert!(r.device(p, d).is_none(), "{p}/{d} is not listed");
        }
    }

    #[test]
    fn typed_models_and_firmwares_read_and_their_problems_are_located() {
        let text = "[[products]]\nkey = \"p\"\nmeasurepoints = [\"a\"]\n\n\
                    [[products]]\nkey = \"q\"\n[products.measurepoints.temp]\ntype = \"float\"\n\
                    [products.attributes.color]\ntype = \"string\"\n\
                    [products.events.overheat]\ntype = \"WARN\"\noutputs.level = { type = \"int\" }\n\
                    [products.services.restart]\ncall = \"sync\"\n\n\
                    [[firmwares]]\nproduct = \"q\"\nversion = \"1.0\"\nurl = \"https://x/1.bin\"\n\
                    md5 = \"0123456789abcdef0123456789abcdef\"\nsize = 10\n";
        let r = Registry::parse(&SourceFile::new("r.toml", text)).expect("valid");
        let q = r.product("q").expect("q");
        let temp = q
            .measurepoints
            .as_ref()
            .and_then(|m| m.get("temp"))
            .expect("typed point");
        assert!(temp.accepts(&serde_json::json!(1.5)) && !temp.accepts(&serde_json::json!("hot")));
        assert!(
            r.product("p")
                .and_then(|p| p.measurepoints.as_ref())
                .is_some_and(|m| m.get("a").is_some())
        );
        assert_eq!(r.firmwares_of("q").count(), 1);
        let bad = "[[products]]\nkey = \"q\"\n[products.measurepoints.temp]\ntype = \"flaot\"\n\n\
                   [[firmwares]]\nproduct = \"qq\"\nversion = \"1\"\nurl = \"u\"\nmd5 = \"xyz\"\nsize = 1\n";
        let err = Registry::parse(&SourceFile::new("r.toml", bad))
            .expect_err("invalid")
            .to_string();
        for expected in [
            "r.toml:3:25: `temp` of product `q` has type `flaot`",
            "did you mean `float`?",
            "r.toml:7:1: firmware `1` names product `qq`",
            "r.toml:10:1: firmware `1`: md5 must be 32 hex digits",
        ] {
            assert!(err.contains(expected), "`{expected}` in:\n{err}");
        }
    }
}
