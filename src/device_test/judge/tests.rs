//! The unit tests of `judge/`: each verdict from journal entries written by hand, no
//! network and no clock.

use super::*;
use crate::device_test::evidence::{Failure, What};
use crate::serve::Protocol;

/// An entry at `ms` milliseconds into the run, this machine's clock at `1_700_000_000_000 + ms`.
fn at(ms: u64, what: What) -> Seen {
    Seen {
        at: Duration::from_millis(ms),
        clock_ms: 1_700_000_000_000 + i64::try_from(ms).unwrap_or_default(),
        what,
    }
}

fn connect(mode: Option<u8>, refused: bool) -> What {
    What::Connect {
        protocol: Protocol::Mqtt,
        peer: "127.0.0.1:1".into(),
        keep_alive: 60,
        clean_session: true,
        secure_mode: mode,
        refused_by_suite: refused,
        untrusted_certificate: false,
    }
}

fn login() -> What {
    What::Login {
        protocol: Protocol::Mqtt,
        code: 0,
    }
}

fn refused(code: i64) -> What {
    What::LoginRefused {
        protocol: Protocol::Mqtt,
        code: Some(code),
        message: "the sign does not match".into(),
    }
}

fn publish(pkid: u16, dup: bool, lost: bool) -> What {
    What::Publish {
        topic: "/sys/p/d/thing/measurepoint/post".into(),
        qos: 1,
        pkid,
        dup,
        lost,
        reply_id: None,
        reply_code: None,
    }
}

fn request(method: &str, code: i64, times: &[i64]) -> What {
    What::Request {
        device: None,
        topic: "/sys/p/d/thing/measurepoint/post".into(),
        method: method.into(),
        code,
        times: times.to_vec(),
        step: None,
        version: None,
    }
}

fn ota_request(method: &str, step: Option<i64>, version: Option<&str>) -> What {
    What::Request {
        device: None,
        topic: "/sys/p/d/ota/device/progress".into(),
        method: method.into(),
        code: 200,
        times: vec![],
        step,
        version: version.map(str::to_string),
    }
}

fn command(method: &str, id: &str) -> What {
    What::Command {
        method: method.into(),
        topic: "/sys/p/d/thing/service/measurepoint/set".into(),
        id: Some(id.into()),
    }
}

fn outcome(method: &str, code: Option<i64>, failed: Option<Failure>) -> What {
    What::CommandOutcome {
        method: method.into(),
        reply_id: None,
        code,
        failed,
        detail: None,
    }
}

#[test]
fn a_login_passes_warns_after_refusals_and_fails_without_one() {
    let wait = Duration::from_secs(60);
    let ok = [at(0, connect(Some(2), false)), at(50, login())];
    assert_eq!(login_signed(&ok, wait).verdict, Verdict::Pass);
    let late = [
        at(0, connect(Some(2), false)),
        at(50, refused(4)),
        at(1000, connect(Some(2), false)),
        at(1050, login()),
    ];
    let j = login_signed(&late, wait);
    assert_eq!(j.verdict, Verdict::Warn);
    assert!(j.seen.contains("code 4"), "{}", j.seen);
    let never = [at(0, connect(Some(2), false)), at(50, refused(4))];
    let j = login_signed(&never, wait);
    assert_eq!(j.verdict, Verdict::Fail);
    assert!(j.seen.contains("1 attempt(s) refused"), "{}", j.seen);
    assert_eq!(login_signed(&[], wait).verdict, Verdict::Fail);
}

#[test]
fn an_activation_settles_only_with_the_securemode_2_login_after_it() {
    let activating = [at(0, connect(Some(3), false)), at(50, login())];
    assert!(!login_settled(&activating));
    assert_eq!(
        login_signed(&activating, Duration::from_secs(1)).verdict,
        Verdict::Fail
    );
    let done = [
        at(0, connect(Some(3), false)),
        at(50, login()),
        at(
            60,
            What::Activated {
                protocol: Protocol::Mqtt,
            },
        ),
        at(200, connect(Some(2), false)),
        at(250, login()),
    ];
    assert!(login_settled(&done));
    assert_eq!(login_signed(&done, Duration::from_secs(1)).verdict, Verdict::Pass);
}

#[test]
fn a_command_passes_with_code_200_and_fails_on_silence_another_id_or_another_code() {
    let t = Duration::from_secs(5);
    let set = enos::MEASUREPOINT_SET;
    let ok = [at(0, command(set, "7")), at(10, outcome(set, Some(200), None))];
    assert_eq!(commands(&ok, t, "fix").verdict, Verdict::Pass);
    let silent = [
        at(0, command(set, "7")),
        at(5000, outcome(set, None, Some(Failure::TimedOut))),
    ];
    let j = commands(&silent, t, "fix");
    assert_eq!(j.verdict, Verdict::Fail);
    assert!(j.seen.contains("no reply within 5.0 s"), "{}", j.seen);
    assert_eq!(j.fix.as_deref(), Some("fix"));
    let other = [
        at(0, command(set, "7")),
        at(
            10,
            What::Publish {
                topic: "/sys/p/d/thing/service/measurepoint/set_reply".into(),
                qos: 0,
                pkid: 0,
                dup: false,
                lost: false,
                reply_id: Some("99".into()),
                reply_code: Some(200),
            },
        ),
        at(5000, outcome(set, None, Some(Failure::TimedOut))),
    ];
    let j = commands(&other, t, "fix");
    assert_eq!(j.verdict, Verdict::Fail);
    assert!(j.seen.contains("another id (\"99\")"), "{}", j.seen);
    let refused = [at(0, command(set, "7")), at(10, outcome(set, Some(500), None))];
    assert!(commands(&refused, t, "fix").seen.contains("code 500"));
    let unsent = [at(0, outcome(set, None, Some(Failure::NotReached)))];
    assert_eq!(commands(&unsent, t, "fix").verdict, Verdict::Error);
}

#[test]
fn a_withheld_puback_is_judged_by_when_and_how_the_publish_comes_again() {
    let (drop, observe) = (Duration::from_secs(20), Duration::from_secs(30));
    let in_session = [at(0, publish(5, false, true)), at(2000, publish(5, true, false))];
    assert_eq!(puback_retry(&in_session, drop, observe).verdict, Verdict::Pass);
    let after = [
        at(0, publish(5, false, true)),
        at(20_000, What::Dropped),
        at(21_000, connect(Some(2), false)),
        at(21_100, publish(5, true, false)),
    ];
    let j = puback_retry(&after, drop, observe);
    assert_eq!(j.verdict, Verdict::Warn);
    assert!(j.seen.contains("only after a reconnect"), "{}", j.seen);
    let never = [
        at(0, publish(5, false, true)),
        at(1000, publish(6, false, false)),
        at(20_000, What::Dropped),
    ];
    let j = puback_retry(&never, drop, observe);
    assert_eq!(j.verdict, Verdict::Fail);
    assert!(j.seen.contains("other packet ids (6)"), "{}", j.seen);
    let no_dup = [at(0, publish(5, false, true)), at(2000, publish(5, false, false))];
    assert!(
        puback_retry(&no_dup, drop, observe)
            .seen
            .contains("without the DUP flag")
    );
    assert_eq!(puback_retry(&[], drop, observe).verdict, Verdict::Error);
}

#[test]
fn gap_shapes_tell_jitter_from_fixed_rules() {
    assert_eq!(shape(&[1.0, 2.0, 4.0, 8.0]), Shape::Deterministic, "doubling");
    assert_eq!(
        shape(&[1.01, 2.02, 4.0, 8.03]),
        Shape::Deterministic,
        "doubling, measured"
    );
    assert_eq!(shape(&[1.0, 2.0, 3.0, 4.0]), Shape::Deterministic, "adding");
    assert_eq!(shape(&[1.0, 2.0, 2.0, 2.0]), Shape::Deterministic, "capped");
    assert_eq!(shape(&[1.0, 2.6, 3.1, 7.9]), Shape::Jittered);
    assert_eq!(
        shape(&[0.3, 0.62, 0.69, 1.54]),
        Shape::Jittered,
        "the test device's"
    );
    assert_eq!(shape(&[1.0, 1.0, 1.0, 1.0]), Shape::Fixed);
    assert_eq!(shape(&[0.0, 0.0, 0.0]), Shape::Fixed);
    assert_eq!(shape(&[]), Shape::Fixed);
}

/// A drop at 0, then CONNECTs at the gaps (each refused but the last), serve answering a
/// refusal 50 ms after its CONNECT.
fn reconnects(gaps_ms: &[u64]) -> Vec<Seen> {
    let mut seen = vec![at(0, What::Dropped)];
    let mut t = 0;
    for (i, g) in gaps_ms.iter().enumerate() {
        t += g + if i > 0 { 50 } else { 0 };
        seen.push(at(t, connect(Some(2), i + 1 < gaps_ms.len())));
    }
    seen
}

#[test]
fn a_backoff_passes_with_jitter_warns_without_and_fails_at_once_or_fixed() {
    let (first, delay, wait) = (
        Duration::from_secs(1),
        Duration::from_millis(50),
        Duration::from_secs(130),
    );
    let judge = |gaps: &[u64]| backoff(&reconnects(gaps), 3, first, delay, wait);
    assert_eq!(
        backoff_gaps(&reconnects(&[1000, 2000]), delay),
        [Duration::from_secs(1), Duration::from_secs(2)]
    );
    assert_eq!(judge(&[1100, 2600, 3100, 7900]).verdict, Verdict::Pass);
    let j = judge(&[1000, 2000, 4000, 8000]);
    assert_eq!(j.verdict, Verdict::Warn, "the Python SDK's paho: {}", j.seen);
    assert!(j.seen.contains("gaps 1.00, 2.00, 4.00, 8.00 s"), "{}", j.seen);
    let j = judge(&[5, 5, 5, 5]);
    assert_eq!(j.verdict, Verdict::Fail);
    assert!(
        j.seen.contains("the first reconnect 5 ms after the drop"),
        "{}",
        j.seen
    );
    assert_eq!(
        judge(&[1000, 1000, 1000, 1000]).verdict,
        Verdict::Fail,
        "fixed and short"
    );
    assert_eq!(
        judge(&[10_000, 10_000, 10_000, 10_000]).verdict,
        Verdict::Warn,
        "fixed and long"
    );
    let j = judge(&[1000, 2000]);
    assert_eq!(j.verdict, Verdict::Fail, "stopped after a refusal");
    assert!(j.seen.contains("then none within"), "{}", j.seen);
}

#[test]
fn resumed_points_are_those_measured_inside_the_outage_on_the_device_s_clock() {
    // The device's clock runs 2 s ahead: its live posts say so.
    let ahead = 2000;
    let t0 = 1_700_000_000_000;
    let seen = [
        at(0, request(enos::MEASUREPOINT_POST, 200, &[t0 + ahead])),
        at(100, What::Dropped),
        at(5100, connect(Some(2), false)),
        at(
            5200,
            request(enos::MEASUREPOINT_RESUME, 200, &[t0 + 1000 + ahead]),
        ),
    ];
    let offset = clock_offset(&seen);
    assert_eq!(offset, ahead);
    assert_eq!(
        resume(&seen, offset, Duration::from_secs(30)).verdict,
        Verdict::Pass
    );
    assert_eq!(
        resume(&seen, 0, Duration::from_secs(30)).verdict,
        Verdict::Pass,
        "2 s still falls inside a 5 s outage"
    );
    let live_only = [
        at(0, request(enos::MEASUREPOINT_POST, 200, &[t0])),
        at(100, What::Dropped),
        at(5100, connect(Some(2), false)),
        at(5200, request(enos::MEASUREPOINT_POST, 200, &[t0 + 5200])),
    ];
    let j = resume(&live_only, 0, Duration::from_secs(30));
    assert_eq!(j.verdict, Verdict::Fail);
    assert!(
        j.seen.contains("no post within 30.0 s of the reconnect"),
        "{}",
        j.seen
    );
    let refused = [
        at(100, What::Dropped),
        at(5100, connect(Some(2), false)),
        at(5200, request(enos::MEASUREPOINT_RESUME, 1204, &[t0 + 1000])),
    ];
    assert!(
        resume(&refused, 0, Duration::from_secs(30))
            .seen
            .contains("got 1204")
    );
    assert_eq!(
        resume(&[at(0, What::Dropped)], 0, Duration::ZERO).verdict,
        Verdict::Fail
    );
}

#[test]
fn an_upgrade_passes_with_rising_steps_then_the_version_or_a_failure_step() {
    let (t, r) = (Duration::from_secs(60), Duration::from_secs(5));
    let up = enos::OTA_UPGRADE;
    let start = [at(0, command(up, "1")), at(10, outcome(up, Some(200), None))];
    let with = |rest: &[What]| {
        let mut s = start.to_vec();
        s.extend(
            rest.iter()
                .cloned()
                .enumerate()
                .map(|(i, w)| at(20 + i as u64, w)),
        );
        s
    };
    let p = |s| ota_request(enos::OTA_PROGRESS, Some(s), None);
    let inform = |v| ota_request(enos::OTA_INFORM, None, Some(v));
    assert_eq!(
        ota(&with(&[p(0), p(50), p(100), inform("2.0")]), "2.0", t, r).verdict,
        Verdict::Pass
    );
    let j = ota(&with(&[p(10), p(-2)]), "2.0", t, r);
    assert_eq!(j.verdict, Verdict::Pass, "a documented failure step");
    assert!(j.seen.contains("firmware download failed"), "{}", j.seen);
    let j = ota(&with(&[inform("2.0")]), "2.0", t, r);
    assert_eq!(j.verdict, Verdict::Fail);
    assert!(j.seen.contains("without any ota.progress step"), "{}", j.seen);
    assert!(
        ota(&with(&[p(50), p(20), p(100), inform("2.0")]), "2.0", t, r)
            .seen
            .contains("not rising")
    );
    assert!(
        ota(&with(&[p(0), p(50)]), "2.0", t, r)
            .seen
            .contains("stopped short of 100")
    );
    assert!(
        ota(&with(&[p(0), p(100)]), "2.0", t, r)
            .seen
            .contains("never reported")
    );
    assert!(
        ota(&with(&[p(-9)]), "2.0", t, r)
            .seen
            .contains("not a documented failure step")
    );
    let silent = [
        at(0, command(up, "1")),
        at(5000, outcome(up, None, Some(Failure::TimedOut))),
    ];
    assert_eq!(ota(&silent, "2.0", t, r).verdict, Verdict::Fail);
    assert!(ota_done(&with(&[p(-1)]), "2.0"));
    assert!(!ota_done(&with(&[p(50)]), "2.0"));
}

fn sub_login(dk: &str, code: i64) -> What {
    What::SubdeviceLogin {
        device: format!("p/{dk}"),
        code: Some(code),
    }
}

#[test]
fn sub_devices_must_log_in_again_after_the_last_drop() {
    let observe = Duration::from_secs(30);
    let again = [
        at(0, sub_login("s1", 200)),
        at(10, sub_login("s2", 200)),
        at(100, What::Dropped),
        at(1100, login()),
        at(1200, sub_login("s1", 200)),
        at(1210, sub_login("s2", 200)),
    ];
    assert_eq!(subdevice_relogin(&again, observe).verdict, Verdict::Pass);
    let one_missing = [
        at(0, sub_login("s1", 200)),
        at(10, sub_login("s2", 200)),
        at(100, What::Dropped),
        at(1100, login()),
        at(1200, sub_login("s1", 200)),
        at(1210, sub_login("s2", 742)),
    ];
    let j = subdevice_relogin(&one_missing, observe);
    assert_eq!(j.verdict, Verdict::Fail);
    assert!(j.seen.starts_with("p/s2 not logged in again"), "{}", j.seen);
    // A login the old connection made after the drop, before the reconnect, does not count.
    let stale = [
        at(0, sub_login("s1", 200)),
        at(100, What::Dropped),
        at(101, sub_login("s1", 200)),
        at(1200, login()),
    ];
    let j = subdevice_relogin(&stale, observe);
    assert_eq!(j.verdict, Verdict::Fail);
    assert!(j.seen.starts_with("p/s1 not logged in again"), "{}", j.seen);
    assert_eq!(
        subdevice_relogin(&[at(0, What::Dropped)], observe).verdict,
        Verdict::Fail
    );
}

#[test]
fn a_connect_over_the_untrusted_certificate_fails_tls() {
    let wait = Duration::from_secs(10);
    let offered = What::UntrustedTls {
        peer: "127.0.0.1:2".into(),
    };
    let refused_it = [at(0, What::Dropped), at(1000, offered.clone())];
    assert_eq!(tls(&refused_it, wait).verdict, Verdict::Pass);
    let trusted = What::Connect {
        protocol: Protocol::Mqtts,
        peer: "127.0.0.1:2".into(),
        keep_alive: 60,
        clean_session: true,
        secure_mode: Some(2),
        refused_by_suite: false,
        untrusted_certificate: true,
    };
    let j = tls(
        &[at(0, What::Dropped), at(1000, offered), at(1010, trusted)],
        wait,
    );
    assert_eq!(j.verdict, Verdict::Fail);
    assert_eq!(tls(&[at(0, What::Dropped)], wait).verdict, Verdict::Error);
}

#[test]
fn a_keep_alive_is_in_range_and_no_silence_outlasts_one_and_a_half_of_it() {
    let packet = || What::Packet { kind: "pingreq" };
    let quiet = |ms: u64| at(ms, packet());
    let ok = [quiet(30_000), quiet(60_000), quiet(90_000)];
    let j = keepalive(&ok, 60, Duration::ZERO, Duration::from_secs(92));
    assert_eq!(j.verdict, Verdict::Pass, "{}", j.seen);
    let late = [quiet(30_000), quiet(125_000)];
    let j = keepalive(&late, 60, Duration::ZERO, Duration::from_secs(126));
    assert_eq!(j.verdict, Verdict::Fail);
    assert!(j.seen.contains("95.0 s without a packet"), "{}", j.seen);
    let dropped = [
        quiet(10_000),
        at(
            100_000,
            What::Disconnect {
                protocol: Protocol::Mqtt,
                message: "idle".into(),
            },
        ),
    ];
    assert_eq!(
        keepalive(&dropped, 60, Duration::ZERO, Duration::from_secs(120)).verdict,
        Verdict::Fail
    );
    assert!(
        keepalive(&[], 0, Duration::ZERO, Duration::ZERO)
            .seen
            .contains("a keep-alive of 0")
    );
    assert_eq!(
        keepalive(&[], 1800, Duration::ZERO, Duration::ZERO).verdict,
        Verdict::Fail
    );
}

#[test]
fn posts_are_judged_against_the_model_and_their_times_against_the_clock() {
    let t0 = 1_700_000_000_000;
    let observe = Duration::from_secs(30);
    let good = [at(0, request(enos::MEASUREPOINT_POST, 200, &[t0]))];
    assert_eq!(report_model(&good, observe).verdict, Verdict::Pass);
    assert_eq!(timestamps(&good).verdict, Verdict::Pass);
    let outside = [
        at(0, request(enos::MEASUREPOINT_POST, 200, &[t0])),
        at(10, request(enos::MEASUREPOINT_POST, 1204, &[t0 + 10])),
    ];
    let j = report_model(&outside, observe);
    assert_eq!(j.verdict, Verdict::Fail);
    assert!(
        j.seen.contains("1 of 2 post(s) refused, with code 1204"),
        "{}",
        j.seen
    );
    assert_eq!(report_model(&[], observe).verdict, Verdict::Fail);
    assert_eq!(timestamps(&[]).verdict, Verdict::Error);
    let skewed = [at(0, request(enos::MEASUREPOINT_POST, 200, &[t0 - 3_600_000]))];
    let j = timestamps(&skewed);
    assert_eq!(j.verdict, Verdict::Warn);
    assert!(j.seen.contains("3600.0 s behind"), "{}", j.seen);
    let untimed = [at(0, request(enos::MEASUREPOINT_POST, 200, &[]))];
    assert!(timestamps(&untimed).seen.contains("none carrying a time"));
    // Resumed points are old on purpose.
    let resumed = [
        at(0, request(enos::MEASUREPOINT_POST, 200, &[t0])),
        at(10, request(enos::MEASUREPOINT_RESUME, 200, &[t0 - 3_600_000])),
    ];
    assert_eq!(timestamps(&resumed).verdict, Verdict::Pass);
}
