//! `--latest N`: the current kernels of each line rather than every upload the mirror still carries.

use std::collections::BTreeMap;

use kmf_kernels::apt::compare_versions;
use kmf_types::MatrixEntry;

/// Keeps the `n` newest entries of each (distribution, architecture, flavour, suite family, kernel series):
/// bookworm's 6.1 and its 6.12 `+deb12` kernels are separate lines; `bookworm` and `bookworm-security` are one.
pub fn latest(entries: Vec<MatrixEntry>, n: usize) -> Vec<MatrixEntry> {
    let mut groups: BTreeMap<(String, String, String, String, String), Vec<MatrixEntry>> =
        BTreeMap::new();
    for e in entries {
        let suite = e
            .suite
            .as_deref()
            .map(|s| s.split('-').next().unwrap_or(s).to_string())
            .unwrap_or_default();
        let series: String = e.kversion.split('.').take(2).collect::<Vec<_>>().join(".");
        let key = (
            e.distribution.clone(),
            e.architecture.to_string(),
            e.flavour.clone().unwrap_or_default(),
            suite,
            series,
        );
        groups.entry(key).or_default().push(e);
    }
    let mut out = Vec::new();
    for (_, mut group) in groups {
        group.sort_by(|a, b| {
            let va = a.packageversion.as_deref().unwrap_or(&a.kversion);
            let vb = b.packageversion.as_deref().unwrap_or(&b.kversion);
            compare_versions(vb, va)
        });
        out.extend(group.into_iter().take(n));
    }
    out.sort_by(|a, b| a.output.cmp(&b.output));
    out
}
