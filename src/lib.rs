//! enos-connect: decide, plan and prove how a device connects to the EnOS IoT platform.
//!
//! The domain knowledge lives in `capabilities.toml` ([`capabilities`]); [`engine`] turns a
//! device's [`answers`] into a decision; [`render`] prints it; [`cli`] wires the commands.
//!
//! What is `pub` here is what the binary, the tests and the fuzz targets use; everything else
//! is `pub(crate)` or private, and `unreachable_pub` keeps it so.

#![warn(unreachable_pub)]

pub mod answers;
pub mod batch;
pub mod capabilities;
pub mod cli;
pub mod credentials;
pub mod device_test;
pub mod engine;
pub mod enos;
pub mod help;
pub mod measurement;
// Public for fuzz/fuzz_targets/decide.rs only.
#[doc(hidden)]
pub mod plan;
pub mod probe;
mod random;
pub mod registry;
pub mod render;
mod schema;
pub mod secret;
pub mod serve;
pub mod source_text;
