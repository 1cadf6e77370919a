//! What a `farm.toml` value may hold, checked when the configuration loads, before anything is generated.
//!
//! Values end up in places that interpret them: GitHub evaluates `${{ … }}` anywhere in a workflow (in
//! `run:`, `env:`, `runs-on:`, before any shell sees the script), GitLab expands `$VAR` in `variables:`,
//! `tags:`, `image:` and environment names, Kubernetes expands `$(VAR)` in a container's `args` and `env`,
//! shells run what a script line says, a line break in a generated file adds lines to it, and some values
//! become file names. So, for every value (and map key) of the file:
//!
//! * no control character, and no character that reorders or hides text (U+202E, zero-width spaces: a
//!   reviewer of the generated files would read something else than what runs);
//! * no `${{` anywhere: expressions are refused, not escaped (GitHub has no escape for them);
//! * no `$` except in the words of the `plan` command line (`run.*`, which may hold a regex's `$`) and in
//!   `github.install` (a shell command by design): those reach a shell only quoted or through `env:`, and
//!   Kubernetes only as `$$`;
//!
//! and every name that becomes a runner label, a tag, a file name, an identifier or part of an ARN must be
//! of a conservative character set, named by its key when it is not.

use std::fmt::Write as _;

use kmf_types::names::hides_text;
use serde_json::Value;

use crate::config::FarmConfig;

/// A value of `farm.toml` that may not be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadValue {
    /// Where it is (`architectures.x86_64.github_runner`, `run.plan_args[3]`).
    pub key: String,
    pub value: String,
    pub why: String,
}

fn bad(key: impl Into<String>, value: &str, why: impl Into<String>) -> BadValue {
    BadValue {
        key: key.into(),
        value: value.to_string(),
        why: why.into(),
    }
}

/// Keys whose values are words of a command line (quoted, or passed through `env:`) and may hold `$`.
const COMMAND_WORDS: [&str; 5] = [
    "run.projects",
    "run.kernels",
    "run.plan_args",
    "run.sources",
    "github.install",
];

/// The rules every value and map key of the file follows, whatever it is.
pub fn check_every_value(config: &FarmConfig) -> Result<(), BadValue> {
    let tree = serde_json::to_value(config).expect("a configuration serialises");
    walk(&tree, &mut String::new())
}

fn walk(v: &Value, key: &mut String) -> Result<(), BadValue> {
    match v {
        Value::String(s) => check_text(key, s),
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let len = key.len();
                let _ = write!(key, "[{i}]");
                walk(item, key)?;
                key.truncate(len);
            }
            Ok(())
        }
        Value::Object(map) => {
            for (k, item) in map {
                let len = key.len();
                if !key.is_empty() {
                    key.push('.');
                }
                key.push_str(k);
                // A map key is a name too (a tag, a node label, a suite).
                check_text(key, k)?;
                walk(item, key)?;
                key.truncate(len);
            }
            Ok(())
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => Ok(()),
    }
}

fn check_text(key: &str, s: &str) -> Result<(), BadValue> {
    if s.chars().any(char::is_control) {
        return Err(bad(
            key,
            s,
            "holds a control character (a line break would add lines to the generated files)",
        ));
    }
    if s.chars().any(hides_text) {
        return Err(bad(
            key,
            s,
            "holds an invisible or bidirectional character (the generated files would read differently \
             from what runs)",
        ));
    }
    if s.contains("${{") {
        return Err(bad(
            key,
            s,
            "`${{` is GitHub Actions expression syntax: farm.toml values are data, never expressions",
        ));
    }
    let command_word = COMMAND_WORDS.iter().any(|k| {
        key.strip_prefix(k)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with(['.', '[']))
    });
    if s.contains('$') && !command_word {
        return Err(bad(
            key,
            s,
            "`$` is not allowed here: GitLab expands `$VAR` and Kubernetes `$(VAR)` in such values",
        ));
    }
    Ok(())
}

/// `[A-Za-z0-9][A-Za-z0-9<extra>]*`, at most `max` bytes.
fn plain(s: &str, max: usize, extra: &[u8]) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.as_bytes()[0].is_ascii_alphanumeric()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || extra.contains(&b))
}

/// A DNS label (RFC 1123) as Kubernetes names namespaces: a-z, 0-9, `-`, alphanumeric at both ends.
fn dns_label(s: &str) -> bool {
    plain(s, 63, b"-") && s.bytes().all(|b| !b.is_ascii_uppercase()) && !s.ends_with('-')
}

/// A DNS subdomain as Kubernetes names secrets: dot-separated [`dns_label`]s, at most 253.
fn dns_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(dns_label)
}

/// `/`-separated names of `[A-Za-z0-9][A-Za-z0-9._-]*` (so no `.` or `..` component, no leading `/`).
fn slash_path(s: &str, max: usize) -> bool {
    s.len() <= max && s.split('/').all(|c| plain(c, max, b"._-"))
}

/// A git branch name, conservatively: `/`-separated names of letters, digits, `.`, `_`, `-`, no `..`.
fn branch(s: &str) -> bool {
    slash_path(s, 200) && !s.contains("..") && !s.ends_with(".lock")
}

/// A host with an optional path, as IAM names OIDC providers (`oidc.eks.<region>.amazonaws.com/id/<id>`,
/// `gitlab.example.com`): no scheme, no port, no `..`.
fn issuer(s: &str) -> bool {
    let (host, path) = s.split_once('/').unwrap_or((s, ""));
    plain(host, 253, b".-") && !host.contains("..") && (path.is_empty() || slash_path(path, 200))
}

/// A container image reference: `[registry[:port]/]path[:tag][@sha256:digest]`, by its characters.
fn image(s: &str) -> bool {
    plain(s, 255, b"._-/:@") && !s.contains("//") && !s.contains("..")
}

/// A CI secret name, as GitHub and GitLab take them: `[A-Za-z_][A-Za-z0-9_]*`, not `GITHUB_*`.
fn secret_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 100
        && !s.as_bytes()[0].is_ascii_digit()
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && !s.to_ascii_uppercase().starts_with("GITHUB_")
}

/// `arn:<partition>:iam::<account>:role/<path and name>`.
fn role_arn(s: &str) -> bool {
    let Some(rest) = ["arn:aws:iam::", "arn:aws-cn:iam::", "arn:aws-us-gov:iam::"]
        .iter()
        .find_map(|p| s.strip_prefix(p))
    else {
        return false;
    };
    let Some((account, name)) = rest.split_once(":role/") else {
        return false;
    };
    account.len() == 12
        && account.bytes().all(|b| b.is_ascii_digit())
        && !name.is_empty()
        && name.len() <= 512
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+=,.@_/-".contains(&b))
}

/// A Kubernetes label key: `[prefix/]name`, the prefix a DNS subdomain, the name 1–63 of
/// `[A-Za-z0-9._-]`, alphanumeric at both ends.
fn label_key(s: &str) -> bool {
    let (prefix, name) = match s.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, s),
    };
    prefix.is_none_or(dns_subdomain) && label_value(name) && !name.is_empty()
}

/// A Kubernetes label value: empty, or 1–63 of `[A-Za-z0-9._-]`, alphanumeric at both ends.
fn label_value(s: &str) -> bool {
    s.is_empty()
        || (plain(s, 63, b"._-") && s.bytes().last().is_some_and(|b| b.is_ascii_alphanumeric()))
}

/// An IPv4 or IPv6 network in CIDR notation.
fn cidr(s: &str) -> bool {
    let Some((addr, len)) = s.split_once('/') else {
        return false;
    };
    let Ok(len) = len.parse::<u8>() else {
        return false;
    };
    match addr.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(_)) => len <= 32,
        Ok(std::net::IpAddr::V6(_)) => len <= 128,
        Err(_) => false,
    }
}

/// A cron schedule: five fields of digits, letters (`MON`, `JAN`), `*`, `/`, `,` and `-`.
fn cron(s: &str) -> bool {
    let fields: Vec<&str> = s.split(' ').filter(|f| !f.is_empty()).collect();
    fields.len() == 5
        && fields.iter().all(|f| {
            f.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"*/,-".contains(&b))
        })
}

const LABEL_RULE: &str = "1 to 63 of A-Z, a-z, 0-9, `.`, `_`, `-`, starting with a letter or digit";

/// The names: each by what it becomes.
pub fn check_names(config: &FarmConfig) -> Result<(), BadValue> {
    let require = |ok: bool, key: String, value: &str, why: &str| match ok {
        true => Ok(()),
        false => Err(bad(key, value, why)),
    };
    require(
        plain(&config.store.region, 32, b"-")
            && config.store.region.bytes().all(|b| !b.is_ascii_uppercase()),
        "store.region".into(),
        &config.store.region,
        "is not an AWS region name (a-z, 0-9, `-`)",
    )?;
    for (arch, a) in &config.architectures {
        let key = format!("architectures.{arch}");
        require(
            plain(&a.github_runner, 63, b"._-"),
            format!("{key}.github_runner"),
            &a.github_runner,
            &format!(
                "a runner label is {LABEL_RULE} (it is the jobs' runs-on, a scale set's name and a file name)"
            ),
        )?;
        for (i, tag) in a.gitlab_tags.iter().enumerate() {
            require(
                plain(tag, 63, b"._-"),
                format!("{key}.gitlab_tags[{i}]"),
                tag,
                &format!("a runner tag is {LABEL_RULE}"),
            )?;
        }
        for (k, v) in &a.node_selector {
            require(
                label_key(k),
                format!("{key}.node_selector"),
                k,
                "is not a Kubernetes label key ([prefix/]name: a DNS subdomain, then 1 to 63 of A-Z, a-z, 0-9, \
                 `.`, `_`, `-`)",
            )?;
            require(
                label_value(v),
                format!("{key}.node_selector.{k}"),
                v,
                "is not a Kubernetes label value (up to 63 of A-Z, a-z, 0-9, `.`, `_`, `-`, alphanumeric at \
                 both ends)",
            )?;
        }
    }
    for (role, identity) in &config.roles {
        let key = format!(
            "roles.{}",
            serde_json::to_value(role)
                .expect("a role serialises")
                .as_str()
                .unwrap_or_default()
        );
        if let Some(arn) = &identity.aws_role_arn {
            require(
                role_arn(arn),
                format!("{key}.aws_role_arn"),
                arn,
                "is not an IAM role ARN (arn:aws:iam::<12 digits>:role/<name of A-Z, a-z, 0-9 and +=,.@_/->)",
            )?;
        }
        for (i, s) in identity.secrets.iter().enumerate() {
            require(
                secret_name(s),
                format!("{key}.secrets[{i}]"),
                s,
                "a secret name is A-Z, a-z, 0-9 and `_`, not starting with a digit or GITHUB_",
            )?;
        }
    }
    let run = &config.run;
    require(
        cron(&run.schedule),
        "run.schedule".into(),
        &run.schedule,
        "is not a five-field cron schedule",
    )?;
    for (i, suite) in run.suites.iter().enumerate() {
        require(
            plain(suite, 64, b".-") && suite.bytes().all(|b| !b.is_ascii_uppercase()),
            format!("run.suites[{i}]"),
            suite,
            "is not a suite name (a-z, 0-9, `-`, `.`)",
        )?;
    }
    for (what, words) in [
        ("run.projects", &run.projects),
        ("run.kernels", &run.kernels),
    ] {
        for (i, w) in words.iter().enumerate() {
            require(
                !w.is_empty() && !w.starts_with('-'),
                format!("{what}[{i}]"),
                w,
                "must not be empty or start with `-` (plan would read it as an option)",
            )?;
        }
    }
    for (i, w) in run.plan_args.iter().enumerate() {
        require(!w.is_empty(), format!("run.plan_args[{i}]"), w, "is empty")?;
    }
    for (i, s) in run.sources.iter().enumerate() {
        let key = format!("run.sources[{i}]");
        require(
            !s.git.is_empty()
                && !s.git.starts_with('-')
                && !s.git.contains(['#', ' '])
                && s.git.contains("://"),
            format!("{key}.git"),
            &s.git,
            "is not a repository URL (scheme://…, no `#` or spaces)",
        )?;
        if let Some(r) = &s.reference {
            require(
                plain(r, 200, b"._/+-") && !r.contains(".."),
                format!("{key}.ref"),
                r,
                "is not a branch, tag or commit (A-Z, a-z, 0-9, `.`, `_`, `/`, `+`, `-`)",
            )?;
        }
        if let Some(d) = &s.subdirectory {
            require(
                slash_path(d, 255),
                format!("{key}.subdirectory"),
                d,
                "is not a relative path of plain names (A-Z, a-z, 0-9, `.`, `_`, `-`; no `..`, no leading `/`)",
            )?;
        }
    }
    if let Some(gh) = &config.github {
        require(
            gh.repository
                .split_once('/')
                .is_some_and(|(o, n)| plain(o, 100, b"-_.") && plain(n, 100, b"-_.")),
            "github.repository".into(),
            &gh.repository,
            "is not owner/name (A-Z, a-z, 0-9, `-`, `_`, `.`)",
        )?;
        require(
            branch(&gh.branch),
            "github.branch".into(),
            &gh.branch,
            "is not a plain branch name",
        )?;
        require(
            plain(&gh.publish_environment, 255, b"._-"),
            "github.publish_environment".into(),
            &gh.publish_environment,
            "an environment name is A-Z, a-z, 0-9, `.`, `_`, `-`, starting with a letter or digit",
        )?;
        require(
            !gh.install.trim().is_empty(),
            "github.install".into(),
            &gh.install,
            "is empty",
        )?;
        if let Some(img) = &gh.runner_image {
            require(
                image(img),
                "github.runner_image".into(),
                img,
                "is not an image reference",
            )?;
        }
        require(
            dns_subdomain(&gh.config_secret),
            "github.config_secret".into(),
            &gh.config_secret,
            "is not a Kubernetes secret name (a-z, 0-9, `-`, `.`)",
        )?;
    }
    if let Some(k) = &config.kubernetes {
        require(
            dns_label(&k.namespace),
            "kubernetes.namespace".into(),
            &k.namespace,
            "is not a namespace name (1 to 63 of a-z, 0-9, `-`)",
        )?;
        require(
            image(&k.image),
            "kubernetes.image".into(),
            &k.image,
            "is not an image reference",
        )?;
        require(
            cidr(&k.store_cidr),
            "kubernetes.store_cidr".into(),
            &k.store_cidr,
            "is not an address range (CIDR: 10.20.0.0/16)",
        )?;
        if let Some(p) = &k.oidc_provider {
            require(
                issuer(p),
                "kubernetes.oidc_provider".into(),
                p,
                "is not an OIDC provider as IAM names it (host/path, no scheme)",
            )?;
        }
    }
    if let Some(gl) = &config.gitlab {
        require(
            image(&gl.image),
            "gitlab.image".into(),
            &gl.image,
            "is not an image reference",
        )?;
        if let Some(p) = &gl.project_path {
            require(
                slash_path(p, 255) && p.contains('/'),
                "gitlab.project_path".into(),
                p,
                "is not group/project (A-Z, a-z, 0-9, `.`, `_`, `-`)",
            )?;
        }
        if let Some(i) = &gl.oidc_issuer {
            require(
                issuer(i),
                "gitlab.oidc_issuer".into(),
                i,
                "is not an OIDC issuer as IAM names it (host/path, no scheme)",
            )?;
        }
        require(
            branch(&gl.branch),
            "gitlab.branch".into(),
            &gl.branch,
            "is not a plain branch name",
        )?;
        if let Some(e) = &gl.publish_environment {
            require(
                slash_path(e, 255),
                "gitlab.publish_environment".into(),
                e,
                "an environment name is `/`-separated names of A-Z, a-z, 0-9, `.`, `_`, `-`",
            )?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn character_classes() {
        assert!(
            cidr("10.20.0.0/16") && cidr("fd00::/8") && !cidr("10.0.0.0/33") && !cidr("10.0.0.0")
        );
        assert!(cron("17 3 * * *") && cron("0 */2 * JAN MON-FRI") && !cron("17 3 * *"));
        assert!(!cron("17 3 * * * ; id"));
        assert!(role_arn(
            "arn:aws:iam::111122223333:role/kmodfarm-prod-worker"
        ));
        assert!(!role_arn("arn:aws:iam::111122223333:role/x\"; id #"));
        assert!(!role_arn("arn:aws:s3:::bucket"));
        assert!(issuer("oidc.eks.eu-west-1.amazonaws.com/id/0123ABC") && issuer("gitlab.com"));
        assert!(!issuer("https://gitlab.com") && !issuer("gitlab.com/../x"));
        assert!(label_key("node.kubernetes.io/instance-type") && label_key("disk"));
        assert!(!label_key("a b") && !label_key("x/") && !label_value("-x"));
        assert!(image("registry.acme.example:5000/kmodfarm:0.1.0") && image("local"));
        assert!(!image("x y") && !image("-x"));
        assert!(
            secret_name("KMODFARM_SIGNING_KEY")
                && !secret_name("GITHUB_TOKEN")
                && !secret_name("A-B")
        );
        assert!(branch("main") && branch("release/1.x") && !branch("a..b") && !branch("-x"));
        assert!(!branch("main\" || $CI_JOB_TOKEN"));
    }

    /// The example with `edit` applied, loaded as a file would be.
    fn load(edit: impl FnOnce(&mut FarmConfig)) -> Result<FarmConfig, crate::ConfigError> {
        let mut c = crate::config::example_config();
        edit(&mut c);
        FarmConfig::parse(&toml::to_string(&c).unwrap(), "farm.toml")
    }

    /// The message for a value that must be refused, checked to name `key`.
    fn refused(key: &str, edit: impl FnOnce(&mut FarmConfig)) -> String {
        let e = load(edit).expect_err(key).to_string();
        assert!(
            e.starts_with(&format!("farm.toml: {key} = `")),
            "{key}: {e}"
        );
        assert!(!e.chars().any(char::is_control), "{e:?}");
        e
    }

    const EXPRESSION: &str = "${{ secrets.X }}";
    const INJECTED_LINE: &str = "x\nrun: evil";

    fn x86(c: &mut FarmConfig) -> &mut crate::config::ArchitectureConfig {
        c.architectures.get_mut("x86_64").unwrap()
    }

    #[test]
    fn runner_labels_and_tags_are_plain_names() {
        for hostile in ["../x", "/abs", "a/b", ".hidden", "$(id)", "a b", "x;id"] {
            let e = refused("architectures.x86_64.github_runner", |c| {
                x86(c).github_runner = hostile.into()
            });
            assert!(
                e.contains("runner label") || e.contains("`$` is not allowed"),
                "{e}"
            );
            refused("architectures.x86_64.gitlab_tags[1]", |c| {
                x86(c).gitlab_tags[1] = hostile.into()
            });
        }
        let e = refused("architectures.x86_64.github_runner", |c| {
            x86(c).github_runner = EXPRESSION.into()
        });
        assert!(e.contains("expression syntax"), "{e}");
        let e = refused("architectures.x86_64.github_runner", |c| {
            x86(c).github_runner = INJECTED_LINE.into()
        });
        assert!(
            e.contains("control character") && e.contains("x\\nrun: evil"),
            "{e}"
        );
        let e = refused("architectures.x86_64.gitlab_tags[0]", |c| {
            x86(c).gitlab_tags[0] = "$CI_JOB_TOKEN".into()
        });
        assert!(e.contains("GitLab expands"), "{e}");
        refused("architectures.x86_64.node_selector", |c| {
            x86(c).node_selector.insert("../x".into(), "y".into());
        });
        refused("architectures.x86_64.node_selector.disk", |c| {
            x86(c).node_selector.insert("disk".into(), "$(id)".into());
        });
    }

    #[test]
    fn expressions_are_refused_in_every_value() {
        for (key, edit) in [
            (
                "github.install",
                Box::new(|c: &mut FarmConfig| {
                    c.github.as_mut().unwrap().install = EXPRESSION.into()
                }) as Box<dyn FnOnce(&mut FarmConfig)>,
            ),
            (
                "run.plan_args[1]",
                Box::new(|c: &mut FarmConfig| c.run.plan_args[1] = EXPRESSION.into()),
            ),
            (
                "run.projects[0]",
                Box::new(|c: &mut FarmConfig| c.run.projects[0] = format!("examples/{EXPRESSION}")),
            ),
            (
                "store.url",
                Box::new(|c: &mut FarmConfig| c.store.url = format!("s3://b/{EXPRESSION}")),
            ),
            (
                "tags.team",
                Box::new(|c: &mut FarmConfig| {
                    c.tags.insert("team".into(), EXPRESSION.into());
                }),
            ),
            (
                "github.publish_environment",
                Box::new(|c: &mut FarmConfig| {
                    c.github.as_mut().unwrap().publish_environment = EXPRESSION.into()
                }),
            ),
            (
                "gitlab.image",
                Box::new(|c: &mut FarmConfig| c.gitlab.as_mut().unwrap().image = EXPRESSION.into()),
            ),
        ] {
            let e = refused(key, edit);
            // Where the structural check sees it first (tags), it names the value all the same.
            assert!(e.contains("${{"), "{e}");
        }
    }

    #[test]
    fn line_breaks_and_hidden_characters_are_refused_in_every_value() {
        let e = refused("github.install", |c| {
            c.github.as_mut().unwrap().install = "cargo install kmodfarm\nrun: evil".into()
        });
        assert!(e.contains("control character"), "{e}");
        refused("run.plan_args[0]", |c| {
            c.run.plan_args[0] = INJECTED_LINE.into()
        });
        refused("roles.publisher.secrets[0]", |c| {
            c.roles.get_mut(&crate::Role::Publisher).unwrap().secrets[0] = INJECTED_LINE.into()
        });
        let e = refused("run.projects[1]", |c| {
            c.run.projects[1] = "examples/\u{202e}riap".into()
        });
        assert!(e.contains("\\u{202e}") && !e.contains('\u{202e}'), "{e}");
    }

    #[test]
    fn names_that_become_paths_or_identifiers_are_plain() {
        refused("run.sources[0].subdirectory", |c| {
            c.run.sources.push(crate::config::SourceConfig {
                git: "https://git.example/d.git".into(),
                reference: None,
                subdirectory: Some("../x".into()),
            })
        });
        refused("run.sources[0].subdirectory", |c| {
            c.run.sources.push(crate::config::SourceConfig {
                git: "https://git.example/d.git".into(),
                reference: None,
                subdirectory: Some("/abs".into()),
            })
        });
        refused("run.sources[0].ref", |c| {
            c.run.sources.push(crate::config::SourceConfig {
                git: "https://git.example/d.git".into(),
                reference: Some("v1#subdirectory=/etc".into()),
                subdirectory: None,
            })
        });
        refused("run.projects[0]", |c| {
            c.run.projects[0] = "--store=s3://elsewhere".into()
        });
        refused("kubernetes.namespace", |c| {
            c.kubernetes.as_mut().unwrap().namespace = "../x".into()
        });
        refused("github.config_secret", |c| {
            c.github.as_mut().unwrap().config_secret = "/abs".into()
        });
        refused("github.repository", |c| {
            c.github.as_mut().unwrap().repository = "../x".into()
        });
        refused("gitlab.publish_environment", |c| {
            c.gitlab.as_mut().unwrap().publish_environment = Some("../x".into())
        });
        refused("gitlab.branch", |c| {
            c.gitlab.as_mut().unwrap().branch = "main\" || $CI_JOB_TOKEN".into()
        });
        refused("roles.worker.aws_role_arn", |c| {
            c.roles.get_mut(&crate::Role::Worker).unwrap().aws_role_arn =
                Some("arn:aws:iam::111122223333:role/x\"; id; echo \"".into())
        });
        refused("roles.publisher.secrets[0]", |c| {
            c.roles.get_mut(&crate::Role::Publisher).unwrap().secrets[0] =
                "X }} ${{ github.token".into()
        });
        refused("kubernetes.store_cidr", |c| {
            c.kubernetes.as_mut().unwrap().store_cidr = "0.0.0.0/0; id".into()
        });
        refused("run.schedule", |c| {
            c.run.schedule = "17 3 * * *\nrun: evil".into()
        });
    }

    #[test]
    fn command_words_may_hold_dollars_as_data() {
        let c = load(|c| {
            c.run.plan_args.extend([
                "--kernel-release".into(),
                "^6\\.1\\.0-[0-9]+$".into(),
                "$(id)".into(),
            ])
        })
        .unwrap();
        assert!(c.run.plan_args.iter().any(|a| a == "$(id)"));
    }
}
