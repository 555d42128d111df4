//! The report as JUnit XML, written with quick-junit (as cargo-nextest writes its own): one
//! `<testsuite>` for the device, one `<testcase>` per case. `fail` is a `<failure>`, `error`
//! an `<error>`, `skipped` a `<skipped>`, each with the message; `warn` passes (JUnit has no
//! warning) with the message in `<system-out>`. GitLab, Jenkins and GitHub's test reporters
//! read it.

use quick_junit::{NonSuccessKind, Property, Report as Junit, TestCase, TestCaseStatus, TestSuite};

use crate::device_test::{Report, Verdict};

pub fn report(r: &Report) -> Result<String, quick_junit::SerializeError> {
    let mut suite = TestSuite::new(format!("device-test {}", r.device));
    suite.set_time(r.seconds);
    suite.add_property(Property::new("catalogue_version", r.catalogue_version));
    suite.add_property(Property::new("device", r.device.as_str()));
    if let Some(p) = &r.protocol {
        suite.add_property(Property::new("protocol", p.as_str()));
    }
    for c in &r.cases {
        let mut status = match c.verdict {
            Verdict::Pass | Verdict::Warn => TestCaseStatus::success(),
            Verdict::Fail => TestCaseStatus::non_success(NonSuccessKind::Failure),
            Verdict::Error => TestCaseStatus::non_success(NonSuccessKind::Error),
            Verdict::Skipped => TestCaseStatus::skipped(),
        };
        if matches!(c.verdict, Verdict::Fail | Verdict::Error | Verdict::Skipped) {
            status.set_message(c.message.as_str());
            status.set_type(c.verdict.as_str());
        }
        if matches!(c.verdict, Verdict::Fail | Verdict::Error) {
            let evidence: Vec<String> = c
                .evidence
                .iter()
                .map(|e| serde_json::to_string(e).unwrap_or_default())
                .collect();
            status.set_description(evidence.join("\n"));
        }
        let mut case = TestCase::new(c.id, status);
        case.set_classname(format!("device-test.{}", c.id.split('.').next().unwrap_or(c.id)));
        case.set_time(c.seconds);
        if c.verdict != Verdict::Fail && c.verdict != Verdict::Error {
            case.set_system_out(format!("{}: {}", c.verdict, c.message));
        }
        suite.add_test_case(case);
    }
    let mut junit = Junit::new("enos-connect device-test");
    junit.add_test_suite(suite);
    junit.to_string()
}
