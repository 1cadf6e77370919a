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
//! # A dkms.conf kept elsewhere (packaging that copies it to the top before running DKMS): its path,
//! # relative to kmodfarm.toml; the paths it names stay relative to the top, which stays the build root.
//! dkms_conf = "packaging/dkms/dkms.conf"
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
use crate::dkms::{has_placeholder, Literal, LiteralNames, DKMS_CONF, MAX_DKMS_BYTES};
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
    /// The version is dkms.conf's computed `PACKAGE_VERSION` as evaluated before any kernel
    /// ([`crate::dkms_version`]): each kernel's evaluation must come to the same.
    #[serde(skip)]
    pub version_evaluated: bool,
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
    /// Where the `dkms.conf` is, relative to the project root, when it is not `<source_dir>/dkms.conf`
    /// (drivers whose packaging keeps it in a folder of its own and copies it to the top before running
    /// DKMS). It is evaluated as if it were at the top of the source directory, which stays the build root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dkms_conf: Option<String>,
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
            dkms_conf: None,
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
            let conf = cfg.dkms_conf_path();
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
                Err(UntrustedError::Missing { .. })
                    if cfg.build.dkms.is_none() && cfg.build.dkms_conf.is_none() => {}
                Err(e) => {
                    let what = match cfg.build.dkms_conf {
                        Some(_) => "build.dkms_conf",
                        None => DKMS_CONF,
                    };
                    return Err(in_project(what, e));
                }
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
        if let Some(v) = &self.driver.version {
            names::check_version("driver.version", v).map_err(|e| BuildError::Config {
                path: path.to_path_buf(),
                msg: e.to_string(),
            })?;
        }
        relative("build.source_dir", &self.build.source_dir)?;
        if let Some(conf) = &self.build.dkms_conf {
            relative("build.dkms_conf", conf)?;
            let bad = |why: String| BuildError::Config {
                path: path.to_path_buf(),
                msg: format!("build.dkms_conf `{}` {why}", names::printable(conf)),
            };
            if self.build.dkms == Some(false) {
                return Err(bad(
                    "names a dkms.conf and `dkms = false` says to ignore it".into(),
                ));
            }
            if in_source_dir(&self.build.source_dir, conf).is_none() {
                return Err(bad(format!(
                    "must lie inside build.source_dir `{}`, the tree the build copies and runs in",
                    names::printable(&self.build.source_dir)
                )));
            }
        }
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
    /// `PACKAGE_VERSION=` of dkms.conf, else `0.0.0`; the result must be a version
    /// ([`names::check_version`]).
    ///
    /// A `PACKAGE_VERSION` holding an install script's placeholder (`#VERSION#`, `@VERSION@`), which the
    /// driver's packaging replaces before DKMS sees it, takes the version from the checkout when the user
    /// gives none: `git describe --tags --always` of the project's work tree, logged as derived. A
    /// `PACKAGE_VERSION` that is computed (`"$(cat VERSION)"`) is evaluated in the sandbox before any
    /// kernel by the caller ([`ProjectConfig::computed_version`], [`crate::dkms_version`]); here, without
    /// a sandbox, it must be given.
    pub fn resolve_version(&mut self, command_line: Option<&str>) -> Result<String, BuildError> {
        let conf_path = self.root.join(self.dkms_conf_path());
        let needs_one = |why: String| BuildError::Config {
            path: conf_path.clone(),
            msg: format!(
                "{why}; give the version with --driver-version or [driver] version in kmodfarm.toml"
            ),
        };
        let (version, what) = match (
            command_line,
            &self.driver.version,
            self.dkms_literal_version(),
        ) {
            (Some(v), _, _) => (v.to_string(), "--driver-version"),
            (None, Some(v), _) => (v.clone(), "driver.version"),
            (None, None, Some(Literal::Plain(v))) if has_placeholder(v) => {
                match git_describe(&self.root) {
                    Some(derived) => {
                        tracing::info!(
                            "driver version {} derived from `git describe --tags --always` of {} \
                             (dkms.conf's PACKAGE_VERSION is the placeholder {}; --driver-version sets one)",
                            names::printable(&derived),
                            self.root.display(),
                            names::printable(v)
                        );
                        (derived, "the version derived with git describe")
                    }
                    None => {
                        return Err(needs_one(format!(
                            "PACKAGE_VERSION={} is a placeholder that the driver's install script replaces, \
                             and the project is no git work tree to derive a version from",
                            names::printable(v)
                        )))
                    }
                }
            }
            (None, None, Some(Literal::Plain(v))) => (v.clone(), "dkms.conf's PACKAGE_VERSION"),
            (None, None, Some(Literal::Computed(raw))) => {
                return Err(needs_one(format!(
                "PACKAGE_VERSION={} is computed, and this command runs no dkms.conf to evaluate it",
                names::printable(raw)
            )))
            }
            (None, None, None) => ("0.0.0".to_string(), "the default version"),
        };
        names::check_version(what, &version).map_err(|e| match what {
            "dkms.conf's PACKAGE_VERSION" => needs_one(e.to_string()),
            "--driver-version" => BuildError::Config {
                path: self.root.clone(),
                msg: e.to_string(),
            },
            _ => BuildError::Config {
                path: self.root.join("kmodfarm.toml"),
                msg: e.to_string(),
            },
        })?;
        self.resolved_version = Some(version.clone());
        Ok(version)
    }

    /// dkms.conf's `PACKAGE_VERSION` as written, when it is computed and nothing else gives the version
    /// (`command_line`, `[driver] version`): it must then be evaluated ([`crate::dkms_version::evaluate`])
    /// and given to [`ProjectConfig::settle_evaluated_version`].
    pub fn computed_version(&self, command_line: Option<&str>) -> Option<&str> {
        match (
            command_line,
            &self.driver.version,
            self.dkms_literal_version(),
        ) {
            (None, None, Some(Literal::Computed(raw))) => Some(raw),
            _ => None,
        }
    }

    /// Takes the version dkms.conf's computed `PACKAGE_VERSION` evaluated to, already checked by the
    /// evaluation, and logs where it came from.
    pub fn settle_evaluated_version(&mut self, version: &str) -> String {
        if let Some(raw) = self.computed_version(None) {
            tracing::info!(
                "driver version {} evaluated from dkms.conf's PACKAGE_VERSION={} in the sandbox",
                names::printable(version),
                names::printable(raw)
            );
        }
        self.resolved_version = Some(version.to_string());
        self.version_evaluated = true;
        version.to_string()
    }

    /// Where the project's `dkms.conf` is, relative to the project root: `[build] dkms_conf`, else
    /// `<source_dir>/dkms.conf`.
    pub fn dkms_conf_path(&self) -> PathBuf {
        match &self.build.dkms_conf {
            Some(p) => PathBuf::from(p),
            None => Path::new(&self.build.source_dir).join(DKMS_CONF),
        }
    }

    /// The `dkms.conf` path relative to the source directory, where the build runs: what the sandbox
    /// sources.
    pub fn dkms_conf_in_source(&self) -> String {
        self.build
            .dkms_conf
            .as_deref()
            .and_then(|p| in_source_dir(&self.build.source_dir, p))
            .unwrap_or_else(|| DKMS_CONF.to_string())
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

/// `path` (relative to the project root) relative to `source_dir`, or `None` when it lies outside it.
fn in_source_dir(source_dir: &str, path: &str) -> Option<String> {
    let plain = |p: &str| -> Vec<String> {
        Path::new(p)
            .components()
            .filter_map(|c| match c {
                Component::Normal(n) => Some(n.to_string_lossy().into_owned()),
                _ => None,
            })
            .collect()
    };
    let (source, path) = (plain(source_dir), plain(path));
    (path.len() > source.len() && path.starts_with(&source)).then(|| path[source.len()..].join("/"))
}

/// Longest a `git describe` may take before the version is given up as underivable.
const GIT_DESCRIBE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// `git describe --tags --always` of the git work tree `dir` is in, when it is one and the answer is a
/// version. The work tree is the user's own checkout (kmodfarm's git sources are checked out by kmodfarm):
/// git reads its configuration as any git command there would, but nothing that would run a program of the
/// repository's choosing (a file system monitor, a pager) is let in, and the environment's `GIT_DIR`,
/// `GIT_WORK_TREE` and the like cannot point it elsewhere (`GIT_CEILING_DIRECTORIES` still bounds the
/// search for the work tree, as the user set it).
fn git_describe(dir: &Path) -> Option<String> {
    let git = |args: &[&str]| -> Option<String> {
        let mut child = std::process::Command::new("git")
            .arg("-C")
            .arg(dir)
            .args([
                "-c",
                "core.fsmonitor=false",
                "-c",
                "core.pager=cat",
                "--no-pager",
            ])
            .args(args)
            .env_remove("GIT_DIR")
            .env_remove("GIT_WORK_TREE")
            .env_remove("GIT_INDEX_FILE")
            .env_remove("GIT_OBJECT_DIRECTORY")
            .env_remove("GIT_ALTERNATE_OBJECT_DIRECTORIES")
            .env_remove("GIT_NAMESPACE")
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("LC_ALL", "C")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .ok()?;
        let start = std::time::Instant::now();
        loop {
            match child.try_wait().ok()? {
                Some(status) if status.success() => break,
                Some(_) => return None,
                None if start.elapsed() > GIT_DESCRIBE_TIMEOUT => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return None;
                }
                None => std::thread::sleep(std::time::Duration::from_millis(20)),
            }
        }
        let mut out = String::new();
        std::io::Read::read_to_string(&mut child.stdout.take()?, &mut out).ok()?;
        Some(out.trim().to_string())
    };
    if git(&["rev-parse", "--is-inside-work-tree"])? != "true" {
        return None;
    }
    let version = git(&["describe", "--tags", "--always"])?;
    names::check_version("version", &version).ok()?;
    Some(version)
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

    /// A project with `dkms.conf` (at `conf`, relative) saying `PACKAGE_VERSION=<version>`.
    fn dkms_project(dir: &Path, conf: &str, version: &str) -> PathBuf {
        let p = dir.join("kmf-shape");
        let conf = p.join(conf);
        std::fs::create_dir_all(conf.parent().unwrap()).unwrap();
        std::fs::write(
            conf,
            format!("PACKAGE_NAME=kmf-shape\nPACKAGE_VERSION={version}\n"),
        )
        .unwrap();
        p
    }

    fn git(dir: &Path, args: &[&str]) {
        let out = std::process::Command::new("git")
            .arg("-C")
            .arg(dir)
            .args([
                "-c",
                "user.name=kmodfarm",
                "-c",
                "user.email=kmodfarm@example.invalid",
            ])
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "git {args:?}: {out:?}");
    }

    #[test]
    fn a_debian_style_version_with_a_tilde() {
        let dir = tempfile::tempdir().unwrap();
        let p = dkms_project(dir.path(), "dkms.conf", "\"1.0~rc1\"");
        let mut cfg = ProjectConfig::load(&p).unwrap();
        assert_eq!(cfg.resolve_version(None).unwrap(), "1.0~rc1");
        assert_eq!(cfg.resolve_version(Some("2.0~beta2")).unwrap(), "2.0~beta2");
        std::fs::write(p.join("kmodfarm.toml"), "[driver]\nversion = '3~rc1'\n").unwrap();
        let mut cfg = ProjectConfig::load(&p).unwrap();
        assert_eq!(cfg.resolve_version(None).unwrap(), "3~rc1");
        // Still no path: a `~` first, a `/` or `..` are refused.
        for bad in ["~1", "1/../x", "1 2"] {
            let err = cfg.resolve_version(Some(bad)).unwrap_err().to_string();
            assert!(err.contains("--driver-version"), "{bad}: {err}");
        }
        std::fs::write(p.join("kmodfarm.toml"), "[driver]\nversion = '~x'\n").unwrap();
        let err = ProjectConfig::load(&p).unwrap_err().to_string();
        assert!(err.contains("driver.version"), "{err}");
    }

    #[test]
    fn a_placeholder_takes_the_given_version_or_fails_saying_how_to_give_one() {
        let dir = tempfile::tempdir().unwrap();
        for placeholder in [
            "\"#VERSION#\"",
            "#MODULE_VERSION#",
            "@VERSION@",
            "'1.0-@GITREV@'",
        ] {
            let p = dkms_project(dir.path(), "dkms.conf", placeholder);
            let mut cfg = ProjectConfig::load(&p).unwrap();
            let err = cfg.resolve_version(None).unwrap_err().to_string();
            assert!(
                err.contains("placeholder")
                    && err.contains("--driver-version")
                    && err.contains("[driver] version"),
                "{placeholder}: {err}"
            );
            assert_eq!(cfg.resolve_version(Some("1.4.2")).unwrap(), "1.4.2");
            std::fs::write(p.join("kmodfarm.toml"), "[driver]\nversion = '0.9'\n").unwrap();
            assert_eq!(
                ProjectConfig::load(&p)
                    .unwrap()
                    .resolve_version(None)
                    .unwrap(),
                "0.9"
            );
            std::fs::remove_file(p.join("kmodfarm.toml")).unwrap();
        }
    }

    #[test]
    fn a_placeholder_in_a_git_work_tree_takes_git_describe() {
        let dir = tempfile::tempdir().unwrap();
        let p = dkms_project(dir.path(), "dkms.conf", "\"#VERSION#\"");
        git(&p, &["init", "--quiet"]);
        // No commit yet: nothing to describe.
        let err = ProjectConfig::load(&p)
            .unwrap()
            .resolve_version(None)
            .unwrap_err();
        assert!(err.to_string().contains("--driver-version"), "{err}");
        git(&p, &["add", "dkms.conf"]);
        git(&p, &["commit", "--quiet", "-m", "first"]);
        let untagged = ProjectConfig::load(&p)
            .unwrap()
            .resolve_version(None)
            .unwrap();
        assert!(
            untagged.len() >= 7 && untagged.bytes().all(|b| b.is_ascii_hexdigit()),
            "{untagged}"
        );
        git(&p, &["tag", "v0.3"]);
        assert_eq!(
            ProjectConfig::load(&p)
                .unwrap()
                .resolve_version(None)
                .unwrap(),
            "v0.3"
        );
        std::fs::write(p.join("x.c"), "").unwrap();
        git(&p, &["add", "x.c"]);
        git(&p, &["commit", "--quiet", "-m", "second"]);
        let v = ProjectConfig::load(&p)
            .unwrap()
            .resolve_version(None)
            .unwrap();
        assert!(v.starts_with("v0.3-1-g"), "{v}");
        // The user's version still wins.
        assert_eq!(
            ProjectConfig::load(&p)
                .unwrap()
                .resolve_version(Some("1.0"))
                .unwrap(),
            "1.0"
        );
        // A tag that is no version is not used.
        git(&p, &["tag", "-a", "-m", "x", "bad#tag"]);
        assert!(ProjectConfig::load(&p)
            .unwrap()
            .resolve_version(None)
            .is_err());
    }

    #[test]
    fn a_dkms_conf_in_a_packaging_folder() {
        let dir = tempfile::tempdir().unwrap();
        let p = dkms_project(dir.path(), "packaging/dkms/dkms.conf", "1.2.3");
        // Not at the top: without kmodfarm.toml naming it, the project has no dkms.conf.
        assert!(!ProjectConfig::load(&p).unwrap().uses_dkms());
        let toml = p.join("kmodfarm.toml");
        std::fs::write(&toml, "[build]\ndkms_conf = 'packaging/dkms/dkms.conf'\n").unwrap();
        let mut cfg = ProjectConfig::load(&p).unwrap();
        assert!(cfg.uses_dkms());
        assert_eq!(cfg.name(), "kmf-shape");
        assert_eq!(cfg.resolve_version(None).unwrap(), "1.2.3");
        assert_eq!(cfg.dkms_conf_in_source(), "packaging/dkms/dkms.conf");
        assert_eq!(cfg.source_dir(), p.join("."));
        // Under a source directory: sourced relative to it.
        std::fs::write(
            &toml,
            "[build]\nsource_dir = 'packaging'\ndkms_conf = './packaging/dkms/dkms.conf'\n",
        )
        .unwrap();
        assert_eq!(
            ProjectConfig::load(&p).unwrap().dkms_conf_in_source(),
            "dkms/dkms.conf"
        );
        for (text, needle) in [
            (
                "[build]\ndkms_conf = '../dkms.conf'\n",
                "relative path inside the project",
            ),
            (
                "[build]\ndkms_conf = '/etc/dkms.conf'\n",
                "relative path inside the project",
            ),
            (
                "[build]\ndkms_conf = 'missing/dkms.conf'\n",
                "does not exist",
            ),
            (
                "[build]\ndkms = false\ndkms_conf = 'packaging/dkms/dkms.conf'\n",
                "dkms = false",
            ),
            (
                "[build]\nsource_dir = 'src'\ndkms_conf = 'packaging/dkms/dkms.conf'\n",
                "inside build.source_dir",
            ),
        ] {
            std::fs::create_dir_all(p.join("src")).unwrap();
            std::fs::write(&toml, text).unwrap();
            let err = ProjectConfig::load(&p).unwrap_err().to_string();
            assert!(err.contains(needle), "{text}: {err}");
        }
        // Read without following links, as every project file.
        std::fs::create_dir_all(p.join("linked")).unwrap();
        std::os::unix::fs::symlink(
            p.join("packaging/dkms/dkms.conf"),
            p.join("linked/dkms.conf"),
        )
        .unwrap();
        std::fs::write(&toml, "[build]\ndkms_conf = 'linked/dkms.conf'\n").unwrap();
        let err = ProjectConfig::load(&p).unwrap_err().to_string();
        assert!(
            err.contains("symbolic link") && err.contains("build.dkms_conf"),
            "{err}"
        );
    }
}
