//! Dynamic activation's secrets in flight: a device that logs in with securemode 3 is pushed a
//! fresh device secret, held here until it acknowledges it (MQTT: its `_reply` with 200; CoAP:
//! the answer to its GET). The acknowledged secret then belongs to the device's state, in the
//! twin ([`super::twin::Twin::set_issued_secret`]); one that is never acknowledged is never
//! used, and is lost at a restart, as nothing was promised for it.

use std::collections::HashMap;
use std::sync::Mutex;

use super::Identity;
use crate::secret::Secret;

/// The secrets pushed and not yet acknowledged, by device (a newer push replaces an older one).
#[derive(Default)]
pub struct Activations {
    pending: Mutex<HashMap<Identity, Secret>>,
}

impl Activations {
    /// A fresh device secret for `id`, held until acknowledged; `None` when the system's random
    /// source fails (no secret is made without it).
    pub fn issue(&self, id: &Identity) -> Option<Secret> {
        let secret = Secret::new(super::random_hex(16)?);
        if let Ok(mut p) = self.pending.lock() {
            p.insert(id.clone(), secret.clone());
        }
        Some(secret)
    }

    /// The device acknowledged: its secret, taken out of the pending ones; `None` when none was
    /// pushed to it.
    pub fn acknowledged(&self, id: &Identity) -> Option<Secret> {
        self.pending.lock().ok()?.remove(id)
    }
}
