//! A run: serve's listeners bound with the [`Harness`] as their policy, the device's login
//! awaited, each case run in turn (the ones that keep the connection first, the ones that drop
//! it after, the long one last, the `report.*` cases judged at the end over the whole run),
//! and the report. The device `--run` started is watched: once it exits, the cases still to
//! run end as `error` with its exit status. Every wait is bounded by [`Timings`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::watch;

use super::cases::{self, Ctx, Outcome};
use super::catalogue::{self, Case, Claims, Kind};
use super::evidence::Journal;
use super::harness::Harness;
use super::process::Device;
use super::watcher::Watcher;
use super::{CaseResult, DeviceTestError, Report, Summary, Timings, judge};
use crate::capabilities::Capabilities;
use crate::registry::Registry;
use crate::serve::{self, Endpoint, Identity, Listeners, Options};

/// Everything a run is made of.
pub struct Setup {
    pub caps: Capabilities,
    pub registry: Registry,
    pub device: Identity,
    pub claims: Claims,
    /// The cases `--case` chose, in the catalogue's order.
    pub cases: Vec<&'static Case>,
    pub long: bool,
    pub timings: Timings,
    /// serve's listeners (its `record` is the run's record; its `log` is ignored: a run's
    /// stderr is its progress).
    pub listen: Options,
    pub max_connections: Option<usize>,
}

/// The order cases run in: those that keep the connection, then those that drop it, the long
/// one, and the ones judged over the whole run.
const ORDER: [Kind; 13] = [
    Kind::LoginSigned,
    Kind::MeasurepointSet,
    Kind::MeasurepointGet,
    Kind::Service,
    Kind::OtaUpgrade,
    Kind::PubackRetry,
    Kind::SubdeviceRelogin,
    Kind::ReconnectResume,
    Kind::ReconnectBackoff,
    Kind::TlsVerifyServer,
    Kind::LoginKeepalive,
    Kind::ReportModel,
    Kind::ReportTimestamps,
];

/// serve bound and listening for the device, before the run.
pub struct Session {
    setup: Setup,
    endpoint: Arc<Endpoint>,
    journal: Arc<Journal>,
    events: tokio::sync::broadcast::Receiver<Arc<serve::events::Published>>,
    bound: Listeners,
    listening: Value,
}

/// The URL of a listener, for the device's environment.
fn url(scheme: &str, addr: std::net::SocketAddr) -> String {
    let host = if addr.ip().is_unspecified() {
        "127.0.0.1".to_string()
    } else if addr.is_ipv6() {
        format!("[{}]", addr.ip())
    } else {
        addr.ip().to_string()
    };
    format!("{scheme}://{host}:{}", addr.port())
}

impl Session {
    /// Bind serve's listeners for `setup`, its events heard from before anything connects.
    pub async fn bind(setup: Setup) -> Result<Session, DeviceTestError> {
        let l = &setup.listen;
        if [
            l.mqtt,
            l.mqtts.as_ref().map(|(a, _)| *a),
            l.http,
            l.https.as_ref().map(|(a, _)| *a),
            l.coap,
            l.coaps,
        ]
        .iter()
        .all(Option::is_none)
        {
            return Err(DeviceTestError::NoListener);
        }
        let endpoint = Endpoint::harnessed(
            setup.caps.clone(),
            setup.registry.clone(),
            setup.timings.connack_delay,
            l.record.as_deref(),
        )
        .map_err(|source| DeviceTestError::Record {
            path: l
                .record
                .as_deref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            source,
        })?;
        if let Some(max) = setup.max_connections {
            endpoint.limits.set_max(max);
            endpoint.http_limits.set_max(max);
        }
        let subdevices = setup
            .registry
            .devices
            .iter()
            .filter(|d| d.under(&setup.device.product_key, &setup.device.device_key))
            .map(|d| Identity::new(&d.product, &d.key))
            .collect();
        let journal = Arc::new(Journal::new(setup.device.clone(), subdevices));
        let endpoint = endpoint.with_policy(Harness(journal.clone()));
        let events = endpoint.events.subscribe();
        let bound = serve::bind(&setup.listen).await?;
        let listening = bound.listening().await;
        Ok(Session {
            setup,
            endpoint: Arc::new(endpoint),
            journal,
            events,
            bound,
            listening,
        })
    }

    /// The web console's listener, when it is on.
    pub fn console(&self) -> Option<&serve::console::Access> {
        self.bound.console.as_ref().map(|(_, a)| a.as_ref())
    }

    /// serve's listening line: every bound listener's address.
    pub fn listening(&self) -> &Value {
        &self.listening
    }

    /// The environment a device `--run` starts with: the listeners' URLs and its keys.
    pub fn device_env(&self) -> Vec<(String, String)> {
        let b = &self.bound;
        let tcp = |l: &tokio::net::TcpListener| l.local_addr().ok();
        let mut env = Vec::new();
        let mut add = |var: &str, scheme: &str, addr: Option<std::net::SocketAddr>| {
            if let Some(a) = addr {
                env.push((format!("ENOS_CONNECT_{var}_URL"), url(scheme, a)));
            }
        };
        add("MQTT", "mqtt", b.mqtt.as_ref().and_then(tcp));
        add("MQTTS", "mqtts", b.mqtts.as_ref().and_then(|(l, _)| tcp(l)));
        add("HTTP", "http", b.http.as_ref().and_then(tcp));
        add("HTTPS", "https", b.https.as_ref().and_then(|(l, _)| tcp(l)));
        add("COAP", "coap", b.coap.as_ref().and_then(|s| s.local_addr().ok()));
        env.push(("ENOS_PRODUCT_KEY".into(), self.setup.device.product_key.clone()));
        env.push(("ENOS_DEVICE_KEY".into(), self.setup.device.device_key.clone()));
        env
    }

    /// The listeners a device is awaited on, as URLs ("waiting for PK/DK on ...").
    pub fn urls(&self) -> Vec<String> {
        self.device_env()
            .into_iter()
            .filter(|(k, _)| k.ends_with("_URL"))
            .map(|(_, v)| v)
            .collect()
    }

    /// Run the cases against the device (the one `device` started, or one started elsewhere),
    /// calling `progress` with each result as it comes; serve stops, and the device is stopped
    /// (SIGTERM, then SIGKILL after 5 s), before the report is returned.
    pub async fn run(self, mut device: Option<&mut Device>, progress: &mut dyn FnMut(&CaseResult)) -> Report {
        let Session {
            setup,
            endpoint,
            journal,
            events,
            bound,
            ..
        } = self;
        let mqtts = bound.mqtts.as_ref().and_then(|(l, _)| l.local_addr().ok());
        let (stop, shutdown) = watch::channel(false);
        let (exit_tx, exit_rx) = watch::channel(None::<String>);
        let (done_tx, done_rx) = watch::channel(false);
        let serving = serve::serve(bound, endpoint.clone(), shutdown);
        let watching = async {
            if let Some(d) = device.as_deref_mut() {
                watch_device(d, &exit_tx, done_rx).await;
            }
        };
        let running = async {
            let mut cx = Ctx {
                ep: &endpoint,
                w: Watcher::new(journal.clone(), events),
                setup: &setup,
                mqtts,
            };
            let cases = run_cases(&mut cx, exit_rx.clone(), progress).await;
            let _ = done_tx.send(true);
            let _ = stop.send(true);
            cases
        };
        let ((), (), (cases, protocol)) = tokio::join!(serving, watching, running);
        let device_exit = exit_rx.borrow().clone();
        let device_log = device
            .as_ref()
            .and_then(|d| d.log.as_ref())
            .map(|p| p.display().to_string());
        if let Some(d) = device {
            d.stop(Duration::from_secs(5)).await;
        }
        let summary = Summary::of(&cases);
        Report {
            device: format!("{}/{}", setup.device.product_key, setup.device.device_key),
            catalogue_version: catalogue::CATALOGUE_VERSION,
            protocol,
            seconds: journal.now(),
            device_log,
            device_exit,
            evidence_dropped: journal.dropped(),
            cases,
            summary,
        }
    }
}

/// Poll the device `--run` started until it exits (told on `exit`) or the run is done.
async fn watch_device(d: &mut Device, exit: &watch::Sender<Option<String>>, mut done: watch::Receiver<bool>) {
    loop {
        if let Some(status) = d.exited() {
            let _ = exit.send(Some(status));
            return;
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(100)) => {}
            _ = done.wait_for(|d| *d) => return,
        }
    }
}

/// Wait until the device exits; never, if it does not.
async fn exited(mut exit: watch::Receiver<Option<String>>) -> String {
    match exit.wait_for(Option::is_some).await {
        Ok(s) => s.clone().unwrap_or_default(),
        Err(_) => std::future::pending().await,
    }
}

/// Every chosen case, in [`ORDER`]; the results in the catalogue's order, and the protocol the
/// device logged in over.
async fn run_cases(
    cx: &mut Ctx<'_>,
    exit: watch::Receiver<Option<String>>,
    progress: &mut dyn FnMut(&CaseResult),
) -> (Vec<CaseResult>, Option<String>) {
    let setup = cx.setup;
    let chosen = |k: Kind| setup.cases.iter().find(|c| c.kind == k).copied();
    let mut results: Vec<CaseResult> = Vec::new();
    let mut finish = |r: CaseResult, results: &mut Vec<CaseResult>| {
        progress(&r);
        results.push(r);
    };
    // The login: awaited whether or not login.signed was chosen.
    let started = Instant::now();
    tokio::select! {
        _ = cx.w.until(started + setup.timings.wait, |s| judge::login_settled(s).then_some(())) => {}
        status = exited(exit.clone()) => {
            let why = format!("the device exited ({status}) before it logged in");
            for case in &setup.cases {
                finish(unjudged(setup, case, &why), &mut results);
            }
            return (sorted(results), None);
        }
    }
    if let Some(case) = chosen(Kind::LoginSigned) {
        let j = cx.w.journal.with(|s| judge::login_signed(s, setup.timings.wait));
        finish(CaseResult::judged(case.id, started.elapsed(), j), &mut results);
    }
    let protocol = cx.protocol();
    let login_at = cx.now();
    for kind in ORDER.iter().skip(1) {
        let Some(case) = chosen(*kind) else { continue };
        let Some(protocol) = protocol else {
            let why = format!(
                "the device never logged in within {:.1} s (see login.signed)",
                setup.timings.wait.as_secs_f64()
            );
            finish(unjudged(setup, case, &why), &mut results);
            continue;
        };
        if let Some(skip) = catalogue::skip(
            &setup.caps,
            case,
            &setup.claims,
            protocol.table_name(),
            setup.long,
        ) {
            finish(CaseResult::skipped(case.id, skip.to_string()), &mut results);
            continue;
        }
        let r = run_case(cx, case, exit.clone(), login_at).await;
        finish(r, &mut results);
    }
    (sorted(results), protocol.map(|p| p.name().to_string()))
}

/// One case that runs: prepared (the device connected, settled), run and judged; an error
/// if the device exits meanwhile.
async fn run_case(
    cx: &mut Ctx<'_>,
    case: &Case,
    exit: watch::Receiver<Option<String>>,
    login_at: Duration,
) -> CaseResult {
    if let Some(status) = exit.borrow().clone() {
        return gone(case, &status, Duration::ZERO);
    }
    let prepared = tokio::select! {
        p = cases::prepare(cx, case.kind) => p,
        status = exited(exit.clone()) => return gone(case, &status, Duration::ZERO),
    };
    if let Err(why) = prepared {
        return CaseResult::error(case.id, Duration::ZERO, why, Vec::new());
    }
    let began = Instant::now();
    let from = cx.now();
    let outcome = tokio::select! {
        o = one(cx, case.kind, login_at) => o,
        status = exited(exit) => return gone(case, &status, began.elapsed()),
    };
    match outcome {
        Outcome::Judged(j) => CaseResult::judged(case.id, began.elapsed(), j),
        Outcome::Skipped(why) => CaseResult::skipped(case.id, why),
        Outcome::Error(why) => {
            let mut evidence = cx.since(from);
            evidence.truncate(judge::MAX_EVIDENCE);
            CaseResult::error(case.id, began.elapsed(), why, evidence)
        }
    }
}

/// One case: the `report.*` ones over the whole run (waiting, if no post came yet, until
/// `observe` after the login), the others through [`cases::run`].
async fn one(cx: &mut Ctx<'_>, kind: Kind, login_at: Duration) -> Outcome {
    let t = &cx.setup.timings;
    match kind {
        Kind::ReportModel | Kind::ReportTimestamps => {
            let deadline = Instant::now() + (login_at + t.observe).saturating_sub(cx.now());
            cx.until(Duration::ZERO, deadline, judge::posted).await;
            let all = cx.since(Duration::ZERO);
            Outcome::Judged(if kind == Kind::ReportModel {
                judge::report_model(&all, t.observe)
            } else {
                judge::timestamps(&all)
            })
        }
        _ => cases::run(cx, kind).await,
    }
}

/// The results in the catalogue's order.
fn sorted(mut results: Vec<CaseResult>) -> Vec<CaseResult> {
    results.sort_by_key(|r| catalogue::CASES.iter().position(|c| c.id == r.id));
    results
}

/// A case that cannot run: the device exited.
fn gone(case: &Case, status: &str, took: Duration) -> CaseResult {
    CaseResult::error(
        case.id,
        took,
        format!("the device exited ({status}) before the case finished"),
        Vec::new(),
    )
}

/// A case without a login to run after: skipped if it would be whatever the protocol, else an
/// error saying `why`.
fn unjudged(setup: &Setup, case: &Case, why: &str) -> CaseResult {
    if case.long && !setup.long {
        return CaseResult::skipped(case.id, catalogue::Skip::Long.to_string());
    }
    if let Some(f) = case.feature
        && !setup.claims.claims(f)
    {
        return CaseResult::skipped(
            case.id,
            catalogue::Skip::NotClaimed { feature: f.into() }.to_string(),
        );
    }
    CaseResult::error(case.id, Duration::ZERO, why, Vec::new())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_case_of_the_catalogue_has_its_place_in_the_order_once() {
        for case in catalogue::CASES {
            let places = ORDER.iter().filter(|k| **k == case.kind).count();
            assert_eq!(places, 1, "{} runs {places} times", case.id);
        }
        assert_eq!(ORDER.len(), catalogue::CASES.len());
        assert_eq!(ORDER[0], Kind::LoginSigned, "judged at the login");
    }

    #[test]
    fn a_listener_s_url_names_a_host_a_device_can_reach() {
        let url_of = |a: &str| url("mqtt", a.parse().expect("addr"));
        assert_eq!(url_of("0.0.0.0:1883"), "mqtt://127.0.0.1:1883");
        assert_eq!(url_of("[::1]:1883"), "mqtt://[::1]:1883");
        assert_eq!(url_of("10.0.0.5:1883"), "mqtt://10.0.0.5:1883");
    }
}
