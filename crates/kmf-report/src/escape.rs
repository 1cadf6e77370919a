//! Escaping of untrusted text (kernel releases, failure messages, build logs) for XML and HTML.
//!
//! Markup characters become references; characters that reorder or hide text (U+202E and the other
//! bidirectional controls, zero-width characters, …: [`kmf_types::names::hides_text`]) are spelled out as
//! `\u{202e}`, as on the terminal. A character reference would not help there: a browser or a CI server's
//! test view renders `&#x202e;` as the override itself.

use kmf_types::names::hides_text;

/// `\u{..}` for a character that [hides text](hides_text).
fn spelled(out: &mut String, c: char) {
    out.push_str(&format!("\\u{{{:x}}}", c as u32));
}

/// Whether `c` may appear in an XML 1.0 document (the `Char` production). Everything else — C0 control
/// characters other than tab, line feed and carriage return, and U+FFFE/U+FFFF — cannot be written even as a
/// character reference, so it is dropped.
pub(crate) fn is_xml_char(c: char) -> bool {
    matches!(c,
        '\u{9}' | '\u{A}' | '\u{D}'
        | '\u{20}'..='\u{D7FF}'
        | '\u{E000}'..='\u{FFFD}'
        | '\u{10000}'..='\u{10FFFF}')
}

/// Whether `c` may appear in HTML text: the XML 1.0 set less DEL and the C1 controls, which HTML parsers
/// report as errors and browsers show as boxes.
fn is_html_char(c: char) -> bool {
    is_xml_char(c) && !('\u{7F}'..='\u{9F}').contains(&c)
}

/// Text content of an XML element.
pub(crate) fn xml_text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars().filter(|&c| is_xml_char(c)) {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            // `>` only matters in `]]>`, but escaping it always is simpler and just as valid.
            '>' => out.push_str("&gt;"),
            // A bare CR would be normalised to LF by the parser; keep it as written.
            '\r' => out.push_str("&#13;"),
            c if hides_text(c) => spelled(&mut out, c),
            _ => out.push(c),
        }
    }
    out
}

/// An XML attribute value in double (or single) quotes. Tab, LF and CR are written as character references
/// because attribute-value normalisation would otherwise turn them into spaces.
pub(crate) fn xml_attr(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars().filter(|&c| is_xml_char(c)) {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' => out.push_str("&#9;"),
            '\n' => out.push_str("&#10;"),
            '\r' => out.push_str("&#13;"),
            c if hides_text(c) => spelled(&mut out, c),
            _ => out.push(c),
        }
    }
    out
}

/// HTML text or a double- or single-quoted attribute value: the five special characters become character
/// references, so nothing in `s` can open a tag, close an attribute or start a comment.
pub(crate) fn html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars().filter(|&c| is_html_char(c)) {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if hides_text(c) => spelled(&mut out, c),
            _ => out.push(c),
        }
    }
    out
}

/// Removes terminal escape sequences (colours from `gcc -fdiagnostics-color`, OSC 8 hyperlinks) so that a log
/// tail reads as plain text once the control characters themselves are dropped.
pub(crate) fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\u{1b}' {
            out.push(c);
            continue;
        }
        match chars.next() {
            // CSI: parameters and intermediates, then one final byte in 0x40..=0x7E.
            Some('[') => {
                for c in chars.by_ref() {
                    if ('\u{40}'..='\u{7e}').contains(&c) {
                        break;
                    }
                }
            }
            // OSC: up to BEL or ST (ESC \).
            Some(']') => {
                while let Some(c) = chars.next() {
                    if c == '\u{7}' {
                        break;
                    }
                    if c == '\u{1b}' {
                        if chars.peek() == Some(&'\\') {
                            chars.next();
                        }
                        break;
                    }
                }
            }
            // Any other escape is two characters long.
            _ => {}
        }
    }
    out
}

/// `s` cut to at most `max` characters, with an ellipsis when something was cut.
pub(crate) fn truncate_chars(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        None => s.to_string(),
        Some((i, _)) => format!("{}…", &s[..i]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xml_text_escapes_markup_and_drops_invalid_characters() {
        assert_eq!(
            xml_text("a < b && c > d ]]> \u{0}\u{1}\u{8}\u{b}\u{c}\u{1f}\u{fffe}\u{ffff}end"),
            "a &lt; b &amp;&amp; c &gt; d ]]&gt; end"
        );
        assert_eq!(xml_text("tab\there\nline\rcr"), "tab\there\nline&#13;cr");
        // Characters outside the BMP and ordinary Unicode are kept.
        assert_eq!(xml_text("ü € 😀 \u{e000}"), "ü € 😀 \u{e000}");
    }

    #[test]
    fn xml_attr_escapes_quotes_and_whitespace() {
        assert_eq!(
            xml_attr("say \"hi\" & 'bye'\n\t<x>\u{7}"),
            "say &quot;hi&quot; &amp; &apos;bye&apos;&#10;&#9;&lt;x&gt;"
        );
    }

    #[test]
    fn html_escapes_script_and_attribute_breakouts() {
        assert_eq!(
            html("<script>alert('x')</script>"),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;"
        );
        assert_eq!(
            html("\" onmouseover=\"x\u{85}\u{0}"),
            "&quot; onmouseover=&quot;x"
        );
        assert_eq!(html("&amp;"), "&amp;amp;");
    }

    #[test]
    fn bidi_and_invisible_characters_are_spelled_out() {
        let s = "hello\u{202e}txt.ko\u{200b}\u{2066}";
        let want = "hello\\u{202e}txt.ko\\u{200b}\\u{2066}";
        assert_eq!(xml_text(s), want);
        assert_eq!(xml_attr(s), want);
        assert_eq!(html(s), want);
        // Visible text in any script is kept.
        assert_eq!(html("עברית ü"), "עברית ü");
    }

    #[test]
    fn strips_colour_and_hyperlink_escapes() {
        let line =
            "\u{1b}[01m\u{1b}[Khello.c:3:1:\u{1b}[m\u{1b}[K \u{1b}[01;31merror:\u{1b}[m boom \
                    \u{1b}]8;;https://example.org/w\u{1b}\\[-Werror]\u{1b}]8;;\u{7}";
        assert_eq!(strip_ansi(line), "hello.c:3:1: error: boom [-Werror]");
        assert_eq!(strip_ansi("no escapes"), "no escapes");
        assert_eq!(strip_ansi("dangling \u{1b}"), "dangling ");
    }

    #[test]
    fn truncates_on_character_boundaries() {
        assert_eq!(truncate_chars("äöü", 2), "äö…");
        assert_eq!(truncate_chars("äöü", 3), "äöü");
    }
}
