//! `kmodfarm init`: a commented `kmodfarm.toml` for a project, filled in from its `dkms.conf` when it
//! has one. What `dkms.conf` says is read from its plain assignments only (nothing runs): the template
//! states the build follows `dkms.conf`, names its package and modules, and leaves every other setting
//! as a commented default. A project without `dkms.conf` at the top whose packaging keeps the only one
//! in a folder of its own (`packaging/dkms/dkms.conf`) gets `dkms_conf = "<path>"` ([`find_dkms_conf`]).

use std::path::{Path, PathBuf};

use kmf_types::names;

use crate::dkms::{literal_assignments, Literal, DKMS_CONF, MAX_DKMS_BYTES};
use crate::untrusted::{Beneath, EntryKind, UntrustedError};
use crate::BuildError;

/// What `init` wrote.
#[derive(Debug, Clone, serde::Serialize)]
pub struct InitReport {
    pub path: PathBuf,
    /// True when the template was filled in from `dkms.conf`.
    pub from_dkms_conf: bool,
    /// The `dkms.conf` it was filled in from, when that is not the one at the top (relative to the
    /// project, as written into `[build] dkms_conf`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dkms_conf: Option<String>,
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
    let (dkms, below) = match project.read(Path::new(DKMS_CONF), MAX_DKMS_BYTES) {
        Ok(bytes) => (Some(String::from_utf8_lossy(&bytes).into_owned()), None),
        Err(UntrustedError::Missing { .. }) => match find_dkms_conf(&project) {
            Found::One(rel) => {
                let bytes = project
                    .read(Path::new(&rel), MAX_DKMS_BYTES)
                    .map_err(|e| config_err(format!("{}: {e}", names::printable(&rel))))?;
                (
                    Some(String::from_utf8_lossy(&bytes).into_owned()),
                    Some(rel),
                )
            }
            Found::None => (None, None),
            Found::Several(paths) => {
                let (mut text, name) = template(&crate::project::dir_name(dir), None);
                text.insert_str(
                    0,
                    &format!(
                        "# Several dkms.conf below the top ({}): to build the one DKMS reads, set\n\
                         # dkms_conf = \"<its path>\" in [build] and remove the kbuild settings.\n",
                        comment_text(&paths.join(", "))
                    ),
                );
                return write(dir, &path, (text, name), false, None, force);
            }
        },
        Err(e) => return Err(config_err(format!("{DKMS_CONF}: {e}"))),
    };
    let (mut text, name) = template(&crate::project::dir_name(dir), dkms.as_deref());
    if let Some(rel) = &below {
        // Kept in a packaging folder and copied to the top before DKMS runs, so its paths are the top's.
        text = text.replacen(
            "\n[build]\n",
            &format!(
                "\n[build]\ndkms_conf = {}   # found below the top; its paths are relative to the top\n",
                quoted(rel)
            ),
            1,
        );
    }
    let from_dkms_conf = dkms.is_some();
    write(dir, &path, (text, name), from_dkms_conf, below, force)
}

/// Checks the template and puts it in place.
fn write(
    dir: &Path,
    path: &Path,
    (text, name): (String, String),
    from_dkms_conf: bool,
    dkms_conf: Option<String>,
    force: bool,
) -> Result<InitReport, BuildError> {
    let config_err = |msg: String| BuildError::Config {
        path: path.to_path_buf(),
        msg,
    };
    // The template must load as the project's configuration (a name read from dkms.conf that is no
    // name is refused here, not on the first build).
    toml::from_str::<crate::ProjectConfig>(&text)
        .map_err(|e| config_err(format!("the template does not parse: {e}")))?;
    place(dir, path, text.as_bytes(), force).map_err(|e| match e.kind() {
        std::io::ErrorKind::AlreadyExists => config_err("exists; --force replaces it".into()),
        _ => config_err(e.to_string()),
    })?;
    Ok(InitReport {
        path: path.to_path_buf(),
        from_dkms_conf,
        dkms_conf,
        name,
    })
}

/// How deep below the top [`find_dkms_conf`] looks (`install_files/dkms/dkms.conf` is 2 directories down).
const FIND_DEPTH: usize = 4;
/// How many directory entries it looks at in all, so that a huge tree (a vendored kernel) costs little.
const FIND_ENTRIES: usize = 20_000;

/// What [`find_dkms_conf`] found below the top.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    None,
    /// Exactly one, relative to the project.
    One(String),
    /// More than one: which is DKMS's is for the user to say.
    Several(Vec<String>),
}

/// The `dkms.conf` files below the project's top, at most [`FIND_DEPTH`] directories down: reached without
/// following any link (a link is neither read nor entered), hidden directories (`.git`) skipped, at most
/// [`FIND_ENTRIES`] entries looked at.
pub fn find_dkms_conf(project: &Beneath) -> Found {
    let mut found = Vec::new();
    let mut seen = 0usize;
    let mut queue = std::collections::VecDeque::from([(PathBuf::new(), 0usize)]);
    while let Some((rel, depth)) = queue.pop_front() {
        let entries = if rel.as_os_str().is_empty() {
            project.entries()
        } else {
            project.open_dir(&rel).and_then(|d| d.entries())
        };
        // A directory that cannot be read (no permission, replaced meanwhile) holds nothing found.
        let Ok(entries) = entries else {
            continue;
        };
        for (name, kind) in entries {
            seen += 1;
            if seen > FIND_ENTRIES {
                break;
            }
            let path = rel.join(&name);
            match kind {
                EntryKind::File if name == DKMS_CONF && depth > 0 => {
                    found.push(path.to_string_lossy().into_owned())
                }
                EntryKind::Dir if depth < FIND_DEPTH && !name.starts_with('.') => {
                    queue.push_back((path, depth + 1))
                }
                _ => {}
            }
        }
    }
    found.sort();
    match found.len() {
        0 => Found::None,
        1 => Found::One(found.remove(0)),
        _ => Found::Several(found),
    }
}

/// Puts `data` at `path` (in `dir`) as a new file: written to a temporary file of its own in the same
/// directory (`O_EXCL | O_NOFOLLOW`, a random name), then renamed over `path` (`force`) or put there only if
/// nothing is there yet. What is at `path` is never opened: a FIFO there would block the open, a hard link
/// would have the other file written through it, a symbolic link its target; the rename replaces the
/// directory entry, whatever it was, and leaves any other name of it alone.
fn place(dir: &Path, path: &Path, data: &[u8], force: bool) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let (tmp, mut file) = loop {
        let mut random = [0u8; 8];
        getrandom::fill(&mut random).map_err(|e| std::io::Error::other(e.to_string()))?;
        let tmp = dir.join(format!(".kmodfarm.toml.{}.tmp", hex::encode(random)));
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .mode(0o644)
            .open(&tmp)
        {
            Ok(file) => break (tmp, file),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    };
    let placed = file
        .write_all(data)
        .and_then(|()| file.sync_all())
        .and_then(|()| match force {
            true => std::fs::rename(&tmp, path),
            false => rename_noreplace(&tmp, path),
        });
    if placed.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    placed
}

/// `rename(from, to)` that fails with `AlreadyExists` when `to` exists (any kind of file, a dangling link
/// included) instead of replacing it; a hard link and an unlink where the file system has no
/// `RENAME_NOREPLACE`.
fn rename_noreplace(from: &Path, to: &Path) -> std::io::Result<()> {
    use rustix::fs::{renameat_with, RenameFlags, CWD};
    match renameat_with(CWD, from, CWD, to, RenameFlags::NOREPLACE) {
        Ok(()) => Ok(()),
        Err(e) if e == rustix::io::Errno::INVAL || e == rustix::io::Errno::NOSYS => {
            std::fs::hard_link(from, to)?;
            std::fs::remove_file(from)
        }
        Err(e) => Err(e.into()),
    }
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
    let version = plain("PACKAGE_VERSION", 0);
    match version.clone().filter(|v| names::check_version("version", v).is_ok()) {
        _ if version
            .as_deref()
            .is_some_and(crate::dkms::has_placeholder) =>
        {
            out.push_str(&format!(
                "# dkms.conf's PACKAGE_VERSION is the placeholder {}, which the driver's install script\n\
                 # replaces: give the version here or with --driver-version (default in a git work tree:\n\
                 # `git describe --tags --always`).\n# version = \"1.0.0\"\n",
                comment_text(version.as_deref().unwrap_or_default())
            ));
        }
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

    /// `init` in `p` on another thread, failing the test instead of hanging it.
    fn init_within(p: &Path, force: bool) -> Result<InitReport, BuildError> {
        let (tx, rx) = std::sync::mpsc::channel();
        let p = p.to_path_buf();
        std::thread::spawn(move || tx.send(init_project(&p, force)));
        rx.recv_timeout(std::time::Duration::from_secs(20))
            .expect("init did not finish within 20 s")
    }

    fn project(dir: &Path) -> PathBuf {
        let p = dir.join("drv");
        std::fs::create_dir_all(&p).unwrap();
        std::fs::write(p.join("Makefile"), "obj-m += drv.o\n").unwrap();
        p
    }

    fn is_regular_template(path: &Path) {
        let meta = std::fs::symlink_metadata(path).unwrap();
        assert!(meta.file_type().is_file(), "{meta:?}");
        use std::os::unix::fs::MetadataExt;
        assert_eq!(meta.nlink(), 1);
        let text = std::fs::read_to_string(path).unwrap();
        assert!(text.contains("[driver]"), "{text}");
    }

    fn no_temporary_files(p: &Path) {
        let left: Vec<_> = std::fs::read_dir(p)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".tmp"))
            .collect();
        assert!(left.is_empty(), "{left:?}");
    }

    #[test]
    fn force_replaces_a_fifo_without_opening_it() {
        let dir = tempfile::tempdir().unwrap();
        let p = project(dir.path());
        let fifo = p.join("kmodfarm.toml");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o644),
            0,
        )
        .unwrap();
        let err = init_within(&p, false).unwrap_err().to_string();
        assert!(err.contains("--force"), "{err}");
        init_within(&p, true).unwrap();
        is_regular_template(&fifo);
        no_temporary_files(&p);
    }

    #[test]
    fn force_replaces_a_hard_link_and_leaves_the_other_name_alone() {
        let dir = tempfile::tempdir().unwrap();
        let p = project(dir.path());
        let other = dir.path().join("other.conf");
        std::fs::write(&other, "precious\n").unwrap();
        std::fs::hard_link(&other, p.join("kmodfarm.toml")).unwrap();
        let err = init_within(&p, false).unwrap_err().to_string();
        assert!(err.contains("--force"), "{err}");
        init_within(&p, true).unwrap();
        assert_eq!(std::fs::read_to_string(&other).unwrap(), "precious\n");
        use std::os::unix::fs::MetadataExt;
        assert_eq!(std::fs::metadata(&other).unwrap().nlink(), 1);
        is_regular_template(&p.join("kmodfarm.toml"));
        no_temporary_files(&p);
    }

    #[test]
    fn force_replaces_a_symbolic_link_not_its_target() {
        let dir = tempfile::tempdir().unwrap();
        let p = project(dir.path());
        let target = dir.path().join("target.conf");
        std::fs::write(&target, "precious\n").unwrap();
        std::os::unix::fs::symlink(&target, p.join("kmodfarm.toml")).unwrap();
        let err = init_within(&p, false).unwrap_err().to_string();
        assert!(err.contains("--force"), "{err}");
        // A dangling link is something there too.
        let dangling = dir.path().join("q");
        std::fs::create_dir_all(&dangling).unwrap();
        std::fs::write(dangling.join("Makefile"), "obj-m += q.o\n").unwrap();
        std::os::unix::fs::symlink(dir.path().join("nowhere"), dangling.join("kmodfarm.toml"))
            .unwrap();
        assert!(init_within(&dangling, false).is_err());
        assert!(!dir.path().join("nowhere").exists());

        init_within(&p, true).unwrap();
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "precious\n");
        is_regular_template(&p.join("kmodfarm.toml"));
        no_temporary_files(&p);
    }

    #[test]
    fn a_lone_dkms_conf_below_the_top_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = project(dir.path());
        let conf = p.join("packaging/dkms");
        std::fs::create_dir_all(&conf).unwrap();
        std::fs::write(
            conf.join("dkms.conf"),
            "PACKAGE_NAME=kmf-deep\nPACKAGE_VERSION=\"#VERSION#\"\nBUILT_MODULE_NAME[0]=kmf_deep\n",
        )
        .unwrap();
        // Hidden directories and links are not looked into.
        std::fs::create_dir_all(p.join(".git/x")).unwrap();
        std::fs::write(p.join(".git/x/dkms.conf"), "PACKAGE_NAME=no\n").unwrap();
        std::os::unix::fs::symlink(&conf, p.join("linked")).unwrap();
        let report = init_within(&p, false).unwrap();
        assert!(report.from_dkms_conf);
        assert_eq!(
            report.dkms_conf.as_deref(),
            Some("packaging/dkms/dkms.conf")
        );
        assert_eq!(report.name, "kmf-deep");
        let text = std::fs::read_to_string(p.join("kmodfarm.toml")).unwrap();
        assert!(
            text.contains("[build]\ndkms_conf = \"packaging/dkms/dkms.conf\""),
            "{text}"
        );
        assert!(text.contains("placeholder #VERSION#"), "{text}");
        let mut cfg = crate::ProjectConfig::load(&p).unwrap();
        assert!(cfg.uses_dkms());
        assert_eq!(cfg.name(), "kmf-deep");
        assert_eq!(cfg.resolve_version(Some("1.0")).unwrap(), "1.0");

        // A second one: which is DKMS's is the user's to say.
        std::fs::create_dir_all(p.join("other")).unwrap();
        std::fs::write(p.join("other/dkms.conf"), "PACKAGE_NAME=other\n").unwrap();
        let report = init_within(&p, true).unwrap();
        assert!(!report.from_dkms_conf);
        assert_eq!(report.dkms_conf, None);
        let text = std::fs::read_to_string(p.join("kmodfarm.toml")).unwrap();
        assert!(
            text.contains(
                "Several dkms.conf below the top (other/dkms.conf, packaging/dkms/dkms.conf)"
            ),
            "{text}"
        );
        crate::ProjectConfig::load(&p).unwrap();
    }

    #[test]
    fn the_walk_is_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let p = project(dir.path());
        let deep = p.join("a/b/c/d/e");
        std::fs::create_dir_all(&deep).unwrap();
        std::fs::write(deep.join("dkms.conf"), "PACKAGE_NAME=deep\n").unwrap();
        let project = Beneath::open(&p).unwrap();
        assert_eq!(find_dkms_conf(&project), Found::None);
        std::fs::write(p.join("a/b/c/d/dkms.conf"), "PACKAGE_NAME=deep\n").unwrap();
        assert_eq!(
            find_dkms_conf(&project),
            Found::One("a/b/c/d/dkms.conf".into())
        );
    }
}
