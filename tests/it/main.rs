//! The integration tests: one binary with a module per area, as ripgrep and just do (one link,
//! one process, shared helpers). Peers run inside this process on loopback; the interop
//! module talks to Debian's mosquitto, libcoap and Python peers that `.ci/run` starts.

mod common;
mod peers;

mod advice;
mod ask;
mod batch;
mod cli;
mod console;
mod credentials;
mod device_test;
mod docs;
mod ecosystem;
mod engine;
mod enos;
mod errors;
mod fleet;
mod interop;
mod layers;
mod load;
mod matrix;
mod mqtt_spec;
mod needs;
mod plan;
mod probe;
mod rough_edges;
mod sdk;
mod serve;
mod serve_cli;
mod store;
mod test_device;
mod twin;
