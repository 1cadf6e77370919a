//! Least-privilege AWS IAM policy documents, one per role, over the farm's bucket prefixes; and the trust
//! policies that let a role be assumed only by that role's jobs (GitHub OIDC for workflow jobs, EKS IRSA for
//! pods and runner scale sets).
//!
//! | role | store (`store.url`) | `plans/` | `cache/sha256/` | `staging/` | `git-cache/` |
//! |---|---|---|---|---|---|
//! | planner | read | write | write | – | read |
//! | worker | – | read | read | write | – |
//! | publisher | read, write, delete | read | read | read | – |
//! | boot tester | read | – | – | – | – |
//! | git-cache updater | – | – | – | – | read, write, delete |
//!
//! "Read" includes `s3:ListBucket` limited (by `s3:prefix`) to the same prefixes: without it S3 answers a
//! request for a missing object with 403 instead of 404, and kmodfarm must tell "absent" from "refused".
//! Writing includes `s3:AbortMultipartUpload` (large files are uploaded in parts).

use serde::Serialize;
use serde_json::{json, Value};

use crate::config::{FarmConfig, Role, S3Location};

/// GitHub's OIDC issuer, as IAM names its provider.
pub const GITHUB_OIDC_ISSUER: &str = "token.actions.githubusercontent.com";

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct PolicyDocument {
    pub version: &'static str,
    pub statement: Vec<Statement>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Statement {
    pub sid: String,
    pub effect: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub principal: Option<Value>,
    pub action: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub resource: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub condition: Option<Value>,
}

/// What a role may do under one prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    Read,
    Write,
    ReadWrite,
    ReadWriteDelete,
}

const GET: &str = "s3:GetObject";
const PUT: &str = "s3:PutObject";
const DELETE: &str = "s3:DeleteObject";
const ABORT: &str = "s3:AbortMultipartUpload";
const LIST: &str = "s3:ListBucket";

/// The farm prefixes (under `store.farm`).
pub const PLANS: &str = "plans";
pub const CACHE: &str = "cache/sha256";
pub const STAGING: &str = "staging";
pub const GIT_CACHE: &str = "git-cache";

/// (where, which prefix under it or "" for all of it, access) for each role.
fn grants(role: Role) -> Vec<(Place, &'static str, Access)> {
    use Access::*;
    use Place::*;
    match role {
        Role::Planner => vec![
            (Store, "", Read),
            (Farm, PLANS, ReadWrite),
            (Farm, CACHE, ReadWrite),
            (Farm, GIT_CACHE, Read),
        ],
        Role::Worker => vec![
            (Farm, PLANS, Read),
            (Farm, CACHE, Read),
            (Farm, STAGING, Write),
        ],
        Role::Publisher => vec![
            (Store, "", ReadWriteDelete),
            (Farm, PLANS, Read),
            (Farm, CACHE, Read),
            (Farm, STAGING, Read),
        ],
        Role::BootTester => vec![(Store, "", Read)],
        Role::GitCache => vec![(Farm, GIT_CACHE, ReadWriteDelete)],
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    Store,
    Farm,
}

fn sid(s: &str) -> String {
    s.split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect()
}

/// The permissions policy of `role`.
pub fn role_policy(config: &FarmConfig, role: Role) -> PolicyDocument {
    let (store, farm) = (config.store_location(), config.farm_location());
    let mut statements = Vec::new();
    for (place, sub, access) in grants(role) {
        let (loc, place_name): (&S3Location, &str) = match place {
            Place::Store => (&store, "store"),
            Place::Farm => (&farm, sub),
        };
        let prefix = match sub {
            "" => loc.prefix.clone(),
            s => loc.key(s),
        };
        let objects = match prefix.is_empty() {
            true => format!("arn:aws:s3:::{}/*", loc.bucket),
            false => format!("arn:aws:s3:::{}/{prefix}/*", loc.bucket),
        };
        let mut actions: Vec<&str> = match access {
            Access::Read => vec![GET],
            Access::Write => vec![PUT, ABORT],
            Access::ReadWrite => vec![GET, PUT, ABORT],
            Access::ReadWriteDelete => vec![GET, PUT, ABORT, DELETE],
        };
        actions.sort();
        statements.push(Statement {
            sid: sid(&format!("{place_name} objects")),
            effect: "Allow",
            principal: None,
            action: actions.iter().map(|a| a.to_string()).collect(),
            resource: vec![objects],
            condition: None,
        });
        if access != Access::Write {
            let listed = match prefix.is_empty() {
                true => vec!["*".to_string()],
                false => vec![prefix.clone(), format!("{prefix}/*")],
            };
            statements.push(Statement {
                sid: sid(&format!("list {place_name}")),
                effect: "Allow",
                principal: None,
                action: vec![LIST.into()],
                resource: vec![format!("arn:aws:s3:::{}", loc.bucket)],
                condition: Some(json!({ "StringLike": { "s3:prefix": listed } })),
            });
        }
    }
    PolicyDocument {
        version: "2012-10-17",
        statement: statements,
    }
}

/// Who may assume `role`: the workflow's jobs of that role through GitHub's OIDC provider (planner and
/// publisher jobs; the publisher only from its protected environment), and the role's Kubernetes service
/// account through the cluster's OIDC provider (IRSA), which is how workers on self-hosted runners and
/// build pods get their credentials without any secret in the job.
pub fn trust_policy(config: &FarmConfig, role: Role) -> PolicyDocument {
    let account = &config.store.account_id;
    let mut statements = Vec::new();
    if let Some(gh) = &config.github {
        let subject = match role {
            Role::Publisher => Some(format!(
                "repo:{}:environment:{}",
                gh.repository, gh.publish_environment
            )),
            Role::Planner | Role::BootTester | Role::GitCache => Some(format!(
                "repo:{}:ref:refs/heads/{}",
                gh.repository, gh.branch
            )),
            // Build jobs get no token at all (`permissions: {}`): their runner's identity is the worker's.
            Role::Worker => None,
        };
        if let Some(subject) = subject {
            statements.push(web_identity(
                "GithubActions",
                account,
                GITHUB_OIDC_ISSUER,
                "sts.amazonaws.com",
                &subject,
            ));
        }
    }
    if let Some(gl) = &config.gitlab {
        // GitLab's ID tokens name the project and ref, not the job: each role's trusted job asks for a token
        // whose audience is the role's name, and only the protected branch's pipelines get one.
        let trusted = matches!(
            role,
            Role::Planner | Role::Publisher | Role::BootTester | Role::GitCache
        );
        if let (true, Some(issuer), Some(project)) = (trusted, &gl.oidc_issuer, &gl.project_path) {
            statements.push(web_identity(
                "GitlabCi",
                account,
                issuer,
                &config.name(role),
                &format!("project_path:{project}:ref_type:branch:ref:{}", gl.branch),
            ));
        }
    }
    if let Some(k8s) = &config.kubernetes {
        if let Some(issuer) = &k8s.oidc_provider {
            statements.push(web_identity(
                "KubernetesServiceAccount",
                account,
                issuer,
                "sts.amazonaws.com",
                &format!(
                    "system:serviceaccount:{}:{}",
                    k8s.namespace,
                    config.name(role)
                ),
            ));
        }
    }
    PolicyDocument {
        version: "2012-10-17",
        statement: statements,
    }
}

/// Trust in tokens of the OIDC provider `issuer` registered in `account`, for the audience `aud` and the
/// subject `sub` exactly: the one shape GitHub's, GitLab's and a Kubernetes cluster's tokens take.
fn web_identity(sid: &str, account: &str, issuer: &str, aud: &str, sub: &str) -> Statement {
    Statement {
        sid: sid.into(),
        effect: "Allow",
        principal: Some(json!({
            "Federated": format!("arn:aws:iam::{account}:oidc-provider/{issuer}")
        })),
        action: vec!["sts:AssumeRoleWithWebIdentity".into()],
        resource: vec![],
        condition: Some(json!({ "StringEquals": {
            format!("{issuer}:aud"): aud,
            format!("{issuer}:sub"): sub,
        }})),
    }
}

/// Every document `kmodfarm ci iam` writes: `<name>.policy.json` and `<name>.trust.json` per role.
pub fn documents(config: &FarmConfig) -> Vec<(String, PolicyDocument)> {
    let mut out = Vec::new();
    for role in Role::ALL {
        let name = config.name(role);
        out.push((format!("{name}.policy.json"), role_policy(config, role)));
        out.push((format!("{name}.trust.json"), trust_policy(config, role)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> FarmConfig {
        crate::config::example_config()
    }

    fn allowed(doc: &PolicyDocument, action: &str, resource: &str) -> bool {
        doc.statement.iter().any(|s| {
            s.action.iter().any(|a| a == action)
                && s.resource.iter().any(|r| match r.strip_suffix('*') {
                    Some(p) => resource.starts_with(p),
                    None => resource == r,
                })
        })
    }

    #[test]
    fn each_role_gets_its_prefixes_and_nothing_else() {
        let c = config();
        let modules = "arn:aws:s3:::acme-kmods/modules/hello/0.1.0/x/hello.ko";
        let plan = "arn:aws:s3:::acme-kmods/farm/plans/ab/plan.json";
        let cache = "arn:aws:s3:::acme-kmods/farm/cache/sha256/ab";
        let staging = "arn:aws:s3:::acme-kmods/farm/staging/ab/shard-0/x";
        let git = "arn:aws:s3:::acme-kmods/farm/git-cache/x.tar";
        let table: [(Role, &str, &str, bool); 20] = [
            (Role::Worker, PUT, staging, true),
            (Role::Worker, GET, plan, true),
            (Role::Worker, GET, cache, true),
            (Role::Worker, GET, modules, false),
            (Role::Worker, PUT, modules, false),
            (Role::Worker, PUT, plan, false),
            (Role::Worker, PUT, cache, false),
            (Role::Worker, GET, staging, false),
            (Role::Planner, GET, modules, true),
            (Role::Planner, PUT, modules, false),
            (Role::Planner, PUT, plan, true),
            (Role::Planner, PUT, staging, false),
            (Role::Publisher, PUT, modules, true),
            (Role::Publisher, DELETE, modules, true),
            (Role::Publisher, GET, staging, true),
            (Role::Publisher, PUT, staging, false),
            (Role::Publisher, PUT, git, false),
            (Role::BootTester, PUT, modules, false),
            (Role::GitCache, PUT, git, true),
            (Role::GitCache, GET, modules, false),
        ];
        for (role, action, resource, want) in table {
            let doc = role_policy(&c, role);
            assert_eq!(
                allowed(&doc, action, resource),
                want,
                "{role} {action} {resource}"
            );
        }
    }

    #[test]
    fn trust_names_the_repository_branch_environment_and_service_account() {
        let c = config();
        let publisher = serde_json::to_string(&trust_policy(&c, Role::Publisher)).unwrap();
        assert!(publisher.contains("repo:acme/kernel-drivers:environment:kmodfarm-prod-publish"));
        let planner = serde_json::to_string(&trust_policy(&c, Role::Planner)).unwrap();
        assert!(planner.contains("repo:acme/kernel-drivers:ref:refs/heads/main"));
        let worker = serde_json::to_string(&trust_policy(&c, Role::Worker)).unwrap();
        assert!(!worker.contains("GithubActions"), "{worker}");
        assert!(worker.contains("system:serviceaccount:kmodfarm-prod:kmodfarm-prod-worker"));
        // GitLab: the trusted jobs' ID tokens, one audience per role, from the protected branch only.
        assert!(publisher.contains(
            r#""gitlab.acme.example:aud":"kmodfarm-prod-publisher","gitlab.acme.example:sub":"project_path:acme/kernel-drivers:ref_type:branch:ref:main""#
        ), "{publisher}");
        assert!(planner.contains(r#""gitlab.acme.example:aud":"kmodfarm-prod-planner""#));
        assert!(!worker.contains("GitlabCi"), "{worker}");
        assert_eq!(documents(&c).len(), 10);
    }
}
