//! Links from a report file to the build logs beside it.
//!
//! The HTML report links each variant to its build log with a path relative to the report's directory, so the
//! whole report directory can be archived, moved or served (a CI artifact, a web server) and the links keep
//! working. Paths are compared lexically after being made absolute against the current directory: the log
//! paths in [`crate::VariantResult`] are either absolute or relative to the directory the farm ran in.

use std::ffi::OsStr;
use std::fmt::Write;
use std::path::{Component, Path};

/// The URL of `target` relative to the directory `base_dir`, each path segment percent-encoded
/// (`logs/hello/0.1.0/raspbian/aarch64/6.6.15%2Brpt-rpi-v8/build.log`). Falls back to a `file:` URL when no
/// relative path exists (another drive on Windows, or a relative path when the current directory is gone).
pub(crate) fn relative_href(target: &Path, base_dir: &Path) -> String {
    let cwd = std::env::current_dir().ok();
    let absolute = |p: &Path| {
        if p.is_absolute() {
            Some(p.to_path_buf())
        } else {
            cwd.as_ref().map(|c| c.join(p))
        }
    };
    let href = match (absolute(target), absolute(base_dir)) {
        (Some(t), Some(b)) => relative(&t, &b),
        // No current directory: two relative paths can still be compared with each other.
        _ => relative(target, base_dir),
    };
    href.unwrap_or_else(|| file_url(target))
}

/// `.` dropped and `..` applied lexically; a `..` that climbs above the start of a relative path is kept, one
/// above the root is dropped (`/..` is `/`).
fn normalize(path: &Path) -> Vec<Component<'_>> {
    let mut out: Vec<Component<'_>> = Vec::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => match out.last() {
                Some(Component::Normal(_)) => {
                    out.pop();
                }
                Some(Component::RootDir) | Some(Component::Prefix(_)) => {}
                _ => out.push(c),
            },
            _ => out.push(c),
        }
    }
    out
}

fn relative(target: &Path, base_dir: &Path) -> Option<String> {
    let t = normalize(target);
    let b = normalize(base_dir);
    let common = t.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let anchored = |c: Option<&Component<'_>>| {
        matches!(c, Some(Component::RootDir) | Some(Component::Prefix(_)))
    };
    // Different roots (or one absolute path and one relative): no relative path between them.
    if common == 0 && (anchored(t.first()) || anchored(b.first())) {
        return None;
    }
    // The target must lie below the common part (it is a file, not the base or one of its ancestors), and
    // the rest of the base must be plain names: a `..` left there cannot be undone without knowing more.
    if t.len() <= common
        || !b[common..]
            .iter()
            .all(|c| matches!(c, Component::Normal(_)))
    {
        return None;
    }
    let mut segments: Vec<String> = vec!["..".to_string(); b.len() - common];
    for c in &t[common..] {
        match c {
            Component::Normal(name) => segments.push(encode_segment(name)),
            Component::ParentDir => segments.push("..".to_string()),
            _ => return None,
        }
    }
    Some(segments.join("/"))
}

/// A `file:` URL for an absolute path, or the encoded path itself for a relative one.
fn file_url(path: &Path) -> String {
    let mut out = String::new();
    if path.has_root() {
        out.push_str("file://");
    }
    let mut first = true;
    for c in path.components() {
        match c {
            Component::RootDir => {
                out.push('/');
                first = true;
                continue;
            }
            Component::Prefix(p) => {
                out.push('/');
                out.push_str(&encode_segment(p.as_os_str()));
            }
            Component::CurDir => continue,
            Component::ParentDir => {
                if !first {
                    out.push('/');
                }
                out.push_str("..");
            }
            Component::Normal(name) => {
                if !first {
                    out.push('/');
                }
                out.push_str(&encode_segment(name));
            }
        }
        first = false;
    }
    out
}

/// Percent-encodes one path segment: everything but RFC 3986's unreserved characters (`A-Z a-z 0-9 - . _ ~`)
/// becomes `%XX` of its bytes, so `+`, spaces, `%`, `#`, `?`, `:` and non-ASCII names survive any URL parser.
pub(crate) fn encode_segment(segment: &OsStr) -> String {
    let mut out = String::new();
    for &b in segment.as_encoded_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_logs_below_the_report_dir() {
        assert_eq!(
            relative_href(
                Path::new("/srv/report/logs/hello/0.1.0/debian/x86_64/6.1.0-50-amd64/build.log"),
                Path::new("/srv/report")
            ),
            "logs/hello/0.1.0/debian/x86_64/6.1.0-50-amd64/build.log"
        );
        // Trailing slashes, `.` and `..` in either path do not matter.
        assert_eq!(
            relative_href(
                Path::new("/srv/./x/../report/logs/a/build.log"),
                Path::new("/srv/report/")
            ),
            "logs/a/build.log"
        );
    }

    #[test]
    fn relative_and_absolute_paths_mix() {
        let cwd = std::env::current_dir().unwrap();
        assert_eq!(
            relative_href(&cwd.join("report/logs/a/build.log"), Path::new("./report")),
            "logs/a/build.log"
        );
        assert_eq!(
            relative_href(Path::new("report/logs/a/build.log"), &cwd.join("report")),
            "logs/a/build.log"
        );
        assert_eq!(
            relative_href(Path::new("report/logs/a/build.log"), Path::new("report")),
            "logs/a/build.log"
        );
    }

    #[test]
    fn climbs_out_of_the_report_dir_when_logs_live_elsewhere() {
        assert_eq!(
            relative_href(
                Path::new("/var/tmp/logs/x/build.log"),
                Path::new("/srv/report")
            ),
            "../../var/tmp/logs/x/build.log"
        );
        assert_eq!(
            relative_href(Path::new("/srv/other/build.log"), Path::new("/srv/report")),
            "../other/build.log"
        );
    }

    #[test]
    fn percent_encodes_each_segment() {
        assert_eq!(
            relative_href(
                Path::new(
                    "/r/logs/hello/0.1.0/raspbian/aarch64/6.6.15+rpt-rpi-v8/build log #1?.txt"
                ),
                Path::new("/r")
            ),
            "logs/hello/0.1.0/raspbian/aarch64/6.6.15%2Brpt-rpi-v8/build%20log%20%231%3F.txt"
        );
        assert_eq!(
            encode_segment(OsStr::new("a:b%c/ü\"<")),
            "a%3Ab%25c%2F%C3%BC%22%3C"
        );
        assert_eq!(encode_segment(OsStr::new("A-z_0.9~")), "A-z_0.9~");
    }

    #[test]
    fn falls_back_to_a_file_url_when_there_is_no_relative_path() {
        assert_eq!(relative_href(Path::new("/r"), Path::new("/r")), "file:///r");
        assert_eq!(
            file_url(Path::new("/a b/c+d/build.log")),
            "file:///a%20b/c%2Bd/build.log"
        );
    }
}
