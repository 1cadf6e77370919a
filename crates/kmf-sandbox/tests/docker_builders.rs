//! Every Dockerfile under `builders/` parses (with a real Dockerfile parser, no engine needed) and has what a
//! module build needs: a `FROM ${BASE}` with a default, the toolchain packages, the family label matching
//! its directory, and a non-root user.

use std::path::{Path, PathBuf};

use dockerfile_parser::{Dockerfile, Instruction, ShellOrExecExpr};

fn builders_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../builders")
}

const FAMILIES: &[&str] = &[
    "almalinux-8",
    "almalinux-9",
    "amazonlinux-2",
    "amazonlinux-2023",
    "debian-bookworm",
    "debian-bullseye",
    "debian-trixie",
    "fedora",
    "ubuntu-20.04",
    "ubuntu-22.04",
    "ubuntu-24.04",
];

#[test]
fn every_family_has_a_dockerfile() {
    let mut found: Vec<String> = std::fs::read_dir(builders_dir())
        .unwrap()
        .flatten()
        .filter(|e| e.path().join("Dockerfile").is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    found.sort();
    assert_eq!(found, FAMILIES);
}

#[test]
fn dockerfiles_parse_and_install_a_module_toolchain() {
    for family in FAMILIES {
        let path = builders_dir().join(family).join("Dockerfile");
        let text = std::fs::read_to_string(&path).unwrap();
        let df = Dockerfile::parse(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));

        let base_default = df.global_args.iter().find(|a| a.name.content == "BASE");
        let base_default = base_default
            .and_then(|a| a.value.as_ref())
            .unwrap_or_else(|| panic!("{family}: no `ARG BASE=<image>` before FROM"));
        assert!(!base_default.content.is_empty(), "{family}");
        assert_eq!(df.stages().stages.len(), 1, "{family}: one stage");

        let mut from = None;
        let mut runs = String::new();
        let mut labels = Vec::new();
        let mut user = None;
        for ins in &df.instructions {
            match ins {
                Instruction::From(f) => from = Some(f.image.content.clone()),
                Instruction::Run(r) => {
                    if let ShellOrExecExpr::Shell(s) = &r.expr {
                        runs.push_str(&s.to_string());
                        runs.push('\n');
                    }
                }
                Instruction::Label(l) => {
                    for label in &l.labels {
                        labels.push((label.name.content.clone(), label.value.content.clone()));
                    }
                }
                Instruction::Misc(m) if m.instruction.content.eq_ignore_ascii_case("USER") => {
                    user = Some(m.arguments.to_string().trim().to_string());
                }
                _ => {}
            }
        }
        assert_eq!(from.as_deref(), Some("${BASE}"), "{family}");
        let rpm = !family.starts_with("debian") && !family.starts_with("ubuntu");
        let needed: &[&str] = if rpm {
            &[
                "gcc",
                "make",
                "bc",
                "flex",
                "bison",
                "elfutils-libelf-devel",
                "openssl-devel",
                "kmod",
            ]
        } else {
            &[
                "gcc-",
                "aarch64-linux-gnu",
                "make",
                "bc",
                "flex",
                "bison",
                "libelf-dev",
                "libssl-dev",
                "kmod",
                "dwarves",
            ]
        };
        for pkg in needed {
            assert!(
                runs.split_whitespace().any(|w| w.contains(pkg)),
                "{family}: {pkg} not installed"
            );
        }
        if *family == "fedora" {
            assert!(
                runs.contains("gcc-aarch64-linux-gnu"),
                "fedora cross compiler"
            );
        }
        assert!(
            labels
                .iter()
                .any(|(k, v)| k == "org.kmodfarm.family" && v == family),
            "{family}: label org.kmodfarm.family={family} missing in {labels:?}"
        );
        let user = user.unwrap_or_else(|| panic!("{family}: no USER"));
        assert!(
            !user.starts_with('0') && user != "root",
            "{family}: USER {user}"
        );
    }
}

#[test]
fn a_broken_dockerfile_is_rejected_by_the_parser() {
    // The parser really parses: these fail.
    for bad in [
        "FROM\n",
        "ARG\nFROM debian\n",
        "FROM debian\nLABEL\n",
        "FROM debian\nRUN make \\\n",
    ] {
        assert!(Dockerfile::parse(bad).is_err(), "{bad:?} accepted");
    }
}
