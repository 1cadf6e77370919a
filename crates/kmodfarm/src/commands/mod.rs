//! One file per subcommand; `run` picks the exit code in one place.

mod boot;
mod build;
mod builder;
mod ci;
mod fallback;
mod git_cache;
mod install;
mod kernels;
mod matrix;
mod plan;
mod preflight;
mod sync;

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use kmf_kernels::mirrors::DebianMirrors;

use crate::cli::{
    CiCommand, Cli, Command, GitCacheCommand, KernelsCommand, MatrixCommand, MirrorArgs,
    StoreCommand,
};

/// Exit codes: the contract scripts and CI rely on.
pub enum Outcome {
    Success,
    /// The command ran but some variants failed.
    SomeFailed,
}

pub fn run(cli: Cli) -> ExitCode {
    crate::reporters::init_logging(cli.verbose, cli.quiet);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Kernels(KernelsCommand::Crawl(args)) => kernels::crawl(*args).await,
            Command::Kernels(KernelsCommand::Show { kernels, json }) => {
                kernels::show(kernels, json).await
            }
            Command::Matrix(MatrixCommand::Generate(args)) => matrix::generate(args).await,
            Command::Matrix(MatrixCommand::Diff(args)) => matrix::diff(args),
            Command::Build(args) => build::build(*args).await,
            Command::Sync(args) => sync::sync(*args).await,
            Command::Plan(args) => plan::plan(*args).await,
            Command::Work(args) => plan::work(*args).await,
            Command::Publish(args) => plan::publish(*args).await,
            Command::BootTest(args) => boot::boot_test(*args).await,
            Command::Preflight(args) => preflight::preflight(*args).await,
            Command::Builder(cmd) => builder::run(cmd).await,
            Command::Install(args) => install::install(*args).await,
            Command::Init(args) => build::init(args),
            Command::Store(StoreCommand::Gc(args)) => install::gc(args).await,
            Command::Ci(CiCommand::Iam(args)) => ci::iam(args),
            Command::Ci(CiCommand::Github(args)) => ci::github(args),
            Command::Ci(CiCommand::Kubernetes(args)) => ci::kubernetes(*args).await,
            Command::Ci(CiCommand::Gitlab(args)) => ci::gitlab(args),
            Command::GitCache(GitCacheCommand::Update(args)) => git_cache::update(args).await,
            Command::GitCache(GitCacheCommand::Restore(args)) => git_cache::restore(args).await,
        }
    });
    match result {
        Ok(Outcome::Success) => ExitCode::SUCCESS,
        Ok(Outcome::SomeFailed) => ExitCode::from(1),
        Err(e) => {
            if is_broken_pipe(&e) {
                return ExitCode::SUCCESS;
            }
            // Errors quote names and messages from projects and kernel lists: no raw control characters.
            eprintln!("error: {}", kmf_types::names::printable(&format!("{e:#}")));
            ExitCode::from(2)
        }
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

pub(crate) fn http_client() -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder()
        .user_agent(concat!("kmodfarm/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(std::time::Duration::from_secs(20))
        .build()
        .context("creating the HTTP client")
}

/// Flags first, then KMODFARM_DEBIAN_MIRROR*, then this machine's apt sources.
pub(crate) fn debian_mirrors(args: &MirrorArgs) -> anyhow::Result<DebianMirrors> {
    let discovered = DebianMirrors::discover();
    match (&args.mirror, discovered) {
        (Some(archive), d) => Ok(DebianMirrors {
            archive: archive.trim_end_matches('/').to_string(),
            security: args
                .security_mirror
                .clone()
                .or_else(|| d.ok().and_then(|d| d.security)),
        }),
        (None, Ok(mut d)) => {
            if let Some(s) = &args.security_mirror {
                d.security = Some(s.trim_end_matches('/').to_string());
            }
            Ok(d)
        }
        (None, Err(e)) => Err(anyhow::anyhow!(e)).context("hint: pass --mirror URL"),
    }
}

/// The keyrings and expiry decisions of `args`, loaded once for the command; `keys` picks the archive keyring
/// used when no --keyring names one.
pub(crate) fn apt_trust(
    args: &crate::cli::TrustArgs,
    keys: kmf_kernels::apt::ArchiveKeys,
) -> anyhow::Result<std::sync::Arc<kmf_kernels::apt::AptTrust>> {
    Ok(std::sync::Arc::new(kmf_kernels::apt::AptTrust::load(
        &trust_options(args)?,
        keys,
    )?))
}

pub(crate) fn trust_options(
    args: &crate::cli::TrustArgs,
) -> anyhow::Result<kmf_kernels::apt::TrustOptions> {
    let mut opts = kmf_kernels::apt::TrustOptions::default();
    for k in &args.keyring {
        opts.add_keyring_arg(k).map_err(anyhow::Error::msg)?;
    }
    opts.allow_expired_release = args.allow_expired_release.iter().cloned().collect();
    opts.require_verified = args.require_verified;
    Ok(opts)
}

/// Writes data to a file atomically (temp + rename) or to stdout.
pub(crate) fn write_output(out: Option<&std::path::Path>, data: &str) -> anyhow::Result<()> {
    match out {
        Some(path) => {
            let dir = path
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(std::path::Path::new("."));
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            let tmp = dir.join(format!(
                ".{}.kmf-tmp",
                path.file_name().unwrap_or_default().to_string_lossy()
            ));
            std::fs::write(&tmp, data).with_context(|| format!("writing {}", tmp.display()))?;
            std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
            Ok(())
        }
        None => {
            let mut stdout = std::io::stdout().lock();
            stdout.write_all(data.as_bytes())?;
            stdout.flush()?;
            Ok(())
        }
    }
}
