//! `kmodfarm init`: a commented `kmodfarm.toml` for a project, filled in from its `dkms.conf` when it
//! has one. What `dkms.conf` says is read from its plain assignments only (nothing runs): the template
//! states the build follows `dkms.conf`, names its package and modules, and leaves every other setting
//! as a commented default.

use std::path::{Path, PathBuf};

use kmf_types::names;

use crate::dkms::{literal_assignments, Literal, DKMS_CONF, MAX_DKMS_BYTES};
use crate::untrusted::UntrustedError;
use crate::BuildError;

/// What `init` wrote.
#[derive(Debug, Clone, serde::Serialize)]
pub struct InitReport {
    pub path: PathBuf,
    /// True when the template was filled in from `dkms.conf`.
    pub from_dkms_conf: bool,
    pub name: String,
}

/// Writes `<dir>/kmodfarm.toml` (refusing to replace one unless `force`).
pub fn init_project(dir: &Path, force: bool) -> Result<InitReport, BuildError> {
    let path = dir.join("kmodfarm.toml");
    let config_err = |msg: String| BuildError::Config {
        path: path.clone(),
        msg,
    };
    let project = crate::project::open_project(dir)?;
    let dkms = match project.read(Path::new(DKMS_CONF), MAX_DKMS_BYTES) {
        Ok(bytes) => Some(String::from_utf8_lossy(&bytes).into_owned()),
        Err(UntrustedError::Missing { .. }) => None,
        Err(e) => return Err(config_err(format!("{DKMS_CONF}: {e}"))),
    };
    let (text, name) = template(&crate::project::dir_name(dir), dkms.as_deref());
    // The template must load as the project's configuration (a name read from dkms.conf that is no
    // name is refused here, not on the first build).
    toml::from_str::<crate::ProjectConfig>(&text)
        .map_err(|e| config_err(format!("the template does not parse: {e}")))?;
    let mut open = std::fs::OpenOptions::new();
    open.write(true);
    if force {
        open.create(true).truncate(true);
    } else {
        open.create_new(true);
    }
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = open
        .custom_flags(libc::O_NOFOLLOW)
        .mode(0o644)
        .open(&path)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => config_err("exists; --force replaces it".into()),
            _ => config_err(e.to_string()),
        })?;
    std::io::Write::write_all(&mut file, text.as_bytes())
        .map_err(BuildError::io("write", &path))?;
    Ok(InitReport {
        path,
        from_dkms_conf: dkms.is_some(),
        name,
    })
}

/// A TOML string (quoted and escaped).
fn quoted(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// Text from `dkms.conf` for a comment: one line, printable.
fn comment_text(s: &str) -> String {
    names::printable(s).replace(['\n', '\r'], " ")
}

/// The directory's name when it is a driver name, else `driver`.
fn dir_name_or_default(dir_name: &str) -> String {
    if names::check_name("name", dir_name).is_ok() {
        dir_name.to_string()
    } else {
        "driver".to_string()
    }
}

/// The template and the driver name it gives.
pub fn template(dir_name: &str, dkms_conf: Option<&str>) -> (String, String) {
    let mut out = String::new();
    let Some(conf) = dkms_conf else {
        let name = dir_name_or_default(dir_name);
        out.push_str(&format!(
            "# kmodfarm.toml for {name}, written by `kmodfarm init`. Every setting is optional.\n\n\
             [driver]\nname = {}\nversion = \"0.1.0\"                 # --driver-version overrides\n\n\
             [build]\n\
             source_dir = \".\"                 # where the Kbuild/Makefile is, relative to this file\n\
             # make_args = [\"EXTRA_CFLAGS=-DFOO\"]\n\
             # modules = [\"{name}.ko\"]           # modules that must be produced (default: every .ko)\n\
             # timeout_secs = 1200\n\
             # Several kbuild runs in order, e.g. a library module whose Module.symvers the next needs:\n\
             # [[build.step]]\n# dir = \"core\"\n# [[build.step]]\n# dir = \"client\"\n\
             # extra_symbols = [\"core\"]\n",
            quoted(&name)
        ));
        out.push_str(COMMON_TAIL);
        return (out, name);
    };
    let assignments = literal_assignments(conf);
    let plain = |key: &str, index: usize| {
        assignments.iter().rev().find_map(|(k, i, v)| match v {
            Literal::Plain(v) if k == key && *i == index => Some(v.clone()),
            _ => None,
        })
    };
    let computed = |key: &str| {
        assignments
            .iter()
            .any(|(k, _, v)| k == key && matches!(v, Literal::Computed(_)))
    };
    let name = plain("PACKAGE_NAME", 0)
        .filter(|n| names::check_name("name", n).is_ok())
        .unwrap_or_else(|| dir_name_or_default(dir_name));
    // Name and version stay dkms.conf's (commented out here): set here, they would win over it, and a
    // version bump in dkms.conf would go unseen.
    out.push_str(&format!(
        "# kmodfarm.toml for {}, written by `kmodfarm init` from its dkms.conf.\n\
         # The build follows dkms.conf (MAKE/MAKE_MATCH, PATCH/PATCH_MATCH, PRE_BUILD/POST_BUILD, BUILT_MODULE_*,\n\
         # DEST_MODULE_*, STRIP, BUILD_EXCLUSIVE_*), evaluated for every kernel inside the build sandbox.\n\
         # What is set here takes precedence over it.\n\n[driver]\n\
         # name = {}                 # default: dkms.conf's PACKAGE_NAME\n",
        comment_text(&name),
        quoted(&name)
    ));
    match plain("PACKAGE_VERSION", 0).filter(|v| names::check_name("version", v).is_ok()) {
        Some(v) if !computed("PACKAGE_VERSION") => {
            out.push_str(&format!(
                "# version = {}              # default: dkms.conf's PACKAGE_VERSION\n",
                quoted(&v)
            ));
        }
        _ => out.push_str(
            "# dkms.conf computes PACKAGE_VERSION (or it is no plain version): give one here or with\n\
             # --driver-version.\n# version = \"1.0.0\"\n",
        ),
    }
    out.push_str("\n[build]\ndkms = true                        # false: ignore dkms.conf\n");
    let mut modules = Vec::new();
    for i in 0..64 {
        let (built, dest) = (
            plain("BUILT_MODULE_NAME", i),
            plain("DEST_MODULE_LOCATION", i),
        );
        if built.is_none() && dest.is_none() {
            break;
        }
        modules.push(format!(
            "{} ({})",
            built.unwrap_or_else(|| name.clone()),
            dest.unwrap_or_else(|| crate::dkms::DEFAULT_DEST.into())
        ));
    }
    if !modules.is_empty() {
        out.push_str(&format!(
            "# dkms.conf's modules: {}\n",
            comment_text(&modules.join(", "))
        ));
    }
    let exclusive: Vec<String> = [
        "BUILD_EXCLUSIVE_KERNEL",
        "BUILD_EXCLUSIVE_KERNEL_MIN",
        "BUILD_EXCLUSIVE_KERNEL_MAX",
        "BUILD_EXCLUSIVE_ARCH",
        "BUILD_EXCLUSIVE_CONFIG",
    ]
    .iter()
    .filter_map(|k| plain(k, 0).map(|v| format!("{k}={v}")))
    .collect();
    if !exclusive.is_empty() {
        out.push_str(&format!(
            "# dkms.conf rules out kernels with {}; kernels it rules out are reported as excluded.\n",
            comment_text(&exclusive.join(", "))
        ));
    }
    out.push_str(
        "# More requirements on the kernel (checked against its .config before anything is compiled):\n\
         # requires_config = [\"CONFIG_MODULES\"]\n# arches = [\"x86_64\", \"aarch64\"]\n\
         # kernel_min = \"5.10\"\n# kernel_max = \"6.12\"\n# timeout_secs = 1200\n",
    );
    out.push_str(COMMON_TAIL);
    (out, name)
}

const COMMON_TAIL: &str =
    "\n# What a host needs to load the modules (`kmodfarm install`).\n[install]\n\
# dest = \"updates/kmodfarm\"        # under /lib/modules/<release>/ (default extra/<driver>)\n\
# load_order = []                   # module names, in the order they load\n\
# unload_first = []                 # in-tree modules to unload first\n\
# firmware = []                     # project files installed under /lib/firmware/\n\
# modprobe_conf = \"modprobe.conf\"   # options/alias/softdep/blacklist lines -> /etc/modprobe.d/kmodfarm-<driver>.conf\n\
# [install.params]\n# module_name = \"option=value\"\n\
\n# The boot test (`--boot-test`): the target kernel boots in QEMU and loads the modules.\n[boot]\n\
# check = \"tests/check.sh\"         # run in the guest after loading; non-zero fails the test\n\
# timeout_secs = 60\n";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dkms_package_gets_its_names_modules_and_exclusions() {
        let conf =
            "PACKAGE_NAME=\"kmf-pair\"\nPACKAGE_VERSION=2.0.1\nBUILT_MODULE_NAME[0]=kmf_core\n\
                    DEST_MODULE_LOCATION[0]=/updates/dkms\nBUILT_MODULE_NAME[1]=\"kmf_client\"\n\
                    DEST_MODULE_LOCATION[1]=\"/extra\"\nBUILD_EXCLUSIVE_ARCH=\"x86_64\"\n";
        let (text, name) = template("dir", Some(conf));
        assert_eq!(name, "kmf-pair");
        assert!(text.contains("# name = \"kmf-pair\""), "{text}");
        assert!(text.contains("# version = \"2.0.1\""), "{text}");
        assert!(
            text.contains("kmf_core (/updates/dkms), kmf_client (/extra)"),
            "{text}"
        );
        assert!(text.contains("BUILD_EXCLUSIVE_ARCH=x86_64"), "{text}");
        let cfg: crate::ProjectConfig = toml::from_str(&text).unwrap();
        assert_eq!(cfg.build.dkms, Some(true));
    }

    #[test]
    fn computed_or_hostile_values_do_not_reach_the_toml() {
        let conf = "PACKAGE_NAME='x\"\n[evil]'\nPACKAGE_VERSION=\"$(cat VERSION)\"\n";
        let (text, name) = template("mydrv", Some(conf));
        assert_eq!(name, "mydrv", "no name, the directory's");
        assert_eq!(template("my drv", Some(conf)).1, "driver");
        assert!(text.contains("# version = \"1.0.0\""), "{text}");
        toml::from_str::<crate::ProjectConfig>(&text).unwrap();
        let (text, name) = template("hello", None);
        assert_eq!(name, "hello");
        toml::from_str::<crate::ProjectConfig>(&text).unwrap();
    }

    #[test]
    fn init_writes_once_and_the_project_loads() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("kmf-x");
        std::fs::create_dir_all(&p).unwrap();
        std::fs::write(
            p.join("dkms.conf"),
            "PACKAGE_NAME=kmf-x\nPACKAGE_VERSION=1.2\nBUILT_MODULE_NAME[0]=kmf_x\n",
        )
        .unwrap();
        let report = init_project(&p, false).unwrap();
        assert!(report.from_dkms_conf);
        let err = init_project(&p, false).unwrap_err().to_string();
        assert!(err.contains("--force"), "{err}");
        init_project(&p, true).unwrap();
        let mut cfg = crate::ProjectConfig::load(&p).unwrap();
        assert!(cfg.uses_dkms());
        assert_eq!(cfg.name(), "kmf-x");
        assert_eq!(cfg.resolve_version(None).unwrap(), "1.2");
    }
}
