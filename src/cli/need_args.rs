//! The flags of `probe --need` (and `--matrix`): the values a need's check sends. Declared
//! apart from `probe_args.rs` (and flattened into `ProbeArgs` under their own heading) so that
//! each stays a reviewable size; numbers are range-checked when parsed, as everywhere.

use std::path::PathBuf;

use clap::Args;

/// The longest `--await-command`: an hour, as `--timeout`.
pub(super) const MAX_AWAIT_S: f64 = 3600.0;
/// The largest `--raw`: EnOS's message bound.
pub(super) const MAX_RAW: usize = 64 * 1024;

#[derive(Debug, Args, Clone, Default)]
#[command(
    after_long_help = "With --need, each feature's check runs after the login, each exchange \
timed as a stage and read up to EnOS's reply code. Safe against production by default: without a \
value you name, a check only reads (an attribute query, subscriptions, thing.topo.get, \
ota/device/getversion). Nothing an operator would see as data, an alarm or a changed device is \
sent unless you ask: --measurepoint, --event and --attribute post data, --register registers a \
device, --firmware-version reports a version, --file-point posts a file, --await-command answers \
a command 200. One exception: passthrough_up sends a few raw bytes (--raw, \
default 01020304) to the product's parsing script, whatever that script makes of them. A need the comparison table says the protocol does not offer is not sent \
(\"not offered over CoAP\"), unless --matrix."
)]
pub(crate) struct NeedProbeArgs {
    /// report_data: also post this event (VALUES a JSON object; default {}) (repeatable)
    #[arg(long, value_name = "ID[=JSON]", value_parser = event)]
    pub event: Vec<(String, serde_json::Value)>,
    /// report_data: also update this attribute (VALUE a JSON value, else a string) (repeatable)
    #[arg(long, value_name = "ID=VALUE", value_delimiter = ',', value_parser = super::args::measurepoint)]
    pub attribute: Vec<(String, serde_json::Value)>,
    /// passthrough_up: the raw bytes to send, in hex [default: 01020304]
    #[arg(long, value_name = "HEX", value_parser = hex)]
    pub raw: Option<Bytes>,
    /// file_upload: the file to post [default: a small generated file]
    #[arg(long, value_name = "PATH", requires = "file_point")]
    pub file: Option<PathBuf>,
    /// file_upload: the file-type measure point the file is posted for
    #[arg(long, value_name = "ID")]
    pub file_point: Option<String>,
    /// downlink_commands, passthrough_down: ask this endpoint to send the command, then wait for
    /// it and answer it: serve's command API (http://HOST:PORT/twin/commands)
    #[arg(long, value_name = "URL", env = "ENOS_CONNECT_COMMAND_API")]
    pub command_api: Option<String>,
    /// downlink_commands, passthrough_down: wait up to SECONDS for one command (sent by other
    /// means, or asked for with --command-api) and answer it (0.1 to 3600)
    #[arg(long, value_name = "SECONDS", value_parser = await_seconds)]
    pub await_command: Option<f64>,
    /// subdevice_management: register this device (thing.device.register)
    #[arg(long, value_name = "PK/DK", value_parser = keys)]
    pub register: Option<(String, String)>,
    /// ota: report this firmware version (ota.inform)
    #[arg(long, value_name = "V")]
    pub firmware_version: Option<String>,
}

/// Bytes from hex (a type of its own: clap reads a `Vec` as a list of values).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Bytes(pub Vec<u8>);

fn event(text: &str) -> Result<(String, serde_json::Value), String> {
    let (id, values) = match text.split_once('=') {
        Some((id, v)) => {
            let v: serde_json::Value =
                serde_json::from_str(v.trim()).map_err(|e| format!("`{}` is not JSON: {e}", v.trim()))?;
            if !v.is_object() {
                return Err(format!(
                    "the values of event `{id}` must be a JSON object, like {{\"level\":1}}"
                ));
            }
            (id.trim(), v)
        }
        None => (text.trim(), serde_json::json!({})),
    };
    if id.is_empty()
        || !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(format!("`{id}` is not an event id (letters, digits, _ and -)"));
    }
    Ok((id.to_string(), values))
}

pub(super) fn hex(text: &str) -> Result<Bytes, String> {
    let t = text.trim();
    let bytes = crate::probe::coap::hex_decode(t)
        .ok_or_else(|| format!("`{t}` is not hex: an even number of digits 0-9a-f"))?;
    if bytes.is_empty() || bytes.len() > MAX_RAW {
        return Err(format!("give 1 to {MAX_RAW} bytes"));
    }
    Ok(Bytes(bytes))
}

fn await_seconds(text: &str) -> Result<f64, String> {
    let v: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("`{text}` is not a number of seconds"))?;
    if v.is_finite() && (0.1..=MAX_AWAIT_S).contains(&v) {
        Ok(v)
    } else {
        Err(format!("give seconds from 0.1 to {MAX_AWAIT_S}"))
    }
}

fn keys(text: &str) -> Result<(String, String), String> {
    match text.split_once('/') {
        Some((pk, dk)) if !pk.is_empty() && !dk.is_empty() && !dk.contains('/') => {
            Ok((pk.to_string(), dk.to_string()))
        }
        _ => Err(format!("`{text}` is not PRODUCT_KEY/DEVICE_KEY")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_checked_when_parsed() {
        assert_eq!(event("alarm").map(|e| e.1), Ok(serde_json::json!({})));
        assert!(event("alarm=[1]").is_err());
        assert!(event("a b={}").is_err());
        assert_eq!(hex("0aFF"), Ok(Bytes(vec![0x0a, 0xff])));
        assert!(hex("abc").is_err());
        assert!(hex("").is_err());
        assert!(await_seconds("0").is_err());
        assert!(await_seconds("3601").is_err());
        assert!(await_seconds("NaN").is_err());
        assert!(keys("pk/").is_err());
    }
}
