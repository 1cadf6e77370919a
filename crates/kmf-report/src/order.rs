//! The order in which reports list drivers, distributions and kernels, and how results are grouped.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use crate::{Status, VariantResult};

/// Natural ordering: runs of digits compare as numbers, everything else byte by byte, so `5.4.0` sorts before
/// `5.10.0`, `6.1.0-9-amd64` before `6.1.0-50-amd64` and `centos7` before `centos10`.
pub(crate) fn natural_cmp(a: &str, b: &str) -> Ordering {
    let (mut a, mut b) = (a.as_bytes(), b.as_bytes());
    loop {
        match (a.first(), b.first()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(x), Some(y)) if x.is_ascii_digit() && y.is_ascii_digit() => {
                let (na, ra) = split_run(a, |c| c.is_ascii_digit());
                let (nb, rb) = split_run(b, |c| c.is_ascii_digit());
                let ta = trim_zeros(na);
                let tb = trim_zeros(nb);
                let by_value = ta.len().cmp(&tb.len()).then_with(|| ta.cmp(tb));
                // Equal values: fewer leading zeros first, so the order stays total.
                match by_value.then_with(|| na.len().cmp(&nb.len())) {
                    Ordering::Equal => {}
                    other => return other,
                }
                (a, b) = (ra, rb);
            }
            (Some(x), Some(y)) => {
                match x.cmp(y) {
                    Ordering::Equal => {}
                    other => return other,
                }
                (a, b) = (&a[1..], &b[1..]);
            }
        }
    }
}

fn split_run(s: &[u8], pred: impl Fn(&u8) -> bool) -> (&[u8], &[u8]) {
    let n = s.iter().take_while(|c| pred(c)).count();
    s.split_at(n)
}

fn trim_zeros(s: &[u8]) -> &[u8] {
    let n = s.iter().take_while(|&&c| c == b'0').count();
    &s[n..]
}

/// The names architectures go by inside kernel releases (`-amd64`, `.x86_64`, `-arm64`, `.aarch64`).
const ARCH_TOKENS: [&str; 4] = ["x86_64", "aarch64", "amd64", "arm64"];

/// What stands for the architecture in [`arch_neutral`] releases.
pub(crate) const ARCH_PLACEHOLDER: &str = "‹arch›";

/// A kernel release with its architecture name replaced by [`ARCH_PLACEHOLDER`], so that
/// `6.1.0-50-amd64` and `6.1.0-50-arm64` (or `5.14.0-427.el9.x86_64` and `…aarch64`) land in one row of the
/// grid. Only whole tokens between `-`, `.`, `_`, `+` or the ends are replaced.
pub(crate) fn arch_neutral(release: &str) -> String {
    let is_sep = |c: Option<char>| matches!(c, None | Some('-' | '.' | '_' | '+'));
    let mut out = String::with_capacity(release.len());
    let mut i = 0;
    'outer: while i < release.len() {
        let rest = &release[i..];
        let before = release[..i].chars().next_back();
        if is_sep(before) {
            for token in ARCH_TOKENS {
                if rest.starts_with(token) && is_sep(rest[token.len()..].chars().next()) {
                    out.push_str(ARCH_PLACEHOLDER);
                    i += token.len();
                    continue 'outer;
                }
            }
        }
        let c = rest.chars().next().expect("i < len");
        out.push(c);
        i += c.len_utf8();
    }
    out
}

/// Counts of a set of results.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Counts {
    pub total: usize,
    pub ok: usize,
    pub up_to_date: usize,
    pub failed: usize,
    /// Not applicable to the kernel (the project's requirements rule it out).
    pub excluded: usize,
    /// Failures per class, in the order of [`kmf_types::FailureClass`].
    pub by_class: BTreeMap<kmf_types::FailureClass, usize>,
}

impl Counts {
    pub fn of<'a>(results: impl IntoIterator<Item = &'a VariantResult>) -> Counts {
        let mut c = Counts::default();
        for r in results {
            c.total += 1;
            match &r.status {
                Status::Success => c.ok += 1,
                Status::UpToDate => c.up_to_date += 1,
                Status::Excluded { .. } => c.excluded += 1,
                Status::Failed { class, .. } => {
                    c.failed += 1;
                    *c.by_class.entry(*class).or_default() += 1;
                }
            }
        }
        c
    }
}

/// One driver (at one version) and its results.
pub(crate) struct DriverGroup<'a> {
    pub driver: &'a str,
    pub version: &'a str,
    pub results: Vec<&'a VariantResult>,
}

impl DriverGroup<'_> {
    /// `hello 0.1.0`.
    pub fn title(&self) -> String {
        if self.version.is_empty() {
            self.driver.to_string()
        } else {
            format!("{} {}", self.driver, self.version)
        }
    }
}

/// Results grouped by driver and driver version (natural order), each group's results in [`variant_cmp`]
/// order.
pub(crate) fn by_driver(results: &[VariantResult]) -> Vec<DriverGroup<'_>> {
    let mut groups: Vec<DriverGroup<'_>> = Vec::new();
    for r in results {
        match groups
            .iter_mut()
            .find(|g| g.driver == r.driver && g.version == r.driver_version)
        {
            Some(g) => g.results.push(r),
            None => groups.push(DriverGroup {
                driver: &r.driver,
                version: &r.driver_version,
                results: vec![r],
            }),
        }
    }
    groups.sort_by(|a, b| {
        natural_cmp(a.driver, b.driver).then_with(|| natural_cmp(a.version, b.version))
    });
    for g in &mut groups {
        g.results.sort_by(|a, b| variant_cmp(a, b));
    }
    groups
}

/// Distribution, then kernel release (architecture-neutral, natural), then upload, then architecture: the
/// order of the HTML grid's rows and cells.
pub(crate) fn variant_cmp(a: &VariantResult, b: &VariantResult) -> Ordering {
    natural_cmp(&a.entry.distribution, &b.entry.distribution)
        .then_with(|| {
            natural_cmp(
                &arch_neutral(&a.entry.kversion),
                &arch_neutral(&b.entry.kversion),
            )
        })
        .then_with(|| natural_cmp(upload_suffix(a), upload_suffix(b)))
        .then_with(|| a.entry.architecture.cmp(&b.entry.architecture))
        .then_with(|| natural_cmp(&a.entry.kversion, &b.entry.kversion))
        .then_with(|| natural_cmp(&a.entry.output, &b.entry.output))
}

/// The grid row a variant belongs in: distribution, architecture-neutral release, upload suffix.
pub(crate) fn row_key(r: &VariantResult) -> (String, String, String) {
    (
        r.entry.distribution.clone(),
        arch_neutral(&r.entry.kversion),
        upload_suffix(r).to_string(),
    )
}

/// What the store prefix adds after the release when one release was uploaded more than once (`_2` of
/// `…/6.1.0-50-amd64_2`); empty otherwise.
pub(crate) fn upload_suffix(r: &VariantResult) -> &str {
    let last = r.entry.output.rsplit('/').next().unwrap_or("");
    last.strip_prefix(r.entry.kversion.as_str()).unwrap_or("")
}

/// The release a variant is named by: the matrix's `kversion`. It is known before anything ran and stays the
/// same from run to run, which is what CI test histories key on; the release read from the header tree
/// (`kernel_release`) is shown beside it where it differs.
pub(crate) fn release_name(r: &VariantResult) -> &str {
    &r.entry.kversion
}

/// The header tree's `uname -r` when it differs from the matrix's release.
pub(crate) fn other_release(r: &VariantResult) -> Option<&str> {
    r.kernel_release
        .as_deref()
        .filter(|k| !k.is_empty() && *k != r.entry.kversion)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sorted(mut v: Vec<&str>) -> Vec<&str> {
        v.sort_by(|a, b| natural_cmp(a, b));
        v
    }

    #[test]
    fn natural_order_of_kernel_releases_and_distros() {
        assert_eq!(
            sorted(vec![
                "6.1.0-50-amd64",
                "5.10.0-9-amd64",
                "6.1.0-9-amd64",
                "5.4.0-100-generic",
                "5.10.0-30-amd64",
            ]),
            vec![
                "5.4.0-100-generic",
                "5.10.0-9-amd64",
                "5.10.0-30-amd64",
                "6.1.0-9-amd64",
                "6.1.0-50-amd64",
            ]
        );
        assert_eq!(
            sorted(vec![
                "centos10",
                "amazonlinux2023",
                "centos7",
                "amazonlinux2",
                "debian"
            ]),
            vec![
                "amazonlinux2",
                "amazonlinux2023",
                "centos7",
                "centos10",
                "debian"
            ]
        );
        assert_eq!(natural_cmp("a01", "a1"), Ordering::Greater);
        assert_eq!(natural_cmp("a1", "a1"), Ordering::Equal);
        assert_eq!(natural_cmp("a", "a1"), Ordering::Less);
    }

    #[test]
    fn architecture_names_are_neutralised_as_whole_tokens() {
        assert_eq!(arch_neutral("6.1.0-50-amd64"), "6.1.0-50-‹arch›");
        assert_eq!(
            arch_neutral("6.1.0-50-cloud-arm64"),
            "6.1.0-50-cloud-‹arch›"
        );
        assert_eq!(
            arch_neutral("5.14.0-427.13.1.el9_4.x86_64"),
            "5.14.0-427.13.1.el9_4.‹arch›"
        );
        assert_eq!(
            arch_neutral("5.14.0-427.13.1.el9_4.aarch64"),
            "5.14.0-427.13.1.el9_4.‹arch›"
        );
        assert_eq!(arch_neutral("5.15.0-100-generic"), "5.15.0-100-generic");
        assert_eq!(arch_neutral("6.6.15+rpt-rpi-v8"), "6.6.15+rpt-rpi-v8");
        // Not a whole token.
        assert_eq!(arch_neutral("6.1-xamd64"), "6.1-xamd64");
        assert_eq!(arch_neutral("6.1-amd64x"), "6.1-amd64x");
    }
}
