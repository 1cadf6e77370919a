//! The Debian mirrors this machine's apt uses: the default for crawling and fetching, so that kmodfarm
//! never hard-codes a mirror host.

use std::path::Path;

use crate::KernelsError;

/// Environment variable overriding the Debian archive mirror.
pub const MIRROR_ENV: &str = "KMODFARM_DEBIAN_MIRROR";
/// Environment variable overriding the Debian security mirror.
pub const SECURITY_MIRROR_ENV: &str = "KMODFARM_DEBIAN_SECURITY_MIRROR";

/// Debian's suite names (codenames and aliases); only lines serving one of these count as Debian mirrors,
/// so that an Ubuntu or third-party line (`jammy`, `stable` of some vendor repo aside) is not taken for one.
const DEBIAN_SUITES: &[&str] = &[
    "buster",
    "bullseye",
    "bookworm",
    "trixie",
    "forky",
    "duke",
    "sid",
    "experimental",
    "rc-buggy",
    "oldoldstable",
    "oldstable",
    "stable",
    "testing",
    "unstable",
];

/// One enabled `deb` line (or deb822 stanza) of the apt configuration. `deb-src` entries are not
/// included.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AptSourceLine {
    pub uris: Vec<String>,
    pub suites: Vec<String>,
    pub components: Vec<String>,
}

/// Reads `root/etc/apt/sources.list` and `root/etc/apt/sources.list.d/*.{list,sources}` (one-line and
/// deb822 formats), in the order apt reads them. Unreadable or missing files are skipped: apt
/// configuration is a hint, and callers report "no mirror" when nothing usable is found.
pub fn read_apt_sources(root: &Path) -> Vec<AptSourceLine> {
    let apt = root.join("etc/apt");
    let mut out = Vec::new();
    if let Ok(text) = std::fs::read_to_string(apt.join("sources.list")) {
        out.extend(parse_one_line_format(&text));
    }
    let mut files: Vec<_> = std::fs::read_dir(apt.join("sources.list.d"))
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    files.sort();
    for path in files {
        let Some(ext) = path.extension().and_then(|e| e.to_str()) else {
            continue;
        };
        let Ok(text) = std::fs::read_to_string(&path) else {
            tracing::debug!(path = %path.display(), "unreadable apt source file skipped");
            continue;
        };
        match ext {
            "list" => out.extend(parse_one_line_format(&text)),
            "sources" => out.extend(parse_deb822(&text)),
            _ => {}
        }
    }
    out
}

/// `deb [options] uri suite [component...]` lines.
fn parse_one_line_format(text: &str) -> Vec<AptSourceLine> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        let Some(rest) = line.strip_prefix("deb") else {
            continue;
        };
        // `deb-src` and anything else starting with "deb" but not followed by whitespace is not ours.
        if !rest.starts_with([' ', '\t']) {
            continue;
        }
        let mut rest = rest.trim_start();
        if let Some(opts) = rest.strip_prefix('[') {
            let Some(end) = opts.find(']') else { continue };
            rest = opts[end + 1..].trim_start();
        }
        let mut words = rest.split_whitespace();
        let (Some(uri), Some(suite)) = (words.next(), words.next()) else {
            continue;
        };
        out.push(AptSourceLine {
            uris: vec![uri.to_string()],
            suites: vec![suite.to_string()],
            components: words.map(str::to_string).collect(),
        });
    }
    out
}

/// deb822 stanzas (`Types:`, `URIs:`, `Suites:`, `Components:`, `Enabled:`).
fn parse_deb822(text: &str) -> Vec<AptSourceLine> {
    let mut out = Vec::new();
    let mut fields: Vec<(String, String)> = Vec::new();
    let mut flush = |fields: &mut Vec<(String, String)>| {
        let get = |name: &str| {
            fields
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        };
        let words = |name: &str| -> Vec<String> {
            get(name)
                .unwrap_or("")
                .split_whitespace()
                .map(str::to_string)
                .collect()
        };
        let is_deb = get("Types").is_some_and(|t| t.split_whitespace().any(|t| t == "deb"));
        let enabled = !matches!(get("Enabled"), Some(v) if v.trim().eq_ignore_ascii_case("no"));
        if is_deb && enabled {
            let line = AptSourceLine {
                uris: words("URIs"),
                suites: words("Suites"),
                components: words("Components"),
            };
            if !line.uris.is_empty() && !line.suites.is_empty() {
                out.push(line);
            }
        }
        fields.clear();
    };
    for line in text.lines() {
        if line.starts_with('#') {
            continue;
        }
        if line.trim().is_empty() {
            flush(&mut fields);
        } else if line.starts_with([' ', '\t']) {
            if let Some((_, value)) = fields.last_mut() {
                value.push(' ');
                value.push_str(line.trim());
            }
        } else if let Some((key, value)) = line.split_once(':') {
            fields.push((key.trim().to_string(), value.trim().to_string()));
        }
    }
    flush(&mut fields);
    out
}

/// Where to find Debian: the archive (bookworm, trixie, ...) and the security archive
/// (`*-security` suites), as base URIs without trailing slashes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DebianMirrors {
    pub archive: String,
    pub security: Option<String>,
}

impl DebianMirrors {
    /// The mirrors to use: `KMODFARM_DEBIAN_MIRROR` / `KMODFARM_DEBIAN_SECURITY_MIRROR` first, then this
    /// machine's apt configuration; an error telling the user to pass `--mirror` when neither has one.
    pub fn discover() -> Result<DebianMirrors, KernelsError> {
        discover_with(Path::new("/"), |name| std::env::var(name).ok())
    }

    /// The base URI serving `suite`: the security mirror for `*-security` suites (when one is known),
    /// the archive otherwise.
    pub fn uri_for_suite(&self, suite: &str) -> &str {
        match &self.security {
            Some(security) if is_security_suite(suite) => security,
            _ => &self.archive,
        }
    }
}

fn is_security_suite(suite: &str) -> bool {
    // `buster/updates` is how the security archive named suites before bullseye.
    suite.ends_with("-security") || suite.ends_with("/updates")
}

fn discover_with(
    root: &Path,
    env: impl Fn(&str) -> Option<String>,
) -> Result<DebianMirrors, KernelsError> {
    let env = |name: &str| {
        env(name)
            .map(|v| v.trim().trim_end_matches('/').to_string())
            .filter(|v| !v.is_empty())
    };
    let from_apt = debian_mirrors_from_apt(root);
    let archive = env(MIRROR_ENV)
        .or_else(|| from_apt.as_ref().map(|m| m.archive.clone()))
        .ok_or(KernelsError::NoMirror)?;
    let security = env(SECURITY_MIRROR_ENV).or_else(|| from_apt.and_then(|m| m.security));
    Ok(DebianMirrors { archive, security })
}

/// The Debian mirrors configured in `root/etc/apt`: the first http(s) URI serving a plain Debian suite
/// (`bookworm`) and the first serving a security suite (`bookworm-security`). `None` without the former.
pub fn debian_mirrors_from_apt(root: &Path) -> Option<DebianMirrors> {
    let lines = read_apt_sources(root);
    let os_is_debian = std::fs::read_to_string(root.join("etc/os-release"))
        .map(|t| t.lines().any(|l| l.trim() == "ID=debian"))
        .unwrap_or(false);
    // On Debian itself any plain suite is Debian's, even a codename newer than this code.
    let is_debian_suite = |s: &str| os_is_debian || DEBIAN_SUITES.contains(&s);
    let usable = |uri: &str| uri.starts_with("http://") || uri.starts_with("https://");
    let clean = |uri: &str| uri.trim_end_matches('/').to_string();

    let mut archive = None;
    let mut security = None;
    for line in &lines {
        for suite in &line.suites {
            let suite = suite.trim_end_matches('/');
            let (slot, base) = if is_security_suite(suite) {
                let base = suite
                    .strip_suffix("-security")
                    .or_else(|| suite.strip_suffix("/updates"))
                    .unwrap_or(suite);
                (&mut security, base)
            } else if !suite.contains(['-', '/']) {
                (&mut archive, suite)
            } else {
                continue;
            };
            if slot.is_some() || !is_debian_suite(base) {
                continue;
            }
            if let Some(uri) = line.uris.iter().find(|u| usable(u)) {
                *slot = Some(clean(uri));
            }
        }
    }
    Some(DebianMirrors {
        archive: archive?,
        security,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(root: &Path, rel: &str, text: &str) {
        let path = root.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    const DEB822: &str = "\
Types: deb
# http://snapshot.example/archive/debian/20250520T000000Z
URIs: http://mirror.example/debian/
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb deb-src
URIs: http://security.example/debian-security
Suites: bookworm-security
Components: main contrib
Signed-By:
 -----BEGIN PGP PUBLIC KEY BLOCK-----
 .
 mQINBGPL
 -----END PGP PUBLIC KEY BLOCK-----

Types: deb
URIs: http://disabled.example/debian
Suites: trixie
Enabled: no
Components: main

Types: deb-src
URIs: http://src-only.example/debian
Suites: trixie
Components: main
";

    #[test]
    fn reads_deb822_and_one_line_sources() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(root, "etc/apt/sources.list.d/debian.sources", DEB822);
        write(
            root,
            "etc/apt/sources.list",
            "# comment line\n\
             deb [arch=amd64 signed-by=/k.gpg] http://one.example/debian bookworm main contrib # tail\n\
             deb-src http://one.example/debian bookworm main\n\
             \n\
             deb http://one.example/debian bookworm-backports main\n",
        );
        write(
            root,
            "etc/apt/sources.list.d/ignored.txt",
            "deb http://x.example/ y z\n",
        );
        let lines = read_apt_sources(root);
        let summary: Vec<_> = lines
            .iter()
            .map(|l| (l.uris.join(" "), l.suites.join(" "), l.components.join(" ")))
            .collect();
        let s = |a: &str, b: &str, c: &str| (a.to_string(), b.to_string(), c.to_string());
        assert_eq!(
            summary,
            [
                s("http://one.example/debian", "bookworm", "main contrib"),
                s("http://one.example/debian", "bookworm-backports", "main"),
                s(
                    "http://mirror.example/debian/",
                    "bookworm bookworm-updates",
                    "main"
                ),
                s(
                    "http://security.example/debian-security",
                    "bookworm-security",
                    "main contrib"
                ),
            ]
        );
    }

    #[test]
    fn picks_archive_and_security() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "etc/apt/sources.list.d/debian.sources", DEB822);
        let m = debian_mirrors_from_apt(dir.path()).unwrap();
        assert_eq!(m.archive, "http://mirror.example/debian");
        assert_eq!(
            m.security.as_deref(),
            Some("http://security.example/debian-security")
        );
        assert_eq!(m.uri_for_suite("bookworm"), "http://mirror.example/debian");
        assert_eq!(
            m.uri_for_suite("trixie-backports"),
            "http://mirror.example/debian"
        );
        assert_eq!(
            m.uri_for_suite("trixie-security"),
            "http://security.example/debian-security"
        );
        let no_security = DebianMirrors {
            security: None,
            ..m
        };
        assert_eq!(
            no_security.uri_for_suite("bookworm-security"),
            "http://mirror.example/debian"
        );
    }

    #[test]
    fn ignores_non_debian_suites_unless_the_os_is_debian() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "etc/apt/sources.list",
            "deb http://ubuntu.example/ubuntu jammy main\n\
             deb http://ubuntu.example/ubuntu jammy-security main\n\
             deb cdrom:[Debian]/ bookworm main\n",
        );
        assert_eq!(debian_mirrors_from_apt(dir.path()), None);
        write(
            dir.path(),
            "etc/apt/sources.list",
            "deb http://m.example/debian duke main\n",
        );
        assert_eq!(
            debian_mirrors_from_apt(dir.path()).unwrap().archive,
            "http://m.example/debian"
        );
        write(
            dir.path(),
            "etc/apt/sources.list",
            "deb http://m.example/debian excalibur main\n",
        );
        assert_eq!(debian_mirrors_from_apt(dir.path()), None);
        write(
            dir.path(),
            "etc/os-release",
            "NAME=\"Debian GNU/Linux\"\nID=debian\n",
        );
        assert_eq!(
            debian_mirrors_from_apt(dir.path()).unwrap().archive,
            "http://m.example/debian"
        );
    }

    #[test]
    fn old_style_security_suite() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "etc/apt/sources.list",
            "deb http://m.example/debian buster main\ndeb https://s.example/debian-security/ buster/updates main\n",
        );
        let m = debian_mirrors_from_apt(dir.path()).unwrap();
        assert_eq!(
            m.security.as_deref(),
            Some("https://s.example/debian-security")
        );
        assert_eq!(
            m.uri_for_suite("buster/updates"),
            "https://s.example/debian-security"
        );
    }

    #[test]
    fn environment_overrides_apt() {
        let dir = tempfile::tempdir().unwrap();
        let none = |_: &str| None;
        assert!(matches!(
            discover_with(dir.path(), none),
            Err(KernelsError::NoMirror)
        ));
        let err = discover_with(dir.path(), none).unwrap_err().to_string();
        assert!(err.contains("--mirror"), "{err}");

        let env =
            |name: &str| (name == MIRROR_ENV).then(|| "http://env.example/debian/".to_string());
        let m = discover_with(dir.path(), env).unwrap();
        assert_eq!(m.archive, "http://env.example/debian");
        assert_eq!(m.security, None);

        write(dir.path(), "etc/apt/sources.list.d/debian.sources", DEB822);
        let m = discover_with(dir.path(), env).unwrap();
        assert_eq!(m.archive, "http://env.example/debian");
        assert_eq!(
            m.security.as_deref(),
            Some("http://security.example/debian-security"),
            "security comes from apt when only the archive is overridden"
        );
        let env_sec = |name: &str| {
            (name == SECURITY_MIRROR_ENV).then(|| "https://sec.example/ds".to_string())
        };
        let m = discover_with(dir.path(), env_sec).unwrap();
        assert_eq!(m.archive, "http://mirror.example/debian");
        assert_eq!(m.security.as_deref(), Some("https://sec.example/ds"));
        let empty = |_: &str| Some(String::new());
        assert_eq!(
            discover_with(dir.path(), empty).unwrap().archive,
            "http://mirror.example/debian",
            "empty variables count as unset"
        );
    }
}
