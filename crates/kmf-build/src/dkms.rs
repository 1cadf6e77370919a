//! A project's `dkms.conf`, read the way DKMS reads it (see `docs/dkms.md`).
//!
//! `dkms.conf` is a bash script that DKMS sources with the target kernel's variables set; packages in the
//! wild compute values, read the kernel's `.config` or run commands while being sourced. kmodfarm therefore
//! evaluates it per variant, in bash, **inside the build sandbox** ([`EVAL_HARNESS`]): the script writes the
//! variables DKMS reads, and the results of the regular-expression matches DKMS makes, as NUL-separated
//! records that [`DkmsVariables::parse`] reads as untrusted data. [`DkmsVariables::decide`] turns them into
//! either an exclusion or a [`DkmsBuild`]: the `make` command (chosen by `MAKE_MATCH`, rewritten as DKMS
//! does), the patches (`PATCH_MATCH`), the scripts, and the modules with their destinations, every path
//! checked to stay inside the project or the module tree. [`BUILD_HARNESS`] then runs the build in a second
//! sandbox run.
//!
//! Before any kernel is known, the driver's name and version come from plain `PACKAGE_NAME=` and
//! `PACKAGE_VERSION=` lines ([`LiteralNames::read`]) without running anything; a value that is computed
//! must then be given on the command line or in `kmodfarm.toml`, and one that is an install script's
//! placeholder ([`has_placeholder`]) is given or derived from the checkout (see
//! `ProjectConfig::resolve_version`). What the evaluation computes is checked per kernel
//! ([`DkmsVariables::decide`]).

use std::collections::BTreeMap;
use std::path::{Component, Path};

use kmf_types::names;

use crate::applicability::{valid_config_requirement, KernelFacts, Requirements};

/// The file DKMS reads, at the top of the project.
pub const DKMS_CONF: &str = "dkms.conf";

/// The largest `dkms.conf` read, and the largest record file its evaluation may leave.
pub const MAX_DKMS_BYTES: u64 = 1 << 20;

/// The variables of `dkms.conf` kmodfarm reads back (DKMS reads these and a few it no longer acts on).
const VARIABLES: &[&str] = &[
    "PACKAGE_NAME",
    "PACKAGE_VERSION",
    "MAKE",
    "MAKE_MATCH",
    "BUILT_MODULE_NAME",
    "BUILT_MODULE_LOCATION",
    "DEST_MODULE_NAME",
    "DEST_MODULE_LOCATION",
    "STRIP",
    "PATCH",
    "PATCH_MATCH",
    "PRE_BUILD",
    "POST_BUILD",
    "BUILD_EXCLUSIVE_KERNEL",
    "BUILD_EXCLUSIVE_KERNEL_MIN",
    "BUILD_EXCLUSIVE_KERNEL_MAX",
    "BUILD_EXCLUSIVE_ARCH",
    "BUILD_EXCLUSIVE_CONFIG",
    "AUTOINSTALL",
];

/// Sources the project's `dkms.conf` with DKMS's variables set (positional parameters 1–9: kernelver, arch,
/// kernel_source_dir, kernel_config, dkms_tree, source_tree, install_tree, module, module_version; 10: the
/// record file; 11: the file, relative to the source directory, where it runs: `dkms.conf` unless
/// `[build] dkms_conf` names another, which is sourced from the top as its packaging would copy it
/// there) and writes `name NUL index NUL value NUL` for every element of the variables DKMS reads,
/// `MATCH:<variable> NUL index NUL status` for the regular expressions DKMS matches against `kernelver` or
/// `arch` (0 match, 1 no match, 2 invalid), and a final `END` record. The file runs as untrusted code in the
/// sandbox; what it leaves is parsed as untrusted data.
pub const EVAL_HARNESS: &str = r#"
kernelver=$1 arch=$2 kernel_source_dir=$3 kernel_config=$4 dkms_tree=$5 source_tree=$6 install_tree=$7
module=$8 module_version=$9 kmf_out=${10} kmf_conf=${11:-dkms.conf}
shift 11
shopt -s extglob
unset PACKAGE_NAME
exec 3>"$kmf_out" || exit 90
builtin echo "kmodfarm: evaluating $kmf_conf for $kernelver ($arch)"
. "./$kmf_conf" 3>&-
kmf_put() { builtin printf '%s\0%s\0%s\0' "$1" "$2" "$3" >&3; }
for kmf_var in __VARIABLES__; do
  kmf_keys=()
  builtin eval "kmf_keys=(\"\${!${kmf_var}[@]}\")"
  for kmf_i in "${kmf_keys[@]}"; do
    builtin eval "kmf_val=\${${kmf_var}[\$kmf_i]}"
    kmf_put "$kmf_var" "$kmf_i" "$kmf_val"
  done
done
kmf_match() { [[ $4 =~ $3 ]]; kmf_put "MATCH:$1" "$2" "$?"; }
for kmf_i in "${!MAKE_MATCH[@]}"; do kmf_match MAKE_MATCH "$kmf_i" "${MAKE_MATCH[$kmf_i]}" "$kernelver"; done
for kmf_i in "${!PATCH_MATCH[@]}"; do kmf_match PATCH_MATCH "$kmf_i" "${PATCH_MATCH[$kmf_i]}" "$kernelver"; done
if [[ -n ${BUILD_EXCLUSIVE_KERNEL-} ]]; then kmf_match BUILD_EXCLUSIVE_KERNEL 0 "$BUILD_EXCLUSIVE_KERNEL" "$kernelver"; fi
if [[ -n ${BUILD_EXCLUSIVE_ARCH-} ]]; then kmf_match BUILD_EXCLUSIVE_ARCH 0 "$BUILD_EXCLUSIVE_ARCH" "$arch"; fi
kmf_put END "" ""
"#;

/// The eval harness with its variable list filled in.
pub fn eval_harness() -> String {
    EVAL_HARNESS.replace("__VARIABLES__", &VARIABLES.join(" "))
}

/// Runs one DKMS build in the build directory (the working directory), as `dkms build` does after reading
/// the file: the patches, `PRE_BUILD`, the make command through `eval`, `POST_BUILD`, then `strip -g` of the
/// modules that want it. Positional parameters 1–9 as in [`EVAL_HARNESS`]; 10: the make command; 11 and
/// 12: the scripts; 13: the patches (one per line, under `patches/`); 14: the modules to strip (one path
/// per line); 15: the strip program. Any failing step ends it with that step's status.
pub const BUILD_HARNESS: &str = r#"
kernelver=$1 arch=$2 kernel_source_dir=$3 kernel_config=$4 dkms_tree=$5 source_tree=$6 install_tree=$7
module=$8 module_version=$9
kmf_make=${10} kmf_pre=${11} kmf_post=${12} kmf_patches=${13} kmf_strip=${14} kmf_strip_tool=${15}
shift 15
PACKAGE_NAME=$module PACKAGE_VERSION=$module_version
kmf_fail() { echo "kmodfarm: $1 failed with status $2"; exit "$2"; }
kmf_script() {
  local run="$PWD/$2"
  if [[ -x ${run%% *} && -f ${run%% *} ]]; then
    echo "kmodfarm: $1: $2"
    eval "$run" || kmf_fail "$1" "$?"
  else
    echo "kmodfarm: $1 \`$2\` is not an executable file of the project: skipped, as dkms does"
  fi
}
while IFS= read -r kmf_p; do
  [[ -n $kmf_p ]] || continue
  echo "kmodfarm: applying patches/$kmf_p"
  patch -p1 < "patches/$kmf_p" || kmf_fail "patch $kmf_p" "$?"
done <<< "$kmf_patches"
if [[ -n $kmf_pre ]]; then kmf_script PRE_BUILD "$kmf_pre"; fi
echo "kmodfarm: $kmf_make"
eval "$kmf_make" || kmf_fail "make" "$?"
if [[ -n $kmf_post ]]; then kmf_script POST_BUILD "$kmf_post"; fi
while IFS= read -r kmf_m; do
  [[ -n $kmf_m ]] || continue
  if [[ -f $kmf_m && ! -L $kmf_m ]]; then "$kmf_strip_tool" -g "$kmf_m" || kmf_fail "strip $kmf_m" "$?"; fi
done <<< "$kmf_strip"
exit 0
"#;

/// Why `dkms.conf` cannot be used for a kernel.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DkmsError {
    /// The evaluation left no complete record (the file exited, looped past its time, or broke the output).
    #[error("evaluating dkms.conf did not finish: {0}")]
    Unfinished(String),
    /// A record that is not one of the harness's.
    #[error("evaluating dkms.conf left a malformed record: {0}")]
    Malformed(String),
    /// A value kmodfarm refuses (a path out of the project, a name that is not one, a bad expression).
    #[error("dkms.conf: {variable}: {reason}")]
    Invalid { variable: String, reason: String },
    /// A variable DKMS requires.
    #[error("dkms.conf sets no {0}")]
    Missing(&'static str),
}

fn invalid(variable: impl Into<String>, reason: impl Into<String>) -> DkmsError {
    DkmsError::Invalid {
        variable: variable.into(),
        reason: reason.into(),
    }
}

/// The driver's name and version as plain assignments in `dkms.conf`, read without running it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LiteralNames {
    pub name: Option<Literal>,
    pub version: Option<Literal>,
}

/// A value as written in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Literal {
    /// A constant (`PACKAGE_VERSION="1.2"`, `='1.2'`, `=1.2`).
    Plain(String),
    /// Anything shell would expand or that is not one word (`"$(git describe)"`, `@VERSION@` is plain).
    Computed(String),
}

impl LiteralNames {
    /// The last top-level `PACKAGE_NAME=` and `PACKAGE_VERSION=` assignments.
    pub fn read(text: &str) -> LiteralNames {
        let mut out = LiteralNames::default();
        for (key, _, value) in literal_assignments(text) {
            match key.as_str() {
                "PACKAGE_NAME" => out.name = Some(value),
                "PACKAGE_VERSION" => out.version = Some(value),
                _ => {}
            }
        }
        out
    }
}

/// Whether `value` holds an install script's placeholder: a `#WORD#` or `@WORD@` token (`#VERSION#`,
/// `#MODULE_VERSION#`, `@VERSION@`, `1.0-@GITREV@`), which a driver's packaging replaces before DKMS
/// reads the file. DKMS itself would take the token as the version; kmodfarm takes the one the user gives.
pub fn has_placeholder(value: &str) -> bool {
    ['#', '@'].iter().any(|&mark| {
        let parts: Vec<&str> = value.split(mark).collect();
        // The text between two marks, for each pair of neighbouring marks.
        parts.len() >= 3
            && parts[1..parts.len() - 1].iter().any(|word| {
                !word.is_empty() && word.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
            })
    })
}

/// A shell word that is a constant: single-quoted, double-quoted without `$`, `` ` `` or `\`, or bare
/// without any shell syntax; a trailing `# comment` is allowed.
fn literal(raw: &str) -> Literal {
    let computed = || Literal::Computed(raw.to_string());
    let (value, rest) = if let Some(r) = raw.strip_prefix('\'') {
        match r.split_once('\'') {
            Some((v, rest)) => (v, rest),
            None => return computed(),
        }
    } else if let Some(r) = raw.strip_prefix('"') {
        match r.split_once('"') {
            Some((v, rest)) if !v.contains(['$', '`', '\\']) => (v, rest),
            _ => return computed(),
        }
    } else {
        let end = raw.find(char::is_whitespace).unwrap_or(raw.len());
        let (v, rest) = raw.split_at(end);
        if v.contains(|c: char| "$`\\\"'(){}[]*?;&|<>!~".contains(c)) {
            return computed();
        }
        (v, rest)
    };
    let rest = rest.trim_start();
    if rest.is_empty() || rest.starts_with('#') {
        Literal::Plain(value.to_string())
    } else {
        computed()
    }
}

/// Every top-level plain assignment `KEY=value` or `KEY[i]=value` of the file, in order (nothing runs;
/// values shell would expand are [`Literal::Computed`]).
pub fn literal_assignments(text: &str) -> Vec<(String, usize, Literal)> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim_start();
        let Some((lhs, rhs)) = line.split_once('=') else {
            continue;
        };
        let (key, index) = match lhs.split_once('[') {
            Some((k, rest)) => match rest.strip_suffix(']').and_then(|i| i.parse().ok()) {
                Some(i) => (k, i),
                None => continue,
            },
            None => (lhs, 0),
        };
        let is_name = !key.is_empty()
            && key
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
        if is_name {
            out.push((key.to_string(), index, literal(rhs.trim_end())));
        }
    }
    out
}

/// The variables as one evaluation left them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DkmsVariables {
    values: BTreeMap<String, BTreeMap<usize, String>>,
    matches: BTreeMap<String, BTreeMap<usize, u8>>,
}

/// Most elements of one array kmodfarm takes (DKMS packages have a handful).
const MAX_INDEX: usize = 1024;

impl DkmsVariables {
    /// Reads the record file [`EVAL_HARNESS`] wrote.
    pub fn parse(bytes: &[u8]) -> Result<DkmsVariables, DkmsError> {
        let mut fields = bytes.split(|b| *b == 0);
        let mut out = DkmsVariables::default();
        let text = |b: &[u8], what: &str| -> Result<String, DkmsError> {
            String::from_utf8(b.to_vec())
                .map_err(|_| DkmsError::Malformed(format!("{what} is not UTF-8")))
        };
        loop {
            let Some(name) = fields.next() else {
                return Err(DkmsError::Unfinished(
                    "the record file ends before its end mark".into(),
                ));
            };
            let (Some(index), Some(value)) = (fields.next(), fields.next()) else {
                return Err(DkmsError::Unfinished(
                    "the record file ends inside a record".into(),
                ));
            };
            let name = text(name, "a variable name")?;
            if name == "END" {
                return match fields.next() {
                    Some(rest) if rest.is_empty() && fields.next().is_none() => Ok(out),
                    _ => Err(DkmsError::Malformed("records after the end mark".into())),
                };
            }
            let index: usize = text(index, "an index")?
                .parse()
                .ok()
                .filter(|i| *i < MAX_INDEX)
                .ok_or_else(|| {
                    invalid(
                        names::printable(&name).into_owned(),
                        "an array index that is not a number below 1024 (an associative array?)",
                    )
                })?;
            let value = text(value, &name)?;
            if let Some(var) = name.strip_prefix("MATCH:") {
                let status: u8 = match value.as_str() {
                    "0" => 0,
                    "1" => 1,
                    "2" => 2,
                    _ => return Err(DkmsError::Malformed(format!("match status {value:?}"))),
                };
                out.matches
                    .entry(var.to_string())
                    .or_default()
                    .insert(index, status);
            } else if VARIABLES.contains(&name.as_str()) {
                out.values.entry(name).or_default().insert(index, value);
            } else {
                return Err(DkmsError::Malformed(format!(
                    "unknown variable {}",
                    names::printable(&name)
                )));
            }
        }
    }

    fn get(&self, name: &str, index: usize) -> Option<&str> {
        self.values.get(name)?.get(&index).map(String::as_str)
    }

    /// A non-empty value.
    fn set(&self, name: &str, index: usize) -> Option<&str> {
        self.get(name, index).filter(|v| !v.is_empty())
    }

    fn indices(&self, name: &str) -> Vec<usize> {
        self.values
            .get(name)
            .map(|m| m.keys().copied().collect())
            .unwrap_or_default()
    }

    /// Whether the regular expression `name[index]` matched; `Err` when bash found it invalid.
    fn matched(&self, name: &str, index: usize) -> Result<bool, DkmsError> {
        match self.matches.get(name).and_then(|m| m.get(&index)) {
            Some(0) => Ok(true),
            Some(2) => Err(invalid(
                format!("{name}[{index}]"),
                format!(
                    "`{}` is not a valid regular expression",
                    names::printable(self.get(name, index).unwrap_or(""))
                ),
            )),
            _ => Ok(false),
        }
    }

    /// `PACKAGE_NAME` and `PACKAGE_VERSION` as evaluated.
    pub fn package(&self) -> (Option<&str>, Option<&str>) {
        (self.set("PACKAGE_NAME", 0), self.set("PACKAGE_VERSION", 0))
    }

    /// What to do for `kernel`: why it is excluded, or how to build.
    pub fn decide(&self, kernel: &KernelFacts, ctx: &BuildContext) -> Result<Decision, DkmsError> {
        if self.set("PACKAGE_NAME", 0).is_none() {
            return Err(DkmsError::Missing("PACKAGE_NAME"));
        }
        let Some(version) = self.set("PACKAGE_VERSION", 0) else {
            return Err(DkmsError::Missing("PACKAGE_VERSION"));
        };
        // A computed version ends up in DKMS's paths; one that is no version (empty, `../x`, a line) is
        // refused as a hand-written one is. A placeholder stands for the version the run builds as.
        if !has_placeholder(version) {
            names::check_version("PACKAGE_VERSION", version)
                .map_err(|e| invalid("PACKAGE_VERSION", e.to_string()))?;
        }
        if let Some(re) = self.set("BUILD_EXCLUSIVE_KERNEL", 0) {
            if !self.matched("BUILD_EXCLUSIVE_KERNEL", 0)? {
                return Ok(Decision::Excluded(format!(
                    "dkms.conf: kernel {} does not match BUILD_EXCLUSIVE_KERNEL `{}`",
                    kernel.release,
                    names::printable(re)
                )));
            }
        }
        if let Some(re) = self.set("BUILD_EXCLUSIVE_ARCH", 0) {
            if !self.matched("BUILD_EXCLUSIVE_ARCH", 0)? {
                return Ok(Decision::Excluded(format!(
                    "dkms.conf: architecture {} does not match BUILD_EXCLUSIVE_ARCH `{}`",
                    kernel.arch,
                    names::printable(re)
                )));
            }
        }
        let config: Vec<String> = self
            .get("BUILD_EXCLUSIVE_CONFIG", 0)
            .unwrap_or("")
            .split_whitespace()
            .map(str::to_string)
            .collect();
        if let Some(bad) = config.iter().find(|c| !valid_config_requirement(c)) {
            return Err(invalid(
                "BUILD_EXCLUSIVE_CONFIG",
                format!(
                    "`{}` is not CONFIG_NAME or !CONFIG_NAME",
                    names::printable(bad)
                ),
            ));
        }
        let requirements = Requirements {
            config,
            arches: vec![],
            kernel_min: self
                .set("BUILD_EXCLUSIVE_KERNEL_MIN", 0)
                .map(str::to_string),
            kernel_max: self
                .set("BUILD_EXCLUSIVE_KERNEL_MAX", 0)
                .map(str::to_string),
        };
        if let Some(why) = requirements.exclusion(kernel) {
            return Ok(Decision::Excluded(format!("dkms.conf: {why}")));
        }
        Ok(Decision::Build(Box::new(self.build(ctx)?)))
    }

    fn build(&self, ctx: &BuildContext) -> Result<DkmsBuild, DkmsError> {
        // The make command: MAKE[0] unless a later MAKE_MATCH matches; the last match wins.
        let mut make = None;
        for i in self.indices("MAKE") {
            let Some(cmd) = self.set("MAKE", i) else {
                continue;
            };
            let applies = match self.set("MAKE_MATCH", i) {
                None => i == 0,
                Some(_) => self.matched("MAKE_MATCH", i)?,
            };
            if applies {
                make = Some(cmd.to_string());
            }
        }
        let make = make.unwrap_or_else(|| {
            format!("make -C {} M={}", ctx.kernel_source_dir, ctx.dkms_build_dir)
        });
        let make = rewrite_make(&make, &ctx.make_prefix);

        let mut patches = Vec::new();
        for i in self.indices("PATCH") {
            let Some(p) = self.set("PATCH", i) else {
                continue;
            };
            let applies = match self.set("PATCH_MATCH", i) {
                None => true,
                Some(_) => self.matched("PATCH_MATCH", i)?,
            };
            if applies {
                relative_inside(&format!("PATCH[{i}]"), p)?;
                patches.push(p.to_string());
            }
        }

        // As DKMS counts modules: any of the per-module arrays set at an index.
        let count = [
            "BUILT_MODULE_NAME",
            "BUILT_MODULE_LOCATION",
            "DEST_MODULE_NAME",
            "DEST_MODULE_LOCATION",
        ]
        .iter()
        .flat_map(|v| self.indices(v))
        .max()
        .map(|m| m + 1)
        .ok_or(DkmsError::Missing(
            "BUILT_MODULE_NAME[0] or DEST_MODULE_LOCATION[0]",
        ))?;
        // STRIP[0] is every module's default; a value starting with n or N means no, as in DKMS.
        let strips = |v: &str| !v.starts_with(['n', 'N']);
        let strip_default = self.set("STRIP", 0).is_none_or(strips);
        let mut modules = Vec::new();
        for i in 0..count {
            let built_name = match self.set("BUILT_MODULE_NAME", i) {
                Some(n) => n.to_string(),
                None if count == 1 => self.set("PACKAGE_NAME", 0).unwrap_or("").to_string(),
                None => {
                    return Err(invalid(
                        format!("BUILT_MODULE_NAME[{i}]"),
                        "unset, and the package has more than one module",
                    ))
                }
            };
            let check_name = |var: String, n: &str| {
                if n.ends_with(".ko") || n.ends_with(".o") {
                    return Err(invalid(
                        var,
                        format!(
                            "`{}` names a file; DKMS wants the module name without .o or .ko",
                            names::printable(n)
                        ),
                    ));
                }
                names::check_path_component(&var, n).map_err(|e| invalid(var, e.to_string()))
            };
            check_name(format!("BUILT_MODULE_NAME[{i}]"), &built_name)?;
            let location = self
                .get("BUILT_MODULE_LOCATION", i)
                .unwrap_or("")
                .to_string();
            if !location.is_empty() {
                relative_inside(&format!("BUILT_MODULE_LOCATION[{i}]"), &location)?;
            }
            let dest_name = self
                .set("DEST_MODULE_NAME", i)
                .map(str::to_string)
                .unwrap_or_else(|| built_name.clone());
            check_name(format!("DEST_MODULE_NAME[{i}]"), &dest_name)?;
            let dest_location = destination(
                &format!("DEST_MODULE_LOCATION[{i}]"),
                self.set("DEST_MODULE_LOCATION", i).unwrap_or(DEFAULT_DEST),
            )?;
            let strip = self.set("STRIP", i).map_or(strip_default, strips);
            modules.push(DkmsModule {
                built_name,
                built_location: location,
                dest_name,
                dest_location,
                strip,
            });
        }
        Ok(DkmsBuild {
            make,
            patches,
            pre_build: self.set("PRE_BUILD", 0).map(str::to_string),
            post_build: self.set("POST_BUILD", 0).map(str::to_string),
            modules,
        })
    }
}

/// Where a module goes when `dkms.conf` does not say: where Debian's and Ubuntu's DKMS put every module.
pub const DEFAULT_DEST: &str = "/updates/dkms";

/// A path relative to the project that stays inside it (no `..`, not absolute).
fn relative_inside(variable: &str, p: &str) -> Result<(), DkmsError> {
    let ok = !p.is_empty()
        && Path::new(p)
            .components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
        && !p.contains(['\n', '\0']);
    if ok {
        Ok(())
    } else {
        Err(invalid(
            variable,
            format!(
                "`{}` must be a relative path inside the project",
                names::printable(p)
            ),
        ))
    }
}

/// `DEST_MODULE_LOCATION` as kmodfarm publishes it: `/kernel`, `/updates` or `/extra` then plain directory
/// names, as DKMS requires, normalised (`/updates/dkms`). A location under `/kernel` becomes
/// [`DEFAULT_DEST`], as Debian's and Ubuntu's DKMS rewrite every location (Fedora's and SUSE's to `/extra`
/// and `/updates`): a package's module must not replace the distribution's in-tree file of the same name;
/// depmod's search order makes it win without that.
pub fn destination(variable: &str, dest: &str) -> Result<String, DkmsError> {
    let bad = |why: &str| invalid(variable, format!("`{}` {why}", names::printable(dest)));
    let rest = dest
        .strip_prefix('/')
        .ok_or_else(|| bad("must start with /"))?;
    let parts: Vec<&str> = rest.split('/').filter(|p| !p.is_empty()).collect();
    for p in &parts {
        names::check_path_component(variable, p).map_err(|e| invalid(variable, e.to_string()))?;
    }
    match parts.first() {
        Some(&"kernel") => Ok(DEFAULT_DEST.to_string()),
        Some(&("updates" | "extra")) => Ok(format!("/{}", parts.join("/"))),
        _ => Err(bad("must start with /kernel, /updates or /extra")),
    }
}

/// DKMS's rewrite of a command whose first word is `make`: parallel jobs and `KERNELRELEASE`, here with
/// the toolchain's variables too (`prefix` is `make -jN KERNELRELEASE=… ARCH=… CC=…`).
fn rewrite_make(command: &str, prefix: &str) -> String {
    let trimmed = command.trim_start();
    match trimmed.strip_prefix("make") {
        Some(rest) if rest.is_empty() || rest.starts_with(char::is_whitespace) => {
            format!("{prefix}{rest}")
        }
        _ => command.to_string(),
    }
}

/// Paths and the make prefix of one build, as the sandbox sees them.
#[derive(Debug, Clone)]
pub struct BuildContext {
    /// `/lib/modules/<release>/build`.
    pub kernel_source_dir: String,
    /// `$dkms_tree/<name>/<version>/build`: the build directory.
    pub dkms_build_dir: String,
    /// What replaces a leading `make`.
    pub make_prefix: String,
}

/// What `dkms.conf` says for one kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// `BUILD_EXCLUSIVE_*` rules the kernel out; the sentence says which and why.
    Excluded(String),
    Build(Box<DkmsBuild>),
}

/// One DKMS build, every value checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DkmsBuild {
    /// The make command, rewritten.
    pub make: String,
    /// Files under `patches/`, in the order they apply.
    pub patches: Vec<String>,
    pub pre_build: Option<String>,
    pub post_build: Option<String>,
    pub modules: Vec<DkmsModule>,
}

/// One module of the package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DkmsModule {
    /// Without `.ko`.
    pub built_name: String,
    /// Directory relative to the build directory (empty: the build directory).
    pub built_location: String,
    /// Without `.ko`.
    pub dest_name: String,
    /// `/updates/dkms`, `/extra`, `/kernel/drivers/net`, ...
    pub dest_location: String,
    pub strip: bool,
}

impl DkmsModule {
    /// The built file, relative to the build directory.
    pub fn built_path(&self) -> String {
        if self.built_location.is_empty() {
            format!("{}.ko", self.built_name)
        } else {
            format!(
                "{}/{}.ko",
                self.built_location.trim_end_matches('/'),
                self.built_name
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::applicability::KernelConfig;
    use kmf_types::Arch;

    fn records(items: &[(&str, &str, &str)]) -> Vec<u8> {
        let mut out = Vec::new();
        for (n, i, v) in items.iter().chain([("END", "", "")].iter()) {
            for f in [n, i, v] {
                out.extend_from_slice(f.as_bytes());
                out.push(0);
            }
        }
        out
    }

    fn kernel() -> KernelFacts {
        KernelFacts {
            release: "6.1.0-57-amd64".into(),
            arch: Arch::X86_64,
            config: Some(KernelConfig::parse(
                "CONFIG_VIDEO_DEV=m\nCONFIG_KALLSYMS=y\n",
            )),
        }
    }

    fn ctx() -> BuildContext {
        BuildContext {
            kernel_source_dir: "/lib/modules/6.1.0-57-amd64/build".into(),
            dkms_build_dir: "/build/dkms/x/1/build".into(),
            make_prefix: "make -j2 KERNELRELEASE=6.1.0-57-amd64".into(),
        }
    }

    fn build(items: &[(&str, &str, &str)]) -> Result<Decision, DkmsError> {
        DkmsVariables::parse(&records(items))?.decide(&kernel(), &ctx())
    }

    const BASE: [(&str, &str, &str); 3] = [
        ("PACKAGE_NAME", "0", "x"),
        ("PACKAGE_VERSION", "0", "1"),
        ("DEST_MODULE_LOCATION", "0", "/extra"),
    ];

    fn with(
        extra: &[(&'static str, &'static str, &'static str)],
    ) -> Vec<(&'static str, &'static str, &'static str)> {
        BASE.iter().chain(extra).copied().collect()
    }

    #[test]
    fn literal_names_are_read_without_running_anything() {
        let n = LiteralNames::read(
            "# c\nPACKAGE_NAME=\"hello\"\n  PACKAGE_VERSION='1.2' # v\nMAKE[0]=\"make\"\n",
        );
        assert_eq!(n.name, Some(Literal::Plain("hello".into())));
        assert_eq!(n.version, Some(Literal::Plain("1.2".into())));
        let n = LiteralNames::read("PACKAGE_NAME=v4l2\nPACKAGE_VERSION=\"$(cat VERSION)\"\n");
        assert_eq!(n.name, Some(Literal::Plain("v4l2".into())));
        assert!(matches!(n.version, Some(Literal::Computed(_))));
        for computed in ["`x`", "a;b", "\"a\"b c", "${V}", "'a"] {
            assert!(
                matches!(literal(computed), Literal::Computed(_)),
                "{computed}"
            );
        }
        assert_eq!(LiteralNames::read("").name, None);
    }

    #[test]
    fn the_default_make_and_one_module_named_after_the_package() {
        let Decision::Build(b) = build(&BASE).unwrap() else {
            panic!()
        };
        assert_eq!(
            b.make,
            "make -j2 KERNELRELEASE=6.1.0-57-amd64 -C /lib/modules/6.1.0-57-amd64/build M=/build/dkms/x/1/build"
        );
        assert_eq!(b.modules.len(), 1);
        assert_eq!(b.modules[0].built_path(), "x.ko");
        assert_eq!(b.modules[0].dest_location, "/extra");
        assert!(b.modules[0].strip);
    }

    #[test]
    fn make_match_picks_the_last_matching_command() {
        let items = with(&[
            ("MAKE", "0", "make -C module KVER=$kernelver"),
            ("MAKE", "1", "'make' old"),
            ("MAKE_MATCH", "1", "^5\\."),
            ("MATCH:MAKE_MATCH", "1", "1"),
            ("MAKE", "2", "make new"),
            ("MAKE_MATCH", "2", "^6\\."),
            ("MATCH:MAKE_MATCH", "2", "0"),
        ]);
        let Decision::Build(b) = build(&items).unwrap() else {
            panic!()
        };
        assert_eq!(b.make, "make -j2 KERNELRELEASE=6.1.0-57-amd64 new");
        let mut items = items;
        items.retain(|(n, i, _)| *i != "2" || !n.contains("MAKE"));
        let Decision::Build(b) = build(&items).unwrap() else {
            panic!()
        };
        assert_eq!(
            b.make,
            "make -j2 KERNELRELEASE=6.1.0-57-amd64 -C module KVER=$kernelver"
        );
        assert_eq!(rewrite_make("'make' x", "P"), "'make' x");
        assert_eq!(rewrite_make("makefoo", "P"), "makefoo");
        assert_eq!(rewrite_make("make", "P"), "P");
    }

    #[test]
    fn patches_follow_patch_match_and_stay_in_the_project() {
        let items = with(&[
            ("PATCH", "0", "all.patch"),
            ("PATCH", "1", "old.patch"),
            ("PATCH_MATCH", "1", "^5"),
            ("MATCH:PATCH_MATCH", "1", "1"),
            ("PATCH", "2", "six.patch"),
            ("PATCH_MATCH", "2", "^6"),
            ("MATCH:PATCH_MATCH", "2", "0"),
        ]);
        let Decision::Build(b) = build(&items).unwrap() else {
            panic!()
        };
        assert_eq!(b.patches, ["all.patch", "six.patch"]);
        let err = build(&with(&[("PATCH", "0", "../../etc/shadow")])).unwrap_err();
        assert!(err.to_string().contains("inside the project"), "{err}");
        let err = build(&with(&[
            ("PATCH", "0", "a.patch"),
            ("PATCH_MATCH", "0", "("),
            ("MATCH:PATCH_MATCH", "0", "2"),
        ]))
        .unwrap_err();
        assert!(
            err.to_string().contains("not a valid regular expression"),
            "{err}"
        );
    }

    #[test]
    fn exclusion_by_kernel_arch_window_and_config() {
        let excluded =
            |extra: &[(&'static str, &'static str, &'static str)]| match build(&with(extra))
                .unwrap()
            {
                Decision::Excluded(why) => Some(why),
                Decision::Build(_) => None,
            };
        assert!(excluded(&[
            ("BUILD_EXCLUSIVE_KERNEL", "0", "^5\\."),
            ("MATCH:BUILD_EXCLUSIVE_KERNEL", "0", "1")
        ])
        .unwrap()
        .contains("BUILD_EXCLUSIVE_KERNEL"));
        assert!(excluded(&[
            ("BUILD_EXCLUSIVE_KERNEL", "0", "^6\\."),
            ("MATCH:BUILD_EXCLUSIVE_KERNEL", "0", "0")
        ])
        .is_none());
        assert!(excluded(&[
            ("BUILD_EXCLUSIVE_ARCH", "0", "aarch64"),
            ("MATCH:BUILD_EXCLUSIVE_ARCH", "0", "1")
        ])
        .unwrap()
        .contains("architecture x86_64"));
        assert!(excluded(&[("BUILD_EXCLUSIVE_KERNEL_MIN", "0", "6.2")])
            .unwrap()
            .contains("older"));
        assert!(excluded(&[("BUILD_EXCLUSIVE_KERNEL_MAX", "0", "6.1.0-56")])
            .unwrap()
            .contains("newer"));
        assert!(excluded(&[("BUILD_EXCLUSIVE_KERNEL_MAX", "0", "6.1.0-57")]).is_none());
        assert!(
            excluded(&[("BUILD_EXCLUSIVE_CONFIG", "0", "CONFIG_VIDEO_DEV !CONFIG_X")]).is_none()
        );
        assert!(
            excluded(&[("BUILD_EXCLUSIVE_CONFIG", "0", "CONFIG_KALLSYMS_ALL")])
                .unwrap()
                .contains("lacks CONFIG_KALLSYMS_ALL")
        );
        let err = build(&with(&[("BUILD_EXCLUSIVE_CONFIG", "0", "CONFIG_A;reboot")])).unwrap_err();
        assert!(err.to_string().contains("BUILD_EXCLUSIVE_CONFIG"), "{err}");
    }

    #[test]
    fn modules_destinations_and_strip() {
        let items = with(&[
            ("BUILT_MODULE_NAME", "0", "a"),
            ("BUILT_MODULE_LOCATION", "0", "src/a/"),
            ("BUILT_MODULE_NAME", "1", "b"),
            ("DEST_MODULE_NAME", "1", "b_renamed"),
            ("DEST_MODULE_LOCATION", "1", "/kernel/drivers/misc"),
            ("BUILT_MODULE_NAME", "2", "c"),
            ("DEST_MODULE_LOCATION", "2", "/extra//kmf/"),
            ("STRIP", "2", ""),
            ("STRIP", "0", "no"),
            ("STRIP", "1", "yes"),
        ]);
        let Decision::Build(b) = build(&items).unwrap() else {
            panic!()
        };
        assert_eq!(b.modules[0].built_path(), "src/a/a.ko");
        assert!(!b.modules[0].strip);
        assert_eq!(b.modules[1].built_path(), "b.ko");
        assert_eq!(b.modules[1].dest_name, "b_renamed");
        // Never over an in-tree module: /kernel becomes /updates/dkms, as Debian's DKMS has it.
        assert_eq!(b.modules[1].dest_location, "/updates/dkms");
        assert!(b.modules[1].strip);
        assert_eq!(b.modules[2].dest_location, "/extra/kmf");
        assert!(!b.modules[2].strip, "an empty STRIP[2] takes STRIP[0]'s no");
        let strip0 = |v: &'static str| {
            let Decision::Build(b) = build(&with(&[("STRIP", "0", v)])).unwrap() else {
                panic!()
            };
            b.modules[0].strip
        };
        assert!(!strip0("n") && !strip0("No") && strip0("yes") && strip0("y"));
        for (var, value) in [
            ("BUILT_MODULE_LOCATION", "../../.."),
            ("BUILT_MODULE_LOCATION", "/etc"),
            ("BUILT_MODULE_NAME", "../x"),
            ("DEST_MODULE_LOCATION", "/../../etc"),
            ("DEST_MODULE_LOCATION", "/etc/modprobe.d"),
            ("DEST_MODULE_NAME", "a/b"),
            ("BUILT_MODULE_NAME", "x.ko"),
            ("BUILT_MODULE_NAME", "x.o"),
        ] {
            let items: Vec<_> = BASE
                .iter()
                .filter(|(n, _, _)| *n != var)
                .copied()
                .chain([(var, "0", value)])
                .collect();
            let err = build(&items).unwrap_err();
            assert!(err.to_string().contains(var), "{var}={value}: {err}");
        }
        // Two modules, the second without a name.
        let err = build(&with(&[
            ("BUILT_MODULE_NAME", "0", "x"),
            ("DEST_MODULE_LOCATION", "1", "/extra"),
        ]))
        .unwrap_err();
        assert!(err.to_string().contains("BUILT_MODULE_NAME[1]"), "{err}");
    }

    #[test]
    fn malformed_and_unfinished_records_are_refused() {
        assert!(matches!(
            DkmsVariables::parse(b"PACKAGE_NAME\x000\x00x\x00"),
            Err(DkmsError::Unfinished(_))
        ));
        assert!(matches!(
            DkmsVariables::parse(b""),
            Err(DkmsError::Unfinished(_))
        ));
        let mut r = records(&[("EVIL", "0", "x")]);
        assert!(matches!(
            DkmsVariables::parse(&r),
            Err(DkmsError::Malformed(_))
        ));
        r = records(&[("MAKE", "key", "x")]);
        assert!(matches!(
            DkmsVariables::parse(&r),
            Err(DkmsError::Invalid { .. })
        ));
        r = records(&[("MAKE", "99999", "x")]);
        assert!(DkmsVariables::parse(&r).is_err());
        r = records(&[]);
        r.extend_from_slice(b"more\x00");
        assert!(DkmsVariables::parse(&r).is_err());
        assert_eq!(
            build(&[("PACKAGE_VERSION", "0", "1")]).unwrap_err(),
            DkmsError::Missing("PACKAGE_NAME")
        );
    }

    #[test]
    fn placeholders_of_install_scripts() {
        for p in [
            "#VERSION#",
            "#MODULE_VERSION#",
            "@VERSION@",
            "1.0-@GITREV@",
            "v#V#.1",
        ] {
            assert!(has_placeholder(p), "{p}");
        }
        for p in ["1.0", "1.0~rc1", "#", "##", "@@", "a#b", "# x #", "1.0@"] {
            assert!(!has_placeholder(p), "{p}");
        }
        assert_eq!(
            LiteralNames::read("PACKAGE_VERSION=#MODULE_VERSION#\n").version,
            Some(Literal::Plain("#MODULE_VERSION#".into()))
        );
    }

    #[test]
    fn the_evaluated_version_is_checked() {
        let version = |v: &'static str| {
            build(&[
                ("PACKAGE_NAME", "0", "x"),
                ("PACKAGE_VERSION", "0", v),
                ("DEST_MODULE_LOCATION", "0", "/extra"),
            ])
        };
        for ok in ["1.2.3", "1.0~rc1", "#VERSION#", "@VERSION@"] {
            assert!(matches!(version(ok), Ok(Decision::Build(_))), "{ok}");
        }
        for bad in ["../../x", "1.0\nrm", "1 2", "~1"] {
            let err = version(bad).unwrap_err().to_string();
            assert!(
                err.starts_with("dkms.conf: PACKAGE_VERSION:"),
                "{bad}: {err}"
            );
        }
    }
}
