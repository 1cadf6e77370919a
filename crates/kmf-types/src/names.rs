//! Names that become paths, and text that reaches a terminal.
//!
//! A driver's name and version come from its `kmodfarm.toml` (untrusted) or the command line, and a kernel
//! release from a kernel list (untrusted); all of them end up as directory names in the report and the
//! store. They are checked before any work starts, so that no name can climb out of its root, be absolute,
//! or carry characters a path, a URL or a terminal would treat specially. Text that is shown rather than
//! used as a name goes through [`printable`], which spells out what a terminal would obey or hide.

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

/// A driver version: as [`check_name`], plus `~`, which Debian-style versions use for a pre-release
/// (`1.0~rc1`, as DKMS accepts it). A version becomes part of store keys only through the store prefix
/// version (`kmf_types::output_version`), which ends the `MAJOR.MINOR` core at `~` as at `-` and `+`;
/// a version kept whole there keeps its `~`, which every store key accepts (kernel releases carry it).
pub fn check_version(what: &str, value: &str) -> Result<(), NameError> {
    check_component(what, value, b"._+-~")
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

/// Whether `c` is invisible or reorders the text around it, so that shown as it is it would disguise what a
/// message says ("Trojan Source"): the bidirectional controls (U+061C, U+200E, U+200F, U+202A–U+202E,
/// U+2066–U+2069), the other format characters (zero-width spaces and joiners, the byte order mark, soft
/// hyphen, invisible operators, Unicode tags, …), the line and paragraph separators (a line break to a
/// terminal that honours them), the Hangul fillers, which render as nothing, and the variation selectors,
/// which can carry hidden text.
pub fn hides_text(c: char) -> bool {
    matches!(c,
        // Format characters (general category Cf).
        '\u{ad}'
        | '\u{600}'..='\u{605}'
        | '\u{61c}'
        | '\u{6dd}'
        | '\u{70f}'
        | '\u{890}'..='\u{891}'
        | '\u{8e2}'
        | '\u{180e}'
        | '\u{200b}'..='\u{200f}'
        | '\u{202a}'..='\u{202e}'
        | '\u{2060}'..='\u{2064}'
        | '\u{2066}'..='\u{206f}'
        | '\u{feff}'
        | '\u{fff9}'..='\u{fffb}'
        | '\u{110bd}'
        | '\u{110cd}'
        | '\u{13430}'..='\u{1343f}'
        | '\u{1bca0}'..='\u{1bca3}'
        | '\u{1d173}'..='\u{1d17a}'
        | '\u{e0001}'
        | '\u{e0020}'..='\u{e007f}'
        // Line and paragraph separators.
        | '\u{2028}'..='\u{2029}'
        // Combining grapheme joiner, Hangul fillers: no glyph.
        | '\u{34f}'
        | '\u{115f}'..='\u{1160}'
        | '\u{3164}'
        | '\u{ffa0}'
        // Variation selectors.
        | '\u{fe00}'..='\u{fe0f}'
        | '\u{e0100}'..='\u{e01ef}')
}

/// `text` with every control character (C0, DEL, C1) spelled out as `\u{..}`, `\n`, `\r` or `\t`, so that
/// untrusted text printed on a terminal cannot move the cursor, set the title or change colours; and with
/// every character that [hides text](hides_text) spelled out as `\u{..}` too, so that it cannot reverse or
/// hide part of the message either.
pub fn printable(text: &str) -> Cow<'_, str> {
    escape(text, false)
}

/// [`printable`] for text of several lines: line feeds are kept, everything else is spelled out the same.
/// For whole messages (a log event, an error chain) whose line breaks are kmodfarm's own.
pub fn printable_lines(text: &str) -> Cow<'_, str> {
    escape(text, true)
}

fn escape(text: &str, keep_lf: bool) -> Cow<'_, str> {
    let special = |c: char| (c.is_control() && !(keep_lf && c == '\n')) || hides_text(c);
    if !text.chars().any(special) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            c if !special(c) => out.push(c),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
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
    fn versions_take_a_tilde_names_do_not() {
        for ok in [
            "1.0~rc1",
            "2.3.4~bpo12+1",
            "13",
            "v0.3-47-g1a2b3c4",
            "1.2_3",
        ] {
            check_version("driver version", ok).unwrap();
        }
        assert!(check_name("driver name", "a~b").is_err());
        for bad in [
            "~1",
            "",
            "1/2",
            "..",
            "1 2",
            "#VERSION#",
            "@VERSION@",
            "1\u{202e}",
        ] {
            assert!(check_version("v", bad).is_err(), "{bad:?} accepted");
        }
        let e = check_version("driver version", "#VERSION#")
            .unwrap_err()
            .to_string();
        assert!(e.contains("must start with a letter or digit"), "{e}");
        let e = check_version("driver version", "1.0:2")
            .unwrap_err()
            .to_string();
        assert!(e.contains(". _ + ~ -"), "{e}");
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

    #[test]
    fn bidi_controls_are_spelled_out() {
        // "Trojan Source": an override makes `txt.exe` read as `exe.txt`.
        assert_eq!(printable("evil\u{202e}txt.exe"), "evil\\u{202e}txt.exe");
        for c in [
            '\u{202a}', '\u{202b}', '\u{202c}', '\u{202d}', '\u{202e}', '\u{2066}', '\u{2067}',
            '\u{2068}', '\u{2069}', '\u{200e}', '\u{200f}', '\u{61c}',
        ] {
            let text = format!("a{c}b");
            assert_eq!(
                printable(&text),
                format!("a\\u{{{:x}}}b", c as u32),
                "U+{:04X}",
                c as u32
            );
        }
    }

    #[test]
    fn invisible_characters_are_spelled_out() {
        for c in [
            '\u{200b}',
            '\u{200c}',
            '\u{200d}',
            '\u{2028}',
            '\u{2029}',
            '\u{feff}',
            '\u{ad}',
            '\u{2060}',
            '\u{2064}',
            '\u{180e}',
            '\u{3164}',
            '\u{fe0f}',
            '\u{e0041}',
            '\u{e0100}',
        ] {
            let text = format!("hel{c}lo");
            let shown = printable(&text);
            assert!(!shown.contains(c), "U+{:04X} kept", c as u32);
            assert_eq!(shown, format!("hel\\u{{{:x}}}lo", c as u32));
        }
    }

    #[test]
    fn visible_unicode_is_kept() {
        for text in [
            "äöü ß",
            "日本語",
            "€ 😀",
            "русский",
            "עברית",
            "العربية",
            "a-b_c.d~e",
        ] {
            assert_eq!(printable(text), text);
            assert!(matches!(printable(text), Cow::Borrowed(_)), "{text}");
        }
    }

    #[test]
    fn printable_lines_keeps_line_feeds_only() {
        assert_eq!(
            printable_lines("error: x\u{202e}y\n  caused by: \u{1b}[31mz\r\t"),
            "error: x\\u{202e}y\n  caused by: \\u{1b}[31mz\\r\\t"
        );
        assert!(matches!(printable_lines("a\nb"), Cow::Borrowed(_)));
        assert_eq!(printable("a\nb"), "a\\nb");
    }
}
