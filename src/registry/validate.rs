//! Checking a registry once it is read: every problem at once, each at its place in the file
//! (`products[i].measurepoints.temp`), with "did you mean" for a product or a type; never a
//! secret in a message.

use std::collections::BTreeMap;

use super::{Measurepoints, Point, Product, Registry, TYPES};
use crate::secret::Secret;
use crate::source_text::{PathSeg, Problem, nearest};

impl Registry {
    /// Every problem of the registry, in the file's order: products (and their models),
    /// firmwares, devices, gateways.
    pub(super) fn validate(&self) -> Vec<Problem> {
        let mut problems = Problems::default();
        let products = self.check_products(&mut problems);
        self.check_firmwares(&products, &mut problems);
        let devices = self.check_devices(&products, &mut problems);
        self.check_gateways(&devices, &mut problems);
        problems.0
    }

    /// Each product's key, secret and model; the keys listed, to their index.
    fn check_products(&self, problems: &mut Problems) -> BTreeMap<&str, usize> {
        let mut products = BTreeMap::new();
        for (i, p) in self.products.iter().enumerate() {
            if p.key.trim().is_empty() {
                problems.add(
                    at("products", i, "key"),
                    format!("products[{i}] has an empty key"),
                );
            } else if products.insert(p.key.as_str(), i).is_some() {
                problems.add(
                    at("products", i, "key"),
                    format!("product `{}` is listed twice", p.key),
                );
            }
            if p.secret.as_ref().is_some_and(Secret::is_empty) {
                problems.add(
                    at("products", i, "secret"),
                    format!("product `{}` has an empty secret", p.key),
                );
            }
            check_points(i, p, problems);
            check_events(i, p, problems);
            check_services(i, p, problems);
        }
        products
    }

    /// Each firmware: a listed product, a version given once per product, an md5, a url.
    fn check_firmwares(&self, products: &BTreeMap<&str, usize>, problems: &mut Problems) {
        let mut versions = BTreeMap::new();
        for (i, f) in self.firmwares.iter().enumerate() {
            if !products.contains_key(f.product.as_str()) {
                let hint = nearest(&f.product, products.keys().copied())
                    .map(|n| format!(" (did you mean `{n}`?)"))
                    .unwrap_or_default();
                problems.add(
                    at("firmwares", i, "product"),
                    format!(
                        "firmware `{}` names product `{}`, which [[products]] does not list{hint}",
                        f.version, f.product
                    ),
                );
            }
            if f.version.trim().is_empty() {
                problems.add(
                    at("firmwares", i, "version"),
                    format!("firmwares[{i}] has an empty version"),
                );
            } else if versions
                .insert((f.product.as_str(), f.version.as_str()), i)
                .is_some()
            {
                problems.add(
                    at("firmwares", i, "version"),
                    format!(
                        "firmware `{}` of product `{}` is listed twice",
                        f.version, f.product
                    ),
                );
            }
            if f.md5.len() != 32 || !f.md5.bytes().all(|b| b.is_ascii_hexdigit()) {
                problems.add(
                    at("firmwares", i, "md5"),
                    format!("firmware `{}`: md5 must be 32 hex digits", f.version),
                );
            }
            if f.url.trim().is_empty() {
                problems.add(
                    at("firmwares", i, "url"),
                    format!("firmware `{}` has an empty url", f.version),
                );
            }
        }
    }

    /// Each device: a listed product, a key given once per product, a secret not empty; the
    /// devices listed, to their index.
    fn check_devices(
        &self,
        products: &BTreeMap<&str, usize>,
        problems: &mut Problems,
    ) -> BTreeMap<(&str, &str), usize> {
        let mut devices = BTreeMap::new();
        for (i, d) in self.devices.iter().enumerate() {
            if !products.contains_key(d.product.as_str()) {
                let hint = nearest(&d.product, products.keys().copied())
                    .map(|n| format!(" (did you mean `{n}`?)"))
                    .unwrap_or_default();
                problems.add(
                    at("devices", i, "product"),
                    format!(
                        "device `{}` names product `{}`, which [[products]] does not list{hint}",
                        d.key, d.product
                    ),
                );
            }
            if d.key.trim().is_empty() {
                problems.add(at("devices", i, "key"), format!("devices[{i}] has an empty key"));
            } else if devices.insert((d.product.as_str(), d.key.as_str()), i).is_some() {
                problems.add(
                    at("devices", i, "key"),
                    format!("device `{}/{}` is listed twice", d.product, d.key),
                );
            }
            if d.secret.as_ref().is_some_and(Secret::is_empty) {
                problems.add(
                    at("devices", i, "secret"),
                    format!("device `{}` has an empty secret", d.key),
                );
            }
        }
        devices
    }

    /// Each `gateway =`: a listed device other than the device itself.
    fn check_gateways(&self, devices: &BTreeMap<(&str, &str), usize>, problems: &mut Problems) {
        for (i, d) in self.devices.iter().enumerate() {
            let Some(gw) = &d.gateway else { continue };
            match gw.split_once('/') {
                Some((pk, dk)) if devices.contains_key(&(pk, dk)) => {
                    if (pk, dk) == (d.product.as_str(), d.key.as_str()) {
                        problems.add(
                            at("devices", i, "gateway"),
                            format!("device `{}` names itself as its gateway", d.key),
                        );
                    }
                }
                Some(_) => problems.add(
                    at("devices", i, "gateway"),
                    format!(
                        "device `{}` names gateway `{gw}`, which [[devices]] does not list",
                        d.key
                    ),
                ),
                None => problems.add(
                    at("devices", i, "gateway"),
                    format!("gateway `{gw}` is not `productKey/deviceKey`"),
                ),
            }
        }
    }
}

/// The problems of a registry, each at its place in the file.
#[derive(Default)]
struct Problems(Vec<Problem>);

impl Problems {
    fn add(&mut self, path: Vec<PathSeg>, message: String) {
        self.0.push(Problem { path, message });
    }
}

/// `table[i].field`.
fn at(table: &str, i: usize, field: &str) -> Vec<PathSeg> {
    vec![PathSeg::from(table), PathSeg::from(i), PathSeg::from(field)]
}

/// `products[i].what.key`.
fn under(i: usize, what: &str, key: PathSeg) -> Vec<PathSeg> {
    vec![
        PathSeg::from("products"),
        PathSeg::from(i),
        PathSeg::from(what),
        key,
    ]
}

/// A product's measure points and attributes: ids not empty, types known.
fn check_points(i: usize, p: &Product, problems: &mut Problems) {
    match &p.measurepoints {
        Some(Measurepoints::List(ids)) => {
            for (j, m) in ids.iter().enumerate() {
                if m.trim().is_empty() {
                    problems.add(
                        under(i, "measurepoints", PathSeg::from(j)),
                        format!("product `{}` lists an empty measure point", p.key),
                    );
                }
            }
        }
        Some(Measurepoints::Typed(map)) => {
            for (id, point) in map {
                check_type(
                    problems,
                    under(i, "measurepoints", PathSeg::from(id)),
                    &p.key,
                    id,
                    point,
                );
            }
        }
        None => {}
    }
    for (id, point) in p.attributes.iter().flatten() {
        check_type(
            problems,
            under(i, "attributes", PathSeg::from(id)),
            &p.key,
            id,
            point,
        );
    }
}

/// A product's events: a known type (INFO, WARN, ERROR), typed outputs.
fn check_events(i: usize, p: &Product, problems: &mut Problems) {
    for (id, e) in p.events.iter().flatten() {
        if let Some(k) = &e.kind
            && !["INFO", "WARN", "ERROR"].contains(&k.to_ascii_uppercase().as_str())
        {
            problems.add(
                under(i, "events", PathSeg::from(id)),
                format!(
                    "event `{id}` of product `{}` has type `{k}`: INFO, WARN or ERROR",
                    p.key
                ),
            );
        }
        for (o, point) in &e.outputs {
            check_type(problems, under(i, "events", PathSeg::from(id)), &p.key, o, point);
        }
    }
}

/// A product's services: an id that fits in a topic, a known call, typed inputs and outputs.
fn check_services(i: usize, p: &Product, problems: &mut Problems) {
    for (id, svc) in p.services.iter().flatten() {
        if id.contains('/') || id.contains('.') || id == "measurepoint" {
            problems.add(
                under(i, "services", PathSeg::from(id)),
                format!(
                    "service id `{id}` of product `{}` cannot be used in a topic",
                    p.key
                ),
            );
        }
        if let Some(c) = &svc.call
            && c != "sync"
            && c != "async"
        {
            problems.add(
                under(i, "services", PathSeg::from(id)),
                format!("service `{id}` has call `{c}`: sync or async"),
            );
        }
        for (o, point) in svc.inputs.iter().chain(&svc.outputs) {
            check_type(
                problems,
                under(i, "services", PathSeg::from(id)),
                &p.key,
                o,
                point,
            );
        }
    }
}

fn check_type(problems: &mut Problems, path: Vec<PathSeg>, pk: &str, id: &str, p: &Point) {
    if id.trim().is_empty() {
        problems.add(
            path.clone(),
            format!("product `{pk}` has an element with an empty id"),
        );
    }
    if let Some(k) = &p.kind
        && !TYPES.contains(&k.as_str())
    {
        let hint = nearest(k, TYPES.iter().copied())
            .map(|n| format!(" (did you mean `{n}`?)"))
            .unwrap_or_default();
        problems.add(
            path,
            format!(
                "`{id}` of product `{pk}` has type `{k}`, not one of {}{hint}",
                TYPES.join(", ")
            ),
        );
    }
}
