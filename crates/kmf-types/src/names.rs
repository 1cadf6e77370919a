//! Names that become paths, and text that reaches a terminal.
//!
//! A driver's name and version come from its `kmodfarm.toml` (untrusted) or the command line, and a kernel
//! release from a kernel list (untrusted); all of them end up as directory names in the report and the
//! store. They are checked before any work starts, so that no name can climb out of its root, be absolute,
//! or carry characters a path, a URL or a terminal would treat specially.

use std::borrow::Cow;

/// Longest name accepted; long enough for every real kernel release and driver version.
pub const MAX_NAME_LEN: usize = 128;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} `{}` {why}", printable(value))]
pub struct NameError {
    pub what: String,
    pub value: String,
    pub why: &'static str,
}

/// A driver name or version: `[A-Za-z0-9][A-Za-z0-9._+-]*`, at most [`MAX_NAME_LEN`] characters.
pub fn check_name(what: &str, value: &str) -> Result<(), NameError> {
    check_component(what, value, b"._+-")
}

/// One directory name of a variant's output path (distribution, architecture, kernel release with an upload
/// suffix): as [`check_name`], plus `~` and `_`, which kernel releases use.
pub fn check_path_component(what: &str, value: &str) -> Result<(), NameError> {
    check_component(what, value, b"._+-~_")
}

/// A relative path of `/`-separated [`check_path_component`] names (`0.1.0/debian/x86_64/6.1.0-56-amd64`).
pub fn check_relative_path(what: &str, value: &str) -> Result<(), NameError> {
    if value.is_empty() {
        return Err(err(what, value, "is empty"));
    }
    for part in value.split('/') {
        check_path_component(what, part).map_err(|e| NameError {
            value: value.to_string(),
            why: match e.why {
                "is empty" => "has an empty component (a leading, trailing or doubled `/`)",
                _ => "has a component that is not [A-Za-z0-9][A-Za-z0-9._+~-]*",
            },
            ..e
        })?;
    }
    Ok(())
}

fn check_component(what: &str, value: &str, extra: &[u8]) -> Result<(), NameError> {
    let bytes = value.as_bytes();
    match bytes.first() {
        None => Err(err(what, value, "is empty")),
        _ if bytes.len() > MAX_NAME_LEN => Err(err(what, value, "is longer than 128 characters")),
        Some(first) if !first.is_ascii_alphanumeric() => Err(err(
            what,
            value,
            "must start with a letter or digit (no `.`, `/` or `-` first)",
        )),
        _ if bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || extra.contains(b)) =>
        {
            Ok(())
        }
        _ => Err(err(
            what,
            value,
            if extra.contains(&b'~') {
                "may only hold letters, digits and . _ + ~ -"
            } else {
                "may only hold letters, digits and . _ + -"
            },
        )),
    }
}

fn err(what: &str, value: &str, why: &'static str) -> NameError {
    NameError {
        what: what.to_string(),
        value: value.to_string(),
        why,
    }
}

/// `text` with every control character (C0, DEL, C1) spelled out as `\u{..}`, `\n`, `\r` or `\t`, so that
/// untrusted text printed on a terminal cannot move the cursor, set the title or change colours.
pub fn printable(text: &str) -> Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn driver_names_and_versions() {
        for ok in [
            "hello",
            "pair",
            "v4l2loopback",
            "0.1.1",
            "1.2.3-rc1+git5",
            "a_b",
        ] {
            check_name("name", ok).unwrap();
        }
        for bad in [
            "",
            "..",
            ".hidden",
            "../../../../tmp/x",
            "/abs",
            "a/b",
            "-rf",
            "a b",
            "x\u{1b}]0;title\u{7}",
            "é",
        ] {
            assert!(check_name("name", bad).is_err(), "{bad:?} accepted");
        }
        assert!(check_name("n", &"a".repeat(129)).is_err());
        check_name("n", &"a".repeat(128)).unwrap();
        let e = check_name("driver name", "x\u{1b}[31m")
            .unwrap_err()
            .to_string();
        assert!(!e.contains('\u{1b}'), "{e}");
        assert!(e.starts_with("driver name `x\\u{1b}[31m`"), "{e}");
    }

    #[test]
    fn output_paths() {
        for ok in [
            "0.1.0/debian/x86_64/6.1.0-56-amd64",
            "0.1.0/debian/x86_64/6.12.117+deb12-amd64",
            "0.1.0/ubuntu/aarch64/5.15.0-91-generic_105",
            "1.0.0/fedora/x86_64/6.11.4-301.fc41.x86_64",
            "1.0.0/x/y/5.4.0~rc1",
        ] {
            check_relative_path("output", ok).unwrap();
        }
        for bad in [
            "",
            "/0.1.0/debian",
            "0.1.0//debian",
            "0.1.0/../../etc",
            "0.1.0/./x",
            "0.1.0/debian/",
            "0.1.0/deb ian",
        ] {
            assert!(
                check_relative_path("output", bad).is_err(),
                "{bad:?} accepted"
            );
        }
    }

    #[test]
    fn control_characters_are_spelled_out() {
        assert_eq!(printable("plain"), "plain");
        assert!(matches!(printable("plain"), Cow::Borrowed(_)));
        assert_eq!(
            printable("a\u{1b}]0;t\u{7}\r\nb\u{9b}"),
            "a\\u{1b}]0;t\\u{7}\\r\\nb\\u{9b}"
        );
    }
}
