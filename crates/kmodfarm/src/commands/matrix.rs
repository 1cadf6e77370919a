use kmf_matrix::MatrixFilter;

use super::{http_client, write_output, Outcome};
use crate::cli::{FilterArgs, GenerateArgs};

pub(crate) fn filter(args: &FilterArgs, driver_version: &str) -> MatrixFilter {
    MatrixFilter {
        distros: args.distro.clone(),
        arches: args.arch.clone(),
        driver_version: driver_version.to_string(),
        kernel_release: args.kernel_release.clone(),
    }
}

pub async fn generate(args: GenerateArgs) -> anyhow::Result<Outcome> {
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
    tracing::info!(variants = generated.entries.len(), "matrix generated");
    write_output(
        args.out.as_deref(),
        &kmf_matrix::to_json(&generated.entries)?,
    )?;
    Ok(Outcome::Success)
}
