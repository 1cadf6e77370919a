//! Kubernetes manifests for the farm (`kmodfarm ci kubernetes`).
//!
//! Always: a ServiceAccount per role (`eks.amazonaws.com/role-arn` from the role's identity: IAM roles for
//! service accounts; no Kubernetes API token mounted, kmodfarm never talks to the API server), a
//! NetworkPolicy that lets build pods reach only the store and DNS, and the nightly `plan` CronJob.
//! For one run (a plan already made): per runner label an Indexed Job whose pods build shard `i` of that
//! runner (`JOB_COMPLETION_INDEX`), and the `publish` Job.
//!
//! What a build pod needs for kmodfarm's bubblewrap sandbox, and no more: it is never privileged and adds no
//! capability. Bubblewrap creates a user namespace and, inside it, mount, PID and network namespaces and a
//! fresh `/proc`. So the pod runs in its own user namespace (`hostUsers: false`), with the container's
//! `/proc` unmasked (`procMount: Unmasked`; otherwise the kernel refuses a new procfs beside masked paths),
//! and without the runtime's default seccomp and AppArmor profiles, which refuse `unshare(CLONE_NEWUSER)`
//! to processes without `CAP_SYS_ADMIN` (`Unconfined`; a Localhost seccomp profile that allows `unshare`,
//! `clone` with namespace flags, `mount`, `pivot_root` and `umount2` can replace it). It runs as a non-root
//! user with `allowPrivilegeEscalation: false`, all capabilities dropped, a read-only root file system and
//! `emptyDir` volumes for the cache and scratch space.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::{CronJob, CronJobSpec, Job, JobSpec, JobTemplateSpec};
use k8s_openapi::api::core::v1::{
    AppArmorProfile, Capabilities, Container, EmptyDirVolumeSource, EnvVar, PodSecurityContext,
    PodSpec, PodTemplateSpec, ResourceRequirements, SeccompProfile, SecurityContext,
    ServiceAccount, Volume, VolumeMount,
};
use k8s_openapi::api::networking::v1::{
    IPBlock, NetworkPolicy, NetworkPolicyEgressRule, NetworkPolicyPeer, NetworkPolicyPort,
    NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde::Serialize;

use crate::config::{FarmConfig, KubernetesConfig, Role};

/// The label that says which role a pod or object belongs to.
pub const ROLE_LABEL: &str = "app.kubernetes.io/component";
/// The uid and gid the kmodfarm image runs as.
pub const RUN_AS: i64 = 1000;

#[derive(Debug, thiserror::Error)]
pub enum KubernetesError {
    #[error("the farm configuration has no [kubernetes] table")]
    NotConfigured,
    #[error("no architecture in the farm configuration serves runner `{0}`")]
    UnknownRunner(String),
}

fn k8s(config: &FarmConfig) -> Result<&KubernetesConfig, KubernetesError> {
    config
        .kubernetes
        .as_ref()
        .ok_or(KubernetesError::NotConfigured)
}

fn labels(config: &FarmConfig, role: Role) -> BTreeMap<String, String> {
    let mut l = config.labels();
    l.insert(ROLE_LABEL.into(), role.as_str().into());
    l
}

fn meta(config: &FarmConfig, name: String, role: Role) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: config.kubernetes.as_ref().map(|k| k.namespace.clone()),
        labels: Some(labels(config, role)),
        ..Default::default()
    }
}

/// `s` as a literal in a container's `args` or `env` values, where Kubernetes replaces `$(VAR)` with the
/// variable's value and `$$` with `$`: every `$` doubled, so that a configuration value or URL (a regex's
/// `$` in `plan_args`) reaches kmodfarm as written. Only kmodfarm's own `$(JOB_COMPLETION_INDEX)` is left
/// to expand.
pub fn literal(s: &str) -> String {
    s.replace('$', "$$")
}

/// `kubernetes.io/arch` of a kmodfarm architecture.
fn kube_arch(arch: &str) -> &'static str {
    match arch {
        "aarch64" => "arm64",
        _ => "amd64",
    }
}

fn resources(config: &FarmConfig, role: Role) -> ResourceRequirements {
    let p = config.profile(role);
    let memory = Quantity(format!("{}Mi", p.memory_mib + p.ramdisk_mib));
    let values = BTreeMap::from([
        ("cpu".to_string(), Quantity(p.cpu.to_string())),
        ("memory".to_string(), memory),
        (
            "ephemeral-storage".to_string(),
            Quantity(format!("{}Gi", p.disk_gib)),
        ),
    ]);
    ResourceRequirements {
        requests: Some(values.clone()),
        limits: Some(values),
        ..Default::default()
    }
}

/// A pod of `role` running `args` (kmodfarm's arguments), as tight as the role allows.
fn pod(
    config: &FarmConfig,
    role: Role,
    args: Vec<String>,
    env: Vec<EnvVar>,
    arch: Option<&str>,
) -> PodTemplateSpec {
    let k = config.kubernetes.as_ref().expect("checked");
    pod_running(
        config,
        role,
        &k.image,
        vec!["kmodfarm".into()],
        args,
        env,
        arch,
    )
}

/// The self-hosted GitHub runner pod of an Actions Runner Controller scale set for `arch`: the worker's
/// pod (service account, user namespace, profiles, resources, node selector) running the runner image's
/// `run.sh`, so that the build jobs it takes run with exactly a worker's rights.
///
/// Unlike a build pod's, the runner's root file system stays writable: the runner writes its registration
/// and its work directory under its home (uid 1000 in the runner image).
pub fn runner_pod_template(config: &FarmConfig, arch: &str, image: &str) -> PodTemplateSpec {
    let mut template = pod_running(
        config,
        Role::Worker,
        image,
        vec!["/home/runner/run.sh".into()],
        vec![],
        vec![],
        Some(arch),
    );
    if let Some(spec) = template.spec.as_mut() {
        for c in &mut spec.containers {
            if let Some(sc) = c.security_context.as_mut() {
                sc.read_only_root_filesystem = Some(false);
            }
        }
    }
    template
}

fn pod_running(
    config: &FarmConfig,
    role: Role,
    image: &str,
    command: Vec<String>,
    args: Vec<String>,
    env: Vec<EnvVar>,
    arch: Option<&str>,
) -> PodTemplateSpec {
    let profile = config.profile(role);
    let builds = matches!(role, Role::Worker | Role::Publisher);
    let mut node_selector = BTreeMap::new();
    if let Some(arch) = arch {
        node_selector.extend(config.architectures[arch].node_selector.clone());
        node_selector.insert("kubernetes.io/arch".into(), kube_arch(arch).into());
    }
    // The same variables as the GitHub and GitLab jobs get, plus the pod's cache volume.
    let mut env = env;
    let mut vars = config.job_variables();
    vars.insert("KMODFARM_CACHE".into(), "/cache".into());
    env.extend(vars.into_iter().map(|(name, value)| EnvVar {
        name,
        value: Some(literal(&value)),
        ..Default::default()
    }));
    let unconfined = builds;
    PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(labels(config, role)),
            ..Default::default()
        }),
        spec: Some(PodSpec {
            service_account_name: Some(config.name(role)),
            automount_service_account_token: Some(false),
            restart_policy: Some("Never".into()),
            host_users: builds.then_some(false),
            node_selector: (!node_selector.is_empty()).then_some(node_selector),
            security_context: Some(PodSecurityContext {
                run_as_non_root: Some(true),
                run_as_user: Some(RUN_AS),
                run_as_group: Some(RUN_AS),
                fs_group: Some(RUN_AS),
                seccomp_profile: Some(SeccompProfile {
                    type_: if unconfined {
                        "Unconfined"
                    } else {
                        "RuntimeDefault"
                    }
                    .into(),
                    ..Default::default()
                }),
                app_armor_profile: Some(AppArmorProfile {
                    type_: if unconfined {
                        "Unconfined"
                    } else {
                        "RuntimeDefault"
                    }
                    .into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            containers: vec![Container {
                name: role.as_str().into(),
                image: Some(image.to_string()),
                command: Some(command),
                args: (!args.is_empty()).then_some(args),
                env: Some(env),
                resources: Some(resources(config, role)),
                security_context: Some(SecurityContext {
                    allow_privilege_escalation: Some(false),
                    read_only_root_filesystem: Some(true),
                    privileged: Some(false),
                    capabilities: Some(Capabilities {
                        drop: Some(vec!["ALL".into()]),
                        ..Default::default()
                    }),
                    proc_mount: builds.then(|| "Unmasked".into()),
                    ..Default::default()
                }),
                volume_mounts: Some(vec![
                    VolumeMount {
                        name: "cache".into(),
                        mount_path: "/cache".into(),
                        ..Default::default()
                    },
                    VolumeMount {
                        name: "tmp".into(),
                        mount_path: "/tmp".into(),
                        ..Default::default()
                    },
                ]),
                ..Default::default()
            }],
            volumes: Some(vec![
                Volume {
                    name: "cache".into(),
                    empty_dir: Some(EmptyDirVolumeSource {
                        size_limit: Some(Quantity(format!("{}Gi", profile.disk_gib))),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
                Volume {
                    name: "tmp".into(),
                    empty_dir: Some(EmptyDirVolumeSource::default()),
                    ..Default::default()
                },
            ]),
            ..Default::default()
        }),
    }
}

/// One manifest of the output, tagged with its kind (serialised as a YAML document).
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum Manifest {
    ServiceAccount(Box<ServiceAccount>),
    NetworkPolicy(Box<NetworkPolicy>),
    CronJob(Box<CronJob>),
    Job(Box<Job>),
}

impl Manifest {
    /// The manifest as JSON with its `apiVersion` and `kind`.
    pub fn to_value(&self) -> serde_json::Value {
        use k8s_openapi::Resource;
        let (api, kind, v) = match self {
            Manifest::ServiceAccount(x) => (
                ServiceAccount::API_VERSION,
                ServiceAccount::KIND,
                serde_json::to_value(x),
            ),
            Manifest::NetworkPolicy(x) => (
                NetworkPolicy::API_VERSION,
                NetworkPolicy::KIND,
                serde_json::to_value(x),
            ),
            Manifest::CronJob(x) => (CronJob::API_VERSION, CronJob::KIND, serde_json::to_value(x)),
            Manifest::Job(x) => (Job::API_VERSION, Job::KIND, serde_json::to_value(x)),
        };
        let mut v = v.expect("a manifest serialises");
        v["apiVersion"] = api.into();
        v["kind"] = kind.into();
        v
    }
}

/// The farm's standing objects: service accounts, the build pods' network policy, the nightly plan.
pub fn farm_manifests(config: &FarmConfig) -> Result<Vec<Manifest>, KubernetesError> {
    let k = k8s(config)?;
    let mut out = Vec::new();
    for role in Role::ALL {
        let mut m = meta(config, config.name(role), role);
        if let Some(arn) = config.identity(role).aws_role_arn {
            m.annotations = Some(BTreeMap::from([(
                "eks.amazonaws.com/role-arn".to_string(),
                arn,
            )]));
        }
        out.push(Manifest::ServiceAccount(Box::new(ServiceAccount {
            metadata: m,
            automount_service_account_token: Some(false),
            ..Default::default()
        })));
    }
    // Build pods run untrusted code: no ingress, egress to the store and DNS only.
    let dns = NetworkPolicyEgressRule {
        to: Some(vec![NetworkPolicyPeer {
            namespace_selector: Some(LabelSelector {
                match_labels: Some(BTreeMap::from([(
                    "kubernetes.io/metadata.name".to_string(),
                    "kube-system".to_string(),
                )])),
                ..Default::default()
            }),
            pod_selector: Some(LabelSelector {
                match_labels: Some(BTreeMap::from([(
                    "k8s-app".to_string(),
                    "kube-dns".to_string(),
                )])),
                ..Default::default()
            }),
            ..Default::default()
        }]),
        ports: Some(
            ["UDP", "TCP"]
                .map(|p| NetworkPolicyPort {
                    protocol: Some(p.into()),
                    port: Some(IntOrString::Int(53)),
                    ..Default::default()
                })
                .to_vec(),
        ),
    };
    let store = NetworkPolicyEgressRule {
        to: Some(vec![NetworkPolicyPeer {
            ip_block: Some(IPBlock {
                cidr: k.store_cidr.clone(),
                ..Default::default()
            }),
            ..Default::default()
        }]),
        ports: Some(vec![NetworkPolicyPort {
            protocol: Some("TCP".into()),
            port: Some(IntOrString::Int(i32::from(k.store_port))),
            ..Default::default()
        }]),
    };
    out.push(Manifest::NetworkPolicy(Box::new(NetworkPolicy {
        metadata: meta(
            config,
            format!("{}-egress", config.name(Role::Worker)),
            Role::Worker,
        ),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector {
                match_labels: Some(BTreeMap::from([
                    (ROLE_LABEL.to_string(), Role::Worker.as_str().to_string()),
                    ("environment".to_string(), config.environment.clone()),
                ])),
                ..Default::default()
            }),
            policy_types: Some(vec!["Ingress".into(), "Egress".into()]),
            ingress: Some(vec![]),
            egress: Some(vec![dns, store]),
        }),
    })));
    // The nightly plan; its pod writes the plan to the farm's store.
    let mut args = crate::github::plan_args(config);
    args.extend(["--store".into(), config.store.url.clone()]);
    args.extend(["--out".into(), config.store.farm.clone(), "--json".into()]);
    let args = args.iter().map(|a| literal(a)).collect();
    let planner = config.profile(Role::Planner);
    out.push(Manifest::CronJob(Box::new(CronJob {
        metadata: meta(config, config.name(Role::Planner), Role::Planner),
        spec: Some(CronJobSpec {
            schedule: config.run.schedule.clone(),
            concurrency_policy: Some("Forbid".into()),
            job_template: JobTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels(config, Role::Planner)),
                    ..Default::default()
                }),
                spec: Some(JobSpec {
                    backoff_limit: Some(1),
                    active_deadline_seconds: Some(i64::from(planner.timeout_minutes) * 60),
                    template: pod(config, Role::Planner, args, vec![], None),
                    ..Default::default()
                }),
            },
            ..Default::default()
        }),
        ..Default::default()
    })));
    Ok(out)
}

/// The jobs of one run of plan `plan_url` (staging prefix `staging_url`): per runner label with shards, an
/// Indexed Job of that many completions, and the publish Job.
pub fn run_manifests(
    config: &FarmConfig,
    plan_id: &str,
    plan_url: &str,
    staging_url: &str,
    shards_per_runner: &BTreeMap<String, usize>,
) -> Result<Vec<Manifest>, KubernetesError> {
    k8s(config)?;
    let short: String = plan_id.chars().take(12).collect();
    let worker = config.profile(Role::Worker);
    let mut out = Vec::new();
    for (runner, &shards) in shards_per_runner {
        if shards == 0 {
            continue;
        }
        if !config.architectures.contains_key(runner) {
            return Err(KubernetesError::UnknownRunner(runner.clone()));
        }
        let mut args: Vec<String> = vec![
            "work".into(),
            "--plan".into(),
            literal(plan_url),
            "--runner".into(),
            literal(runner),
            // Kubernetes substitutes the pod's completion index.
            "--index".into(),
            "$(JOB_COMPLETION_INDEX)".into(),
            "--out".into(),
            literal(staging_url),
        ];
        if config.run.boot_test {
            // The plan carries each variant's kernel image: pods boot offline.
            args.push("--boot-test".into());
        }
        let shards = i32::try_from(shards).unwrap_or(i32::MAX);
        let name = format!(
            "{}-{}-{short}",
            config.name(Role::Worker),
            runner.replace('_', "-")
        );
        out.push(Manifest::Job(Box::new(Job {
            metadata: meta(config, name, Role::Worker),
            spec: Some(JobSpec {
                completion_mode: Some("Indexed".into()),
                completions: Some(shards),
                parallelism: Some(
                    i32::try_from(worker.max_parallel.max(1))
                        .unwrap_or(1)
                        .min(shards),
                ),
                // A shard that fails is retried once on its own; the others go on.
                backoff_limit_per_index: Some(1),
                max_failed_indexes: Some(shards),
                active_deadline_seconds: Some(i64::from(worker.timeout_minutes) * 60),
                template: pod(config, Role::Worker, args, vec![], Some(runner)),
                ..Default::default()
            }),
            ..Default::default()
        })));
    }
    let publisher = config.profile(Role::Publisher);
    let args = vec![
        "publish".into(),
        "--plan".into(),
        literal(plan_url),
        "--bundles".into(),
        literal(staging_url),
        "--store".into(),
        literal(&config.store.url),
    ];
    out.push(Manifest::Job(Box::new(Job {
        metadata: meta(
            config,
            format!("{}-{short}", config.name(Role::Publisher)),
            Role::Publisher,
        ),
        spec: Some(JobSpec {
            backoff_limit: Some(1),
            active_deadline_seconds: Some(i64::from(publisher.timeout_minutes) * 60),
            template: pod(config, Role::Publisher, args, vec![], None),
            ..Default::default()
        }),
        ..Default::default()
    })));
    Ok(out)
}

/// Manifests as one multi-document YAML stream.
pub fn to_yaml(manifests: &[Manifest]) -> String {
    let mut out =
        String::from("# Generated by `kmodfarm ci kubernetes`; regenerate rather than edit.\n");
    for m in manifests {
        out.push_str("---\n");
        out.push_str(&yaml_serde::to_string(&m.to_value()).expect("a manifest serialises"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> FarmConfig {
        crate::config::example_config()
    }

    #[test]
    fn build_pods_are_as_tight_as_bubblewrap_allows() {
        let c = config();
        let run = run_manifests(
            &c,
            &"ab".repeat(32),
            "s3://acme-kmods/farm/plans/x",
            "s3://acme-kmods/farm/staging/x",
            &BTreeMap::from([("x86_64".to_string(), 3), ("aarch64".to_string(), 0)]),
        )
        .unwrap();
        assert_eq!(
            run.len(),
            2,
            "one Indexed Job (aarch64 has no shard) and publish"
        );
        let job = run[0].to_value();
        assert_eq!(job["kind"], "Job");
        assert_eq!(job["spec"]["completionMode"], "Indexed");
        assert_eq!(job["spec"]["completions"], 3);
        let pod = &job["spec"]["template"]["spec"];
        assert_eq!(pod["hostUsers"], false);
        assert_eq!(pod["automountServiceAccountToken"], false);
        assert_eq!(pod["nodeSelector"]["kubernetes.io/arch"], "amd64");
        let ctr = &pod["containers"][0];
        assert_eq!(ctr["securityContext"]["privileged"], false);
        assert_eq!(ctr["securityContext"]["readOnlyRootFilesystem"], true);
        assert_eq!(ctr["securityContext"]["capabilities"]["drop"][0], "ALL");
        assert!(ctr["args"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a == "$(JOB_COMPLETION_INDEX)"));
        assert_eq!(job["metadata"]["labels"]["cost-center"], "cc-4711");

        let farm = farm_manifests(&c).unwrap();
        let yaml = to_yaml(&farm);
        assert!(yaml.contains(
            "eks.amazonaws.com/role-arn: arn:aws:iam::111122223333:role/kmodfarm-prod-worker"
        ));
        let policy = farm
            .iter()
            .map(Manifest::to_value)
            .find(|v| v["kind"] == "NetworkPolicy")
            .unwrap();
        assert_eq!(policy["spec"]["egress"].as_array().unwrap().len(), 2);
        assert_eq!(policy["spec"]["ingress"].as_array().unwrap().len(), 0);
    }

    /// Kubernetes expands `$(VAR)` in args and env values: a configuration value's `$` is doubled, so that
    /// `$(id)` (or a regex's `$`) reaches kmodfarm as written; only the completion index expands.
    #[test]
    fn configuration_values_are_not_expanded_by_kubernetes() {
        let mut c = config();
        c.run.plan_args.extend([
            "--kernel-release".to_string(),
            "^6\\.1$".to_string(),
            "$(KMODFARM_STORE)".to_string(),
        ]);
        let farm = farm_manifests(&c).unwrap();
        let cron = farm
            .iter()
            .map(Manifest::to_value)
            .find(|v| v["kind"] == "CronJob")
            .unwrap();
        let args: Vec<&str> = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
            [0]["args"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap())
            .collect();
        assert!(args.contains(&"^6\\.1$$"), "{args:?}");
        assert!(args.contains(&"$$(KMODFARM_STORE)"), "{args:?}");
        assert!(!args.iter().any(|a| a.contains("$(") && !a.contains("$$(")));
        assert_eq!(literal("a$b$$c"), "a$$b$$$$c");
    }
}
