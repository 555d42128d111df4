//! What the suite does for each case, through serve's parts: send commands
//! ([`Endpoint::send_command`]'s halves, so the request id is journaled), arm the [`Harness`]
//! (lose a PUBLISH, refuse CONNECTs, present an untrusted certificate), drop the connection
//! ([`crate::serve::commands::Mailboxes::hang_up`]), and wait, every wait bounded, for what the
//! judge needs. The verdict is then [`super::judge`]'s, over the journal.
//!
//! [`Harness`]: super::harness::Harness

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::Timings;
use super::catalogue::{Kind, fix_of};
use super::evidence::{Failure, Seen, What, window};
use super::judge::{self, Judged};
use super::runner::Setup;
use super::watcher::Watcher;
use crate::enos;
use crate::registry::Point;
use crate::serve::{Endpoint, Identity, Protocol};

/// What a case came to.
pub(crate) enum Outcome {
    Judged(Judged),
    Skipped(String),
    /// The suite could not judge it, and why.
    Error(String),
}

/// What a case works with.
pub(crate) struct Ctx<'a> {
    pub ep: &'a Endpoint,
    pub w: Watcher,
    pub setup: &'a Setup,
    /// The `--mqtts` listener's address (for the untrusted certificate's names).
    pub mqtts: Option<std::net::SocketAddr>,
}

/// How often a wait looks again when nothing is journaled (a connection's state is serve's).
const TICK: Duration = Duration::from_millis(100);

impl Ctx<'_> {
    fn t(&self) -> &Timings {
        &self.setup.timings
    }

    fn device(&self) -> &Identity {
        &self.setup.device
    }

    pub(crate) fn now(&self) -> Duration {
        self.w.journal.now()
    }

    pub(crate) fn connected(&self) -> bool {
        self.ep.mailboxes.get(self.device()).is_some()
    }

    /// Wait until the device is connected, at most `within`.
    pub(crate) async fn online(&mut self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        loop {
            if self.connected() {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            self.w
                .sleep(TICK.min(deadline.saturating_duration_since(Instant::now())))
                .await;
        }
    }

    /// Leave a device that logged in a moment ago to itself for [`Timings::settle`] from its
    /// login: what it does as a connection opens belongs to that connection, not the next case.
    pub(crate) async fn settle(&mut self) {
        let since_login = self.w.journal.with(|s| {
            s.iter()
                .rev()
                .find(|e| matches!(e.what, What::Login { .. }))
                .map(|e| e.at)
        });
        if let Some(at) = since_login {
            let left = (at + self.t().settle).saturating_sub(self.now());
            if !left.is_zero() {
                self.w.sleep(left).await;
            }
        }
    }

    /// Wait until `check` holds over the entries since `from`, at most until `deadline`.
    pub(crate) async fn until(
        &mut self,
        from: Duration,
        deadline: Instant,
        mut check: impl FnMut(&[Seen]) -> bool,
    ) -> bool {
        self.w
            .until(deadline, |s| check(window(s, from)).then_some(()))
            .await
            .is_some()
    }

    /// The entries since `from`.
    pub(crate) fn since(&self, from: Duration) -> Vec<Seen> {
        self.w.journal.since(from)
    }

    /// Drop the device's connection, journaled first, and wait (a moment at most) until serve
    /// has let it go, so a wait for the device to be online again waits for a new connection.
    /// (A device that already left is not dropped; the case then judges what it does anyway.)
    pub(crate) async fn drop_connection(&mut self) {
        let old = self.ep.mailboxes.get(self.device());
        self.w.act(What::Dropped);
        if !self.ep.mailboxes.hang_up(self.device()) {
            return;
        }
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            let current = self.ep.mailboxes.get(self.device());
            if !matches!((&old, &current), (Some(a), Some(b)) if Arc::ptr_eq(a, b)) {
                return;
            }
            self.w.sleep(Duration::from_millis(5)).await;
        }
    }

    /// Send a command, journaling it (with its request id) and what became of it.
    pub(crate) async fn command(&mut self, body: Value) {
        let method = body
            .get("method")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let prepared = match self.ep.prepare_command(self.device(), &body) {
            Ok(p) => p,
            Err(e) => {
                self.w.act(What::CommandOutcome {
                    method,
                    reply_id: None,
                    code: None,
                    failed: Some(Failure::of(&e)),
                    detail: Some(e.to_string()),
                });
                return;
            }
        };
        self.w.act(What::Command {
            method: method.clone(),
            topic: prepared.topic.clone(),
            id: prepared.id.clone(),
        });
        let timeout = self.t().reply_timeout;
        let answer = self.w.during(self.ep.send_prepared(prepared, timeout)).await;
        let outcome = match answer {
            Ok(reply) => What::CommandOutcome {
                method,
                reply_id: enos::reply_id(&reply),
                code: serde_json::from_value::<enos::Reply>(reply).ok().map(|r| r.code),
                failed: None,
                detail: None,
            },
            Err(e) => What::CommandOutcome {
                method,
                reply_id: None,
                code: None,
                failed: Some(Failure::of(&e)),
                detail: Some(e.to_string()),
            },
        };
        self.w.act(outcome);
    }

    /// The protocol of the device's last login.
    pub(crate) fn protocol(&self) -> Option<Protocol> {
        self.w.journal.with(|s| {
            s.iter().rev().find_map(|e| match e.what {
                What::Login { protocol, .. } => Some(protocol),
                _ => None,
            })
        })
    }
}

/// A value of a model element's type, for a command's params.
fn value_of(p: &Point) -> Option<Value> {
    Some(match p.kind.as_deref() {
        None | Some("int" | "enum") => json!(1),
        Some("float" | "double") => json!(1.5),
        Some("bool") => json!(true),
        Some("string") => json!("device-test"),
        Some("date") => json!(super::evidence::clock_ms()),
        Some("array") => json!([]),
        Some("struct") => json!({}),
        // A file is uploaded over HTTP, not set by a command.
        Some(_) => return None,
    })
}

/// The first measure point of the model a command can set, with a value of its type.
fn settable(setup: &Setup) -> Option<(String, Value)> {
    let product = setup.registry.product(&setup.device.product_key)?;
    product
        .measurepoints
        .as_ref()?
        .entries()
        .into_iter()
        .find_map(|(id, p)| value_of(&p).map(|v| (id, v)))
}

/// Before a case that needs the device connected: wait for it (and let a fresh connection
/// settle); why it cannot run, if it is not back.
pub(crate) async fn prepare(cx: &mut Ctx<'_>, kind: Kind) -> Result<(), String> {
    if matches!(
        kind,
        Kind::ReportModel | Kind::ReportTimestamps | Kind::LoginSigned
    ) {
        return Ok(());
    }
    if !cx.online(cx.t().reconnect_wait).await {
        return Err(format!(
            "the device is not connected (it did not come back within {:.0} s)",
            cx.t().reconnect_wait.as_secs_f64()
        ));
    }
    cx.settle().await;
    Ok(())
}

/// Run one case (not `login.signed`, judged at the login, nor the `report.*` cases, judged at
/// the end), once [`prepare`]d.
pub(crate) async fn run(cx: &mut Ctx<'_>, kind: Kind) -> Outcome {
    match kind {
        Kind::MeasurepointSet | Kind::MeasurepointGet => measurepoint(cx, kind).await,
        Kind::Service => services(cx).await,
        Kind::PubackRetry => puback_retry(cx).await,
        Kind::ReconnectBackoff => backoff(cx).await,
        Kind::ReconnectResume => resume(cx).await,
        Kind::OtaUpgrade => ota(cx).await,
        Kind::SubdeviceRelogin => subdevice_relogin(cx).await,
        Kind::TlsVerifyServer => tls(cx).await,
        Kind::LoginKeepalive => keepalive(cx).await,
        Kind::LoginSigned | Kind::ReportModel | Kind::ReportTimestamps => {
            Outcome::Error("judged by the runner, not here".into())
        }
    }
}

async fn measurepoint(cx: &mut Ctx<'_>, kind: Kind) -> Outcome {
    let Some((point, value)) = settable(cx.setup) else {
        return Outcome::Skipped(format!(
            "the model of product {} lists no measure point a command can set (measurepoints = [...] in the registry)",
            cx.device().product_key
        ));
    };
    let from = cx.now();
    let body = if kind == Kind::MeasurepointSet {
        json!({"method": enos::MEASUREPOINT_SET, "params": {point: value}})
    } else {
        json!({"method": enos::MEASUREPOINT_GET, "params": [point]})
    };
    cx.command(body).await;
    Outcome::Judged(judge::commands(
        &cx.since(from),
        cx.t().reply_timeout,
        fix_of(kind),
    ))
}

async fn services(cx: &mut Ctx<'_>) -> Outcome {
    let services: Vec<(String, Value)> = cx
        .setup
        .registry
        .product(&cx.device().product_key)
        .and_then(|p| p.services.as_ref())
        .map(|s| {
            s.iter()
                .map(|(id, spec)| {
                    let params: serde_json::Map<String, Value> = spec
                        .inputs
                        .iter()
                        .filter_map(|(k, p)| value_of(p).map(|v| (k.clone(), v)))
                        .collect();
                    (id.clone(), Value::Object(params))
                })
                .collect()
        })
        .unwrap_or_default();
    if services.is_empty() {
        return Outcome::Skipped(format!(
            "the model of product {} lists no service ([products.services.ID] in the registry)",
            cx.device().product_key
        ));
    }
    let from = cx.now();
    for (id, params) in services {
        cx.command(json!({"method": format!("thing.service.{id}"), "params": params}))
            .await;
    }
    Outcome::Judged(judge::commands(
        &cx.since(from),
        cx.t().reply_timeout,
        fix_of(Kind::Service),
    ))
}

async fn puback_retry(cx: &mut Ctx<'_>) -> Outcome {
    let t = cx.t().clone();
    let from = cx.now();
    cx.w.journal.lose_next(true);
    let lost = cx
        .until(from, Instant::now() + t.observe, |s| {
            judge::lost_publish(s).is_some()
        })
        .await;
    cx.w.journal.lose_next(false);
    if lost {
        let resent = cx
            .until(from, Instant::now() + t.puback_drop, |s| {
                judge::resend_of(s).is_some()
            })
            .await;
        if !resent {
            if cx.connected() {
                cx.drop_connection().await;
            }
            cx.online(t.reconnect_wait).await;
            cx.until(from, Instant::now() + t.observe, |s| {
                judge::resend_of(s).is_some()
            })
            .await;
        }
    }
    Outcome::Judged(judge::puback_retry(&cx.since(from), t.puback_drop, t.observe))
}

async fn backoff(cx: &mut Ctx<'_>) -> Outcome {
    let t = cx.t().clone();
    let from = cx.now();
    cx.w.journal.refuse_next(t.refusals);
    cx.drop_connection().await;
    let wanted = usize::try_from(t.refusals)
        .unwrap_or(usize::MAX)
        .saturating_add(1);
    for k in 1..=wanted {
        let came = cx
            .until(from, Instant::now() + t.reconnect_wait, |s| {
                s.iter()
                    .filter(|e| matches!(e.what, What::Connect { .. }))
                    .count()
                    >= k
            })
            .await;
        if !came {
            break;
        }
    }
    cx.w.journal.refuse_next(0);
    cx.online(t.reconnect_wait).await;
    Outcome::Judged(judge::backoff(
        &cx.since(from),
        t.refusals,
        t.first_reconnect,
        t.connack_delay,
        t.reconnect_wait,
    ))
}

/// The median gap between the device's plain posts so far.
fn post_interval(seen: &[Seen]) -> Option<Duration> {
    let times: Vec<Duration> = seen
        .iter()
        .filter(|e| matches!(&e.what, What::Request { method, device: None, .. } if method == enos::MEASUREPOINT_POST))
        .map(|e| e.at)
        .collect();
    let mut gaps: Vec<Duration> = times.windows(2).map(|w| w[1].saturating_sub(w[0])).collect();
    gaps.sort_unstable();
    gaps.get(gaps.len() / 2).copied()
}

/// The longest outage `reconnect.resume` makes.
const MAX_OUTAGE: Duration = Duration::from_secs(60);

async fn resume(cx: &mut Ctx<'_>) -> Outcome {
    let t = cx.t().clone();
    let (interval, offset) = cx.w.journal.with(|s| (post_interval(s), judge::clock_offset(s)));
    // Long enough for the device to measure at least twice while offline.
    let outage = interval
        .map_or(t.outage, |i| t.outage.max(i.saturating_mul(2)))
        .min(MAX_OUTAGE.max(t.outage));
    let from = cx.now();
    cx.w.journal.refuse_for(outage);
    cx.drop_connection().await;
    cx.w.sleep(outage).await;
    let back = cx.online(t.reconnect_wait).await;
    if back {
        cx.until(from, Instant::now() + t.observe, |s| {
            !judge::resumed(s, offset).is_empty()
        })
        .await;
    }
    Outcome::Judged(judge::resume(&cx.since(from), offset, t.observe))
}

async fn ota(cx: &mut Ctx<'_>) -> Outcome {
    let t = cx.t().clone();
    let pk = cx.device().product_key.clone();
    let firmwares: Vec<String> = cx
        .setup
        .registry
        .firmwares_of(&pk)
        .map(|f| f.version.clone())
        .collect();
    let current = cx.ep.twin.firmware(cx.device());
    let Some(target) = firmwares
        .iter()
        .rev()
        .find(|v| Some(*v) != current.as_ref())
        .or(firmwares.last())
        .cloned()
    else {
        return Outcome::Skipped(format!(
            "no firmware of product {pk} in the registry ([[firmwares]])"
        ));
    };
    let from = cx.now();
    let started = Instant::now();
    cx.command(json!({"method": enos::OTA_UPGRADE, "params": {"version": target}}))
        .await;
    let replied = cx.w.journal.with(|s| {
        window(s, from).iter().any(|e| {
            matches!(
                &e.what,
                What::CommandOutcome {
                    failed: None,
                    code: Some(enos::SUCCESS),
                    ..
                }
            )
        })
    });
    if replied {
        cx.until(from, started + t.ota_timeout, |s| judge::ota_done(s, &target))
            .await;
    }
    Outcome::Judged(judge::ota(
        &cx.since(from),
        &target,
        t.ota_timeout,
        t.reply_timeout,
    ))
}

async fn subdevice_relogin(cx: &mut Ctx<'_>) -> Outcome {
    let t = cx.t().clone();
    if cx.w.journal.subdevices.is_empty() {
        let d = cx.device();
        return Outcome::Skipped(format!(
            "no sub-device of {}/{} in the registry (a device with gateway = \"{}/{}\")",
            d.product_key, d.device_key, d.product_key, d.device_key
        ));
    }
    cx.until(Duration::ZERO, Instant::now() + t.observe, |s| {
        !judge::logged_in_subs(s).is_empty()
    })
    .await;
    let before = cx.w.journal.with(judge::logged_in_subs);
    if !before.is_empty() {
        // The current connection's own logins first (after an earlier case's drop), so those
        // after this drop are the reconnect's.
        let login = cx.w.journal.with(|s| {
            s.iter()
                .rev()
                .find(|e| matches!(e.what, What::Login { .. }))
                .map_or(Duration::ZERO, |e| e.at)
        });
        cx.until(login, Instant::now() + t.observe, |s| {
            let now = judge::logged_in_subs(s);
            before.iter().all(|b| now.contains(b))
        })
        .await;
        let from = cx.now();
        cx.drop_connection().await;
        cx.online(t.reconnect_wait).await;
        cx.until(from, Instant::now() + t.observe, |s| {
            let drop = s
                .iter()
                .position(|e| matches!(e.what, What::Dropped))
                .unwrap_or_default();
            let after = judge::logged_in_subs(&s[judge::after_reconnect(s, drop)..]);
            before.iter().all(|b| after.contains(b))
        })
        .await;
    }
    Outcome::Judged(judge::subdevice_relogin(&cx.since(Duration::ZERO), t.observe))
}

async fn tls(cx: &mut Ctx<'_>) -> Outcome {
    let t = cx.t().clone();
    if cx.protocol() != Some(Protocol::Mqtts) {
        return Outcome::Skipped(
            "the device logged in over plain MQTT: give --mqtts (with --tls-cert and --tls-key) and have the device use it".into(),
        );
    }
    let config = match super::harness::untrusted_config(cx.mqtts) {
        Ok(c) => c,
        Err(e) => return Outcome::Error(format!("cannot make an untrusted certificate: {e}")),
    };
    let from = cx.now();
    cx.w.journal.untrusted(Some(config));
    cx.drop_connection().await;
    let offered = cx
        .until(from, Instant::now() + t.reconnect_wait, |s| {
            s.iter().any(|e| matches!(e.what, What::UntrustedTls { .. }))
        })
        .await;
    if offered {
        cx.until(from, Instant::now() + t.tls_settle, |s| {
            s.iter().any(|e| {
                matches!(
                    e.what,
                    What::Connect {
                        untrusted_certificate: true,
                        ..
                    }
                )
            })
        })
        .await;
    }
    cx.w.journal.untrusted(None);
    let judged = judge::tls(&cx.since(from), t.reconnect_wait);
    // Back on the listener's own certificate before the next case.
    cx.online(t.reconnect_wait).await;
    Outcome::Judged(judged)
}

async fn keepalive(cx: &mut Ctx<'_>) -> Outcome {
    let keep_alive = cx.w.journal.with(|s| {
        s.iter().rev().find_map(|e| match e.what {
            What::Connect {
                keep_alive,
                refused_by_suite: false,
                ..
            } => Some(keep_alive),
            _ => None,
        })
    });
    let Some(keep_alive) = keep_alive else {
        return Outcome::Error("no CONNECT of the device's connection was seen".into());
    };
    let from = cx.now();
    if judge::KEEP_ALIVE_RANGE.contains(&keep_alive) {
        let watch = Duration::from_millis(u64::from(keep_alive) * 1500) + Duration::from_secs(2);
        cx.until(from, Instant::now() + watch, |s| {
            s.iter().any(|e| matches!(e.what, What::Disconnect { .. }))
        })
        .await;
    }
    let until = cx.now();
    Outcome::Judged(judge::keepalive(&cx.since(from), keep_alive, from, until))
}
