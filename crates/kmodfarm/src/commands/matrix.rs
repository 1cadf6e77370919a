use std::path::Path;

use anyhow::Context;
use kmf_matrix::{DiffOptions, DiffSummary, HeldGroup, MatrixDiff, MatrixFilter, Modified};
use kmf_types::MatrixEntry;
use serde::Serialize;

use super::{http_client, write_output, Outcome};
use crate::cli::{DiffArgs, FilterArgs, GenerateArgs};

pub(crate) fn filter(args: &FilterArgs, driver_version: &str) -> MatrixFilter {
    MatrixFilter {
        distros: args.distro.clone(),
        arches: args.arch.clone(),
        driver_version: driver_version.to_string(),
        kernel_release: args.kernel_release.clone(),
    }
}

pub async fn generate(args: GenerateArgs) -> anyhow::Result<Outcome> {
    // The version becomes part of every entry's `output` (a store prefix): refused here, before any list is
    // read, as the build would refuse it later.
    kmf_types::names::check_version("--driver-version", &args.driver_version)?;
    let client = http_client()?;
    let f = filter(&args.filter, &args.driver_version);
    // Validate the cheap inputs before fetching lists over the network.
    kmf_matrix::generate(
        &Default::default(),
        &MatrixFilter {
            distros: None,
            ..f.clone()
        },
    )?;
    let lists = kmf_kernels::load_all(&args.kernels, &client).await?;
    let generated = kmf_matrix::generate(&lists, &f)?;
    if generated.unknown_arch > 0 {
        tracing::warn!(
            entries = generated.unknown_arch,
            "entries skipped: nothing tells their architecture (name the list file after it, e.g. x86_64-list.json)"
        );
    }
    if generated.unsafe_release > 0 {
        tracing::warn!(
            entries = generated.unsafe_release,
            "entries skipped: their kernelrelease is not a plain name (it would become a path in the store)"
        );
    }
    tracing::info!(variants = generated.entries.len(), "matrix generated");
    write_output(
        args.out.as_deref(),
        &kmf_matrix::to_json(&generated.entries)?,
    )?;
    Ok(Outcome::Success)
}

/// Reads a matrix file: a JSON array of entries, as `matrix generate` writes it, naming each variant once.
pub(crate) fn read_matrix(path: &Path) -> anyhow::Result<Vec<MatrixEntry>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let entries: Vec<MatrixEntry> = serde_json::from_str(&text).with_context(|| {
        format!(
            "{} is not a kmodfarm matrix (a JSON array of entries, as `matrix generate` writes)",
            path.display()
        )
    })?;
    kmf_matrix::check_unique(&entries)
        .with_context(|| format!("{} is not a usable matrix", path.display()))?;
    for (i, e) in entries.iter().enumerate() {
        kmf_types::names::check_relative_path("output", &e.output).with_context(|| {
            format!(
                "{} is not a usable matrix: entry {i} (counting from 0) would be stored outside its place",
                path.display()
            )
        })?;
    }
    Ok(entries)
}

/// How many entries of each class the human summary shows.
const SHOWN: usize = 5;

pub fn diff(args: DiffArgs) -> anyhow::Result<Outcome> {
    if !(0.0..=1.0).contains(&args.shrink_threshold) {
        anyhow::bail!(
            "--shrink-threshold must be a fraction from 0 to 1, not {}",
            args.shrink_threshold
        );
    }
    let old = read_matrix(&args.old)?;
    let new = read_matrix(&args.new)?;
    let opts = DiffOptions {
        shrink_threshold: args.shrink_threshold,
    };
    let diff = kmf_matrix::diff(&old, &new, &opts);
    let warnings = diff.warnings();
    for w in &warnings {
        tracing::warn!("{w}");
    }
    let build = diff.to_build();
    if let Some(path) = &args.build_matrix {
        write_output(Some(path), &kmf_matrix::to_json(&build)?)?;
    }
    if args.json {
        let report = DiffReport {
            summary: Summary {
                old: old.len(),
                new: new.len(),
                shrink_threshold: opts.shrink_threshold,
                counts: diff.summary(),
            },
            warnings: &warnings,
            build: &build,
            added: &diff.added,
            modified: &diff.modified,
            removed: &diff.removed,
            held: &diff.held,
            kept: &diff.kept,
        };
        write_output(None, &(serde_json::to_string_pretty(&report)? + "\n"))?;
    } else {
        write_output(None, &human_summary(&args, &old, &new, &diff))?;
    }
    Ok(Outcome::Success)
}

/// `matrix diff --json`.
#[derive(Serialize)]
struct DiffReport<'a> {
    summary: Summary,
    warnings: &'a [String],
    build: &'a [MatrixEntry],
    added: &'a [MatrixEntry],
    modified: &'a [Modified],
    removed: &'a [MatrixEntry],
    held: &'a [HeldGroup],
    kept: &'a [MatrixEntry],
}

#[derive(Serialize)]
struct Summary {
    old: usize,
    new: usize,
    shrink_threshold: f64,
    #[serde(flatten)]
    counts: DiffSummary,
}

fn human_summary(
    args: &DiffArgs,
    old: &[MatrixEntry],
    new: &[MatrixEntry],
    d: &MatrixDiff,
) -> String {
    let s = d.summary();
    let mut out = format!(
        "OLD {} ({} entries) -> NEW {} ({} entries)\n\
         to build:  {} ({} added, {} modified)\n\
         removed:   {}\n\
         held:      {} groups, {} entries kept (shrink threshold {})\n\
         unchanged: {}\n",
        args.old.display(),
        old.len(),
        args.new.display(),
        new.len(),
        s.build,
        s.added,
        s.modified,
        s.removed,
        s.held_groups,
        s.kept,
        args.shrink_threshold,
        s.unchanged,
    );
    let mut section = |title: &str, lines: Vec<String>| {
        if lines.is_empty() {
            return;
        }
        out.push_str(&format!("\n{title} ({}):\n", lines.len()));
        for line in lines.iter().take(SHOWN) {
            out.push_str(&format!("  {line}\n"));
        }
        if lines.len() > SHOWN {
            out.push_str(&format!("  ... and {} more\n", lines.len() - SHOWN));
        }
    };
    section(
        "warning: held groups",
        d.held.iter().map(ToString::to_string).collect(),
    );
    section(
        "added",
        d.added.iter().map(|e| format!("+ {}", e.output)).collect(),
    );
    section(
        "modified",
        d.modified
            .iter()
            .map(|m| {
                let reasons: Vec<String> = m.reasons.iter().map(ToString::to_string).collect();
                format!("~ {}: {}", m.new.output, reasons.join("; "))
            })
            .collect(),
    );
    section(
        "removed",
        d.removed
            .iter()
            .map(|e| format!("- {}", e.output))
            .collect(),
    );
    section(
        "kept in held groups",
        d.kept.iter().map(|e| format!("= {}", e.output)).collect(),
    );
    if args.build_matrix.is_none() && s.build > 0 {
        out.push_str(
            "\nhint: --build-matrix FILE writes the entries to build, for `build --matrix FILE`\n",
        );
    }
    out
}
