//! The nightly GitLab CI pipeline: `plan` (trusted) → per architecture one build job fanned out by
//! `parallel: matrix` (untrusted: no ID token, no secret) → `publish` (trusted, the signing key's only job).
//!
//! * GitLab expands `parallel: matrix` when the pipeline is created, before `plan` has run, so the fan-out is
//!   static: each architecture's build job has one leg per runner the configuration gives it (`max_runners`,
//!   at most GitLab's 200), and leg `i` of `n` builds every `n`-th of the plan's shards for that
//!   architecture from the `i`-th (`kmodfarm work --runner A --index i --of n`). A leg with no shard in
//!   tonight's plan exits 0 at once. Legs land on the architecture's runners by their `tags`.
//! * `plan` writes the plan's location and staging prefix to `kmodfarm-plan.env` (`plan --dotenv`), an
//!   artifact the later jobs read (GitLab downloads a needed job's artifacts into the job's directory).
//! * Trusted jobs get an ID token (`id_tokens`, the role's name as audience) that the store client
//!   exchanges for their role's credentials; build jobs get none: their runner's own identity is the
//!   worker role's, which writes the plan's staging prefix and nothing else.
//! * The publisher's secrets are CI/CD variables, protected (protected branches only), masked, and scoped to
//!   the publish job's protected environment: GitLab gives them to that job and no other.
//! * `publish` runs `when: always` (partial results publish; what is missing is planned again next night)
//!   in a `resource_group`, so two pipelines never publish at once.
//! * Worker profiles become the job's `timeout` and the Kubernetes executor's resource requests
//!   (`KUBERNETES_CPU_REQUEST`, …, honoured up to the runner's `*_overwrite_max_allowed`).

use std::collections::BTreeMap;

use serde::Serialize;

use crate::config::{FarmConfig, Role, WorkerProfile};

/// The dotenv artifact `plan` writes and every later job reads.
pub const PLAN_ENV_FILE: &str = "kmodfarm-plan.env";
/// Its variables: the plan's URL and its staging prefix.
pub const ENV_PLAN: &str = "KMODFARM_PLAN";
pub const ENV_STAGING: &str = "KMODFARM_STAGING";
/// The variable carrying a trusted job's ID token.
pub const ID_TOKEN_VARIABLE: &str = "KMODFARM_ID_TOKEN";
/// GitLab's limit on the jobs one `parallel: matrix` makes.
pub const MAX_MATRIX_LEGS: u32 = 200;

#[derive(Debug, thiserror::Error)]
pub enum GitlabError {
    #[error("the configuration has no [gitlab] table")]
    NoGitlab,
    #[error("architecture {0} has no gitlab_tags: its build jobs would run on any runner")]
    NoTags(String),
}

/// A job, in the order GitLab documents its keywords.
#[derive(Debug, Serialize)]
pub struct Job {
    pub stage: &'static str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub needs: Vec<Need>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub when: Option<&'static str>,
    pub tags: Vec<String>,
    pub timeout: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource_group: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub environment: Option<Environment>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub id_tokens: BTreeMap<String, IdToken>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub variables: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parallel: Option<Parallel>,
    pub script: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub artifacts: Option<Artifacts>,
}

#[derive(Debug, Serialize)]
pub struct Need {
    pub job: String,
    pub artifacts: bool,
}

#[derive(Debug, Serialize)]
pub struct Environment {
    pub name: String,
    pub deployment_tier: &'static str,
}

#[derive(Debug, Serialize)]
pub struct IdToken {
    pub aud: String,
}

#[derive(Debug, Serialize)]
pub struct Parallel {
    pub matrix: Vec<BTreeMap<String, Vec<String>>>,
}

#[derive(Debug, Serialize)]
pub struct Artifacts {
    pub paths: Vec<String>,
    pub expire_in: String,
}

/// The whole `.gitlab-ci.yml`, in the order it reads best (serde's maps would sort the jobs).
#[derive(Debug)]
pub struct Pipeline {
    pub workflow: serde_json::Value,
    pub stages: Vec<&'static str>,
    pub variables: BTreeMap<String, String>,
    pub default: serde_json::Value,
    pub jobs: Vec<(String, Job)>,
}

impl Serialize for Pipeline {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(Some(4 + self.jobs.len()))?;
        map.serialize_entry("workflow", &self.workflow)?;
        map.serialize_entry("stages", &self.stages)?;
        map.serialize_entry("variables", &self.variables)?;
        map.serialize_entry("default", &self.default)?;
        for (name, job) in &self.jobs {
            map.serialize_entry(name, job)?;
        }
        map.end()
    }
}

/// The job names: `kmodfarm-<environment>-plan`, `…-build-<arch>`, `…-publish`.
pub fn job_name(config: &FarmConfig, what: &str) -> String {
    format!("kmodfarm-{}-{what}", config.environment)
}

/// The build job of `arch` (`x86_64` → `…-build-x86-64`).
pub fn build_job_name(config: &FarmConfig, arch: &str) -> String {
    job_name(config, &format!("build-{}", arch.replace('_', "-")))
}

/// The legs of `arch`'s build job: one per runner, at most GitLab's limit.
pub fn legs(config: &FarmConfig, arch: &str) -> u32 {
    config.architectures[arch]
        .max_runners
        .clamp(1, MAX_MATRIX_LEGS)
}

/// Shell-quotes one argument for a script line: as it is when it is of characters no shell treats
/// specially, else in single quotes (inside which a POSIX shell expands nothing, `$` and `` ` `` included),
/// each `'` written as `'\''`. GitLab itself does not expand variables in `script:`; the shell does, and
/// quoting is what keeps a configuration value a word there.
fn quote(arg: &str) -> String {
    if !arg.is_empty()
        && arg
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,+@".contains(&b))
    {
        return arg.to_string();
    }
    format!("'{}'", arg.replace('\'', r"'\''"))
}

/// The Kubernetes executor's per-job resource requests from a worker profile.
fn profile_variables(profile: &WorkerProfile) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("KUBERNETES_CPU_REQUEST".into(), profile.cpu.to_string()),
        (
            "KUBERNETES_MEMORY_REQUEST".into(),
            format!("{}Mi", profile.memory_mib),
        ),
        (
            "KUBERNETES_EPHEMERAL_STORAGE_REQUEST".into(),
            format!("{}Gi", profile.disk_gib),
        ),
    ])
}

/// The script line reading the plan job's dotenv artifact into the environment: only `KMODFARM_*`
/// variables, values taken verbatim (no shell evaluation of what the file holds).
fn read_plan_env() -> String {
    format!(
        r#"test -f {PLAN_ENV_FILE} || {{ echo "no {PLAN_ENV_FILE}: the plan job did not run" >&2; exit 1; }}
while IFS='=' read -r key value; do case "$key" in KMODFARM_*) export "$key=$value";; esac; done < {PLAN_ENV_FILE}"#
    )
}

/// The script line turning the job's ID token into the web identity the store client reads, for `role`.
fn credentials(config: &FarmConfig, role: Role) -> Option<(String, BTreeMap<String, IdToken>)> {
    let arn = config.identity(role).aws_role_arn?;
    let script = format!(
        r#"if [ -n "${{{ID_TOKEN_VARIABLE}:-}}" ]; then
  export AWS_WEB_IDENTITY_TOKEN_FILE="$(mktemp)"
  printf '%s' "${ID_TOKEN_VARIABLE}" > "$AWS_WEB_IDENTITY_TOKEN_FILE"
  export AWS_ROLE_ARN={arn}
  export AWS_ROLE_SESSION_NAME={name}"-$CI_PIPELINE_ID"
fi"#,
        arn = quote(&arn),
        name = quote(&config.name(role)),
    );
    let tokens = BTreeMap::from([(
        ID_TOKEN_VARIABLE.to_string(),
        // One audience per role: the role's trust policy accepts only its own (see `iam::trust_policy`).
        IdToken {
            aud: config.name(role),
        },
    )]);
    Some((script, tokens))
}

/// The pipeline for `config`.
pub fn pipeline(config: &FarmConfig) -> Result<Pipeline, GitlabError> {
    let gl = config.gitlab.as_ref().ok_or(GitlabError::NoGitlab)?;
    for (arch, a) in &config.architectures {
        if a.gitlab_tags.is_empty() {
            return Err(GitlabError::NoTags(arch.clone()));
        }
    }
    let tags = |arch: &str| config.architectures[arch].gitlab_tags.clone();
    let trusted_arch = config.trusted_architecture();
    let variables = config.job_variables();
    let plan_job = job_name(config, "plan");
    let mut jobs = Vec::new();

    // plan
    let planner = config.profile(Role::Planner);
    let mut script = Vec::new();
    let mut id_tokens = BTreeMap::new();
    if let Some((line, tokens)) = credentials(config, Role::Planner) {
        script.push(line);
        id_tokens = tokens;
    }
    let mut plan_line: Vec<String> = vec!["kmodfarm".into()];
    plan_line.extend(crate::github::plan_args(config).iter().map(|a| quote(a)));
    plan_line.extend([
        "--store \"$KMODFARM_STORE\"".into(),
        "--out \"$KMODFARM_FARM\"".into(),
        format!("--dotenv {PLAN_ENV_FILE}"),
    ]);
    script.push(plan_line.join(" "));
    jobs.push((
        plan_job.clone(),
        Job {
            stage: "plan",
            needs: vec![],
            when: None,
            tags: tags(&trusted_arch),
            timeout: format!("{}m", planner.timeout_minutes),
            resource_group: None,
            environment: None,
            id_tokens,
            variables: profile_variables(&planner),
            parallel: None,
            script,
            artifacts: Some(Artifacts {
                paths: vec![PLAN_ENV_FILE.into()],
                expire_in: "1 week".into(),
            }),
        },
    ));

    // builds
    let worker = config.profile(Role::Worker);
    let boot = if config.run.boot_test {
        " --boot-test"
    } else {
        ""
    };
    let mut build_jobs = Vec::new();
    for arch in config.architectures.keys() {
        let n = legs(config, arch);
        let name = build_job_name(config, arch);
        let mut variables = profile_variables(&worker);
        // The build needs the plan's artifact, not the repository.
        variables.insert("GIT_STRATEGY".into(), "none".into());
        variables.insert("KMODFARM_RUNNER".into(), arch.clone());
        build_jobs.push(name.clone());
        jobs.push((
            name,
            Job {
                stage: "build",
                needs: vec![Need {
                    job: plan_job.clone(),
                    artifacts: true,
                }],
                when: None,
                tags: tags(arch),
                timeout: format!("{}m", worker.timeout_minutes),
                resource_group: None,
                environment: None,
                // Untrusted driver code runs here: no ID token, no secret.
                id_tokens: BTreeMap::new(),
                variables,
                parallel: Some(Parallel {
                    matrix: vec![BTreeMap::from([(
                        "KMODFARM_INDEX".to_string(),
                        (0..n).map(|i| i.to_string()).collect(),
                    )])],
                }),
                script: vec![
                    read_plan_env(),
                    format!(
                        "kmodfarm work --plan \"${ENV_PLAN}\" --runner \"$KMODFARM_RUNNER\" --index \"$KMODFARM_INDEX\" \
                         --of {n} --out \"${ENV_STAGING}\"{boot}"
                    ),
                ],
                artifacts: None,
            },
        ));
    }

    // publish
    let publisher = config.profile(Role::Publisher);
    let mut script = vec![read_plan_env()];
    let mut id_tokens = BTreeMap::new();
    if let Some((line, tokens)) = credentials(config, Role::Publisher) {
        script.push(line);
        id_tokens = tokens;
    }
    // The signing key and certificate: file-type variables (a path), or their text.
    script.push(
        r#"sign=""
if [ -n "${KMODFARM_SIGNING_KEY:-}" ]; then
  umask 077
  key="$KMODFARM_SIGNING_KEY"; cert="$KMODFARM_SIGNING_CERT"
  if [ ! -f "$key" ]; then key="$(mktemp)"; printf '%s\n' "$KMODFARM_SIGNING_KEY" > "$key"; fi
  if [ ! -f "$cert" ]; then cert="$(mktemp)"; printf '%s\n' "$KMODFARM_SIGNING_CERT" > "$cert"; fi
  sign="--sign-key $key --sign-cert $cert"
fi"#
        .to_string(),
    );
    script.push(format!(
        "kmodfarm publish --plan \"${ENV_PLAN}\" --bundles \"${ENV_STAGING}\" --store \"$KMODFARM_STORE\" $sign{boot}"
    ));
    let mut needs = vec![Need {
        job: plan_job.clone(),
        artifacts: true,
    }];
    needs.extend(build_jobs.into_iter().map(|job| Need {
        job,
        artifacts: false,
    }));
    jobs.push((
        job_name(config, "publish"),
        Job {
            stage: "publish",
            needs,
            // Partial results publish; a shard that failed is planned again next time.
            when: Some("always"),
            tags: tags(&trusted_arch),
            timeout: format!("{}m", publisher.timeout_minutes),
            resource_group: Some(config.name(Role::Publisher)),
            environment: Some(Environment {
                name: gl.publish_environment(config),
                deployment_tier: "production",
            }),
            id_tokens,
            variables: {
                let mut v = profile_variables(&publisher);
                v.insert("GIT_STRATEGY".into(), "none".into());
                v
            },
            parallel: None,
            script,
            artifacts: None,
        },
    ));

    Ok(Pipeline {
        // Nightly from a schedule, or by hand; never from pushes or merge requests, whose code is not
        // trusted with the planner's and publisher's roles.
        workflow: serde_json::json!({ "rules": [
            { "if": format!("$CI_PIPELINE_SOURCE == \"schedule\" && $CI_COMMIT_REF_NAME == \"{}\"", gl.branch) },
            { "if": format!("$CI_PIPELINE_SOURCE == \"web\" && $CI_COMMIT_REF_NAME == \"{}\"", gl.branch) },
        ]}),
        stages: vec!["plan", "build", "publish"],
        variables,
        default: serde_json::json!({ "image": gl.image, "interruptible": false }),
        jobs,
    })
}

/// The pipeline as YAML, with the CI/CD variables it expects in its header.
pub fn pipeline_yaml(config: &FarmConfig) -> Result<String, GitlabError> {
    let pipeline = pipeline(config)?;
    let gl = config.gitlab.as_ref().ok_or(GitlabError::NoGitlab)?;
    let mut header = format!(
        "# Generated by `kmodfarm ci gitlab` from the farm configuration ({}); regenerate rather than edit.\n",
        config.name(Role::Planner)
    );
    let secrets = config.identity(Role::Publisher).secrets;
    if !secrets.is_empty() {
        header.push_str(&format!(
            "# CI/CD variables of the publish job only: protected, masked where GitLab allows, environment scope\n\
             # {}: {}.\n",
            gl.publish_environment(config),
            secrets.join(", ")
        ));
    }
    Ok(header + &yaml_serde::to_string(&pipeline).expect("a pipeline serialises"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> FarmConfig {
        crate::config::example_config()
    }

    #[test]
    fn jobs_have_the_identity_of_their_role() {
        let p = pipeline(&config()).unwrap();
        let names: Vec<&str> = p.jobs.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            names,
            [
                "kmodfarm-prod-plan",
                "kmodfarm-prod-build-aarch64",
                "kmodfarm-prod-build-x86-64",
                "kmodfarm-prod-publish"
            ]
        );
        for (name, job) in &p.jobs {
            let yaml = yaml_serde::to_string(job).unwrap();
            if name.contains("-build-") {
                assert!(job.id_tokens.is_empty(), "{name} has an ID token");
                assert!(!yaml.contains("SIGNING"), "{name} sees a secret");
                assert!(job.environment.is_none());
            } else {
                assert_eq!(job.id_tokens.len(), 1, "{name}");
            }
        }
        let (_, x86) = &p.jobs[2];
        assert_eq!(x86.tags, ["kmodfarm", "x86_64"]);
        let legs = &x86.parallel.as_ref().unwrap().matrix[0]["KMODFARM_INDEX"];
        assert_eq!(legs.len(), 20);
        assert!(x86.script[1].contains("--of 20"), "{}", x86.script[1]);
        let (_, publish) = p.jobs.last().unwrap();
        assert_eq!(publish.when, Some("always"));
        assert_eq!(
            publish.resource_group.as_deref(),
            Some("kmodfarm-prod-publisher")
        );
        assert_eq!(
            publish.environment.as_ref().unwrap().name,
            "kmodfarm-prod-publish"
        );
        let yaml = pipeline_yaml(&config()).unwrap();
        assert!(yaml.contains("KMODFARM_SIGNING_KEY, KMODFARM_SIGNING_CERT"));
        assert!(yaml.contains("cost-center") || yaml.contains("KMODFARM_TAG_COST_CENTER"));
    }

    #[test]
    fn an_architecture_without_tags_is_refused() {
        let mut c = config();
        c.architectures
            .get_mut("aarch64")
            .unwrap()
            .gitlab_tags
            .clear();
        assert!(matches!(pipeline(&c), Err(GitlabError::NoTags(a)) if a == "aarch64"));
    }

    #[test]
    fn legs_are_capped_at_gitlabs_limit() {
        let mut c = config();
        c.architectures.get_mut("x86_64").unwrap().max_runners = 500;
        assert_eq!(legs(&c, "x86_64"), MAX_MATRIX_LEGS);
    }

    #[test]
    fn configuration_values_are_single_quoted_words() {
        for (arg, word) in [
            ("$(id)", "'$(id)'"),
            ("${CI_JOB_TOKEN}", "'${CI_JOB_TOKEN}'"),
            ("`id`", "'`id`'"),
            ("it's; id", r"'it'\''s; id'"),
            ("a b", "'a b'"),
            ("--distro", "--distro"),
            ("^6\\.1$", "'^6\\.1$'"),
            ("", "''"),
        ] {
            assert_eq!(quote(arg), word, "{arg}");
        }
        let mut c = config();
        c.run
            .plan_args
            .extend(["$(id)".to_string(), "it's".to_string()]);
        let p = pipeline(&c).unwrap();
        let plan = p.jobs[0].1.script.last().unwrap();
        assert!(plan.contains(" '$(id)' 'it'\\''s' "), "{plan}");
        let creds = &p.jobs[0].1.script[0];
        assert!(
            creds.contains(
                "export AWS_ROLE_ARN=arn:aws:iam::111122223333:role/kmodfarm-prod-planner\n"
            ),
            "{creds}"
        );
    }
}
