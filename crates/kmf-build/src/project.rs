//! The driver project's `kmodfarm.toml`.
//!
//! ```toml
//! [driver]
//! name = "pair"                 # default: the directory name
//! version = "0.1.1"             # default driver version (`--driver-version` overrides)
//!
//! [build]
//! source_dir = "."              # relative to kmodfarm.toml
//! make_args = ["EXTRA_CFLAGS=-DFOO"]
//! modules = ["producer/pair_producer.ko", "consumer/pair_consumer.ko"]  # must all be produced
//! timeout_secs = 1200
//!
//! # Optional: several kbuild runs in order, e.g. a library module whose Module.symvers the next one needs.
//! [[build.step]]
//! dir = "producer"
//! [[build.step]]
//! dir = "consumer"
//! extra_symbols = ["producer"]  # KBUILD_EXTRA_SYMBOLS=<producer>/Module.symvers
//!
//! # Optional: the boot test (`kmodfarm boot-test`, `--boot-test`).
//! [boot]
//! check = "tests/check.sh"      # run in the guest after loading; non-zero exit fails the test
//! timeout_secs = 60             # hard limit per boot
//! ```

use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::BuildError;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProjectConfig {
    #[serde(default)]
    pub driver: DriverSection,
    #[serde(default)]
    pub build: BuildSection,
    /// Boot-test settings; separate from `build` so that they do not enter build keys.
    #[serde(default)]
    pub boot: BootSection,
    /// Directory of the kmodfarm.toml (not read from the file).
    #[serde(skip)]
    pub root: PathBuf,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DriverSection {
    pub name: Option<String>,
    pub version: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BuildSection {
    #[serde(default = "dot")]
    pub source_dir: String,
    #[serde(default)]
    pub make_args: Vec<String>,
    #[serde(default)]
    pub modules: Vec<String>,
    #[serde(default)]
    pub timeout_secs: Option<u64>,
    #[serde(default, rename = "step")]
    pub steps: Vec<BuildStep>,
}

impl Default for BuildSection {
    fn default() -> Self {
        BuildSection {
            source_dir: dot(),
            make_args: vec![],
            modules: vec![],
            timeout_secs: None,
            steps: vec![],
        }
    }
}

fn dot() -> String {
    ".".into()
}

/// The `[boot]` section: how the boot test treats this project's modules.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct BootSection {
    /// A shell script (relative to the project) run in the guest by busybox `sh` after every module
    /// loaded; a non-zero exit status fails the boot test.
    #[serde(default)]
    pub check: Option<String>,
    /// Hard limit per boot, in seconds.
    #[serde(default)]
    pub timeout_secs: Option<u64>,
}

/// One `make M=<dir> modules` run.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct BuildStep {
    #[serde(default = "dot")]
    pub dir: String,
    /// Directories (of earlier steps) whose Module.symvers this step links against.
    #[serde(default)]
    pub extra_symbols: Vec<String>,
    #[serde(default)]
    pub make_args: Vec<String>,
}

impl ProjectConfig {
    /// Reads `<dir>/kmodfarm.toml`; a directory without one builds with the defaults (one kbuild run in the
    /// directory, every produced `.ko` collected).
    pub fn load(dir: &Path) -> Result<ProjectConfig, BuildError> {
        let path = dir.join("kmodfarm.toml");
        let mut cfg = match std::fs::read_to_string(&path) {
            Ok(text) => toml::from_str::<ProjectConfig>(&text).map_err(|e| BuildError::Config {
                path: path.clone(),
                msg: e.to_string(),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if !dir.is_dir() {
                    return Err(BuildError::Config {
                        path: dir.to_path_buf(),
                        msg: "not a directory".into(),
                    });
                }
                ProjectConfig::default()
            }
            Err(e) => return Err(BuildError::io("read", &path)(e)),
        };
        cfg.root = dir.to_path_buf();
        cfg.validate(&path)?;
        Ok(cfg)
    }

    fn validate(&self, path: &Path) -> Result<(), BuildError> {
        let relative = |what: &str, p: &str| -> Result<(), BuildError> {
            let ok = Path::new(p)
                .components()
                .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
            if ok {
                Ok(())
            } else {
                Err(BuildError::Config {
                    path: path.to_path_buf(),
                    msg: format!("{what} `{p}` must be a relative path inside the project"),
                })
            }
        };
        relative("build.source_dir", &self.build.source_dir)?;
        for m in &self.build.modules {
            relative("build.modules entry", m)?;
        }
        if let Some(check) = &self.boot.check {
            relative("boot.check", check)?;
        }
        for s in &self.build.steps {
            relative("build.step.dir", &s.dir)?;
            for e in &s.extra_symbols {
                relative("build.step.extra_symbols entry", e)?;
            }
        }
        Ok(())
    }

    pub fn name(&self) -> String {
        self.driver.name.clone().unwrap_or_else(|| {
            self.root
                .canonicalize()
                .ok()
                .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
                .unwrap_or_else(|| "driver".into())
        })
    }

    /// The boot test's check script, if the project has one.
    pub fn boot_check_script(&self) -> Option<PathBuf> {
        self.boot.check.as_ref().map(|c| self.root.join(c))
    }

    pub fn source_dir(&self) -> PathBuf {
        self.root.join(&self.build.source_dir)
    }

    /// The kbuild runs, in order: the configured steps, or one run at the source root.
    pub fn steps(&self) -> Vec<BuildStep> {
        if self.build.steps.is_empty() {
            vec![BuildStep {
                dir: dot(),
                extra_symbols: vec![],
                make_args: vec![],
            }]
        } else {
            self.build.steps.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_steps_and_refuses_escapes() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("kmodfarm.toml"),
            "[driver]\nname='pair'\n[build]\nmodules=['a/a.ko']\n[[build.step]]\ndir='a'\n[[build.step]]\ndir='b'\nextra_symbols=['a']\n",
        )
        .unwrap();
        let cfg = ProjectConfig::load(dir.path()).unwrap();
        assert_eq!(cfg.steps().len(), 2);
        assert_eq!(cfg.steps()[1].extra_symbols, ["a"]);

        std::fs::write(
            dir.path().join("kmodfarm.toml"),
            "[build]\nsource_dir='../../etc'\n",
        )
        .unwrap();
        assert!(ProjectConfig::load(dir.path()).is_err());
        std::fs::write(dir.path().join("kmodfarm.toml"), "[build]\nbogus=1\n").unwrap();
        let err = ProjectConfig::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("bogus"), "{err}");
    }

    #[test]
    fn boot_section() {
        let dir = tempfile::tempdir().unwrap();
        let toml = dir.path().join("kmodfarm.toml");
        std::fs::write(&toml, "[boot]\ncheck='t/check.sh'\ntimeout_secs=30\n").unwrap();
        let cfg = ProjectConfig::load(dir.path()).unwrap();
        assert_eq!(cfg.boot.timeout_secs, Some(30));
        assert_eq!(cfg.boot_check_script(), Some(dir.path().join("t/check.sh")));
        std::fs::write(&toml, "[build]\n").unwrap();
        assert_eq!(
            ProjectConfig::load(dir.path()).unwrap().boot_check_script(),
            None
        );
        std::fs::write(&toml, "[boot]\ncheck='/etc/passwd'\n").unwrap();
        assert!(ProjectConfig::load(dir.path()).is_err());
        std::fs::write(&toml, "[boot]\nbogus=1\n").unwrap();
        assert!(ProjectConfig::load(dir.path()).is_err());
    }
}
