//! The farm configuration (`--config farm.toml`): everything the `ci` commands need to know about a fleet's
//! farm, in one file. `examples/farm.toml` is a complete, commented example.
//!
//! Names: every generated name carries the environment (`kmodfarm-<environment>-<role>`), and every
//! generated resource carries the accounting tags, so that two environments can share one cloud account and
//! one cluster without touching each other's resources or bills.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// A step of the distributed farm, each with its own identity and least privilege.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// `kmodfarm plan`: reads the store, writes plans and their inputs.
    Planner,
    /// `kmodfarm work`: builds untrusted code; reads its plan, writes only its plan's staging prefix.
    Worker,
    /// `kmodfarm publish`: the only writer of published modules; holds the signing key.
    Publisher,
    /// `kmodfarm boot-test`: reads published modules.
    BootTester,
    /// `kmodfarm git-cache update`: the only writer of the git cache.
    GitCache,
}

impl Role {
    pub const ALL: [Role; 5] = [
        Role::Planner,
        Role::Worker,
        Role::Publisher,
        Role::BootTester,
        Role::GitCache,
    ];

    /// The role's name in generated names (`boot-tester`).
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Planner => "planner",
            Role::Worker => "worker",
            Role::Publisher => "publisher",
            Role::BootTester => "boot-tester",
            Role::GitCache => "git-cache",
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `farm.toml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FarmConfig {
    /// `prod`, `staging`, …: part of every generated name.
    pub environment: String,
    pub store: StoreConfig,
    /// Accounting tags (`team`, `cost-center`, …), put on every generated resource.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// Per CPU architecture kmodfarm builds on natively (`x86_64`, `aarch64`): where its workers run.
    pub architectures: BTreeMap<String, ArchitectureConfig>,
    /// Per role: what one of its workers gets.
    #[serde(default)]
    pub profiles: BTreeMap<Role, WorkerProfile>,
    /// Per role: its identity.
    #[serde(default)]
    pub roles: BTreeMap<Role, RoleIdentity>,
    /// What the nightly run builds.
    pub run: RunConfig,
    /// How the planner proves the kernels' inputs (passed to `plan`).
    #[serde(default)]
    pub trust: TrustConfig,
    #[serde(default)]
    pub github: Option<GithubConfig>,
    #[serde(default)]
    pub kubernetes: Option<KubernetesConfig>,
    #[serde(default)]
    pub gitlab: Option<GitlabConfig>,
}

/// Where the farm keeps things.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// The published modules, matrices and indexes (`--store` of `sync`/`publish`/`install`):
    /// `s3://bucket/prefix`.
    pub url: String,
    /// Plans, their shared input cache, the workers' staging prefixes and the git cache:
    /// `s3://bucket/prefix` (`plans/`, `cache/sha256/`, `staging/`, `git-cache/` under it).
    pub farm: String,
    /// The bucket's AWS region.
    #[serde(default = "default_region")]
    pub region: String,
    /// The AWS account that owns the roles and the bucket.
    pub account_id: String,
}

fn default_region() -> String {
    "us-east-1".into()
}

/// Where an architecture's workers run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArchitectureConfig {
    /// GitHub Actions `runs-on`: a self-hosted label or an Actions Runner Controller scale set name.
    pub github_runner: String,
    /// GitLab runner tags.
    #[serde(default)]
    pub gitlab_tags: Vec<String>,
    /// Kubernetes node selector; `kubernetes.io/arch` is added from the architecture.
    #[serde(default)]
    pub node_selector: BTreeMap<String, String>,
    /// Runners of an Actions Runner Controller scale set.
    #[serde(default)]
    pub min_runners: u32,
    #[serde(default = "default_max_runners")]
    pub max_runners: u32,
}

fn default_max_runners() -> u32 {
    10
}

/// What one worker of a role gets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerProfile {
    pub cpu: u32,
    pub memory_mib: u64,
    pub disk_gib: u64,
    /// A tmpfs for builds (kmodfarm's per-build tmpfs lives in memory): part of the memory request.
    #[serde(default)]
    pub ramdisk_mib: u64,
    /// Workers of this role at once.
    #[serde(default = "default_max_parallel")]
    pub max_parallel: u32,
    pub timeout_minutes: u32,
}

fn default_max_parallel() -> u32 {
    1
}

impl Default for WorkerProfile {
    fn default() -> Self {
        WorkerProfile {
            cpu: 2,
            memory_mib: 4096,
            disk_gib: 20,
            ramdisk_mib: 0,
            max_parallel: 1,
            timeout_minutes: 60,
        }
    }
}

/// A role's identity.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleIdentity {
    /// The IAM role the role's jobs assume (GitHub OIDC, EKS IRSA). None: the role gets no cloud
    /// credentials (a worker then hands its bundles over as CI artifacts).
    #[serde(default)]
    pub aws_role_arn: Option<String>,
    /// CI secret names the role's jobs get (the publisher's signing key and certificate).
    #[serde(default)]
    pub secrets: Vec<String>,
}

/// The nightly run: the arguments of `plan` (and so of the whole run).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    /// Driver projects: directories relative to the repository, or `git+URL[@REF][#subdirectory=DIR]`.
    #[serde(default)]
    pub projects: Vec<String>,
    /// Drivers in git repositories, one `[[run.sources]]` table each.
    #[serde(default)]
    pub sources: Vec<SourceConfig>,
    /// Kernel lists (`--kernels`); empty: `--crawl` of `suites`.
    #[serde(default)]
    pub kernels: Vec<String>,
    #[serde(default)]
    pub suites: Vec<String>,
    /// Other `plan` arguments (`--distro debian`, `--latest 1`, …), passed as they are.
    #[serde(default)]
    pub plan_args: Vec<String>,
    #[serde(default = "default_shard_size")]
    pub shard_size: usize,
    #[serde(default = "default_redundancy")]
    pub redundancy: usize,
    #[serde(default)]
    pub boot_test: bool,
    /// Cron schedule of the nightly run (UTC).
    #[serde(default = "default_schedule")]
    pub schedule: String,
}

/// `[trust]`: the keyrings apt Releases and RPMs must be signed by, on the planner's machine, and the
/// suites whose expired Release the farm accepts. Becomes `plan`'s `--keyring`, `--allow-expired-release`,
/// `--rpm-keyring` and `--require-verified`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustConfig {
    /// Keyring files for every apt suite (default: the distribution's archive keyring as installed).
    #[serde(default)]
    pub keyring: Vec<String>,
    /// Keyring files per apt suite, as deb822 `Signed-By`.
    #[serde(default)]
    pub suite_keyrings: BTreeMap<String, Vec<String>>,
    /// Suites whose Release may be past its `Valid-Until` (snapshot mirrors).
    #[serde(default)]
    pub allow_expired_release: Vec<String>,
    /// Keyring files per RPM distribution (`fedora = ["/etc/pki/rpm-gpg/RPM-GPG-KEY-fedora-41"]`).
    #[serde(default)]
    pub rpm_keyrings: BTreeMap<String, Vec<String>>,
    /// Refuse header packages nothing proved.
    #[serde(default)]
    pub require_verified: bool,
}

impl TrustConfig {
    /// `plan`'s arguments for this configuration.
    pub fn plan_args(&self) -> Vec<String> {
        let mut args = Vec::new();
        for k in &self.keyring {
            args.extend(["--keyring".to_string(), k.clone()]);
        }
        for (suite, files) in &self.suite_keyrings {
            for f in files {
                args.extend(["--keyring".to_string(), format!("{suite}={f}")]);
            }
        }
        if !self.allow_expired_release.is_empty() {
            args.extend([
                "--allow-expired-release".to_string(),
                self.allow_expired_release.join(","),
            ]);
        }
        for (distro, files) in &self.rpm_keyrings {
            for f in files {
                args.extend(["--rpm-keyring".to_string(), format!("{distro}={f}")]);
            }
        }
        if self.require_verified {
            args.push("--require-verified".to_string());
        }
        args
    }

    /// Names become command-line words of generated CI files: only plain suite and distribution names and
    /// absolute paths without shell or expression syntax.
    fn validate(&self) -> Result<(), String> {
        let name_ok = |s: &str| {
            !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-.".contains(&b))
        };
        let path_ok = |p: &str| {
            p.starts_with('/')
                && !p.split('/').any(|c| c == "..")
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"/-_.+@".contains(&b))
        };
        let names = self
            .suite_keyrings
            .keys()
            .chain(self.rpm_keyrings.keys())
            .chain(self.allow_expired_release.iter());
        for n in names {
            if !name_ok(n) {
                return Err(format!(
                    "trust: `{n}` is not a suite or distribution name (a-z, 0-9, `-`, `.`)"
                ));
            }
        }
        let paths = self
            .keyring
            .iter()
            .chain(self.suite_keyrings.values().flatten())
            .chain(self.rpm_keyrings.values().flatten());
        for p in paths {
            if !path_ok(p) {
                return Err(format!(
                    "trust: keyring `{p}` must be an absolute path of A-Z, a-z, 0-9 and `/-_.+@`"
                ));
            }
        }
        Ok(())
    }
}

/// A driver in a git repository.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// The repository URL (`https://…`, `ssh://…`, `git://…`, `file://…`).
    pub git: String,
    /// Branch, tag or commit; default the repository's default branch.
    #[serde(default, rename = "ref")]
    pub reference: Option<String>,
    /// The project's directory in the repository.
    #[serde(default)]
    pub subdirectory: Option<String>,
}

impl SourceConfig {
    /// The source as a project argument: `git+URL[@REF][#subdirectory=DIR]`.
    pub fn project(&self) -> String {
        let mut s = format!("git+{}", self.git);
        if let Some(r) = &self.reference {
            s.push('@');
            s.push_str(r);
        }
        if let Some(d) = &self.subdirectory {
            s.push_str("#subdirectory=");
            s.push_str(d);
        }
        s
    }
}

impl RunConfig {
    /// Every project `plan` is given: the directories and git sources of `projects`, then `sources`.
    pub fn all_projects(&self) -> Vec<String> {
        let mut all = self.projects.clone();
        all.extend(self.sources.iter().map(SourceConfig::project));
        all
    }
}

fn default_shard_size() -> usize {
    16
}
fn default_redundancy() -> usize {
    1
}
fn default_schedule() -> String {
    "17 3 * * *".into()
}

/// GitHub Actions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GithubConfig {
    /// `owner/name` of the repository the workflow runs in (the OIDC trust policy names it).
    pub repository: String,
    /// The branch whose runs may plan and publish.
    #[serde(default = "default_branch")]
    pub branch: String,
    /// The GitHub environment holding the publisher's secrets (protection rules apply to it).
    pub publish_environment: String,
    /// Where the kmodfarm binary comes from on a runner: a command that puts it on PATH.
    #[serde(default = "default_install")]
    pub install: String,
    /// The runner image of the Actions Runner Controller scale sets (the actions runner, kmodfarm,
    /// bubblewrap); without it no scale set values are written.
    #[serde(default)]
    pub runner_image: Option<String>,
    /// The Kubernetes secret holding the GitHub App credentials of the scale sets.
    #[serde(default = "default_github_secret")]
    pub config_secret: String,
}

fn default_github_secret() -> String {
    "kmodfarm-github-app".into()
}

fn default_branch() -> String {
    "main".into()
}
fn default_install() -> String {
    "cargo install --locked --path crates/kmodfarm".into()
}

/// Kubernetes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KubernetesConfig {
    pub namespace: String,
    /// The kmodfarm image (with bubblewrap) every pod runs.
    pub image: String,
    /// The store endpoint's address range (CIDR), the only egress a build pod gets besides DNS.
    pub store_cidr: String,
    #[serde(default = "default_https")]
    pub store_port: u16,
    /// The cluster's OIDC provider (`oidc.eks.<region>.amazonaws.com/id/<id>`), for IAM roles for service
    /// accounts: each role's service account may assume that role's IAM role.
    #[serde(default)]
    pub oidc_provider: Option<String>,
}

fn default_https() -> u16 {
    443
}

/// GitLab CI.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GitlabConfig {
    /// The image jobs run in (kmodfarm, bubblewrap, zstd).
    pub image: String,
    /// The project (`group/project`) whose pipelines may plan and publish: the `project_path` of its ID
    /// tokens' subject.
    #[serde(default)]
    pub project_path: Option<String>,
    /// The GitLab instance's OIDC issuer as AWS knows it (`gitlab.com`, `gitlab.acme.example`): with
    /// `project_path`, `ci iam` lets the trusted jobs' ID tokens assume their roles.
    #[serde(default)]
    pub oidc_issuer: Option<String>,
    /// The protected branch whose pipelines may plan and publish.
    #[serde(default = "default_branch")]
    pub branch: String,
    /// The protected environment of the publish job: the publisher's secrets are CI/CD variables scoped to
    /// it (protected, masked), so no other job sees them. Default: `kmodfarm-<environment>-publish`.
    #[serde(default)]
    pub publish_environment: Option<String>,
}

impl GitlabConfig {
    pub fn publish_environment(&self, config: &FarmConfig) -> String {
        self.publish_environment
            .clone()
            .unwrap_or_else(|| format!("{}-publish", config.name(Role::Publisher)))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Parse {
        path: String,
        #[source]
        source: toml::de::Error,
    },
    #[error("{path}: {what}")]
    Invalid { path: String, what: String },
    /// A value that would be read as code, syntax or a path where it is put (see [`crate::values`]).
    #[error("{path}: {key} = `{}`: {why}", kmf_types::names::printable(value))]
    Value {
        path: String,
        key: String,
        value: String,
        why: String,
    },
}

/// An `s3://bucket/prefix[?options]` URL split into bucket and prefix (no leading or trailing slash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Location {
    pub bucket: String,
    pub prefix: String,
}

impl S3Location {
    pub fn parse(url: &str) -> Option<S3Location> {
        let rest = url.strip_prefix("s3://")?;
        let rest = rest.split('?').next().unwrap_or_default();
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let prefix = prefix.trim_matches('/');
        (!bucket.is_empty()).then(|| S3Location {
            bucket: bucket.to_string(),
            prefix: prefix.to_string(),
        })
    }

    /// `prefix/sub` (or `sub` at the bucket's root).
    pub fn key(&self, sub: &str) -> String {
        match self.prefix.is_empty() {
            true => sub.to_string(),
            false => format!("{}/{sub}", self.prefix),
        }
    }
}

impl FarmConfig {
    pub fn load(path: &Path) -> Result<FarmConfig, ConfigError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: shown.clone(),
            source,
        })?;
        FarmConfig::parse(&text, &shown)
    }

    pub fn parse(text: &str, origin: &str) -> Result<FarmConfig, ConfigError> {
        let config: FarmConfig = toml::from_str(text).map_err(|source| ConfigError::Parse {
            path: origin.to_string(),
            source,
        })?;
        let bad_value = |b: crate::values::BadValue| ConfigError::Value {
            path: origin.to_string(),
            key: b.key,
            value: b.value,
            why: b.why,
        };
        // Every value first: what the later checks quote has no control character or expression left.
        crate::values::check_every_value(&config).map_err(bad_value)?;
        config.check().map_err(|what| ConfigError::Invalid {
            path: origin.to_string(),
            what,
        })?;
        crate::values::check_names(&config).map_err(bad_value)?;
        Ok(config)
    }

    /// What serde cannot say: names usable in every engine, known architectures, S3 locations.
    fn check(&self) -> Result<(), String> {
        let dns_label = |s: &str| {
            !s.is_empty()
                && s.len() <= 20
                && s.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !s.starts_with('-')
                && !s.ends_with('-')
        };
        if !dns_label(&self.environment) {
            return Err(format!(
                "environment `{}`: at most 20 of a-z, 0-9 and `-` (it is part of every generated name)",
                self.environment
            ));
        }
        for arch in self.architectures.keys() {
            if !arch
                .parse::<kmf_types::Arch>()
                .is_ok_and(|a| a.as_str() == arch)
            {
                return Err(format!("architecture `{arch}`: x86_64 or aarch64"));
            }
        }
        if self.architectures.is_empty() {
            return Err("no [architectures.*]: name the runners of at least one".into());
        }
        for (what, url) in [
            ("store.url", &self.store.url),
            ("store.farm", &self.store.farm),
        ] {
            if S3Location::parse(url).is_none() {
                return Err(format!("{what} `{url}` is not an s3://bucket/prefix URL"));
            }
        }
        if self.store.account_id.len() != 12
            || !self.store.account_id.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(format!(
                "store.account_id `{}` is not a 12-digit AWS account id",
                self.store.account_id
            ));
        }
        for (k, v) in &self.tags {
            let ok = |s: &str| {
                !s.is_empty()
                    && s.len() <= 63
                    && s.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
            };
            if !ok(k) || !ok(v) {
                return Err(format!(
                    "tag `{k}` = `{v}`: keys and values of at most 63 of A-Z, a-z, 0-9, `-`, `_`, `.` (valid as \
                     Kubernetes labels and AWS tags)"
                ));
            }
        }
        if self.run.all_projects().is_empty() {
            return Err("the run has no driver: run.projects and run.sources are empty".into());
        }
        if self.run.kernels.is_empty() && self.run.suites.is_empty() {
            return Err("run: give kernel lists (kernels) or suites to crawl (suites)".into());
        }
        self.trust.validate()?;
        Ok(())
    }

    /// `kmodfarm-<environment>-<role>`: the name of everything generated for a role.
    pub fn name(&self, role: Role) -> String {
        format!("kmodfarm-{}-{}", self.environment, role.as_str())
    }

    pub fn profile(&self, role: Role) -> WorkerProfile {
        self.profiles.get(&role).cloned().unwrap_or_default()
    }

    pub fn identity(&self, role: Role) -> RoleIdentity {
        self.roles.get(&role).cloned().unwrap_or_default()
    }

    pub fn store_location(&self) -> S3Location {
        S3Location::parse(&self.store.url).expect("checked on load")
    }

    pub fn farm_location(&self) -> S3Location {
        S3Location::parse(&self.store.farm).expect("checked on load")
    }

    /// The architecture whose runners run the trusted jobs (plan, publish): x86_64 when configured.
    pub fn trusted_architecture(&self) -> String {
        self.architectures
            .keys()
            .find(|a| *a == "x86_64")
            .or_else(|| self.architectures.keys().next())
            .expect("checked on load")
            .clone()
    }

    /// What every generated CI job has in its environment: the store, the farm, the region, the
    /// environment's name and the accounting tags (`KMODFARM_TAG_COST_CENTER`, …).
    pub fn job_variables(&self) -> BTreeMap<String, String> {
        let mut vars = BTreeMap::from([
            ("KMODFARM_STORE".to_string(), self.store.url.clone()),
            ("KMODFARM_FARM".to_string(), self.store.farm.clone()),
            ("AWS_REGION".to_string(), self.store.region.clone()),
            ("KMODFARM_ENVIRONMENT".to_string(), self.environment.clone()),
        ]);
        for (k, v) in &self.tags {
            vars.insert(
                format!(
                    "KMODFARM_TAG_{}",
                    k.to_ascii_uppercase().replace(['-', '.'], "_")
                ),
                v.clone(),
            );
        }
        vars
    }

    /// The accounting tags plus `environment` and `app`, as every generated resource carries them.
    pub fn labels(&self) -> BTreeMap<String, String> {
        let mut labels = self.tags.clone();
        labels.insert("environment".into(), self.environment.clone());
        labels.insert("app.kubernetes.io/part-of".into(), "kmodfarm".into());
        labels
    }
}

/// examples/farm.toml, for the unit tests of every generator.
#[cfg(test)]
pub(crate) fn example() -> String {
    std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/farm.toml"
    ))
    .unwrap()
}

#[cfg(test)]
pub(crate) fn example_config() -> FarmConfig {
    FarmConfig::parse(&example(), "examples/farm.toml").unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_loads() {
        let c = example_config();
        assert_eq!(c.name(Role::BootTester), "kmodfarm-prod-boot-tester");
        assert!(c.architectures.contains_key("x86_64") && c.architectures.contains_key("aarch64"));
        for role in Role::ALL {
            assert!(c.roles.contains_key(&role), "{role}");
            assert!(c.profiles.contains_key(&role), "{role}");
        }
        assert_eq!(c.store_location().bucket, c.farm_location().bucket);
        assert_eq!(c.labels()["environment"], "prod");
    }

    #[test]
    fn git_sources_become_plan_projects() {
        let text = example()
            + "[[run.sources]]\ngit = \"https://git.acme.example/drivers/acme-telemetry.git\"\nref = \"v4.2.0\"\n\
               subdirectory = \"kmod\"\n[[run.sources]]\ngit = \"ssh://git@git.acme.example/nic.git\"\n";
        let c = FarmConfig::parse(&text, "farm.toml").unwrap();
        assert_eq!(
            c.run.all_projects(),
            [
                "examples/hello",
                "examples/pair",
                "git+https://git.acme.example/drivers/acme-telemetry.git@v4.2.0#subdirectory=kmod",
                "git+ssh://git@git.acme.example/nic.git"
            ]
        );
        assert!(crate::github::plan_args(&c)
            .iter()
            .any(|a| a.starts_with("git+https://git.acme.example")));
        // The example's [trust] section reaches `plan`.
        let args = crate::github::plan_args(&c).join(" ");
        assert!(
            args.contains("--keyring /usr/share/keyrings/debian-archive-keyring.gpg"),
            "{args}"
        );
    }

    #[test]
    fn bad_configs_say_what_is_wrong() {
        let good = example();
        for (from, to, want) in [
            (
                "environment = \"prod\"",
                "environment = \"Prod env\"",
                "environment",
            ),
            (
                "[architectures.aarch64]",
                "[architectures.riscv64]",
                "riscv64",
            ),
            (
                "account_id = \"111122223333\"",
                "account_id = \"12\"",
                "account_id",
            ),
            ("url = \"s3://", "url = \"file://", "store.url"),
            ("[tags]", "[tags]\n\"bad key\" = \"x\"", "bad key"),
            ("[run]", "[run]\nunknown = 1", "unknown"),
            (
                "keyring = [\"/usr/share/keyrings/debian-archive-keyring.gpg\"]",
                "keyring = [\"keys/${{ secrets.X }}.gpg\"]",
                "trust.keyring[0]",
            ),
            (
                "[trust]",
                "[trust]\nallow_expired_release = [\"sid; rm -rf /\"]",
                "not a suite",
            ),
        ] {
            assert!(good.contains(from), "{from}");
            let text = good.replacen(from, to, 1);
            let err = FarmConfig::parse(&text, "farm.toml")
                .unwrap_err()
                .to_string();
            assert!(err.contains(want), "{from} -> {err}");
        }
    }

    #[test]
    fn s3_locations() {
        let l = S3Location::parse("s3://kmods/farm/?endpoint=http://127.0.0.1:9000").unwrap();
        assert_eq!((l.bucket.as_str(), l.prefix.as_str()), ("kmods", "farm"));
        assert_eq!(l.key("plans/*"), "farm/plans/*");
        let root = S3Location::parse("s3://kmods").unwrap();
        assert_eq!(root.key("plans/*"), "plans/*");
        assert!(S3Location::parse("s3://").is_none());
        assert!(S3Location::parse("/srv/kmods").is_none());
    }
}
