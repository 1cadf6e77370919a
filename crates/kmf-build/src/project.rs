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
//! # Optional: which kernels the driver applies to. A kernel they rule out is *excluded* (not built, not a
//! # failure), decided from the kernel's release, architecture and `.config` before anything is compiled.
//! requires_config = ["CONFIG_KALLSYMS_ALL", "!CONFIG_PREEMPT_RT"]
//! arches = ["x86_64", "aarch64"]
//! kernel_min = "5.10"
//! kernel_max = "6.12"
//! # With a dkms.conf beside kmodfarm.toml, the build is the one dkms.conf describes; `dkms = false`
//! # ignores it.
//! dkms = true
//!
//! # Optional: what a host needs to load the modules (`kmodfarm install`).
//! [install]
//! dest = "updates/pair"          # under /lib/modules/<release>/: updates/… or extra/… (default extra/<driver>)
//! load_order = ["pair_producer", "pair_consumer"]
//! unload_first = ["in_tree_pair"] # in-tree modules the driver replaces
//! firmware = ["firmware/pair.bin"] # project files installed under /lib/firmware/
//! modprobe_conf = "pair.conf"    # options/alias/softdep/blacklist lines, installed as
//!                                # /etc/modprobe.d/kmodfarm-<driver>.conf
//! [install.params]
//! pair_producer = "greeting=hello"   # becomes `options pair_producer greeting=hello`
//!
//! # Optional: the boot test (`kmodfarm boot-test`, `--boot-test`).
//! [boot]
//! check = "tests/check.sh"      # run in the guest after loading; non-zero exit fails the test
//! timeout_secs = 60             # hard limit per boot
//! ```

use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};

use kmf_types::names;

use kmf_types::published::{Delivery, FirmwareFile};
use kmf_types::Arch;

use crate::applicability::{valid_config_requirement, Requirements};
use crate::dkms::{Literal, LiteralNames, DKMS_CONF, MAX_DKMS_BYTES};
use crate::untrusted::{Beneath, UntrustedError};
use crate::BuildError;

/// Largest `kmodfarm.toml` read.
const MAX_CONFIG_BYTES: u64 = 1 << 20;
/// Largest `[boot] check` script read.
const MAX_CHECK_SCRIPT_BYTES: u64 = 1 << 20;
/// Largest `[install] modprobe_conf` file read.
const MAX_MODPROBE_CONF_BYTES: u64 = 64 << 10;
/// Largest firmware file read (the largest in linux-firmware are tens of MiB).
const MAX_FIRMWARE_BYTES: u64 = 64 << 20;

/// The project directory, for reading its files without following links.
pub(crate) fn open_project(dir: &Path) -> Result<Beneath, BuildError> {
    Beneath::open(dir).map_err(|e| BuildError::Config {
        path: dir.to_path_buf(),
        msg: format!("not a readable directory: {e}"),
    })
}

/// The directory's own name (`driver` when it has none): a project's default name.
pub(crate) fn dir_name(dir: &Path) -> String {
    dir.canonicalize()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "driver".into())
}

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
    /// What a host needs to load the modules; separate from `build` so that it does not enter build keys
    /// (it is published with the modules).
    #[serde(default)]
    pub install: InstallSection,
    /// Directory of the kmodfarm.toml (not read from the file).
    #[serde(skip)]
    pub root: PathBuf,
    /// The `dkms.conf` the build follows, when the project has one and does not say `dkms = false`: what
    /// can be read of it without running it.
    #[serde(skip)]
    pub dkms: Option<LiteralNames>,
    /// The `[boot] check` script's content, read at load time without following links.
    #[serde(skip)]
    pub boot_check: Option<Vec<u8>>,
    /// The driver version the build runs as, once the command line, kmodfarm.toml and dkms.conf have
    /// been weighed ([`ProjectConfig::resolve_version`]).
    #[serde(skip)]
    pub resolved_version: Option<String>,
    /// `[install]` as published: the modprobe configuration's text and the firmware files' digests,
    /// read at load time without following links.
    #[serde(skip)]
    pub delivery: Delivery,
    /// The firmware files' content, in the order of `delivery.firmware`.
    #[serde(skip)]
    pub firmware: Vec<std::sync::Arc<Vec<u8>>>,
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
    // The fields below enter input keys only when set, so that the keys of projects without them stay
    // what they were.
    /// `CONFIG_X` the kernel must have (`y` or `m`), `!CONFIG_X` it must not.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub requires_config: Vec<String>,
    /// Architectures the driver builds for (default: all).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub arches: Vec<Arch>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel_min: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel_max: Option<String>,
    /// Follow the project's `dkms.conf` (default: when it has one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dkms: Option<bool>,
}

impl Default for BuildSection {
    fn default() -> Self {
        BuildSection {
            source_dir: dot(),
            make_args: vec![],
            modules: vec![],
            timeout_secs: None,
            steps: vec![],
            requires_config: vec![],
            arches: vec![],
            kernel_min: None,
            kernel_max: None,
            dkms: None,
        }
    }
}

/// The `[install]` section: how a host installs and loads the modules.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct InstallSection {
    /// Directory under `/lib/modules/<release>/` (`updates/pair`); starts with `updates` or `extra`
    /// (never over the distribution's in-tree modules under `kernel`).
    #[serde(default)]
    pub dest: Option<String>,
    /// Module names in the order they load (the rest after them, in record order).
    #[serde(default)]
    pub load_order: Vec<String>,
    /// Loaded (in-tree) modules to unload before loading the driver's.
    #[serde(default)]
    pub unload_first: Vec<String>,
    /// Project files installed under `/lib/firmware/` by their file name.
    #[serde(default)]
    pub firmware: Vec<String>,
    /// A project file installed as `/etc/modprobe.d/kmodfarm-<driver>.conf` (after the `params` lines):
    /// `options`, `alias`, `softdep` and `blacklist` lines only.
    #[serde(default)]
    pub modprobe_conf: Option<String>,
    /// Module name → its options, written as `options <module> <value>` lines.
    #[serde(default)]
    pub params: std::collections::BTreeMap<String, String>,
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
        let project = open_project(dir)?;
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
        if cfg.build.dkms != Some(false) {
            let conf = Path::new(&cfg.build.source_dir).join(DKMS_CONF);
            match project.read(&conf, MAX_DKMS_BYTES) {
                Ok(bytes) => {
                    if !cfg.build.steps.is_empty()
                        || !cfg.build.make_args.is_empty()
                        || !cfg.build.modules.is_empty()
                    {
                        return Err(config_err(
                            "the project has a dkms.conf, which says how to build it and which modules \
                             it makes, and kmodfarm.toml sets [[build.step]], make_args or modules: set \
                             `dkms = false` in [build] to build with those instead"
                                .into(),
                        ));
                    }
                    cfg.dkms = Some(LiteralNames::read(&String::from_utf8_lossy(&bytes)));
                }
                Err(UntrustedError::Missing { .. }) if cfg.build.dkms.is_none() => {}
                Err(e) => return Err(in_project(DKMS_CONF, e)),
            }
        }
        cfg.read_delivery(&project).map_err(config_err)?;
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
        for c in &self.build.requires_config {
            if !valid_config_requirement(c) {
                return Err(BuildError::Config {
                    path: path.to_path_buf(),
                    msg: format!(
                        "build.requires_config: `{}` is not CONFIG_NAME or !CONFIG_NAME",
                        names::printable(c)
                    ),
                });
            }
        }
        if let Some(dest) = &self.install.dest {
            let probe = format!("{}/x.ko", dest.trim_end_matches('/'));
            if !kmf_types::published::valid_destination(&probe) {
                return Err(BuildError::Config {
                    path: path.to_path_buf(),
                    msg: format!(
                        "install.dest `{}` must be updates/… or extra/… with plain directory names",
                        names::printable(dest)
                    ),
                });
            }
        }
        let mut firmware_names = std::collections::BTreeSet::new();
        for f in &self.install.firmware {
            relative("install.firmware entry", f)?;
            let name = Path::new(f)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            if !kmf_types::published::valid_firmware_name(&name) || !firmware_names.insert(name) {
                return Err(BuildError::Config {
                    path: path.to_path_buf(),
                    msg: format!(
                        "install.firmware `{}`: firmware files install under /lib/firmware by their file \
                         name, which must be a plain name of its own",
                        names::printable(f)
                    ),
                });
            }
        }
        if let Some(f) = &self.install.modprobe_conf {
            relative("install.modprobe_conf", f)?;
        }
        for (what, list) in [
            ("install.load_order", &self.install.load_order),
            ("install.unload_first", &self.install.unload_first),
        ] {
            for m in list.iter().chain(self.install.params.keys()) {
                if !kmf_types::published::valid_module_name(m) {
                    return Err(BuildError::Config {
                        path: path.to_path_buf(),
                        msg: format!("{what}: `{}` is not a module name", names::printable(m)),
                    });
                }
            }
        }
        for (module, value) in &self.install.params {
            if value.contains(['\n', '\r', '\0']) {
                return Err(BuildError::Config {
                    path: path.to_path_buf(),
                    msg: format!("install.params.{module}: one line of options"),
                });
            }
        }
        for s in &self.build.steps {
            relative("build.step.dir", &s.dir)?;
            for e in &s.extra_symbols {
                relative("build.step.extra_symbols entry", e)?;
            }
        }
        Ok(())
    }

    /// Reads what `[install]` names into [`ProjectConfig::delivery`] and the firmware's bytes.
    fn read_delivery(&mut self, project: &Beneath) -> Result<(), String> {
        use sha2::{Digest, Sha256};
        let install = &self.install;
        let mut conf = String::new();
        for (module, options) in &install.params {
            conf.push_str(&format!("options {module} {options}\n"));
        }
        if let Some(file) = &install.modprobe_conf {
            let bytes = project
                .read(Path::new(file), MAX_MODPROBE_CONF_BYTES)
                .map_err(|e| format!("install.modprobe_conf: {e}"))?;
            conf.push_str(&String::from_utf8_lossy(&bytes));
            if !conf.ends_with('\n') {
                conf.push('\n');
            }
        }
        // Installed as root on every host: no `install`/`remove` commands (see check_modprobe_conf).
        kmf_types::published::check_modprobe_conf(&conf)
            .map_err(|e| format!("install.modprobe_conf/params: {e}"))?;
        let mut firmware = Vec::new();
        let mut bytes_of = Vec::new();
        for path in &install.firmware {
            let bytes = project
                .read(Path::new(path), MAX_FIRMWARE_BYTES)
                .map_err(|e| format!("install.firmware `{}`: {e}", names::printable(path)))?;
            let name = Path::new(path)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            firmware.push(FirmwareFile {
                file_name: format!("firmware-{name}"),
                name,
                sha256: hex::encode(Sha256::digest(&bytes)),
                size: bytes.len() as u64,
            });
            bytes_of.push(std::sync::Arc::new(bytes));
        }
        self.delivery = Delivery {
            load_order: install.load_order.clone(),
            unload_first: install.unload_first.clone(),
            modprobe_conf: (!conf.is_empty()).then_some(conf),
            firmware,
        };
        self.firmware = bytes_of;
        Ok(())
    }

    /// Settles the driver version: the command line's, else kmodfarm.toml's, else a plain
    /// `PACKAGE_VERSION=` of dkms.conf, else `0.0.0`. A dkms.conf that computes its version needs one of
    /// the first two, since the version names the store's directories before any kernel is evaluated.
    pub fn resolve_version(&mut self, command_line: Option<&str>) -> Result<String, BuildError> {
        let version = match (
            command_line,
            &self.driver.version,
            self.dkms_literal_version(),
        ) {
            (Some(v), _, _) => v.to_string(),
            (None, Some(v), _) => v.clone(),
            (None, None, Some(Literal::Plain(v))) => v.clone(),
            (None, None, Some(Literal::Computed(raw))) => {
                return Err(BuildError::Config {
                    path: self.root.join(DKMS_CONF),
                    msg: format!(
                        "PACKAGE_VERSION={} is computed when dkms.conf runs; give the version with \
                         --driver-version or [driver] version in kmodfarm.toml",
                        names::printable(raw)
                    ),
                })
            }
            (None, None, None) => "0.0.0".to_string(),
        };
        self.resolved_version = Some(version.clone());
        Ok(version)
    }

    /// The kernels the driver applies to, from `[build]`.
    pub fn requirements(&self) -> Requirements {
        Requirements {
            config: self.build.requires_config.clone(),
            arches: self.build.arches.clone(),
            kernel_min: self.build.kernel_min.clone(),
            kernel_max: self.build.kernel_max.clone(),
        }
    }

    /// True when the build follows the project's `dkms.conf`.
    pub fn uses_dkms(&self) -> bool {
        self.dkms.is_some()
    }

    /// The version `dkms.conf` gives in a plain `PACKAGE_VERSION=` line, for a DKMS package without a
    /// version in `kmodfarm.toml`.
    pub fn dkms_literal_version(&self) -> Option<&Literal> {
        self.dkms.as_ref()?.version.as_ref()
    }

    /// The version a DKMS build runs as (`$module_version`): kmodfarm.toml's, else dkms.conf's plain one.
    pub fn dkms_version(&self) -> String {
        self.resolved_version
            .clone()
            .unwrap_or_else(|| "0.0.0".into())
    }

    pub fn name(&self) -> String {
        if let Some(name) = &self.driver.name {
            return name.clone();
        }
        if let Some(Literal::Plain(name)) = self.dkms.as_ref().and_then(|d| d.name.as_ref()) {
            return name.clone();
        }
        dir_name(&self.root)
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

    #[test]
    fn dkms_conf_requirements_and_install() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        std::fs::write(
            p.join("dkms.conf"),
            "PACKAGE_NAME=kmf-x\nPACKAGE_VERSION=\"$(cat VERSION)\"\n",
        )
        .unwrap();
        // dkms.conf alone: followed; its computed version needs one from elsewhere.
        let mut cfg = ProjectConfig::load(p).unwrap();
        assert!(cfg.uses_dkms());
        assert_eq!(cfg.name(), "kmf-x");
        let err = cfg.resolve_version(None).unwrap_err().to_string();
        assert!(err.contains("--driver-version"), "{err}");
        assert_eq!(cfg.resolve_version(Some("1.0.0")).unwrap(), "1.0.0");
        // Steps beside dkms.conf are a conflict; `dkms = false` settles it.
        let toml = p.join("kmodfarm.toml");
        for conflict in [
            "[[build.step]]\ndir = '.'\n",
            "[build]\nmodules = ['x.ko']\n",
        ] {
            std::fs::write(&toml, conflict).unwrap();
            let err = ProjectConfig::load(p).unwrap_err().to_string();
            assert!(err.contains("dkms = false"), "{err}");
        }
        std::fs::write(&toml, "[build]\ndkms = false\n[[build.step]]\ndir = '.'\n").unwrap();
        assert!(!ProjectConfig::load(p).unwrap().uses_dkms());
        // `dkms = true` without the file is an error, not a silent kbuild.
        std::fs::remove_file(p.join("dkms.conf")).unwrap();
        std::fs::write(&toml, "[build]\ndkms = true\n").unwrap();
        assert!(ProjectConfig::load(p).is_err());

        std::fs::write(
            &toml,
            "[build]\nrequires_config = ['CONFIG_KALLSYMS_ALL', '!CONFIG_PREEMPT_RT']\n\
             arches = ['aarch64']\nkernel_min = '5.10'\n",
        )
        .unwrap();
        let r = ProjectConfig::load(p).unwrap().requirements();
        assert_eq!(r.config.len(), 2);
        assert_eq!(r.arches, [Arch::Aarch64]);
        assert_eq!(r.kernel_min.as_deref(), Some("5.10"));
        for bad in [
            "[build]\nrequires_config = ['KALLSYMS']\n",
            "[build]\narches = ['sparc']\n",
            "[install]\ndest = '/etc'\n",
            "[install]\ndest = 'updates/../../etc'\n",
            "[install]\nload_order = ['a b']\n",
            "[install]\nfirmware = ['../secret.bin']\n",
            "[install.params]\nhello = \"x=1\\ninstall hello /bin/sh\"\n",
            "[install]\ndest = 'kernel/fs'\n",
        ] {
            std::fs::write(&toml, bad).unwrap();
            assert!(ProjectConfig::load(p).is_err(), "{bad}");
        }

        // A modprobe file may not run commands on hosts.
        std::fs::write(
            p.join("evil.conf"),
            "install x /bin/sh -c 'id > /tmp/pwned'\n",
        )
        .unwrap();
        std::fs::write(&toml, "[install]\nmodprobe_conf = 'evil.conf'\n").unwrap();
        let err = ProjectConfig::load(p).unwrap_err().to_string();
        assert!(
            err.contains("only options, alias, softdep and blacklist"),
            "{err}"
        );

        std::fs::create_dir_all(p.join("fw")).unwrap();
        std::fs::write(p.join("fw/x.bin"), b"FW").unwrap();
        std::fs::write(p.join("x.conf"), "blacklist y").unwrap();
        std::fs::write(
            &toml,
            "[install]\ndest = 'updates/x'\nfirmware = ['fw/x.bin']\nmodprobe_conf = 'x.conf'\n\
             load_order = ['x_core', 'x']\n[install.params]\nx = 'debug=1'\n",
        )
        .unwrap();
        let cfg = ProjectConfig::load(p).unwrap();
        let d = &cfg.delivery;
        assert_eq!(
            d.modprobe_conf.as_deref(),
            Some("options x debug=1\nblacklist y\n")
        );
        assert_eq!(d.firmware[0].name, "x.bin");
        assert_eq!(d.firmware[0].file_name, "firmware-x.bin");
        assert_eq!(d.firmware[0].size, 2);
        assert_eq!(cfg.firmware[0].as_slice(), b"FW");
        assert_eq!(d.load_order, ["x_core", "x"]);
    }
}
