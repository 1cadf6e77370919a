//! dpkg version ordering.

use std::cmp::Ordering;

/// Compares two Debian package versions the way dpkg does: epoch numerically, then upstream version and
/// revision with dpkg's character ordering (`~` before everything, even the end of the string; letters
/// before other characters; digit runs numerically). Total on any input, including strings that are not
/// valid versions.
pub fn compare_versions(a: &str, b: &str) -> Ordering {
    let (ea, ua, ra) = split(a);
    let (eb, ub, rb) = split(b);
    compare_numeric(ea.as_bytes(), eb.as_bytes())
        .then_with(|| verrevcmp(ua.as_bytes(), ub.as_bytes()))
        .then_with(|| verrevcmp(ra.as_bytes(), rb.as_bytes()))
}

/// `[epoch:]upstream[-revision]`; a missing epoch is 0 and a missing revision empty (which dpkg treats as
/// equal to `0`).
fn split(v: &str) -> (&str, &str, &str) {
    let v = v.trim();
    let (epoch, rest) = match v.split_once(':') {
        Some((e, rest)) if !e.is_empty() && e.bytes().all(|c| c.is_ascii_digit()) => (e, rest),
        _ => ("0", v),
    };
    match rest.rsplit_once('-') {
        Some((upstream, revision)) => (epoch, upstream, revision),
        None => (epoch, rest, ""),
    }
}

fn order(c: Option<u8>) -> i32 {
    match c {
        None => 0,
        Some(c) if c.is_ascii_digit() => 0,
        Some(c) if c.is_ascii_alphabetic() => i32::from(c),
        Some(b'~') => -1,
        Some(c) => i32::from(c) + 256,
    }
}

/// Digit strings compared as unbounded numbers (leading zeros ignored), so huge numbers cannot overflow.
fn compare_numeric(a: &[u8], b: &[u8]) -> Ordering {
    let strip = |s: &[u8]| -> usize { s.iter().take_while(|&&c| c == b'0').count() };
    let (a, b) = (&a[strip(a)..], &b[strip(b)..]);
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

fn verrevcmp(a: &[u8], b: &[u8]) -> Ordering {
    let (mut i, mut j) = (0, 0);
    let digit = |s: &[u8], k: usize| s.get(k).is_some_and(u8::is_ascii_digit);
    while i < a.len() || j < b.len() {
        // Non-digit prefix, character by character.
        while (i < a.len() && !digit(a, i)) || (j < b.len() && !digit(b, j)) {
            let (ac, bc) = (order(a.get(i).copied()), order(b.get(j).copied()));
            if ac != bc {
                return ac.cmp(&bc);
            }
            i += 1;
            j += 1;
        }
        // Digit run, numerically.
        let si = i;
        while digit(a, i) {
            i += 1;
        }
        let sj = j;
        while digit(b, j) {
            j += 1;
        }
        let ord = compare_numeric(&a[si..i], &b[sj..j]);
        if ord != Ordering::Equal {
            return ord;
        }
    }
    Ordering::Equal
}

#[cfg(test)]
mod tests {
    use super::*;
    use Ordering::*;

    #[test]
    fn known_cases() {
        let cases = [
            ("6.1.192-2", "6.1.176-1", Greater),
            ("1.0~rc1", "1.0", Less),
            ("1.0~rc1", "1.0~rc2", Less),
            ("1.0~~", "1.0~", Less),
            ("1.0", "1.0+b1", Less),
            ("1.0", "1.0.0", Less),
            ("1.0-1", "1.0-1", Equal),
            ("1.0", "1.0-0", Equal),
            ("1.01", "1.1", Equal),
            ("6.12.117-1~deb12u1", "6.12.9-1~deb12u1", Greater),
            ("6.12.117+deb12", "6.12.9+deb12", Greater),
            ("6.12.117-1~deb12u1", "6.12.117-1", Less),
            ("6.1.0-56", "6.1.0-9", Greater),
            ("1:1.0", "2.0", Greater),
            ("1:1.0", "0:1.0", Greater),
            ("0:1.0", "1.0", Equal),
            ("2:0.1", "10:0.1", Less),
            ("1.0a", "1.0", Greater),
            ("1.0a", "1.0.", Less),
            ("1.0-1a", "1.0-1+", Less),
            ("5.10.218-1", "5.10.209-2", Greater),
            (
                "99999999999999999999999",
                "99999999999999999999998",
                Greater,
            ),
            ("1.2-3-4", "1.2-3-3", Greater),
            ("", "0", Equal),
            ("a:1", "1", Greater),
        ];
        for (a, b, want) in cases {
            assert_eq!(compare_versions(a, b), want, "{a} vs {b}");
            assert_eq!(compare_versions(b, a), want.reverse(), "{b} vs {a}");
        }
    }

    #[test]
    fn sorts_like_dpkg() {
        let mut v = vec!["1.0", "1.0~rc1", "1:0.9", "1.0-1", "1.0+b1", "0.9", "1.0~~"];
        v.sort_by(|a, b| compare_versions(a, b));
        assert_eq!(
            v,
            ["0.9", "1.0~~", "1.0~rc1", "1.0", "1.0-1", "1.0+b1", "1:0.9"]
        );
    }

    #[test]
    fn hostile_strings_do_not_panic() {
        for s in ["", ":", "::", "-", "~", "\u{1F600}", "1:-", "-1", "9:"] {
            let _ = compare_versions(s, "1.0");
            assert_eq!(compare_versions(s, s), Equal, "{s:?}");
        }
    }

    /// Our ordering against dpkg's own, on the machine's dpkg when there is one.
    #[test]
    fn agrees_with_dpkg() {
        let versions = [
            "1.0",
            "1.0-1",
            "1.0-1.1",
            "1.0~rc1",
            "1.0~rc1-1",
            "1.0+b1",
            "1.0a",
            "1.00",
            "1.0.0",
            "1:0.9",
            "0:1.0",
            "2:1.0~",
            "6.1.192-2",
            "6.1.176-1",
            "6.12.117-1~deb12u1",
            "6.12.9-1~deb12u1",
            "6.12.117-1",
            "6.12.117-1+b1",
            "5.10.218-1~bpo10+1",
            "1.0~~",
            "1.0-0",
            "10",
            "9.99",
        ];
        if std::process::Command::new("dpkg")
            .arg("--version")
            .output()
            .is_err()
        {
            eprintln!("SKIP: dpkg not available to compare against");
            return;
        }
        for a in versions {
            for b in versions {
                let dpkg_says = |op: &str| {
                    std::process::Command::new("dpkg")
                        .args(["--compare-versions", a, op, b])
                        .status()
                        .unwrap()
                        .success()
                };
                let want = if dpkg_says("lt") {
                    Less
                } else if dpkg_says("eq") {
                    Equal
                } else {
                    Greater
                };
                assert_eq!(compare_versions(a, b), want, "{a} vs {b}");
            }
        }
    }
}
