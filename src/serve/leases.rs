//! Who a later request is, when the protocol does not say it on every request: an HTTP
//! session (`POST /auth` gives a session id, later requests pass `?sessionId=`) and a CoAP
//! binding (a plain `POST /auth` binds the client's address). Each is a lease: a device until
//! an expiry, bounded in number so replayed logins cannot grow the table.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::Instant;

use super::Identity;

/// The most live leases kept in one table: past it the one expiring first goes.
pub(crate) const MAX_LEASES: usize = 100_000;

/// Leases by key (a session id, a client address): the device and until when.
pub struct Leases<K> {
    table: Mutex<HashMap<K, (Identity, Instant)>>,
}

impl<K> Default for Leases<K> {
    fn default() -> Self {
        Leases {
            table: Mutex::new(HashMap::new()),
        }
    }
}

impl<K: Clone + Hash + Eq> Leases<K> {
    /// `key` is `id` until `until`; expired leases go first, then, at [`MAX_LEASES`], the one
    /// expiring first.
    pub fn grant(&self, key: K, id: &Identity, until: Instant) {
        let Ok(mut t) = self.table.lock() else { return };
        let now = Instant::now();
        t.retain(|_, (_, u)| *u > now);
        while t.len() >= MAX_LEASES {
            let Some(first) = t.iter().min_by_key(|(_, (_, u))| *u).map(|(k, _)| k.clone()) else {
                break;
            };
            t.remove(&first);
        }
        t.insert(key, (id.clone(), until));
    }

    /// The device `key` is, while its lease lasts.
    pub fn holder(&self, key: &K) -> Option<Identity> {
        let t = self.table.lock().ok()?;
        t.get(key)
            .filter(|(_, until)| *until > Instant::now())
            .map(|(id, _)| id.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_lease_names_its_device_until_it_expires() {
        let leases = Leases::default();
        let id = Identity::new("p", "d");
        let now = Instant::now();
        leases.grant("s1", &id, now + Duration::from_secs(60));
        leases.grant("s2", &id, now);
        assert_eq!(leases.holder(&"s1"), Some(id));
        assert_eq!(leases.holder(&"s2"), None, "expired");
        assert_eq!(leases.holder(&"s3"), None);
    }
}
