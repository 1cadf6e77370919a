//! `git+<url>[@<ref>][#subdirectory=<dir>][&submodules=local]`: a driver's source in git, in the form pip
//! and other tools use.
//!
//! The ref is a branch, a tag or a commit; without one, the repository's default branch. The `@` that
//! separates it is the last one in the URL's path, so `ssh://git@host/org/driver.git@v1.2` reads as user
//! `git`, ref `v1.2`. `submodules=local` lets the project's submodules come from this machine (see
//! [`SubmoduleSources`]); fragments are joined with `&`, in any order.

use std::fmt;

/// A parsed git source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitSpec {
    /// The repository URL as git takes it (`https://…`, `ssh://…`, `git://…`, `file://…`).
    pub url: String,
    pub reference: Option<String>,
    /// The project's directory inside the repository (relative, no `..`).
    pub subdirectory: Option<String>,
    /// Where the project's submodules may come from.
    pub submodules: SubmoduleSources,
}

/// Where a project's submodules may be cloned from. A project's `.gitmodules` is the project's to write,
/// whoever serves the project, so by default it may name only what a top repository reached over the
/// network could: never a repository of the machine kmodfarm runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SubmoduleSources {
    /// [`NETWORK_TRANSPORTS`] only.
    #[default]
    Network,
    /// Also repositories on this machine (`file://` URLs, paths, and relative URLs under a `file://`
    /// repository): `#submodules=local`, which the operator writes for a project they trust.
    AlsoLocal,
}

/// The transports a submodule may always use: the network ones a top repository may use.
pub const NETWORK_TRANSPORTS: &[&str] = &["https", "http", "ssh", "git"];

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SpecError {
    #[error("{0}: not a git source (git+https://…, git+ssh://…, git+git://…, git+file://…)")]
    NotGit(String),
    #[error("{spec}: {what}")]
    Invalid { spec: String, what: &'static str },
}

const SCHEMES: &[&str] = &["https://", "http://", "ssh://", "git://", "file://"];

impl GitSpec {
    /// Whether `s` is meant as a git source (it may still fail to parse).
    pub fn is_git(s: &str) -> bool {
        s.starts_with("git+")
    }

    pub fn parse(spec: &str) -> Result<GitSpec, SpecError> {
        let invalid = |what| SpecError::Invalid {
            spec: spec.to_string(),
            what,
        };
        let rest = spec
            .strip_prefix("git+")
            .ok_or_else(|| SpecError::NotGit(spec.to_string()))?;
        let scheme = SCHEMES
            .iter()
            .find(|s| rest.starts_with(**s))
            .ok_or_else(|| SpecError::NotGit(spec.to_string()))?;
        if rest.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(invalid("white space or control characters"));
        }
        let (rest, fragment) = match rest.split_once('#') {
            Some((r, f)) => (r, Some(f)),
            None => (rest, None),
        };
        let (mut subdirectory, mut submodules) = (None, None);
        for f in fragment.into_iter().flat_map(|f| f.split('&')) {
            if let Some(dir) = f.strip_prefix("subdirectory=") {
                let dir = dir.trim_end_matches('/');
                if dir.is_empty()
                    || dir.starts_with('/')
                    || dir
                        .split('/')
                        .any(|c| c.is_empty() || c == "." || c == "..")
                {
                    return Err(invalid(
                        "the subdirectory must be a relative path without `.` or `..` components",
                    ));
                }
                if subdirectory.replace(dir.to_string()).is_some() {
                    return Err(invalid("#subdirectory= is given twice"));
                }
            } else if f == "submodules=local" {
                if submodules.replace(SubmoduleSources::AlsoLocal).is_some() {
                    return Err(invalid("#submodules= is given twice"));
                }
            } else {
                return Err(invalid(
                    "the fragments understood are #subdirectory=DIR and #submodules=local, joined with &",
                ));
            }
        }
        // The path starts at the first `/` after the authority; a ref is after the path's last `@`.
        let after_scheme = &rest[scheme.len()..];
        let path_start = scheme.len() + after_scheme.find('/').unwrap_or(after_scheme.len());
        let (url, reference) = match rest[path_start..].rfind('@') {
            Some(at) => {
                let at = path_start + at;
                (&rest[..at], Some(&rest[at + 1..]))
            }
            None => (rest, None),
        };
        if url.len() <= scheme.len() || url.starts_with('-') {
            return Err(invalid("no repository"));
        }
        if let Some(r) = reference {
            // A ref is handed to git: never as an option, never a revision expression.
            if r.is_empty()
                || r.starts_with('-')
                || r.contains("..")
                || r.contains(['^', '~', ':', '?', '*', '[', '\\'])
                || r.ends_with(['/', '.'])
                || r.contains("@{")
            {
                return Err(invalid("not a valid branch, tag or commit name"));
            }
        }
        Ok(GitSpec {
            url: url.to_string(),
            reference: reference.map(str::to_string),
            subdirectory,
            submodules: submodules.unwrap_or_default(),
        })
    }

    /// The URL without a password (`https://user:token@host/…` → `https://user@host/…`): what is recorded
    /// and printed.
    pub fn public_url(&self) -> String {
        public_url(&self.url)
    }

    /// Whether the repository is on this machine (`file://`).
    pub fn is_local(&self) -> bool {
        self.url.starts_with("file://")
    }
}

/// `url` without the password of its user information.
pub fn public_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return url.to_string();
    };
    let authority_end = url[scheme_end..]
        .find('/')
        .map_or(url.len(), |i| scheme_end + i);
    let authority = &url[scheme_end..authority_end];
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or_default();
            let user = if userinfo.contains(':') && !url.starts_with("ssh://") {
                // A token in the user part is as secret as a password: keep neither.
                ""
            } else {
                user
            };
            let at = if user.is_empty() { "" } else { "@" };
            format!(
                "{}{user}{at}{host}{}",
                &url[..scheme_end],
                &url[authority_end..]
            )
        }
        None => url.to_string(),
    }
}

impl fmt::Display for GitSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "git+{}", self.public_url())?;
        if let Some(r) = &self.reference {
            write!(f, "@{r}")?;
        }
        let mut separator = '#';
        if let Some(d) = &self.subdirectory {
            write!(f, "{separator}subdirectory={d}")?;
            separator = '&';
        }
        if self.submodules == SubmoduleSources::AlsoLocal {
            write!(f, "{separator}submodules=local")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refs_urls_and_subdirectories() {
        let s = GitSpec::parse("git+https://git.example/acme/hello.git@v0.1.1").unwrap();
        assert_eq!(s.url, "https://git.example/acme/hello.git");
        assert_eq!(s.reference.as_deref(), Some("v0.1.1"));
        let s = GitSpec::parse(
            "git+ssh://git@git.example/acme/hello.git@feature/x#subdirectory=module",
        )
        .unwrap();
        assert_eq!(s.url, "ssh://git@git.example/acme/hello.git");
        assert_eq!(s.reference.as_deref(), Some("feature/x"));
        assert_eq!(s.subdirectory.as_deref(), Some("module"));
        let s = GitSpec::parse("git+file:///srv/git/hello.git").unwrap();
        assert_eq!(s.url, "file:///srv/git/hello.git");
        assert_eq!(s.reference, None);
        assert!(s.is_local());
        assert_eq!(
            s.to_string(),
            "git+file:///srv/git/hello.git",
            "displays as given"
        );
        assert_eq!(s.submodules, SubmoduleSources::Network, "the default");
    }

    #[test]
    fn local_submodules_are_an_explicit_fragment() {
        for (spec, dir) in [
            ("git+file:///srv/top.git@v1#submodules=local", None),
            (
                "git+file:///srv/top.git@v1#subdirectory=driver&submodules=local",
                Some("driver"),
            ),
            (
                "git+file:///srv/top.git@v1#submodules=local&subdirectory=driver",
                Some("driver"),
            ),
        ] {
            let s = GitSpec::parse(spec).unwrap();
            assert_eq!(s.submodules, SubmoduleSources::AlsoLocal, "{spec}");
            assert_eq!(s.subdirectory.as_deref(), dir, "{spec}");
            assert_eq!(s.reference.as_deref(), Some("v1"));
            assert_eq!(
                GitSpec::parse(&s.to_string()).unwrap(),
                s,
                "{s} round-trips"
            );
        }
        for bad in [
            "git+file:///srv/top.git#submodules=all",
            "git+file:///srv/top.git#submodules=local&submodules=local",
            "git+file:///srv/top.git#subdirectory=a&subdirectory=b",
            "git+file:///srv/top.git#subdirectory=a&",
        ] {
            assert!(GitSpec::parse(bad).is_err(), "{bad} was accepted");
        }
    }

    #[test]
    fn hostile_or_malformed_specs_are_refused() {
        for bad in [
            "git+https://h/r.git@-uupload-pack=touch /tmp/x",
            "git+https://h/r.git@--output=x",
            "git+https://h/r.git@HEAD~1",
            "git+https://h/r.git@a..b",
            "git+https://h/r.git@",
            "git+https://h/r.git#subdirectory=../etc",
            "git+https://h/r.git#subdirectory=/etc",
            "git+https://h/r.git#egg=x",
            "git+ext::sh -c touch% /tmp/pwned",
            "git+https://",
        ] {
            assert!(GitSpec::parse(bad).is_err(), "{bad} was accepted");
        }
        assert!(matches!(
            GitSpec::parse("https://h/r.git"),
            Err(SpecError::NotGit(_))
        ));
    }

    #[test]
    fn passwords_are_not_recorded() {
        assert_eq!(
            public_url("https://ci:glpat-secret@git.example/r.git"),
            "https://git.example/r.git"
        );
        assert_eq!(
            public_url("https://oauth2@git.example/r.git"),
            "https://oauth2@git.example/r.git"
        );
        assert_eq!(
            public_url("ssh://git@git.example/r.git"),
            "ssh://git@git.example/r.git"
        );
        let s = GitSpec::parse("git+https://u:p@git.example/r.git@v1").unwrap();
        assert_eq!(s.to_string(), "git+https://git.example/r.git@v1");
    }
}
