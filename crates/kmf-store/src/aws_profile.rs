//! The shared AWS configuration files (`~/.aws/credentials`, `~/.aws/config`), for the part of the standard
//! credential chain `object_store` does not read itself: static keys and the region of a named profile.
//! Environment variables win; the files are read only for what the environment leaves unset.

use std::collections::HashMap;
use std::path::PathBuf;

use object_store::aws::AmazonS3Builder;

#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct ProfileSettings {
    access_key_id: Option<String>,
    secret_access_key: Option<String>,
    session_token: Option<String>,
    region: Option<String>,
}

impl ProfileSettings {
    pub(crate) fn apply(self, mut b: AmazonS3Builder) -> AmazonS3Builder {
        if let (Some(id), Some(secret)) = (self.access_key_id, self.secret_access_key) {
            b = b.with_access_key_id(id).with_secret_access_key(secret);
            if let Some(token) = self.session_token {
                b = b.with_token(token);
            }
        }
        if let Some(region) = self.region {
            b = b.with_region(region);
        }
        b
    }
}

/// `AWS_PROFILE` (or `default`) from `AWS_SHARED_CREDENTIALS_FILE`/`AWS_CONFIG_FILE` or `~/.aws/`, for what
/// the environment does not set. `None` when there is nothing to add.
pub(crate) fn credentials_from_profile() -> Option<ProfileSettings> {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let home = env("HOME").map(PathBuf::from);
    let aws_dir = home.map(|h| h.join(".aws"));
    let credentials = env("AWS_SHARED_CREDENTIALS_FILE")
        .map(PathBuf::from)
        .or_else(|| aws_dir.as_ref().map(|d| d.join("credentials")));
    let config = env("AWS_CONFIG_FILE")
        .map(PathBuf::from)
        .or_else(|| aws_dir.as_ref().map(|d| d.join("config")));
    let profile = env("AWS_PROFILE").unwrap_or_else(|| "default".to_string());
    let read = |p: &Option<PathBuf>| p.as_ref().and_then(|p| std::fs::read_to_string(p).ok());
    let mut settings = settings(
        read(&credentials).as_deref(),
        read(&config).as_deref(),
        &profile,
    );
    if env("AWS_ACCESS_KEY_ID").is_some() {
        settings.access_key_id = None;
        settings.secret_access_key = None;
        settings.session_token = None;
    }
    if env("AWS_REGION").is_some() || env("AWS_DEFAULT_REGION").is_some() {
        settings.region = None;
    }
    (settings != ProfileSettings::default()).then_some(settings)
}

fn settings(credentials: Option<&str>, config: Option<&str>, profile: &str) -> ProfileSettings {
    let creds = credentials.map(|c| section(c, profile)).unwrap_or_default();
    // In the config file, named profiles are `[profile NAME]`; the default one is `[default]`.
    let config_section = if profile == "default" {
        "default".to_string()
    } else {
        format!("profile {profile}")
    };
    let conf = config
        .map(|c| section(c, &config_section))
        .unwrap_or_default();
    let get = |k: &str| creds.get(k).or_else(|| conf.get(k)).cloned();
    ProfileSettings {
        access_key_id: get("aws_access_key_id"),
        secret_access_key: get("aws_secret_access_key"),
        session_token: get("aws_session_token"),
        region: conf.get("region").or_else(|| creds.get("region")).cloned(),
    }
}

/// The `key = value` pairs of one `[name]` section of an ini file.
fn section(text: &str, name: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let mut inside = false;
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(header) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            inside = header.trim() == name;
            continue;
        }
        if inside {
            if let Some((k, v)) = line.split_once('=') {
                out.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_named_profile() {
        let creds = "[default]\naws_access_key_id = A\naws_secret_access_key = B\n\n[ci]\naws_access_key_id=C\naws_secret_access_key=D\naws_session_token=T\n";
        let config = "[default]\nregion = eu-west-1\n[profile ci]\nregion = us-east-2\n";
        let d = settings(Some(creds), Some(config), "default");
        assert_eq!(d.access_key_id.as_deref(), Some("A"));
        assert_eq!(d.region.as_deref(), Some("eu-west-1"));
        let ci = settings(Some(creds), Some(config), "ci");
        assert_eq!(
            (
                ci.access_key_id.as_deref(),
                ci.session_token.as_deref(),
                ci.region.as_deref()
            ),
            (Some("C"), Some("T"), Some("us-east-2"))
        );
        assert_eq!(settings(None, None, "x"), ProfileSettings::default());
    }
}
