//! The devices of a fleet (`--devices FILE` as CSV or a registry, or `--devices N` generated
//! under one product) and the durations of `--every` and `--hold`: the parsers of what the user
//! gives, apart from the run.

use std::time::Duration;

use crate::secret::Secret;

/// One device of the fleet: its keys and the secret it logs in with.
#[derive(Clone)]
pub struct FleetDevice {
    pub product_key: String,
    pub device_key: String,
    pub secret: Secret,
    /// Securemode 3: the secret is the product's, and the device is activated by the login.
    pub dynamic: bool,
}

impl std::fmt::Debug for FleetDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{} (secret hidden)", self.product_key, self.device_key)
    }
}

/// The devices of a CSV file: a header naming `product`, `key` and `secret` (the registry's
/// field names; `product_key`, `device_key`, `device_secret` are read too), a row per
/// device. A device with an empty secret and a `product_secret` column logs in with
/// securemode 3 (dynamic activation).
pub fn devices_from_csv(text: &str) -> Result<Vec<FleetDevice>, String> {
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    let headers = reader
        .headers()
        .map_err(|e| format!("the CSV header: {e}"))?
        .clone();
    let col = |names: &[&str]| headers.iter().position(|h| names.contains(&h));
    let pk = col(&["product", "product_key", "productKey"]).ok_or("the CSV has no `product` column")?;
    let dk = col(&["key", "device_key", "deviceKey"]).ok_or("the CSV has no `key` column")?;
    let secret = col(&["secret", "device_secret", "deviceSecret"]);
    let product_secret = col(&["product_secret", "productSecret"]);
    let mut out = Vec::new();
    for (i, row) in reader.records().enumerate() {
        let line = i.saturating_add(2);
        let row = row.map_err(|e| format!("CSV line {line}: {e}"))?;
        let field = |c: Option<usize>| c.and_then(|c| row.get(c)).unwrap_or_default();
        let (p, d) = (field(Some(pk)), field(Some(dk)));
        if p.is_empty() || d.is_empty() {
            return Err(format!("CSV line {line}: a device needs a product and a key"));
        }
        let (s, dynamic) = match (field(secret), field(product_secret)) {
            (s, _) if !s.is_empty() => (s, false),
            (_, ps) if !ps.is_empty() => (ps, true),
            _ => {
                return Err(format!(
                    "CSV line {line} ({p}/{d}): no secret and no product_secret"
                ));
            }
        };
        out.push(FleetDevice {
            product_key: p.to_string(),
            device_key: d.to_string(),
            secret: Secret::new(s.to_string()),
            dynamic,
        });
    }
    Ok(out)
}

/// The devices of a registry (serve's TOML): each with its device secret, or with its
/// product's secret (securemode 3) when it has none yet.
pub(crate) fn devices_from_registry(
    registry: &crate::registry::Registry,
) -> Result<Vec<FleetDevice>, String> {
    registry
        .devices
        .iter()
        .map(|d| {
            if let Some(s) = &d.secret {
                return Ok(FleetDevice {
                    product_key: d.product.clone(),
                    device_key: d.key.clone(),
                    secret: s.clone(),
                    dynamic: false,
                });
            }
            let ps = registry
                .products
                .iter()
                .find(|p| p.key == d.product)
                .and_then(|p| p.secret.clone())
                .ok_or_else(|| {
                    format!(
                        "device {}/{} has no secret and its product none for dynamic activation",
                        d.product, d.key
                    )
                })?;
            Ok(FleetDevice {
                product_key: d.product.clone(),
                device_key: d.key.clone(),
                secret: ps,
                dynamic: true,
            })
        })
        .collect()
}

/// `--devices N`: keys `{prefix}-{i}` (1 to N) under one product, each activated by its login
/// with the product secret (securemode 3).
pub(crate) fn generated(
    product_key: &str,
    prefix: &str,
    product_secret: &Secret,
    n: u64,
) -> Vec<FleetDevice> {
    (1..=n)
        .map(|i| FleetDevice {
            product_key: product_key.to_string(),
            device_key: format!("{prefix}-{i}"),
            secret: product_secret.clone(),
            dynamic: true,
        })
        .collect()
}

/// Parse `--every`/`--hold`: `250ms`, `2s`, `5m`, `1h`, or seconds without a unit.
pub fn duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let (num, unit) = match t.find(|c: char| c.is_ascii_alphabetic()) {
        Some(i) => t.split_at(i),
        None => (t, "s"),
    };
    let n: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("`{text}` is not a duration: use 250ms, 2s, 5m or 1h"))?;
    let scale = match unit {
        "ms" => 0.001,
        "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        other => return Err(format!("`{other}` is not a unit: use ms, s, m or h")),
    };
    let secs = n * scale;
    if !secs.is_finite() || secs < 0.0 {
        return Err(format!("`{text}` is not a duration of zero or more"));
    }
    Duration::try_from_secs_f64(secs).map_err(|e| format!("`{text}`: {e}"))
}
