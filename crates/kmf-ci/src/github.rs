//! The nightly GitHub Actions workflow: `plan` (trusted) → one build job per architecture and matrix chunk
//! (untrusted: no token, no secret) → `publish` (trusted, the signing key's only job).
//!
//! * `plan` assumes the planner role through GitHub's OIDC provider (`id-token: write`), writes the plan and
//!   its inputs to the farm's store and hands each architecture's shards to the build jobs as job outputs
//!   (`kmodfarm plan --github-output`).
//! * Build jobs run on each architecture's self-hosted runners (a static `runs-on` per job: Actions Runner
//!   Controller scale sets route by it, and act needs it, see docs/ci-engines.md), with `permissions: {}`
//!   and no secrets. Bundles go to the plan's staging prefix with the runner's own identity (on EKS: the
//!   scale set's service account, whose IAM role is the worker role, writes staging and nothing else). This is
//!   the default over workflow artifacts because it needs no token in the job and no third-party action,
//!   and the publisher reads the bundles from the same place on every engine.
//! * GitHub takes at most 256 entries per matrix, so each architecture has `chunks` build jobs; `plan`
//!   fails when a plan needs more.
//! * `publish` runs `if: always()` once planning succeeded (partial results publish; what is missing is
//!   planned again next night), in the protected environment holding the signing key, under a
//!   `concurrency` group so that two runs never publish at once.
//!
//! The workflow uses no action but `actions/checkout`; credentials come from the OIDC token by a `run`
//! step (the web identity token file the AWS SDKs and kmodfarm's store read), so it runs offline under act.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::config::{FarmConfig, Role};

/// What `plan --github-output` writes: the plan's URL, its staging URL, and per architecture and chunk the
/// build matrix (empty when there is nothing to build there).
pub const OUTPUT_PLAN: &str = "plan";
pub const OUTPUT_STAGING: &str = "staging";

/// The output holding `arch`'s matrix chunk `chunk`.
pub fn matrix_output(arch: &str, chunk: usize) -> String {
    format!("matrix-{}-{chunk}", arch.replace('_', "-"))
}

#[derive(Debug, Serialize)]
pub struct Workflow {
    pub name: String,
    pub on: BTreeMap<&'static str, serde_json::Value>,
    pub permissions: BTreeMap<&'static str, &'static str>,
    pub env: BTreeMap<String, String>,
    pub jobs: indexmap_like::Jobs,
}

/// Jobs in the order they run (plan, builds, publish), which serde's maps would sort.
pub mod indexmap_like {
    use serde::ser::{Serialize, SerializeMap, Serializer};

    #[derive(Debug, Default)]
    pub struct Jobs(pub Vec<(String, super::Job)>);

    impl Serialize for Jobs {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            let mut map = s.serialize_map(Some(self.0.len()))?;
            for (k, v) in &self.0 {
                map.serialize_entry(k, v)?;
            }
            map.end()
        }
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Job {
    pub name: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub needs: Vec<String>,
    #[serde(rename = "if", skip_serializing_if = "Option::is_none")]
    pub condition: Option<String>,
    pub runs_on: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub environment: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<Concurrency>,
    pub permissions: BTreeMap<&'static str, &'static str>,
    pub timeout_minutes: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub strategy: Option<Strategy>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub outputs: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    pub steps: Vec<Step>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Concurrency {
    pub group: String,
    pub cancel_in_progress: bool,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Strategy {
    pub fail_fast: bool,
    pub max_parallel: u32,
    pub matrix: String,
}

#[derive(Debug, Serialize)]
pub struct Step {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uses: Option<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run: Option<String>,
}

impl Step {
    fn run(name: &str, script: String) -> Step {
        Step {
            name: name.into(),
            id: None,
            uses: None,
            env: BTreeMap::new(),
            run: Some(script),
        }
    }
}

/// The plan's location and staging prefix from the plan job, as environment variables: expressions are
/// never spliced into a script.
fn plan_env() -> BTreeMap<String, String> {
    BTreeMap::from([
        (
            "KMODFARM_PLAN".to_string(),
            format!("${{{{ needs.plan.outputs.{OUTPUT_PLAN} }}}}"),
        ),
        (
            "KMODFARM_STAGING".to_string(),
            format!("${{{{ needs.plan.outputs.{OUTPUT_STAGING} }}}}"),
        ),
    ])
}

/// The step that turns the job's OIDC token into the web identity the store client reads, for `role`. The
/// role's ARN and session name come in as environment variables: configuration values are never spliced
/// into a script.
fn credentials_step(config: &FarmConfig, role: Role) -> Option<Step> {
    let arn = config.identity(role).aws_role_arn?;
    let mut step = Step::run(
        &format!("AWS credentials ({role})"),
        format!(
            r#"# The job's OIDC token, exchanged by the store client for the {role} role's credentials.
if [ -n "${{ACTIONS_ID_TOKEN_REQUEST_URL:-}}" ]; then
  curl -sSf -H "Authorization: bearer $ACTIONS_ID_TOKEN_REQUEST_TOKEN" \
    "$ACTIONS_ID_TOKEN_REQUEST_URL&audience=sts.amazonaws.com" | jq -r .value > "$RUNNER_TEMP/aws-web-identity"
  echo "AWS_WEB_IDENTITY_TOKEN_FILE=$RUNNER_TEMP/aws-web-identity" >> "$GITHUB_ENV"
  echo "AWS_ROLE_ARN=$KMODFARM_AWS_ROLE_ARN" >> "$GITHUB_ENV"
  echo "AWS_ROLE_SESSION_NAME=$KMODFARM_AWS_ROLE_SESSION-$GITHUB_RUN_ID" >> "$GITHUB_ENV"
fi
"#
        ),
    );
    step.env = BTreeMap::from([
        ("KMODFARM_AWS_ROLE_ARN".to_string(), arn),
        ("KMODFARM_AWS_ROLE_SESSION".to_string(), config.name(role)),
    ]);
    Some(step)
}

fn setup_steps(install: &str) -> Vec<Step> {
    vec![
        Step {
            name: "Checkout".into(),
            id: None,
            uses: Some("actions/checkout@v4".into()),
            env: BTreeMap::new(),
            run: None,
        },
        Step::run("kmodfarm", install.to_string()),
    ]
}

/// The nightly run's `plan` arguments (from `plan` on, without the store and the output).
pub fn plan_args(config: &FarmConfig) -> Vec<String> {
    let run = &config.run;
    let mut args: Vec<String> = vec!["plan".into()];
    args.extend(run.all_projects());
    if run.kernels.is_empty() {
        args.push("--crawl".into());
        args.push("--suite".into());
        args.push(run.suites.join(","));
    } else {
        for k in &run.kernels {
            args.push("--kernels".into());
            args.push(k.clone());
        }
    }
    let arches: Vec<&str> = config.architectures.keys().map(String::as_str).collect();
    args.push("--arch".into());
    args.push(arches.join(","));
    args.extend(run.plan_args.iter().cloned());
    args.extend([
        "--shard-size".into(),
        run.shard_size.to_string(),
        "--redundancy".into(),
        run.redundancy.to_string(),
    ]);
    if run.boot_test {
        args.push("--boot-test".into());
    }
    args.extend(config.trust.plan_args());
    args
}

/// The variable carrying `plan`'s arguments from the configuration into the plan step, one per line.
pub const PLAN_ARGS_VARIABLE: &str = "KMODFARM_PLAN_ARGS";

/// The plan step: `plan`'s arguments from the configuration (driver projects, kernel lists, `plan_args`)
/// are data in the step's `env:`, one per line (no value holds a line break: see [`crate::values`]), read
/// into an array, never words of the script.
fn plan_step(config: &FarmConfig, chunks: usize) -> Step {
    let args = plan_args(config);
    let mut step = Step::run(
        "plan",
        format!(
            r#"mapfile -t args <<<"${PLAN_ARGS_VARIABLE}"
kmodfarm plan "${{args[@]}}" --store "$KMODFARM_STORE" --out "$KMODFARM_FARM" --github-output "$GITHUB_OUTPUT" --github-chunks {chunks}
"#
        ),
    );
    step.id = Some("plan".into());
    step.env = BTreeMap::from([(PLAN_ARGS_VARIABLE.to_string(), args[1..].join("\n"))]);
    step
}

/// The workflow for `config`, with `chunks` build jobs per architecture (each up to 256 shards).
pub fn workflow(config: &FarmConfig, chunks: usize) -> Workflow {
    let gh = config
        .github
        .clone()
        .unwrap_or_else(|| crate::config::GithubConfig {
            repository: String::new(),
            branch: "main".into(),
            publish_environment: format!("{}-publish", config.name(Role::Publisher)),
            install: "cargo install --locked --path crates/kmodfarm".into(),
            runner_image: None,
            config_secret: "kmodfarm-github-app".into(),
        });
    let runner = |arch: &str| config.architectures[arch].github_runner.clone();
    let trusted_arch = config.trusted_architecture();
    let env = config.job_variables();

    let mut jobs = Vec::new();
    // plan
    let planner = config.profile(Role::Planner);
    let mut steps = setup_steps(&gh.install);
    steps.extend(credentials_step(config, Role::Planner));
    steps.push(plan_step(config, chunks));
    let mut outputs = BTreeMap::new();
    for name in [OUTPUT_PLAN, OUTPUT_STAGING] {
        outputs.insert(
            name.to_string(),
            format!("${{{{ steps.plan.outputs.{name} }}}}"),
        );
    }
    for arch in config.architectures.keys() {
        for chunk in 0..chunks {
            let o = matrix_output(arch, chunk);
            outputs.insert(o.clone(), format!("${{{{ steps.plan.outputs.{o} }}}}"));
        }
    }
    jobs.push((
        "plan".to_string(),
        Job {
            name: "plan".into(),
            needs: vec![],
            condition: None,
            runs_on: vec![runner(&trusted_arch)],
            environment: None,
            concurrency: None,
            permissions: BTreeMap::from([("contents", "read"), ("id-token", "write")]),
            timeout_minutes: planner.timeout_minutes,
            strategy: None,
            outputs,
            env: BTreeMap::new(),
            steps,
        },
    ));

    // builds
    let worker = config.profile(Role::Worker);
    let mut build_jobs = Vec::new();
    for arch in config.architectures.keys() {
        for chunk in 0..chunks {
            let id = format!("build-{}-{chunk}", arch.replace('_', "-"));
            let output = matrix_output(arch, chunk);
            let mut steps = setup_steps(&gh.install);
            let mut work = Step::run(
                "work",
                format!(
                    "kmodfarm work --plan \"$KMODFARM_PLAN\" --shard \"$KMODFARM_SHARD\" --out \"$KMODFARM_STAGING\"{}",
                    // The plan carries each variant's kernel image: workers boot offline.
                    if config.run.boot_test { " --boot-test" } else { "" }
                ),
            );
            work.env = plan_env();
            work.env
                .insert("KMODFARM_SHARD".into(), "${{ matrix.shard }}".into());
            steps.push(work);
            build_jobs.push(id.clone());
            jobs.push((
                id,
                Job {
                    name: format!("build {arch} ({chunk}) shard ${{{{ matrix.shard }}}}"),
                    needs: vec!["plan".into()],
                    condition: Some(format!("needs.plan.outputs.{output} != ''")),
                    runs_on: vec![runner(arch)],
                    environment: None,
                    concurrency: None,
                    // Untrusted driver code runs here: no token, no secret.
                    permissions: BTreeMap::new(),
                    timeout_minutes: worker.timeout_minutes,
                    strategy: Some(Strategy {
                        fail_fast: false,
                        max_parallel: worker.max_parallel.max(1),
                        matrix: format!("${{{{ fromJSON(needs.plan.outputs.{output}) }}}}"),
                    }),
                    outputs: BTreeMap::new(),
                    env: BTreeMap::new(),
                    steps,
                },
            ));
        }
    }

    // publish
    let publisher = config.profile(Role::Publisher);
    let mut steps = setup_steps(&gh.install);
    steps.extend(credentials_step(config, Role::Publisher));
    let mut publish = Step::run(
        "publish",
        r#"sign=()
if [ -n "${KMODFARM_SIGNING_KEY:-}" ]; then
  umask 077
  printf '%s\n' "$KMODFARM_SIGNING_KEY" > "$RUNNER_TEMP/signing.key"
  printf '%s\n' "$KMODFARM_SIGNING_CERT" > "$RUNNER_TEMP/signing.crt"
  sign=(--sign-key "$RUNNER_TEMP/signing.key" --sign-cert "$RUNNER_TEMP/signing.crt")
fi
kmodfarm publish --plan "$KMODFARM_PLAN" --bundles "$KMODFARM_STAGING" --store "$KMODFARM_STORE" "${sign[@]}"
"#
        .to_string(),
    );
    publish.env = plan_env();
    for secret in config.identity(Role::Publisher).secrets {
        publish
            .env
            .insert(secret.clone(), format!("${{{{ secrets.{secret} }}}}"));
    }
    steps.push(publish);
    let mut needs = vec!["plan".to_string()];
    needs.extend(build_jobs);
    jobs.push((
        "publish".to_string(),
        Job {
            name: "publish".into(),
            needs,
            // Partial results publish; a shard that failed is planned again next time.
            condition: Some(
                "always() && needs.plan.result == 'success' && needs.plan.outputs.plan != ''"
                    .into(),
            ),
            runs_on: vec![runner(&trusted_arch)],
            environment: Some(gh.publish_environment.clone()),
            concurrency: Some(Concurrency {
                group: config.name(Role::Publisher),
                cancel_in_progress: false,
            }),
            permissions: BTreeMap::from([("contents", "read"), ("id-token", "write")]),
            timeout_minutes: publisher.timeout_minutes,
            strategy: None,
            outputs: BTreeMap::new(),
            env: BTreeMap::new(),
            steps,
        },
    ));

    Workflow {
        name: format!("kmodfarm {} nightly", config.environment),
        on: BTreeMap::from([
            (
                "schedule",
                serde_json::json!([{ "cron": config.run.schedule }]),
            ),
            ("workflow_dispatch", serde_json::json!({})),
        ]),
        permissions: BTreeMap::new(),
        env,
        jobs: indexmap_like::Jobs(jobs),
    }
}

/// The workflow as YAML.
pub fn workflow_yaml(config: &FarmConfig, chunks: usize) -> String {
    let header = format!(
        "# Generated by `kmodfarm ci github` from the farm configuration ({}); regenerate rather than edit.\n",
        config.name(Role::Planner)
    );
    header + &yaml_serde::to_string(&workflow(config, chunks)).expect("a workflow serialises")
}

/// Values of Actions Runner Controller's `gha-runner-scale-set` chart, one file per architecture
/// (`<scale set name>.values.yaml`): the scale set named as the workflow's `runs-on`, min/max runners from
/// the configuration, and the runner pod as a worker's pod (see [`crate::kubernetes`]). Empty without a
/// `[github] runner_image` or a `[kubernetes]` table.
pub fn arc_values(config: &FarmConfig) -> Vec<(String, String)> {
    let (Some(gh), Some(_)) = (&config.github, &config.kubernetes) else {
        return vec![];
    };
    let Some(image) = &gh.runner_image else {
        return vec![];
    };
    let mut out = Vec::new();
    for (arch, a) in &config.architectures {
        let template = crate::kubernetes::runner_pod_template(config, arch, image);
        let values = serde_json::json!({
            "githubConfigUrl": format!("https://github.com/{}", gh.repository),
            "githubConfigSecret": gh.config_secret,
            "runnerScaleSetName": a.github_runner,
            "minRunners": a.min_runners,
            "maxRunners": a.max_runners,
            "template": template,
        });
        let yaml = format!(
            "# Generated by `kmodfarm ci github`: values of Actions Runner Controller's gha-runner-scale-set chart\n\
             # for {arch} runners.\n{}",
            yaml_serde::to_string(&values).expect("values serialise")
        );
        out.push((format!("{}.values.yaml", a.github_runner), yaml));
    }
    out
}

/// actionlint's configuration declaring the self-hosted runner labels the workflow uses.
pub fn actionlint_config(config: &FarmConfig) -> String {
    let labels: Vec<&str> = config
        .architectures
        .values()
        .map(|a| a.github_runner.as_str())
        .collect();
    yaml_serde::to_string(&serde_json::json!({ "self-hosted-runner": { "labels": labels } }))
        .expect("a configuration serialises")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> FarmConfig {
        crate::config::example_config()
    }

    #[test]
    fn jobs_have_the_permissions_of_their_role() {
        let w = workflow(&config(), 2);
        let ids: Vec<&str> = w.jobs.0.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            ids,
            [
                "plan",
                "build-aarch64-0",
                "build-aarch64-1",
                "build-x86-64-0",
                "build-x86-64-1",
                "publish"
            ]
        );
        for (id, job) in &w.jobs.0 {
            if id.starts_with("build-") {
                assert!(job.permissions.is_empty(), "{id}");
                let yaml = yaml_serde::to_string(job).unwrap();
                assert!(!yaml.contains("secrets."), "{id} sees a secret");
                assert!(!job.strategy.as_ref().unwrap().fail_fast);
            }
        }
        let publish = &w.jobs.0.last().unwrap().1;
        assert!(publish
            .condition
            .as_deref()
            .unwrap()
            .starts_with("always()"));
        assert_eq!(
            publish.environment.as_deref(),
            Some("kmodfarm-prod-publish")
        );
        assert!(publish.concurrency.is_some());
        let yaml = workflow_yaml(&config(), 2);
        assert!(yaml.contains("secrets.KMODFARM_SIGNING_KEY"));
        assert!(
            yaml.contains("runs-on:\n    - kmodfarm-prod-aarch64"),
            "{yaml}"
        );
    }

    /// Hostile but allowed words of the plan command line: in the step's `env:` as data, never in a
    /// script; and the role's ARN likewise.
    #[test]
    fn configuration_values_reach_scripts_only_through_env() {
        let mut c = config();
        let hostile = ["$(id)", "`id`", "'; id; '", "a b", "\"$HOME\""];
        c.run.plan_args.extend(hostile.map(String::from));
        let w = workflow(&c, 1);
        let (_, plan) = &w.jobs.0[0];
        let step = plan
            .steps
            .iter()
            .find(|s| s.id.as_deref() == Some("plan"))
            .unwrap();
        let script = step.run.as_deref().unwrap();
        let args = &step.env[PLAN_ARGS_VARIABLE];
        for h in hostile {
            assert!(args.lines().any(|l| l == h), "{h} not in {args}");
        }
        for (_, job) in &w.jobs.0 {
            for s in &job.steps {
                let run = s.run.as_deref().unwrap_or_default();
                for h in hostile
                    .iter()
                    .chain(["--distro", "examples/hello", "arn:aws"].iter())
                {
                    assert!(!run.contains(h), "{h} in the script of {}: {run}", s.name);
                }
            }
        }
        assert!(script.contains(r#""${args[@]}""#), "{script}");
        let creds = plan
            .steps
            .iter()
            .find(|s| s.name.starts_with("AWS"))
            .unwrap();
        assert_eq!(
            creds.env["KMODFARM_AWS_ROLE_ARN"],
            "arn:aws:iam::111122223333:role/kmodfarm-prod-planner"
        );
    }

    #[test]
    fn actionlint_config_lists_the_labels() {
        let yaml: serde_json::Value = yaml_serde::from_str(&actionlint_config(&config())).unwrap();
        assert_eq!(
            yaml,
            serde_json::json!({ "self-hosted-runner": { "labels": ["kmodfarm-prod-aarch64", "kmodfarm-prod-x86-64"] } })
        );
    }
}
