//! Packages indices: parsing and lookups.

use std::cmp::Ordering;
use std::io::BufRead;

use kmf_types::HeaderPackage;

use super::compare_versions;
use crate::KernelsError;

/// One stanza of a Packages index, reduced to what kmodfarm uses.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PackageStanza {
    pub package: String,
    pub version: String,
    pub architecture: String,
    pub depends: Vec<Dependency>,
    /// Path of the `.deb` relative to the repository root (`pool/main/l/linux/...`).
    pub filename: String,
    pub size: u64,
    /// Lower-case hex; empty when the index gives none.
    pub sha256: String,
    /// Source package name, without the `(version)` some stanzas append.
    pub source: Option<String>,
}

/// One element of a `Depends:` list. Of alternatives (`a | b`) only the first is kept; architecture
/// qualifiers (`python3:any`) are dropped from the name.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Dependency {
    pub name: String,
    /// `(operator, version)`, operator one of `=`, `>=`, `<=`, `>>`, `<<`.
    pub relation: Option<(String, String)>,
}

impl Dependency {
    /// Whether `version` meets this dependency's relation (always, without one).
    pub fn accepts(&self, version: &str) -> bool {
        let Some((op, want)) = &self.relation else {
            return true;
        };
        let ord = compare_versions(version, want);
        match op.as_str() {
            "=" => ord == Ordering::Equal,
            ">=" => ord != Ordering::Less,
            "<=" => ord != Ordering::Greater,
            ">>" => ord == Ordering::Greater,
            "<<" => ord == Ordering::Less,
            _ => false,
        }
    }

    /// Parses one `Depends:` element, e.g. `linux-kbuild-6.1 (>= 6.1.192-2)` or `a | b (= 1)`.
    pub fn parse(text: &str) -> Result<Dependency, String> {
        let first = text.split('|').next().unwrap_or("").trim();
        let (name_part, relation) = match first.split_once('(') {
            Some((name, rest)) => {
                let inner = rest
                    .split_once(')')
                    .map(|(inner, _)| inner)
                    .ok_or_else(|| format!("unclosed parenthesis in dependency {text:?}"))?
                    .trim();
                let op_len = inner
                    .bytes()
                    .take_while(|c| matches!(c, b'<' | b'>' | b'='))
                    .count();
                let (op, version) = inner.split_at(op_len);
                let op = match op {
                    "=" | ">=" | "<=" | ">>" | "<<" => op,
                    // Obsolete spellings, which dpkg reads as the non-strict forms.
                    "<" => "<=",
                    ">" => ">=",
                    _ => return Err(format!("bad version relation in dependency {text:?}")),
                };
                let version = version.trim();
                if version.is_empty() || version.contains(char::is_whitespace) {
                    return Err(format!("bad version in dependency {text:?}"));
                }
                (name, Some((op.to_string(), version.to_string())))
            }
            None => (first, None),
        };
        // Drop `[arch]` restrictions (source indices only, but harmless) and `:arch` qualifiers.
        let name = name_part.split('[').next().unwrap_or("").trim();
        let name = name.split(':').next().unwrap_or("");
        if name.is_empty() || name.contains(char::is_whitespace) {
            return Err(format!("bad package name in dependency {text:?}"));
        }
        Ok(Dependency {
            name: name.to_string(),
            relation,
        })
    }
}

/// A parsed `Packages` index of one suite, component and architecture. `Architecture: all` packages are
/// included: Debian lists them in every `binary-ARCH/Packages` (`No-Support-for-Architecture-all`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackageIndex {
    /// Repository root the index's `Filename`s are relative to, without a trailing slash.
    pub base_uri: String,
    pub suite: String,
    /// Debian architecture name (`amd64`).
    pub arch: String,
    pub packages: Vec<PackageStanza>,
    /// The verified Release whose SHA256 sum this index matched: what proves every package listed here.
    pub release: Option<kmf_types::ReleaseProof>,
}

impl PackageIndex {
    /// Parses the text of a `Packages` file.
    pub fn parse(
        text: &str,
        base_uri: &str,
        suite: &str,
        arch: &str,
    ) -> Result<PackageIndex, KernelsError> {
        let source_name = format!("{}/dists/{suite} ({arch})", base_uri.trim_end_matches('/'));
        let packages = parse_lines(text.lines().map(Ok), &source_name, |_| true)?;
        Ok(PackageIndex {
            base_uri: base_uri.trim_end_matches('/').to_string(),
            suite: suite.to_string(),
            arch: arch.to_string(),
            packages,
            release: None,
        })
    }

    /// Every stanza of package `name`, in index order.
    pub fn versions_of(&self, name: &str) -> Vec<&PackageStanza> {
        self.packages.iter().filter(|p| p.package == name).collect()
    }

    /// The highest version of package `name`.
    pub fn newest(&self, name: &str) -> Option<&PackageStanza> {
        self.packages
            .iter()
            .filter(|p| p.package == name)
            .max_by(|a, b| compare_versions(&a.version, &b.version))
    }

    /// The highest version of the depended-on package that meets the dependency's relation.
    pub fn satisfying(&self, dep: &Dependency) -> Option<&PackageStanza> {
        self.packages
            .iter()
            .filter(|p| p.package == dep.name && dep.accepts(&p.version))
            .max_by(|a, b| compare_versions(&a.version, &b.version))
    }

    /// Download URL of a package of this index.
    pub fn url(&self, p: &PackageStanza) -> String {
        format!("{}/{}", self.base_uri, p.filename.trim_start_matches('/'))
    }

    /// This index, proven by `release`.
    pub fn proven_by(mut self, release: kmf_types::ReleaseProof) -> PackageIndex {
        self.release = Some(release);
        self
    }

    /// The package as kmodfarm's shared types describe header packages.
    pub fn header_package(&self, p: &PackageStanza) -> HeaderPackage {
        HeaderPackage {
            proof: self.release.clone().map(kmf_types::InputProof::SignedIndex),
            url: self.url(p),
            package: Some(p.package.clone()),
            version: Some(p.version.clone()),
            sha256: (!p.sha256.is_empty()).then(|| p.sha256.clone()),
            size: Some(p.size),
            path: Some(p.filename.clone()),
        }
    }
}

/// [`PackageIndex::header_package`] over several stanzas of one index.
pub fn header_packages_to_kmf(
    index: &PackageIndex,
    stanzas: &[&PackageStanza],
) -> Vec<HeaderPackage> {
    stanzas.iter().map(|p| index.header_package(p)).collect()
}

/// Parses an index streamed from `reader` (e.g. a decompressor), keeping only packages whose name
/// `keep` accepts: the crawler needs a few hundred of the ~60 000 stanzas of a main index.
pub(crate) fn parse_reader(
    mut reader: impl BufRead,
    source_name: &str,
    keep: impl Fn(&str) -> bool,
) -> Result<Vec<PackageStanza>, KernelsError> {
    let mut buf = Vec::new();
    let lines = std::iter::from_fn(move || {
        buf.clear();
        match reader.read_until(b'\n', &mut buf) {
            Ok(0) => None,
            Ok(_) => {
                while matches!(buf.last(), Some(b'\n' | b'\r')) {
                    buf.pop();
                }
                // Package indices are UTF-8; a stray byte elsewhere (a maintainer's name) must not fail
                // the whole index.
                Some(Ok(String::from_utf8_lossy(&buf).into_owned()))
            }
            Err(e) => Some(Err(e)),
        }
    });
    parse_lines(lines, source_name, keep)
}

#[derive(Clone, Copy, PartialEq)]
enum Field {
    Depends,
    Other,
}

#[derive(Default)]
struct Builder {
    start_line: usize,
    package: Option<String>,
    version: Option<String>,
    architecture: Option<String>,
    depends: Option<String>,
    filename: Option<String>,
    size: Option<String>,
    sha256: Option<String>,
    source: Option<String>,
    skip: bool,
}

impl Builder {
    fn is_empty(&self) -> bool {
        self.start_line == 0
    }

    fn finish(self, source_name: &str) -> Result<Option<PackageStanza>, KernelsError> {
        let line = self.start_line;
        let err = |msg: String| KernelsError::IndexParse {
            source_name: source_name.to_string(),
            line,
            msg,
        };
        let Some(package) = self.package else {
            return Err(err("stanza without a Package field".into()));
        };
        if self.skip {
            return Ok(None);
        }
        let required = |v: Option<String>, field: &str| {
            v.filter(|v| !v.is_empty())
                .ok_or_else(|| err(format!("package {package} has no {field} field")))
        };
        let version = required(self.version, "Version")?;
        let architecture = required(self.architecture, "Architecture")?;
        let filename = required(self.filename, "Filename")?;
        if filename.starts_with('/')
            || filename.split('/').any(|c| c == ".." || c.is_empty())
            || filename.contains(|c: char| c.is_whitespace() || c.is_control())
        {
            return Err(err(format!(
                "package {package} has an unsafe Filename {filename:?}"
            )));
        }
        let size = match self.size {
            Some(s) => s
                .parse::<u64>()
                .map_err(|_| err(format!("package {package} has a bad Size {s:?}")))?,
            None => 0,
        };
        let sha256 = self.sha256.unwrap_or_default().to_ascii_lowercase();
        let valid_sha = sha256.len() == 64 && sha256.bytes().all(|c| c.is_ascii_hexdigit());
        if !sha256.is_empty() && !valid_sha {
            return Err(err(format!(
                "package {package} has a bad SHA256 {sha256:?}"
            )));
        }
        let depends = match self.depends {
            Some(d) => d
                .split(',')
                .map(str::trim)
                .filter(|d| !d.is_empty())
                .map(Dependency::parse)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|m| err(format!("package {package}: {m}")))?,
            None => Vec::new(),
        };
        let source = self
            .source
            .map(|s| s.split_whitespace().next().unwrap_or("").to_string())
            .filter(|s| !s.is_empty());
        Ok(Some(PackageStanza {
            package,
            version,
            architecture,
            depends,
            filename,
            size,
            sha256,
            source,
        }))
    }
}

fn parse_lines<S: AsRef<str>>(
    lines: impl Iterator<Item = std::io::Result<S>>,
    source_name: &str,
    keep: impl Fn(&str) -> bool,
) -> Result<Vec<PackageStanza>, KernelsError> {
    let mut out = Vec::new();
    let mut current = Builder::default();
    let mut field = Field::Other;
    for (n, line) in lines.enumerate() {
        let line_no = n + 1;
        let line = line.map_err(|e| KernelsError::Decompress {
            url: source_name.to_string(),
            source: e,
        })?;
        let line = line.as_ref();
        if line.trim().is_empty() {
            if !current.is_empty() {
                out.extend(std::mem::take(&mut current).finish(source_name)?);
            }
            continue;
        }
        if current.is_empty() {
            current.start_line = line_no;
        }
        if current.skip {
            continue;
        }
        if line.starts_with([' ', '\t']) {
            // Continuation: only Depends matters among multi-line fields (Description does not).
            if field == Field::Depends {
                if let Some(d) = current.depends.as_mut() {
                    d.push(' ');
                    d.push_str(line.trim());
                }
            }
            continue;
        }
        let Some((name, value)) = line.split_once(':') else {
            return Err(KernelsError::IndexParse {
                source_name: source_name.to_string(),
                line: line_no,
                msg: format!("expected `Field: value`, found {line:?}"),
            });
        };
        let value = value.trim();
        field = Field::Other;
        let slot = match name.len() {
            7 if name.eq_ignore_ascii_case("Package") => {
                if !keep(value) {
                    current.skip = true;
                }
                &mut current.package
            }
            7 if name.eq_ignore_ascii_case("Version") => &mut current.version,
            12 if name.eq_ignore_ascii_case("Architecture") => &mut current.architecture,
            7 if name.eq_ignore_ascii_case("Depends") => {
                field = Field::Depends;
                &mut current.depends
            }
            8 if name.eq_ignore_ascii_case("Filename") => &mut current.filename,
            4 if name.eq_ignore_ascii_case("Size") => &mut current.size,
            6 if name.eq_ignore_ascii_case("SHA256") => &mut current.sha256,
            6 if name.eq_ignore_ascii_case("Source") => &mut current.source,
            _ => continue,
        };
        *slot = Some(value.to_string());
    }
    if !current.is_empty() {
        out.extend(current.finish(source_name)?);
    }
    Ok(out)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Stanzas as bookworm-security's amd64 index has them (descriptions trimmed, digests real).
    pub(crate) const BOOKWORM_SECURITY_AMD64: &str = "\
Package: linux-headers-6.1.0-56-amd64
Source: linux
Version: 6.1.192-2
Installed-Size: 4150
Architecture: amd64
Depends: linux-headers-6.1.0-56-common (= 6.1.192-2), linux-kbuild-6.1 (>= 6.1.192-2), linux-compiler-gcc-12-x86
Description: Header files for Linux 6.1.0-56-amd64
Homepage: https://www.kernel.org/
Description-md5: 74167913af5ca759d76a8410f6662558
Section: kernel
Priority: optional
Filename: pool/updates/main/l/linux/linux-headers-6.1.0-56-amd64_6.1.192-2_amd64.deb
Size: 1841552
SHA256: 796a7b4584d7a57f97913e34e80a2fcce96b6c5016fa9d4fc2212a93e4868677

Package: linux-headers-6.1.0-56-common
Source: linux
Version: 6.1.192-2
Installed-Size: 57192
Architecture: all
Description: Common header files for Linux 6.1.0-56
Homepage: https://www.kernel.org/
Description-md5: 04e9f84b79023911f5da7e4e70f4ef5e
Multi-Arch: foreign
Section: kernel
Priority: optional
Filename: pool/updates/main/l/linux/linux-headers-6.1.0-56-common_6.1.192-2_all.deb
Size: 10533276
SHA256: 509e776de8353799a53f4b14d29e87863aac2b7ee9264544bc2821461a853930

Package: linux-headers-6.1.0-56-common-rt
Source: linux
Version: 6.1.192-2
Architecture: all
Multi-Arch: foreign
Filename: pool/updates/main/l/linux/linux-headers-6.1.0-56-common-rt_6.1.192-2_all.deb
Size: 8880320
SHA256: d8f558a7fda205f6bfce82d783c38a001c4421331d98cc47cf022ad6d9900a7c

Package: linux-headers-6.1.0-56-rt-amd64
Source: linux
Version: 6.1.192-2
Architecture: amd64
Depends: linux-headers-6.1.0-56-common-rt (= 6.1.192-2), linux-kbuild-6.1 (>= 6.1.192-2), linux-compiler-gcc-12-x86
Description: Header files for Linux 6.1.0-56-rt-amd64
Filename: pool/updates/main/l/linux/linux-headers-6.1.0-56-rt-amd64_6.1.192-2_amd64.deb
Size: 1841356
SHA256: 95898601143bbb2d2ba1d9df063fef547de52ca8ed1bc80167031195b045260a

Package: linux-headers-6.1.0-55-amd64
Source: linux
Version: 6.1.176-1
Architecture: amd64
Depends: linux-headers-6.1.0-55-common (= 6.1.176-1), linux-kbuild-6.1 (>= 6.1.176-1), linux-compiler-gcc-12-x86
Filename: pool/updates/main/l/linux/linux-headers-6.1.0-55-amd64_6.1.176-1_amd64.deb
Size: 1841000
SHA256: 1111111111111111111111111111111111111111111111111111111111111111

Package: linux-headers-6.1.0-55-common
Source: linux
Version: 6.1.176-1
Architecture: all
Filename: pool/updates/main/l/linux/linux-headers-6.1.0-55-common_6.1.176-1_all.deb
Size: 10530000
SHA256: 2222222222222222222222222222222222222222222222222222222222222222

Package: linux-kbuild-6.1
Source: linux
Version: 6.1.192-2
Installed-Size: 2397
Architecture: amd64
Depends: libc6 (>= 2.34), libelf1 (>= 0.142), libssl3 (>= 3.0.0)
Description: Kbuild infrastructure for Linux 6.1
Multi-Arch: foreign
Filename: pool/updates/main/l/linux/linux-kbuild-6.1_6.1.192-2_amd64.deb
Size: 1568188
SHA256: 7e852381f1c455a439230ea3261e3669f2307afdbed57db0fc08ed8ffa689f60

Package: linux-headers-6.12.117+deb12-amd64
Source: linux-6.12
Version: 6.12.117-1~deb12u1
Architecture: amd64
Depends: linux-base (>= 4.12~), linux-headers-6.12.117+deb12-common (= 6.12.117-1~deb12u1), linux-image-6.12.117+deb12-amd64 (= 6.12.117-1~deb12u1) | linux-image-6.12.117+deb12-amd64-unsigned (= 6.12.117-1~deb12u1), linux-kbuild-6.12.117+deb12, gcc-12
Description: Header files for Linux 6.12.117+deb12-amd64
Filename: pool/updates/main/l/linux-6.12/linux-headers-6.12.117+deb12-amd64_6.12.117-1~deb12u1_amd64.deb
Size: 3271240
SHA256: 8ee4c67f8399bc6f9aa1c5256d9d1b1b7eace76c7acca519e63f1b7df5fc4bd0

Package: linux-headers-6.12.117+deb12-common
Source: linux-6.12
Version: 6.12.117-1~deb12u1
Architecture: all
Multi-Arch: foreign
Filename: pool/updates/main/l/linux-6.12/linux-headers-6.12.117+deb12-common_6.12.117-1~deb12u1_all.deb
Size: 11400576
SHA256: 0c70107dda266a9d26dc119d80a71589202b17fbf4d4ddf544681c89e2002742

Package: linux-kbuild-6.12.117+deb12
Source: linux-6.12
Version: 6.12.117-1~deb12u1
Architecture: amd64
Depends: libc6 (>= 2.34), libelf1 (>= 0.142), libssl3 (>= 3.0.0)
Filename: pool/updates/main/l/linux-6.12/linux-kbuild-6.12.117+deb12_6.12.117-1~deb12u1_amd64.deb
Size: 1600000
SHA256: 3333333333333333333333333333333333333333333333333333333333333333

Package: linux-headers-amd64
Source: linux-signed-amd64 (6.1.192+2)
Version: 6.1.192-2
Architecture: amd64
Provides: linux-headers-generic
Depends: linux-headers-6.1.0-56-amd64 (= 6.1.192-2)
Description: Header files for Linux amd64 configuration (meta-package)
Built-Using: linux (= 6.1.192-2)
Filename: pool/updates/main/l/linux-signed-amd64/linux-headers-amd64_6.1.192-2_amd64.deb
Size: 1420
SHA256: 2ba10c8ee33ec5719563ba26e0268ae3bfa66147959083123c62a32cdb9446c7

Package: linux-headers-6.12-amd64
Source: linux-signed-6.12-amd64 (6.12.117+1~deb12u1)
Version: 6.12.117-1~deb12u1
Architecture: amd64
Depends: linux-headers-6.12.117+deb12-amd64 (= 6.12.117-1~deb12u1)
Filename: pool/updates/main/l/linux-signed-6.12-amd64/linux-headers-6.12-amd64_6.12.117-1~deb12u1_amd64.deb
Size: 1408
SHA256: dbac6d22407553510f03fc80dc14eface21e4db8306d4cdc1a867bdb154c6cd0
";

    /// The arm64 side of the same upload (digests made up; shapes as in the real index).
    pub(crate) const BOOKWORM_SECURITY_ARM64: &str = "\
Package: linux-headers-6.1.0-56-arm64
Source: linux
Version: 6.1.192-2
Architecture: arm64
Depends: linux-headers-6.1.0-56-common (= 6.1.192-2), linux-kbuild-6.1 (>= 6.1.192-2), linux-compiler-gcc-12-arm
Filename: pool/updates/main/l/linux/linux-headers-6.1.0-56-arm64_6.1.192-2_arm64.deb
Size: 1700000
SHA256: 4444444444444444444444444444444444444444444444444444444444444444

Package: linux-headers-6.1.0-56-cloud-arm64
Source: linux
Version: 6.1.192-2
Architecture: arm64
Depends: linux-headers-6.1.0-56-common (= 6.1.192-2), linux-kbuild-6.1 (>= 6.1.192-2), linux-compiler-gcc-12-arm
Filename: pool/updates/main/l/linux/linux-headers-6.1.0-56-cloud-arm64_6.1.192-2_arm64.deb
Size: 1600000
SHA256: 5555555555555555555555555555555555555555555555555555555555555555

Package: linux-headers-6.1.0-56-common
Source: linux
Version: 6.1.192-2
Architecture: all
Filename: pool/updates/main/l/linux/linux-headers-6.1.0-56-common_6.1.192-2_all.deb
Size: 10533276
SHA256: 509e776de8353799a53f4b14d29e87863aac2b7ee9264544bc2821461a853930

Package: linux-kbuild-6.1
Source: linux
Version: 6.1.192-2
Architecture: arm64
Filename: pool/updates/main/l/linux/linux-kbuild-6.1_6.1.192-2_arm64.deb
Size: 1500000
SHA256: 6666666666666666666666666666666666666666666666666666666666666666
";

    fn index() -> PackageIndex {
        PackageIndex::parse(
            BOOKWORM_SECURITY_AMD64,
            "http://mirror.invalid/debian-security/",
            "bookworm-security",
            "amd64",
        )
        .unwrap()
    }

    #[test]
    fn parses_stanzas() {
        let idx = index();
        assert_eq!(idx.base_uri, "http://mirror.invalid/debian-security");
        assert_eq!(idx.packages.len(), 12);
        let h = idx.newest("linux-headers-6.12.117+deb12-amd64").unwrap();
        assert_eq!(h.version, "6.12.117-1~deb12u1");
        assert_eq!(h.architecture, "amd64");
        assert_eq!(h.size, 3271240);
        assert_eq!(h.source.as_deref(), Some("linux-6.12"));
        let names: Vec<_> = h.depends.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "linux-base",
                "linux-headers-6.12.117+deb12-common",
                "linux-image-6.12.117+deb12-amd64",
                "linux-kbuild-6.12.117+deb12",
                "gcc-12"
            ]
        );
        assert_eq!(
            h.depends[2].relation,
            Some(("=".into(), "6.12.117-1~deb12u1".into()))
        );
        assert_eq!(h.depends[3].relation, None);
        let meta = idx.newest("linux-headers-amd64").unwrap();
        assert_eq!(meta.source.as_deref(), Some("linux-signed-amd64"));
        assert_eq!(
            idx.url(meta),
            "http://mirror.invalid/debian-security/pool/updates/main/l/linux-signed-amd64/linux-headers-amd64_6.1.192-2_amd64.deb"
        );
    }

    #[test]
    fn lookups_follow_versions() {
        let mut idx = index();
        // A second, older upload of the same package, as some repositories keep.
        let mut old = idx.newest("linux-kbuild-6.1").unwrap().clone();
        old.version = "6.1.176-1".into();
        idx.packages.push(old);
        assert_eq!(idx.versions_of("linux-kbuild-6.1").len(), 2);
        assert_eq!(idx.newest("linux-kbuild-6.1").unwrap().version, "6.1.192-2");
        let dep = |s: &str| Dependency::parse(s).unwrap();
        let v = |d: &str| idx.satisfying(&dep(d)).map(|p| p.version.as_str());
        assert_eq!(v("linux-kbuild-6.1 (>= 6.1.176-1)"), Some("6.1.192-2"));
        assert_eq!(v("linux-kbuild-6.1 (= 6.1.176-1)"), Some("6.1.176-1"));
        assert_eq!(v("linux-kbuild-6.1 (<< 6.1.192-2)"), Some("6.1.176-1"));
        assert_eq!(v("linux-kbuild-6.1 (<= 6.1.192-2)"), Some("6.1.192-2"));
        assert_eq!(v("linux-kbuild-6.1 (>> 6.1.192-2)"), None);
        assert_eq!(v("linux-kbuild-6.1 (>> 6.1.176-1)"), Some("6.1.192-2"));
        assert_eq!(v("linux-kbuild-6.1"), Some("6.1.192-2"));
        assert_eq!(v("linux-kbuild-9.9"), None);
        assert!(idx.versions_of("nope").is_empty());
    }

    #[test]
    fn dependency_syntax() {
        let d = Dependency::parse("python3:any (>= 3.9~) | python3-minimal").unwrap();
        assert_eq!(d.name, "python3");
        assert_eq!(d.relation, Some((">=".into(), "3.9~".into())));
        let d = Dependency::parse("foo (<2.0)").unwrap();
        assert_eq!(d.relation, Some(("<=".into(), "2.0".into())));
        let d = Dependency::parse("foo [amd64] ( >>  1 )").unwrap();
        assert_eq!(
            (d.name.as_str(), d.relation),
            ("foo", Some((">>".into(), "1".into())))
        );
        for bad in ["foo (>= 1", "foo (!= 1)", "foo (>=)", "(= 1)", "", "a b"] {
            assert!(Dependency::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn continuation_lines_and_odd_spacing() {
        let text = "package: a\r\nversion: 1\r\narchitecture: all\r\nDepends: b (>= 1),\r\n c,\r\n\td | e\r\n\
                    Description: x\r\n long\r\n .\r\n text: with colon\r\nFilename: pool/a.deb\r\n\r\n\r\n";
        let idx = PackageIndex::parse(text, "http://m", "s", "amd64").unwrap();
        let a = &idx.packages[0];
        let deps: Vec<_> = a.depends.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(deps, ["b", "c", "d"]);
        assert_eq!((a.size, a.sha256.as_str()), (0, ""));
        assert_eq!(idx.header_package(a).sha256, None);
    }

    #[test]
    fn malformed_indices_are_errors() {
        let cases = [
            (
                "Version: 1\nFilename: a\n",
                "line 1: stanza without a Package field",
            ),
            (
                "Package: a\nArchitecture: all\nFilename: a\n",
                "package a has no Version",
            ),
            (
                "Package: a\nVersion: 1\nArchitecture: all\n",
                "package a has no Filename",
            ),
            (
                "\n\nPackage: a\nVersion: 1\nArchitecture: all\nFilename: a\nSize: 1x\n",
                "line 3: package a has a bad Size",
            ),
            (
                "Package: a\nVersion: 1\nArchitecture: all\nFilename: a\nSHA256: abc\n",
                "bad SHA256",
            ),
            (
                "Package: a\nVersion: 1\nArchitecture: all\nFilename: ../../etc/passwd\n",
                "unsafe Filename",
            ),
            (
                "Package: a\nVersion: 1\nArchitecture: all\nFilename: /etc/passwd\n",
                "unsafe Filename",
            ),
            (
                "Package: a\nVersion: 1\nArchitecture: all\nFilename: a\nDepends: b (>= 1\n",
                "unclosed parenthesis",
            ),
            (
                "Package: a\nthis is not a field\n",
                "line 2: expected `Field: value`",
            ),
        ];
        for (text, want) in cases {
            let err = PackageIndex::parse(text, "http://m", "sid", "amd64")
                .unwrap_err()
                .to_string();
            assert!(err.contains(want), "{text:?}: got {err}");
            assert!(err.contains("http://m/dists/sid"), "{err}");
        }
    }

    #[test]
    fn reader_path_filters_and_matches_text_path() {
        let full = index();
        let kept = parse_reader(
            std::io::Cursor::new(BOOKWORM_SECURITY_AMD64.as_bytes()),
            "t",
            |name| name.starts_with("linux-kbuild-"),
        )
        .unwrap();
        let want: Vec<_> = full
            .packages
            .iter()
            .filter(|p| p.package.starts_with("linux-kbuild-"))
            .cloned()
            .collect();
        assert_eq!(kept, want);
        let all = parse_reader(
            std::io::Cursor::new(BOOKWORM_SECURITY_AMD64.as_bytes()),
            "t",
            |_| true,
        )
        .unwrap();
        assert_eq!(all, full.packages);
        // Invalid UTF-8 in an unused field does not lose the package.
        let bytes =
            b"Package: a\nMaintainer: J\xf6rg\nVersion: 1\nArchitecture: all\nFilename: a.deb\n";
        let got = parse_reader(std::io::Cursor::new(&bytes[..]), "t", |_| true).unwrap();
        assert_eq!(got[0].package, "a");
    }

    #[test]
    fn header_packages_carry_digests() {
        let idx = index();
        let h = idx.newest("linux-headers-6.1.0-56-amd64").unwrap();
        let c = idx.newest("linux-headers-6.1.0-56-common").unwrap();
        let got = header_packages_to_kmf(&idx, &[h, c]);
        assert_eq!(got.len(), 2);
        assert_eq!(
            got[1].package.as_deref(),
            Some("linux-headers-6.1.0-56-common")
        );
        assert_eq!(got[1].version.as_deref(), Some("6.1.192-2"));
        assert_eq!(
            got[1].sha256.as_deref(),
            Some("509e776de8353799a53f4b14d29e87863aac2b7ee9264544bc2821461a853930")
        );
        assert_eq!(got[1].size, Some(10533276));
        assert_eq!(
            got[1].path.as_deref(),
            Some("pool/updates/main/l/linux/linux-headers-6.1.0-56-common_6.1.192-2_all.deb")
        );
        assert_eq!(
            got[1].file_name(),
            "linux-headers-6.1.0-56-common_6.1.192-2_all.deb"
        );
    }
}
