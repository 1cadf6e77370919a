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

use kmf_types::names;

use crate::untrusted::{Beneath, UntrustedError};
use crate::BuildError;

/// Largest `kmodfarm.toml` read.
const MAX_CONFIG_BYTES: u64 = 1 << 20;
/// Largest `[boot] check` script read.
const MAX_CHECK_SCRIPT_BYTES: u64 = 1 << 20;

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
    /// The `[boot] check` script's content, read at load time without following links.
    #[serde(skip)]
    pub boot_check: Option<Vec<u8>>,
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
    ///
    /// The project's files are untrusted: `kmodfarm.toml`, the source directory and the check script are
    /// reached without following any link (a link there is refused, so that no file of the host is read in
    /// their place), names and versions are checked before anything else happens.
    pub fn load(dir: &Path) -> Result<ProjectConfig, BuildError> {
        let path = dir.join("kmodfarm.toml");
        let config_err = |msg: String| BuildError::Config {
            path: path.clone(),
            msg,
        };
        let project = Beneath::open(dir).map_err(|e| BuildError::Config {
            path: dir.to_path_buf(),
            msg: format!("not a readable directory: {e}"),
        })?;
        let text = match project.read(Path::new("kmodfarm.toml"), MAX_CONFIG_BYTES) {
            Ok(bytes) => {
                Ok(String::from_utf8(bytes).map_err(|_| config_err("not UTF-8 text".into()))?)
            }
            Err(UntrustedError::Missing { .. }) => Err(()),
            Err(e) => return Err(config_err(e.to_string())),
        };
        let mut cfg = match text {
            Ok(text) => toml::from_str::<ProjectConfig>(&text)
                .map_err(|e| config_err(names::printable(&e.to_string()).into_owned()))?,
            Err(()) => {
                if !dir.is_dir() {
                    return Err(BuildError::Config {
                        path: dir.to_path_buf(),
                        msg: "not a directory".into(),
                    });
                }
                ProjectConfig::default()
            }
        };
        cfg.root = dir.to_path_buf();
        cfg.validate(&path)?;
        let in_project = |what: &str, e: UntrustedError| config_err(format!("{what}: {e}"));
        project
            .require_dir(Path::new(&cfg.build.source_dir))
            .map_err(|e| in_project("build.source_dir", e))?;
        if let Some(check) = &cfg.boot.check {
            cfg.boot_check = Some(
                project
                    .read(Path::new(check), MAX_CHECK_SCRIPT_BYTES)
                    .map_err(|e| in_project("boot.check", e))?,
            );
        }
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
        let named = |what: &str, value: &Option<String>| -> Result<(), BuildError> {
            match value {
                Some(v) => names::check_name(what, v).map_err(|e| BuildError::Config {
                    path: path.to_path_buf(),
                    msg: e.to_string(),
                }),
                None => Ok(()),
            }
        };
        named("driver.name", &self.driver.name)?;
        named("driver.version", &self.driver.version)?;
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

    /// The boot test's check script, if the project has one: its content as read at load time.
    pub fn boot_check_script(&self) -> Option<&[u8]> {
        self.boot_check.as_deref()
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
    fn names_links_and_escapes_are_refused_up_front() {
        use std::os::unix::fs::symlink;
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("secret");
        std::fs::create_dir_all(&secret).unwrap();
        std::fs::write(secret.join("secret.txt"), "KMF-SECRET-CONTENT = 1\n").unwrap();
        let p = dir.path().join("p");
        std::fs::create_dir_all(&p).unwrap();
        let toml = p.join("kmodfarm.toml");
        for (text, needle) in [
            ("[driver]\nname='../../../../tmp/x'\n", "driver.name"),
            ("[driver]\nname='/abs'\n", "driver.name"),
            ("[driver]\nname='x\\u001b]0;t\\u0007'\n", "driver.name"),
            ("[driver]\nversion='..'\n", "driver.version"),
            ("[driver]\nversion='1.0/../../x'\n", "driver.version"),
        ] {
            std::fs::write(&toml, text).unwrap();
            let err = ProjectConfig::load(&p).unwrap_err().to_string();
            assert!(err.contains(needle), "{text}: {err}");
            assert!(!err.contains('\u{1b}'), "{err}");
        }
        // A source directory or check script that is a link into the host.
        symlink(&secret, p.join("src")).unwrap();
        std::fs::write(&toml, "[build]\nsource_dir='src'\n").unwrap();
        let err = ProjectConfig::load(&p).unwrap_err().to_string();
        assert!(err.contains("symbolic link"), "{err}");
        symlink(secret.join("secret.txt"), p.join("check.sh")).unwrap();
        std::fs::write(&toml, "[boot]\ncheck='check.sh'\n").unwrap();
        let err = ProjectConfig::load(&p).unwrap_err().to_string();
        assert!(err.contains("symbolic link"), "{err}");
        // kmodfarm.toml itself: a link is not read (a parse error would print the file's lines).
        std::fs::remove_file(&toml).unwrap();
        symlink(secret.join("secret.txt"), &toml).unwrap();
        let err = ProjectConfig::load(&p).unwrap_err().to_string();
        assert!(err.contains("symbolic link"), "{err}");
        assert!(!err.contains("KMF-SECRET"), "{err}");
    }

    #[test]
    fn boot_section() {
        let dir = tempfile::tempdir().unwrap();
        let toml = dir.path().join("kmodfarm.toml");
        std::fs::write(&toml, "[boot]\ncheck='t/check.sh'\ntimeout_secs=30\n").unwrap();
        let err = ProjectConfig::load(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("boot.check") && err.contains("does not exist"),
            "{err}"
        );
        std::fs::create_dir_all(dir.path().join("t")).unwrap();
        std::fs::write(dir.path().join("t/check.sh"), "exit 0\n").unwrap();
        let cfg = ProjectConfig::load(dir.path()).unwrap();
        assert_eq!(cfg.boot.timeout_secs, Some(30));
        assert_eq!(cfg.boot_check_script(), Some(&b"exit 0\n"[..]));
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
