//! `diff` on matrices generated from the real kernel-crawler lists in `../shared` (skipped when absent).

use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

use kmf_matrix::{diff, generate, ChangeReason, DiffOptions, HoldReason, MatrixFilter};
use kmf_types::{Arch, HeaderPackage, KernelList, KernelVersion, MatrixEntry};
use sha2::{Digest, Sha256};

/// Both published lists, each entry placed on its list's architecture (kernel-crawler publishes one list
/// per architecture), as `kmodfarm matrix generate --kernels x86_64-list... --kernels aarch64-list...` reads them.
fn shared_lists() -> Option<KernelList> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/kernel-crawler");
    let mut all = KernelList::default();
    for (name, arch) in [
        ("x86_64-list-2022-10-03.json", Arch::X86_64),
        ("aarch64-list-2022-10-03.json", Arch::Aarch64),
    ] {
        let path = dir.join(name);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) => {
                eprintln!(
                    "SKIP: kernel-crawler list {} not readable ({e})",
                    path.display()
                );
                return None;
            }
        };
        let mut list: KernelList = serde_json::from_slice(&bytes).unwrap();
        for e in list.distros.values_mut().flatten() {
            e.arch.get_or_insert(arch);
        }
        all.merge(list);
    }
    Some(all)
}

fn matrix(list: &KernelList, driver_version: &str) -> Vec<MatrixEntry> {
    let filter = MatrixFilter {
        distros: None,
        arches: Arch::ALL.to_vec(),
        driver_version: driver_version.into(),
        kernel_release: None,
    };
    let g = generate(list, &filter).unwrap();
    assert_eq!(g.duplicates, 0);
    g.entries
}

/// The next crawl as kernel-crawler and the mirrors may well make it: entries in another order, every header
/// list reversed, every package served from another host and path under the same file name, and the upload
/// counter of every release listed once renumbered.
fn next_crawl(list: &KernelList) -> KernelList {
    let mut listed: HashMap<(&str, Option<Arch>, &str), usize> = HashMap::new();
    for (distro, entries) in &list.distros {
        for e in entries {
            *listed
                .entry((distro, e.arch, &e.kernelrelease))
                .or_default() += 1;
        }
    }
    let mut out = KernelList::default();
    for (distro, entries) in &list.distros {
        let mut moved: Vec<_> = entries
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let mut e = e.clone();
                if listed[&(distro.as_str(), e.arch, e.kernelrelease.as_str())] == 1 {
                    e.kernelversion = KernelVersion::Text(format!("9{i}"));
                }
                e.headers = e
                    .headers
                    .iter()
                    .rev()
                    .map(|u| {
                        let file = u.rsplit('/').next().unwrap();
                        format!("https://mirror{}.example/moved/{distro}/{file}", i % 7)
                    })
                    .collect();
                e
            })
            .collect();
        moved.reverse();
        out.distros.insert(distro.clone(), moved);
    }
    out
}

/// Gives every header package a digest derived from its file name, as a crawl with digests would.
fn with_digests(entries: &[MatrixEntry]) -> Vec<MatrixEntry> {
    entries
        .iter()
        .cloned()
        .map(|mut e| {
            e.headerpackages = e
                .kernelurls
                .iter()
                .map(|u| {
                    let mut p = HeaderPackage::from_url(u);
                    p.sha256 = Some(hex::encode(Sha256::digest(p.file_name().as_bytes())));
                    p
                })
                .collect();
            e
        })
        .collect()
}

fn timed_diff(old: &[MatrixEntry], new: &[MatrixEntry]) -> kmf_matrix::MatrixDiff {
    let started = Instant::now();
    let out = diff(old, new, &DiffOptions::default());
    eprintln!(
        "diff of {} vs {} entries: {:?}",
        old.len(),
        new.len(),
        started.elapsed()
    );
    out
}

#[test]
fn reordered_headers_and_moved_mirrors_are_no_change() {
    let Some(list) = shared_lists() else { return };
    let old = matrix(&list, "0.1.1");
    assert!(old.len() > 6000, "{} entries", old.len());
    let mut new = matrix(&next_crawl(&list), "0.1.1");
    new.reverse();
    assert_eq!(new.len(), old.len());
    assert_ne!(old, new);
    let out = timed_diff(&old, &new);
    assert_eq!(out.summary().build, 0, "{:#?}", &out.modified.get(..3));
    assert!(out.is_empty());
    assert_eq!(out.unchanged, old.len());

    // The same with digests on both sides.
    let out = timed_diff(&with_digests(&old), &with_digests(&new));
    assert!(out.is_empty());
}

#[test]
fn a_driver_patch_release_modifies_every_entry() {
    let Some(list) = shared_lists() else { return };
    let old = matrix(&list, "0.1.1");
    let new = matrix(&next_crawl(&list), "0.1.2");
    let out = timed_diff(&old, &new);
    assert_eq!(out.modified.len(), old.len());
    assert_eq!(
        (out.added.len(), out.removed.len(), out.unchanged),
        (0, 0, 0)
    );
    for m in &out.modified {
        assert_eq!(
            m.reasons,
            [ChangeReason::DriverVersion {
                old: "0.1.1".into(),
                new: "0.1.2".into()
            }]
        );
    }
    assert_eq!(out.to_build().len(), old.len());
}

#[test]
fn one_changed_sha256_modifies_exactly_its_entry() {
    let Some(list) = shared_lists() else { return };
    let old = with_digests(&matrix(&list, "0.1.1"));
    let mut new = with_digests(&matrix(&next_crawl(&list), "0.1.1"));
    let target = new
        .iter()
        .position(|e| e.distribution == "ubuntu" && e.headerpackages.len() > 1)
        .unwrap();
    new[target].headerpackages[1].sha256 = Some("0".repeat(64));
    let out = timed_diff(&old, &new);
    assert_eq!(out.modified.len(), 1);
    assert_eq!(out.unchanged, old.len() - 1);
    assert_eq!(out.modified[0].new.output, new[target].output);
    assert!(
        matches!(&out.modified[0].reasons[..], [ChangeReason::HeaderSha256 { new, .. }] if *new == "0".repeat(64)),
        "{:?}",
        out.modified[0].reasons
    );
    assert_eq!(out.to_build(), vec![new[target].clone()]);
}

#[test]
fn a_vanished_distro_is_held_and_one_dropped_entry_is_removed() {
    let Some(list) = shared_lists() else { return };
    let old = matrix(&list, "0.1.1");
    let debian = old.iter().filter(|e| e.distribution == "debian").count();
    assert!(debian > 0);
    let mut new: Vec<_> = matrix(&next_crawl(&list), "0.1.1")
        .into_iter()
        .filter(|e| e.distribution != "debian")
        .collect();
    let dropped = new.iter().position(|e| e.distribution == "ubuntu").unwrap();
    let dropped = new.remove(dropped);

    let out = timed_diff(&old, &new);
    assert_eq!(out.removed.len(), 1);
    assert_eq!(out.removed[0].output, dropped.output);
    assert_eq!(out.kept.len(), debian);
    assert!(out.kept.iter().all(|e| e.distribution == "debian"));
    assert_eq!(out.held.len(), 2, "{:?}", out.held);
    for g in &out.held {
        assert_eq!(g.distribution, "debian");
        assert_eq!((g.new, g.reason), (0, HoldReason::Missing));
    }
    assert_eq!(out.warnings().len(), 2);
    assert_eq!(out.unchanged, old.len() - debian - 1);
    assert!(out.to_build().is_empty());

    // Two thirds of Ubuntu's x86_64 kernels gone: held, not removed.
    let ubuntu_x86 = |e: &MatrixEntry| e.distribution == "ubuntu" && e.architecture == Arch::X86_64;
    let mut n = 0;
    let shrunk: Vec<_> = old
        .iter()
        .filter(|e| {
            n += 1;
            !ubuntu_x86(e) || n % 3 == 0
        })
        .cloned()
        .collect();
    let out = timed_diff(&old, &shrunk);
    assert!(out.removed.is_empty());
    assert_eq!(out.held.len(), 1);
    assert_eq!(out.held[0].reason, HoldReason::Shrunk);
    assert_eq!(out.kept.len(), old.len() - shrunk.len());
}

#[test]
fn ten_times_the_real_lists_diff_in_linear_time() {
    let Some(list) = shared_lists() else { return };
    // Ten copies of every kernel under distinct releases: about 64,000 variants.
    let mut big = KernelList::default();
    for (distro, entries) in &list.distros {
        let copies = (0..10).flat_map(|k| {
            entries.iter().map(move |e| {
                let mut e = e.clone();
                e.kernelrelease = format!("{}.s{k}", e.kernelrelease);
                e
            })
        });
        big.distros.insert(distro.clone(), copies.collect());
    }
    let old = matrix(&big, "0.1.1");
    assert!(old.len() > 60_000, "{} entries", old.len());
    let new = matrix(&next_crawl(&big), "0.1.1");
    let started = Instant::now();
    let out = timed_diff(&old, &new);
    assert!(out.is_empty());
    // Generous even for a debug build; a quadratic comparison would take minutes.
    assert!(started.elapsed().as_secs() < 20, "{:?}", started.elapsed());
}
