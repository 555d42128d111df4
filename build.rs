//! Converts the embedded capabilities.toml to JSON at build time: serde_json reads the same
//! model about four times faster than the TOML parser, and start-up is part of every CI call.
//! A file that does not convert is embedded as empty; the binary then falls back to the TOML
//! text and reports the problem with its line and column.

use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=capabilities.toml");
    link_unwinder_statically();
    let text = std::fs::read_to_string("capabilities.toml").unwrap_or_default();
    let value = toml::from_str::<serde_json::Value>(&text).ok();
    // `--version` names the data version next to the program's.
    let data_version = value
        .as_ref()
        .and_then(|v| v.pointer("/meta/version"))
        .and_then(|v| v.as_str())
        .unwrap_or("unknown")
        .to_string();
    println!("cargo:rustc-env=ENOS_CONNECT_DATA_VERSION={data_version}");
    // A probe reads only these sections; a JSON of their own spares it scanning the rest.
    let connection = value.as_ref().map(|v| {
        let keep = ["meta", "protocols", "secure_modes", "credentials"];
        let part: serde_json::Map<String, serde_json::Value> = v
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(k, _)| keep.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        serde_json::Value::Object(part)
    });
    let json =
        |v: Option<serde_json::Value>| v.and_then(|v| serde_json::to_string(&v).ok()).unwrap_or_default();
    let dir = PathBuf::from(std::env::var_os("OUT_DIR").unwrap_or_default());
    for (name, text) in [
        ("capabilities.json", json(value)),
        ("capabilities-connection.json", json(connection)),
    ] {
        let out = dir.join(name);
        if let Err(e) = std::fs::write(&out, text) {
            println!("cargo:warning=cannot write {}: {e}", out.display());
            std::process::exit(1);
        }
    }
}

/// On glibc, link the unwinder (`libgcc_eh.a`, the static half of libgcc) into the binary
/// instead of loading `libgcc_s.so.1` for it. Loading `libgcc_s` runs its constructor,
/// `__cpu_indicator_init`, whose dozen `cpuid` instructions each trap to the hypervisor on a
/// virtual machine: about 0.2 ms of every start on this one (`perf record` on 300 starts of an
/// empty program: 8% of its samples in libgcc_s), longer than a probe's whole exchange.
/// Linked whole and ahead of the standard library, the archive defines the `_Unwind_*` symbols
/// before `-lgcc_s` comes up, and `--as-needed` then leaves the library out. Unwinding (a load
/// probe's panicking task, caught) works as before; `tests/it/cli.rs` checks the library is
/// not needed.
fn link_unwinder_statically() {
    let var = |name: &str| std::env::var(name).unwrap_or_default();
    let static_crt = var("CARGO_CFG_TARGET_FEATURE")
        .split(',')
        .any(|f| f == "crt-static");
    if var("CARGO_CFG_TARGET_OS") == "linux" && var("CARGO_CFG_TARGET_ENV") == "gnu" && !static_crt {
        println!("cargo:rustc-link-lib=static:+whole-archive,-bundle=gcc_eh");
    }
}
