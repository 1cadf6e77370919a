//! The JUnit XML parses back with an XML parser and says what the results say.

mod common;

use std::collections::BTreeMap;

use quick_xml::events::{BytesStart, Event};
use quick_xml::Reader;

#[derive(Debug, Default)]
struct Case {
    attrs: BTreeMap<String, String>,
    failure: Option<(BTreeMap<String, String>, String)>,
    skipped: bool,
    system_out: String,
}

#[derive(Debug, Default)]
struct Suite {
    attrs: BTreeMap<String, String>,
    properties: BTreeMap<String, String>,
    cases: Vec<Case>,
}

fn attrs(e: &BytesStart<'_>) -> BTreeMap<String, String> {
    e.attributes()
        .map(|a| {
            let a = a.expect("well-formed attribute");
            (
                String::from_utf8(a.key.as_ref().to_vec()).unwrap(),
                a.unescape_value().expect("valid references").into_owned(),
            )
        })
        .collect()
}

/// Parses the document strictly (matching end tags, valid references) into suites.
fn parse(xml: &str) -> (BTreeMap<String, String>, Vec<Suite>) {
    let mut reader = Reader::from_str(xml);
    let mut root = BTreeMap::new();
    let mut suites: Vec<Suite> = Vec::new();
    let mut stack: Vec<String> = Vec::new();
    let mut text = String::new();
    loop {
        let event = reader
            .read_event()
            .unwrap_or_else(|e| panic!("invalid XML at {}: {e}", reader.error_position()));
        match event {
            Event::Start(ref e) | Event::Empty(ref e) => {
                let name = String::from_utf8(e.name().as_ref().to_vec()).unwrap();
                let a = attrs(e);
                match name.as_str() {
                    "testsuites" => root = a,
                    "testsuite" => suites.push(Suite {
                        attrs: a,
                        ..Suite::default()
                    }),
                    "property" => {
                        suites
                            .last_mut()
                            .unwrap()
                            .properties
                            .insert(a["name"].clone(), a["value"].clone());
                    }
                    "testcase" => suites.last_mut().unwrap().cases.push(Case {
                        attrs: a,
                        ..Case::default()
                    }),
                    "failure" => {
                        let case = suites.last_mut().unwrap().cases.last_mut().unwrap();
                        case.failure = Some((a, String::new()));
                    }
                    "skipped" => {
                        suites.last_mut().unwrap().cases.last_mut().unwrap().skipped = true
                    }
                    "properties" | "system-out" => {}
                    other => panic!("unexpected element {other}"),
                }
                if matches!(event, Event::Start(_)) {
                    stack.push(name);
                    text.clear();
                }
            }
            Event::Text(t) => text.push_str(&t.unescape().expect("valid references")),
            Event::End(e) => {
                let name = String::from_utf8(e.name().as_ref().to_vec()).unwrap();
                assert_eq!(stack.pop().as_deref(), Some(name.as_str()));
                let case = suites.last_mut().and_then(|s| s.cases.last_mut());
                match name.as_str() {
                    "failure" => case.unwrap().failure.as_mut().unwrap().1 = text.clone(),
                    "system-out" => case.unwrap().system_out = text.clone(),
                    _ => {}
                }
                text.clear();
            }
            Event::Eof => break,
            Event::Decl(_) => {}
            other => panic!("unexpected event {other:?}"),
        }
    }
    assert!(stack.is_empty(), "unclosed elements: {stack:?}");
    (root, suites)
}

#[test]
fn junit_parses_back_with_the_right_counts() {
    let dir = tempfile::tempdir().unwrap();
    let fx = common::fixture(dir.path());
    let xml = kmf_report::junit_xml(&fx.results);

    // Nothing XML 1.0 cannot carry.
    assert!(
        !xml.chars()
            .any(|c| (c < ' ' && !matches!(c, '\t' | '\n' | '\r'))
                || c == '\u{fffe}'
                || c == '\u{ffff}'),
        "invalid XML characters in the output"
    );

    let (root, suites) = parse(&xml);
    assert_eq!(root["tests"], "9");
    assert_eq!(root["failures"], "4");
    assert_eq!(root["errors"], "0");
    assert_eq!(root["skipped"], "1");

    let names: Vec<&str> = suites.iter().map(|s| s.attrs["name"].as_str()).collect();
    assert_eq!(names, ["hello 0.1.0", "other 2.0.0"]);
    for s in &suites {
        let failures = s.cases.iter().filter(|c| c.failure.is_some()).count();
        let skipped = s.cases.iter().filter(|c| c.skipped).count();
        assert_eq!(s.attrs["tests"], s.cases.len().to_string());
        assert_eq!(s.attrs["failures"], failures.to_string());
        assert_eq!(s.attrs["skipped"], skipped.to_string());
        let time: f64 = s
            .cases
            .iter()
            .map(|c| c.attrs["time"].parse::<f64>().unwrap())
            .sum();
        assert!((s.attrs["time"].parse::<f64>().unwrap() - time).abs() < 0.01);
    }
    let hello = &suites[0];
    assert_eq!(hello.cases.len(), 8);
    assert_eq!(hello.properties["driver"], "hello");
    assert_eq!(hello.properties["driver_version"], "0.1.0");

    let case = |classname: &str, name: &str| {
        hello
            .cases
            .iter()
            .find(|c| c.attrs["classname"] == classname && c.attrs["name"] == name)
            .unwrap_or_else(|| panic!("no test {classname} {name}"))
    };
    let ok = case("hello.debian.x86_64", "6.1.0-50-amd64");
    assert!(ok.failure.is_none() && !ok.skipped);
    assert_eq!(ok.attrs["time"], "42.500");
    assert!(ok.system_out.contains("builder: debian-bookworm-gcc-12"));
    assert!(case("hello.debian.x86_64", "5.10.0-30-amd64").skipped);
    assert!(case("hello.raspbian.aarch64", "6.6.15+rpt-rpi-v8")
        .failure
        .is_none());

    // The injected markup round-trips as text; control characters are gone.
    let compile = case("hello.debian.aarch64", "6.1.0-50-arm64");
    let (fattrs, ftext) = compile.failure.as_ref().unwrap();
    assert_eq!(fattrs["type"], "compile_error");
    // The message attribute is the first error (what explains the failure), cut to fit.
    assert!(
        fattrs["message"]
            .starts_with("compile error: src/hello.c:12:5: error: implicit declaration"),
        "{}",
        fattrs["message"]
    );
    // The text: the message, then the last 50 lines of the log, colour escapes removed.
    assert!(ftext.starts_with("<script>document.title='pwned'</script>"));
    assert!(ftext.contains("last 50 line(s) of "));
    assert!(!ftext.contains("make[2]: step 30\n"));
    assert!(ftext.contains("make[2]: step 31\n"));
    assert!(ftext.contains("error: expected ';' before '<b>bold</b>' & more\n"));
    assert!(ftext.ends_with("make: *** [Makefile:5: all] Error 2"));

    let hostile = case("hello.debian.aarch64", common::HOSTILE_RELEASE);
    assert_eq!(
        hostile.failure.as_ref().unwrap().0["type"],
        "verification_failed"
    );

    // A failure with no log says so in the message only.
    let headers = case("hello.ubuntu.aarch64", "5.15.0-100-generic");
    let (fattrs, ftext) = headers.failure.as_ref().unwrap();
    assert_eq!(fattrs["type"], "headers_unavailable");
    assert_eq!(ftext, "no mirror has linux-headers-5.15.0-100-generic");
    let timeout = case("hello.ubuntu.x86_64", "5.15.0-100-generic");
    assert_eq!(timeout.failure.as_ref().unwrap().0["type"], "timeout");
    assert_eq!(timeout.attrs["time"], "600.200");
}

#[test]
fn empty_results_are_a_valid_document() {
    let xml = kmf_report::junit_xml(&[]);
    let (root, suites) = parse(&xml);
    assert_eq!(root["tests"], "0");
    assert!(suites.is_empty());
}
