//! What a session carries beyond the device itself: `subdevice.relogin` (a gateway's sub-devices
//! logged in again after a reconnect) and `tls.verify_server` (no login over a server the device
//! should not trust).

use std::time::Duration;

use super::{Judged, picked, secs};
use crate::device_test::Verdict;
use crate::device_test::catalogue::{Kind, fix_of};
use crate::device_test::evidence::{Seen, What};
use crate::enos;

/// The sub-devices logged in (code 200) in `seen`.
pub(crate) fn logged_in_subs(seen: &[Seen]) -> Vec<String> {
    let mut subs: Vec<String> = seen
        .iter()
        .filter_map(|e| match &e.what {
            What::SubdeviceLogin {
                device,
                code: Some(enos::SUCCESS),
            } => Some(device.clone()),
            _ => None,
        })
        .collect();
    subs.sort();
    subs.dedup();
    subs
}

/// Where the first connection after the entry `drop` begins (its login), or the end.
pub(crate) fn after_reconnect(seen: &[Seen], drop: usize) -> usize {
    seen.iter()
        .skip(drop)
        .position(|e| matches!(e.what, What::Login { .. }))
        .map_or(seen.len(), |i| drop + i)
}

/// `subdevice.relogin`: every sub-device logged in before the last drop logs in again on the
/// connection after it (a login the old connection still made after the drop does not count).
pub fn subdevice_relogin(seen: &[Seen], observe: Duration) -> Judged {
    let expected = "every sub-device logged in before the drop logged in again after the reconnect";
    let drop = seen
        .iter()
        .rposition(|e| matches!(e.what, What::Dropped))
        .unwrap_or(seen.len());
    let evidence = picked(seen, |e| {
        matches!(
            e.what,
            What::SubdeviceLogin { .. } | What::Dropped | What::Login { .. }
        )
    });
    let before = logged_in_subs(&seen[..drop]);
    let after = logged_in_subs(&seen[after_reconnect(seen, drop)..]);
    if before.is_empty() {
        let words = format!("no sub-device logged in within {}", secs(observe));
        let fix = Some("log the gateway's sub-devices in with combine.login (or combine.login.batch)");
        return Judged::new(Verdict::Fail, expected, words, fix).with(evidence);
    }
    if drop == seen.len() {
        let words = "the suite could not drop the connection";
        return Judged::new(Verdict::Error, expected, words, None).with(evidence);
    }
    let missing: Vec<&str> = before
        .iter()
        .filter(|s| !after.contains(s))
        .map(String::as_str)
        .collect();
    if missing.is_empty() {
        Judged::new(
            Verdict::Pass,
            expected,
            format!("{} logged in again", before.join(", ")),
            None,
        )
        .with(evidence)
    } else {
        let words = format!(
            "{} not logged in again within {} of the reconnect",
            missing.join(", "),
            secs(observe)
        );
        Judged::new(
            Verdict::Fail,
            expected,
            words,
            Some(fix_of(Kind::SubdeviceRelogin)),
        )
        .with(evidence)
    }
}

/// `tls.verify_server`: no CONNECT over a connection served the untrusted certificate.
pub fn tls(seen: &[Seen], wait: Duration) -> Judged {
    let expected = "no CONNECT over a TLS connection whose certificate no trusted CA signed";
    let evidence = picked(seen, |e| {
        matches!(
            e.what,
            What::UntrustedTls { .. } | What::Connect { .. } | What::Dropped
        )
    });
    let offered = seen
        .iter()
        .filter(|e| matches!(e.what, What::UntrustedTls { .. }))
        .count();
    let trusted_it = seen.iter().find(|e| {
        matches!(
            e.what,
            What::Connect {
                untrusted_certificate: true,
                ..
            }
        )
    });
    if let Some(e) = trusted_it {
        let words = format!(
            "a CONNECT (the signed login) at {} over a connection whose certificate no trusted CA signed",
            secs(e.at)
        );
        return Judged::new(
            Verdict::Fail,
            expected,
            words,
            Some(fix_of(Kind::TlsVerifyServer)),
        )
        .with(evidence);
    }
    if offered == 0 {
        let words = format!(
            "no TLS connection from the device within {} of the drop",
            secs(wait)
        );
        return Judged::new(Verdict::Error, expected, words, None).with(evidence);
    }
    let words = format!("{offered} TLS connection(s) given the untrusted certificate, no CONNECT over any");
    Judged::new(Verdict::Pass, expected, words, None).with(evidence)
}
