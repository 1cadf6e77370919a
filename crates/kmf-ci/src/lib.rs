//! The farm on CI engines: one configuration file ([`config::FarmConfig`]) says where the store is, which
//! runners and nodes serve each CPU architecture, what each role's workers get (CPU, memory, disk, time)
//! and which identity each role has; from it kmodfarm writes what the engines need to run `plan`, `work`
//! and `publish` with least privilege: IAM policy documents per role ([`iam`]), the GitHub Actions workflow
//! ([`github`]), Kubernetes manifests ([`kubernetes`]) and the GitLab CI pipeline ([`gitlab`]).

pub mod config;
pub mod github;
pub mod gitlab;
pub mod iam;
pub mod kubernetes;
pub mod values;

pub use config::{ConfigError, FarmConfig, Role};
