//! enos-connect: decide, plan and prove how a device connects to the EnOS IoT platform.
//!
//! The domain knowledge lives in `capabilities.toml` ([`capabilities`]); [`engine`] turns a
//! device's [`answers`] into a decision; [`render`] prints it; [`cli`] wires the commands.

pub mod answers;
pub mod base;
pub mod batch;
pub mod capabilities;
pub mod cli;
pub mod credentials;
pub mod device_test;
pub mod engine;
pub mod enos;
pub mod measurement;
pub mod plan;
pub mod probe;
pub mod registry;
pub mod render;
pub mod schema;
pub mod serve;
pub mod source;
