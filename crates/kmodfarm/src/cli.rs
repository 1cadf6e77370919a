//! Command-line interface. Each subcommand's flags become options for one library call in `commands/`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use kmf_types::Arch;

#[derive(Debug, Parser)]
#[command(
    name = "kmodfarm",
    version,
    about = "Build out-of-tree Linux kernel modules for every distribution, kernel release and architecture.",
    long_about = "kmodfarm builds out-of-tree Linux kernel modules for many kernels at once.\n\n\
It reads kernel lists (Falco kernel-crawler JSON, or its own crawl of apt mirrors), turns them into a build \
matrix, fetches and verifies the header packages into a content-addressed cache, builds each variant in a \
sandbox with the compiler the kernel was built with, verifies every .ko (ELF machine, vermagic) and publishes \
modules and metadata to a store.\n\n\
Typical use:\n  \
kmodfarm kernels crawl --suite bookworm,bookworm-security --out kernels.json\n  \
kmodfarm matrix generate --kernels kernels.json --distro debian --arch x86_64,aarch64 --driver-version 0.1.1\n  \
kmodfarm build examples/hello --crawl --suite bookworm,bookworm-security --latest 1",
    after_help = "Exit status: 0 success, 1 some variants failed to build, 2 bad input or configuration."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// More log output (repeat for debug logs). KMODFARM_LOG takes tracing filter syntax.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Only errors on stderr.
    #[arg(short, long, global = true)]
    pub quiet: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Kernel lists: crawl apt mirrors into kernel-crawler JSON, or summarise a list.
    #[command(subcommand)]
    Kernels(KernelsCommand),
    /// Build matrices in the seed pipeline's JSON shape: generate one from kernel lists, diff two.
    #[command(subcommand)]
    Matrix(MatrixCommand),
    /// Build driver projects for every selected kernel, verify the modules and publish them to the store.
    ///
    /// Kernels come from a matrix file (--matrix), kernel lists (--kernels) or a fresh crawl of the Debian
    /// mirror (--crawl). Each variant is built in a bubblewrap sandbox (no network, clean environment,
    /// read-only toolchain and headers) with a builder matched to the kernel's compiler.
    Build(Box<BuildArgs>),
    /// The nightly job: rebuild only what changed since the last published matrix, then publish the new one.
    ///
    /// Reads the matrix published last time (<driver>/<MAJOR.MINOR.0>/matrix.json in the store), generates a
    /// fresh one from --kernels or --crawl with the same filters as `matrix generate`, diffs them, builds the
    /// variants whose build key changed (new kernels, new header packages, a driver release, a source or
    /// toolchain change) in parallel, publishes their artifacts and then the new matrix. Variants that are
    /// already in the store with the same build key are not downloaded or built. Failed variants stay out
    /// of the published matrix so that the next run retries them. Distributions, suites or architectures that
    /// vanished from the crawl or shrank past --shrink-threshold are held, not removed.
    ///
    /// Exit status: 0 when every variant is built or up to date, 1 when some failed, 2 on bad input.
    Sync(Box<SyncArgs>),
    /// Plan a distributed run: what to build, in shards, each with the runner label it needs.
    ///
    /// Takes the same inputs as `sync` (projects, --kernels or --crawl, filters, --latest, --shrink-threshold),
    /// diffs each driver's fresh matrix against the one published in --store, leaves out the variants the
    /// store already has with the same input key and builder (one record read each, no download), and puts
    /// the rest into shards homogeneous in architecture and toolchain (without prefetch: the distribution
    /// release), at most --shard-size variants each. Each shard names its runner: x86_64, or aarch64 for
    /// aarch64 variants x86_64 cannot cross-build (RPM distributions, Ubuntu). The plan id is a content hash:
    /// the same inputs give the same id. Writes <out>/plan.json; with prefetch, every input a worker needs
    /// (header packages, builders, sources; kernel images with --boot-test) goes into <out>/cache/sha256/.
    /// --out may be a store URL instead: the plan goes to <URL>/plans/<id>/plan.json and its inputs into the
    /// store's shared <URL>/cache/sha256/ (each uploaded once for all plans); the plan's URL is printed.
    ///
    /// Examples:
    ///   kmodfarm plan examples/hello --kernels x86_64-list.json --kernels aarch64-list.json --no-prefetch --out plan
    ///   kmodfarm plan examples/hello --crawl --latest 1 --store s3://bucket/kmods --out s3://bucket/farm
    ///   kmodfarm plan examples/hello --crawl --latest 1 --no-prefetch --redundancy 2 --json
    ///   kmodfarm plan examples/hello --crawl --no-prefetch --github-matrix
    Plan(Box<PlanArgs>),
    /// Build one shard of a plan into bundles (the untrusted side of a distributed run).
    ///
    /// Reads <plan>/plan.json (its id must match its content), unpacks the drivers' sources from the plan
    /// (checked by SHA256), builds and verifies each variant of --shard in the sandbox exactly as `build`
    /// does, and writes one bundle per variant under <out>/shard-<N>/<driver>/<output>/: modules, logs and
    /// record.json (last). Its farm has no store (--store is not opened) and it refuses a signing key. A prefetched plan carries
    /// every input (no network needed); with --no-prefetch plans, header packages come from the mirrors.
    /// --plan may be a plan's URL in a store (<store>/plans/<id>): the worker reads it with read access only
    /// and fetches only its shard's inputs. --out may be the plan's staging prefix in a store
    /// (<store>/staging/<id>): the bundles are uploaded there, each record last.
    ///
    /// Examples:
    ///   kmodfarm work --plan plan --shard 0 --out bundles
    ///   kmodfarm work --plan s3://bucket/farm/plans/<id> --shard 3 --out s3://bucket/farm/staging/<id>
    Work(Box<WorkArgs>),
    /// Publish a plan from its workers' bundles (the trusted side of a distributed run).
    ///
    /// Checks every bundle from scratch: only regular files, no file the record does not name, each
    /// module's SHA256 and size equal to the record's, ELF machine and vermagic of the plan's kernel, the
    /// project's expected modules, the record's plan, shard, variant and keys equal to the plan's; with
    /// --redundancy plans, every copy must carry the same bytes. Then signs (--sign-key: the key exists only
    /// here) and publishes as `build` does, then each driver's matrix and index. Variants without a usable
    /// bundle stay out of the matrix and are listed with the reason; publishing the same bundles again
    /// changes nothing.
    ///
    /// Exit status: 0 when every variant was published or up to date, 1 when some were not, 2 on bad input.
    ///
    /// --plan and --bundles may be store URLs (as `work` takes them); the bundle files of the plan's shards
    /// are downloaded into a private directory and checked there.
    ///
    /// Examples:
    ///   kmodfarm publish --plan plan --bundles bundles --store s3://bucket/kmods
    ///   kmodfarm publish --plan s3://bucket/farm/plans/<id> --bundles s3://bucket/farm/staging/<id> --store s3://bucket/kmods
    Publish(Box<PublishArgs>),
    /// Boot-test published variants: load every module into the real target kernel under QEMU.
    ///
    /// For each variant in the store (<driver>/<output>/metadata.json), fetches the kernel image package of
    /// the same release and version and busybox-static for the architecture through the mirror's apt index
    /// (verified, cached), builds an initramfs with the modules and a small init, boots it with
    /// qemu-system-x86_64 or qemu-system-aarch64 (KVM when usable for the guest, TCG otherwise;
    /// KMODFARM_QEMU_ACCEL=tcg|kvm forces one), loads the in-tree dependencies and the modules in dependency
    /// order, runs the project's [boot] check script, unloads in reverse and judges the kernel log and taint
    /// flags. Console logs go to <report-dir>/logs/<driver>/<output>/boot.log.
    ///
    /// Exit status: 0 when every variant passed, 1 when some failed, 2 on bad input.
    BootTest(Box<BootTestArgs>),
    /// Build and boot-test drivers against kernels the fleet does not run yet, without publishing.
    ///
    /// Crawls the upcoming suites (default: sid, experimental, and <release>-backports of each --release),
    /// keeps the --latest newest kernels of each suite, architecture and flavour, and builds, verifies and
    /// boot-tests each exactly as `build --boot-test` does, into a throwaway store under --report
    /// (<DIR>/throwaway-store/, emptied at the start of every run); --store is refused. A suite whose
    /// Release is refused (expired, badly signed, missing) fails the run before anything is built.
    ///
    /// Writes <DIR>/preflight.json (per kernel: the verdict; for a failure, the first error line of its
    /// build or boot log and the newest kernel of the same driver, architecture and flavour, older than
    /// the failing one, that passed in this run) and the usual results.json, junit.xml, index.html and
    /// logs. For a baseline of what works today, add a stable suite to --suite.
    ///
    /// Exit status: 0 when every kernel passed, 1 when some failed, 2 on bad input or a refused suite.
    #[command(after_long_help = "Examples:\n  \
kmodfarm preflight examples/pair\n  \
kmodfarm preflight examples/pair --suite sid,experimental --allow-expired-release sid,experimental\n  \
kmodfarm preflight drivers/foo --release trixie --arch x86_64 --latest 2 --no-boot-test --json\n  \
kmodfarm preflight drivers/foo --suite trixie,sid --report preflight/   # trixie as the baseline")]
    Preflight(Box<PreflightArgs>),
    /// Install this host's modules from a store: find, download, verify, install, depmod (and load).
    ///
    /// Detects the distribution (/etc/os-release under --root), the kernel release and version (as uname -r
    /// and uname -v print them) and the architecture, each overridable. Reads the driver's published matrix
    /// (<driver>/index.json → <driver>/<MAJOR.MINOR.0>/matrix.json, as `sync` publishes them), picks the variant
    /// of the same distribution, architecture and release (for Debian, the package version uname -v names
    /// when several uploads exist), downloads its modules and checks each against metadata.json's SHA256 and
    /// size (and SHA256SUMS), installs them atomically to <root>/lib/modules/<release>/extra/<driver>/ and runs
    /// depmod. Nothing is installed unless every module verified.
    ///
    /// Exit status: 0 installed; 2 when nothing matches (the message names the nearest kernels available),
    /// a download does not verify, or another error.
    Install(Box<InstallArgs>),
    /// Write a commented kmodfarm.toml for a driver project, filled in from its dkms.conf when it has one.
    ///
    /// With a dkms.conf, the template names the package (PACKAGE_NAME, PACKAGE_VERSION when it is a plain
    /// value), lists the modules and BUILD_EXCLUSIVE_* rules it declares, and keeps `dkms = true`: builds
    /// follow dkms.conf, evaluated per kernel in the sandbox. Nothing of dkms.conf runs here; only its plain
    /// assignments are read. Refuses to replace an existing kmodfarm.toml without --force.
    ///
    /// Examples:
    ///   kmodfarm init examples/dkms-pair
    ///   kmodfarm init . --force
    Init(InitArgs),
    /// Store maintenance: `store gc` lists (and with --delete removes) artifacts no published matrix references.
    #[command(subcommand)]
    Store(StoreCommand),
    /// What CI engines need to run plan, work and publish with least privilege, from a farm configuration
    /// (see examples/farm.toml).
    #[command(subcommand)]
    Ci(CiCommand),
    /// The farm's git cache: each repository's mirror as a tarball in the store, with the MD5 of its
    /// `git ls-remote` beside it (see `git-cache update --help`).
    #[command(subcommand)]
    GitCache(GitCacheCommand),
    /// Builder images for `--sandbox docker`: import the mmdebstrap builders, build the Dockerfiles in
    /// builders/, list and prune them.
    #[command(subcommand)]
    Builder(BuilderCommand),
}

#[derive(Debug, Subcommand)]
pub enum KernelsCommand {
    /// Crawl distribution repositories for kernel build trees and write kernel-crawler JSON with each
    /// package's SHA256 and size.
    ///
    /// Debian (default) and Ubuntu: apt repositories (dists/SUITE/Release → main/binary-ARCH/Packages.xz).
    /// Fedora, AlmaLinux, Rocky, CentOS Stream, Amazon Linux 2 and 2023: yum/dnf repositories
    /// (repodata/repomd.xml → primary.xml.{gz,xz,zst}), from --repo base URLs or --mirror-list files.
    /// Several repositories, of several distributions, go into a --sources TOML file. Debian's mirror
    /// defaults to the one this machine's apt uses; every other mirror is named by you.
    ///
    /// Examples:
    ///   kmodfarm kernels crawl --suite bookworm,bookworm-security --out debian.json
    ///   kmodfarm kernels crawl --distro ubuntu --mirror http://mirror.example/ubuntu \
    ///       --ports-mirror http://mirror.example/ubuntu-ports --suite noble,noble-updates,noble-security
    ///   kmodfarm kernels crawl --distro fedora \
    ///       --repo 'http://mirror.example/fedora/updates/41/Everything/$basearch/'
    ///   kmodfarm kernels crawl --distro amazonlinux2 \
    ///       --mirror-list 'http://mirror.example/2/core/latest/$basearch/mirror.list'
    ///   kmodfarm kernels crawl --sources crawl.toml --out kernels.json
    #[command(verbatim_doc_comment)]
    Crawl(Box<CrawlArgs>),
    /// Summarise kernel lists: entries per distro and architecture.
    Show {
        /// Kernel list file or http(s) URL (repeatable).
        #[arg(long = "kernels", required = true)]
        kernels: Vec<String>,
        /// Print the summary as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
pub struct MirrorArgs {
    /// Debian archive mirror URI (default: from this machine's apt sources; env KMODFARM_DEBIAN_MIRROR).
    #[arg(long, value_name = "URL")]
    pub mirror: Option<String>,
    /// Debian security archive URI, for `*-security` suites (env KMODFARM_DEBIAN_SECURITY_MIRROR).
    #[arg(long, value_name = "URL")]
    pub security_mirror: Option<String>,
    #[command(flatten)]
    pub trust: TrustArgs,
}

/// How apt repositories prove themselves (see the README's security model).
#[derive(Debug, Clone, Default, Args)]
pub struct TrustArgs {
    /// OpenPGP keyring the Releases must be signed by: FILE for every suite, SUITE=FILE for one suite
    /// (repeatable; binary or armored). Default: the distribution's archive keyring as installed
    /// (/usr/share/keyrings/debian-archive-keyring.gpg, ubuntu-archive-keyring.gpg).
    #[arg(long, value_name = "[SUITE=]FILE")]
    pub keyring: Vec<String>,
    /// Accept these suites' Release past its Valid-Until (snapshot mirrors, a frozen sid): comma-separated,
    /// repeatable. Every variant built from them records the index as expired, and since when.
    #[arg(long, value_name = "SUITE", value_delimiter = ',')]
    pub allow_expired_release: Vec<String>,
    /// Refuse header packages nothing proved (kernel-list URLs that no signed index lists) instead of
    /// building them marked `unverified`.
    #[arg(long)]
    pub require_verified: bool,
    /// OpenPGP keys an RPM distribution's kernel-devel packages must be signed by (its `RPM-GPG-KEY-*`
    /// files): DISTRO=FILE, repeatable (fedora, almalinux, rockylinux, centos, amazonlinux2,
    /// amazonlinux2023). Each package's signature and digests are checked as `rpm -K` does before it is
    /// unpacked; RPMs of a distribution without keys stay `unverified`.
    #[arg(long, value_name = "DISTRO=FILE")]
    pub rpm_keyring: Vec<String>,
}

#[derive(Debug, Args)]
pub struct CrawlArgs {
    /// Distribution to crawl: debian, ubuntu, fedora, almalinux, rockylinux, centos, amazonlinux2,
    /// amazonlinux2023.
    #[arg(long, default_value = "debian", conflicts_with = "sources")]
    pub distro: String,
    /// A TOML file of [[source]] tables (distro, uri/suites/flavours for apt, baseurl or mirrorlist for
    /// yum/dnf, arches): every repository of a fleet in one crawl. See the README for the format.
    #[arg(long, value_name = "FILE")]
    pub sources: Option<PathBuf>,
    /// Debian or Ubuntu archive mirror (Debian default: this machine's apt sources; env
    /// KMODFARM_DEBIAN_MIRROR).
    #[arg(long, value_name = "URL")]
    pub mirror: Option<String>,
    /// Debian security archive, for `*-security` suites (env KMODFARM_DEBIAN_SECURITY_MIRROR).
    #[arg(long, value_name = "URL")]
    pub security_mirror: Option<String>,
    #[command(flatten)]
    pub trust: TrustArgs,
    /// Ubuntu ports mirror, for arm64 (default: --mirror).
    #[arg(long, value_name = "URL")]
    pub ports_mirror: Option<String>,
    /// Suites (pockets) for apt distributions, in order of preference. Debian default:
    /// bookworm,bookworm-security,trixie,trixie-security.
    #[arg(long, value_delimiter = ',')]
    pub suite: Option<Vec<String>>,
    /// yum/dnf repository base URL, the directory holding repodata/ (repeatable; `$basearch` is replaced
    /// by each --arch). Earlier repositories win when two carry the same kernel.
    #[arg(long, value_name = "URL")]
    pub repo: Vec<String>,
    /// yum mirror list URL: one mirror per line, the first that answers is used (repeatable; `$basearch`
    /// replaced). Amazon Linux 2 publishes its repositories this way.
    #[arg(long, value_name = "URL")]
    pub mirror_list: Vec<String>,
    /// RPM package names holding kernel build trees.
    #[arg(long, value_delimiter = ',', default_value = "kernel-devel")]
    pub package: Vec<String>,
    /// Architectures.
    #[arg(long, value_delimiter = ',', default_value = "x86_64,aarch64")]
    pub arch: Vec<Arch>,
    /// Only these flavours (Debian: amd64, cloud-amd64, rt-amd64, arm64, cloud-arm64, rt-arm64, ...;
    /// Ubuntu: generic, aws, azure, gcp, lowlatency, ...); default all.
    #[arg(long, value_delimiter = ',')]
    pub flavour: Option<Vec<String>>,
    /// Output file (default: stdout).
    #[arg(long, short)]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum MatrixCommand {
    /// Generate the build matrix from kernel lists, with the seed pipeline's filters.
    ///
    /// Each element: kversion, distribution, architecture, kernelurls, output (store prefix; a driver patch
    /// release keeps its minor release's prefix), driverversion, plus the digests a build needs.
    Generate(GenerateArgs),
    /// Compare two matrices: what to build, what was removed, which groups are held.
    ///
    /// OLD is the matrix of the last build, NEW a fresh `matrix generate`. A variant is the same in both when
    /// distribution, architecture and kversion agree, plus kernelversion where a release was uploaded more than
    /// once (the `_<kernelversion>` suffix of its output); a release listed once whose kernelversion number
    /// changes is the same variant.
    ///
    /// Added: only NEW has it. Modified: both have it and a build input changed: the driver version, the set of
    /// header package files (compared by file name, and by SHA256 where both sides know it; reordered header
    /// lists and packages moved to another mirror or path are not changes), the kernel config digest, or the
    /// builder or build key where both matrices record one. Each modified variant lists its reasons. Removed:
    /// only OLD has it.
    ///
    /// Safe diffs: entries are grouped by distribution, suite and architecture. When NEW lacks one of OLD's
    /// groups, or has fewer than --shrink-threshold times OLD's entries of it, the group is held: its entries
    /// that NEW lacks are reported as kept, not removed, with a warning, since a mirror outage or a crawler bug
    /// looks like mass removal. The diff only classifies; it deletes nothing.
    #[command(after_long_help = "Examples:\n  \
kmodfarm matrix diff published.json fresh.json\n  \
kmodfarm matrix diff published.json fresh.json --build-matrix todo.json\n  \
kmodfarm build drivers/foo --matrix todo.json\n  \
kmodfarm matrix diff published.json fresh.json --json | jq .summary\n\n\
Exit status: 0 when the diff was made (whatever it found), 2 when a matrix cannot be read.")]
    Diff(DiffArgs),
}

#[derive(Debug, Args, Clone)]
pub struct FilterArgs {
    /// Distributions to keep, comma separated (ubuntu, amazonlinux2023, debian, ...); default all.
    #[arg(long, value_delimiter = ',')]
    pub distro: Option<Vec<String>>,
    /// Architectures to keep.
    #[arg(long, value_delimiter = ',', default_value = "x86_64,aarch64")]
    pub arch: Vec<Arch>,
    /// Regular expression over kernelrelease, e.g. '.*6\.[0-9]+\..*'.
    #[arg(long, value_name = "REGEX")]
    pub kernel_release: Option<String>,
}

#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// Kernel list: file or http(s) URL, kernel-crawler JSON or `kmodfarm kernels crawl` output (repeatable).
    #[arg(long = "kernels", required = true, value_name = "FILE|URL")]
    pub kernels: Vec<String>,
    #[command(flatten)]
    pub filter: FilterArgs,
    /// Driver version written into each entry; its MAJOR.MINOR.0 is the store prefix.
    #[arg(long)]
    pub driver_version: String,
    /// Output file (default: stdout).
    #[arg(long, short)]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct DiffArgs {
    /// The previous matrix: a JSON array of entries, as `matrix generate` writes it or `sync` publishes it.
    #[arg(value_name = "OLD")]
    pub old: PathBuf,
    /// The fresh matrix to compare with OLD.
    #[arg(value_name = "NEW")]
    pub new: PathBuf,
    /// Print the whole diff as JSON on stdout instead of a summary: summary (counts), warnings, build (the
    /// entries to build), added, modified (old, new and reasons of each), removed, held (groups) and kept.
    #[arg(long)]
    pub json: bool,
    /// Also write the entries to build (added ones and NEW's version of modified ones) to FILE, as a matrix
    /// for `build --matrix FILE`; `[]` when there is nothing to build.
    #[arg(long, value_name = "FILE")]
    pub build_matrix: Option<PathBuf>,
    /// Hold a group (distribution, suite, architecture) when NEW has fewer than this fraction of OLD's
    /// entries of it: 0.5 holds groups that lost more than half, 0 only groups missing from NEW (always held),
    /// 1 any group that shrank at all.
    #[arg(long, value_name = "FRACTION", default_value_t = kmf_matrix::DEFAULT_SHRINK_THRESHOLD)]
    pub shrink_threshold: f64,
}

#[derive(Debug, Args)]
pub struct BuildArgs {
    /// Driver project directories (each may have a kmodfarm.toml).
    #[arg(default_value = ".")]
    pub projects: Vec<PathBuf>,
    /// Build the variants of this matrix file (e.g. `matrix diff --build-matrix` output).
    #[arg(long, value_name = "FILE", conflicts_with_all = ["kernels", "crawl"])]
    pub matrix: Option<PathBuf>,
    #[command(flatten)]
    pub source: KernelSourceArgs,
    #[command(flatten)]
    pub farm: FarmArgs,
}

#[derive(Debug, Args)]
pub struct SyncArgs {
    /// Driver project directories (each may have a kmodfarm.toml).
    #[arg(default_value = ".")]
    pub projects: Vec<PathBuf>,
    #[command(flatten)]
    pub source: KernelSourceArgs,
    #[command(flatten)]
    pub farm: FarmArgs,
    /// Delete the artifacts of variants the new matrix no longer has (never those of held groups). Without
    /// it, removed variants are only reported and stay published.
    #[arg(long)]
    pub prune: bool,
    /// Hold a (distribution, suite, architecture) group, keeping its entries instead of removing them, when
    /// the new matrix has fewer than this fraction of the old one's entries of it (a mirror outage or a
    /// crawler bug looks like mass removal). Groups missing entirely are always held.
    #[arg(long, default_value_t = kmf_matrix::DEFAULT_SHRINK_THRESHOLD, value_name = "FRACTION")]
    pub shrink_threshold: f64,
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    /// Driver project directories (each may have a kmodfarm.toml).
    #[arg(default_value = ".")]
    pub projects: Vec<PathBuf>,
    #[command(flatten)]
    pub source: KernelSourceArgs,
    #[command(flatten)]
    pub farm: FarmArgs,
    /// As for `sync`: hold a (distribution, suite, architecture) group that shrank below this fraction.
    #[arg(long, default_value_t = kmf_matrix::DEFAULT_SHRINK_THRESHOLD, value_name = "FRACTION")]
    pub shrink_threshold: f64,
    /// Most variants in one shard.
    #[arg(long, default_value_t = kmf_farm::plan::DEFAULT_SHARD_SIZE, value_name = "N")]
    pub shard_size: usize,
    /// Build every variant in this many shards (meant for different workers); publishing then requires
    /// byte-identical modules from all of them.
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub redundancy: usize,
    /// Do not gather the inputs (header packages, builders, sources) into the plan: for workers that reach
    /// the mirrors themselves. Shards are then grouped by distribution release instead of builder.
    #[arg(long)]
    pub no_prefetch: bool,
    /// Directory to write plan.json (and with prefetch its inputs) to, or a store URL (see above).
    #[arg(long, value_name = "DIR|URL")]
    pub out: Option<String>,
    /// The certificate `publish` will sign with (not the key: the planner never holds it). Variants are then
    /// planned as signed ones, so that a store of modules signed with it is found up to date, and `publish`
    /// refuses another key.
    #[arg(long, value_name = "FILE")]
    pub signing_cert: Option<PathBuf>,
    /// Print the shard list as GitHub Actions' strategy.matrix takes it: per runner label, chunks of at
    /// most 256 entries.
    #[arg(long, conflicts_with = "json")]
    pub github_matrix: bool,
    /// Write the plan's location, its staging prefix and each runner's matrix chunks as GitHub step outputs
    /// (`plan=…`, `staging=…`, `matrix-<runner>-<chunk>=…`) to FILE, normally "$GITHUB_OUTPUT" (the
    /// workflow `kmodfarm ci github` writes uses it).
    #[arg(long, value_name = "FILE")]
    pub github_output: Option<PathBuf>,
    /// With --github-output: the build jobs the workflow has per runner; a plan needing more fails.
    #[arg(long, value_name = "N", default_value_t = 4)]
    pub github_chunks: usize,
    /// Write the plan's location and staging prefix as KMODFARM_PLAN=… and KMODFARM_STAGING=… lines to
    /// FILE (a dotenv file, as the GitLab pipeline's `plan` job hands them to the later jobs).
    #[arg(long, value_name = "FILE")]
    pub dotenv: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct WorkArgs {
    /// The plan directory (plan.json and what it carries), or the plan's URL in a store.
    #[arg(long, value_name = "DIR|URL")]
    pub plan: String,
    /// The shard to build (its index in plan.json).
    #[arg(long, conflicts_with_all = ["runner", "index"])]
    pub shard: Option<usize>,
    /// With --index: build the index-th shard (from 0) of this runner label (`x86_64`, `aarch64`), as a
    /// Kubernetes Indexed Job's pod does with its JOB_COMPLETION_INDEX.
    #[arg(long, requires = "index", value_name = "LABEL")]
    pub runner: Option<String>,
    #[arg(long, requires = "runner", value_name = "N")]
    pub index: Option<usize>,
    /// With --runner and --index: N workers share the runner's shards, this one builds every N-th from
    /// its index (GitLab's static `parallel: matrix`); a worker with no shard in this plan exits 0.
    #[arg(long, requires = "index", value_name = "N", value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=10000))]
    pub of: Option<usize>,
    /// Where the bundles go: a directory, or the plan's staging prefix in a store.
    #[arg(long, value_name = "DIR|URL")]
    pub out: String,
    #[command(flatten)]
    pub mirrors: MirrorArgs,
    #[command(flatten)]
    pub farm: FarmArgs,
}

#[derive(Debug, Args)]
pub struct PublishArgs {
    /// The plan directory (plan.json), or the plan's URL in a store.
    #[arg(long, value_name = "DIR|URL")]
    pub plan: String,
    /// The workers' bundles (shard-<N>/... directories, as `work --out` writes them), or the staging prefix
    /// they were uploaded to.
    #[arg(long, value_name = "DIR|URL")]
    pub bundles: String,
    /// As for `sync`: delete the artifacts of variants the new matrix no longer has.
    #[arg(long)]
    pub prune: bool,
    /// As for `sync`: hold a group that shrank below this fraction.
    #[arg(long, default_value_t = kmf_matrix::DEFAULT_SHRINK_THRESHOLD, value_name = "FRACTION")]
    pub shrink_threshold: f64,
    #[command(flatten)]
    pub mirrors: MirrorArgs,
    #[command(flatten)]
    pub farm: FarmArgs,
}

/// Where the kernels come from and which of them to keep.
#[derive(Debug, Args)]
pub struct KernelSourceArgs {
    /// Kernel list file or URL (repeatable): kernel-crawler JSON or `kernels crawl` output.
    #[arg(long = "kernels", value_name = "FILE|URL")]
    pub kernels: Vec<String>,
    /// Crawl the Debian mirror for the kernels of --suite.
    #[arg(long)]
    pub crawl: bool,
    /// Suites for --crawl.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "bookworm,bookworm-security,trixie,trixie-security"
    )]
    pub suite: Vec<String>,
    /// Only these flavours (for --crawl).
    #[arg(long, value_delimiter = ',')]
    pub flavour: Option<Vec<String>>,
    #[command(flatten)]
    pub filter: FilterArgs,
    /// Keep only the N newest kernels of each distro/arch/flavour/suite/kernel series.
    #[arg(long, value_name = "N")]
    pub latest: Option<usize>,
    /// Driver version (default: each project's kmodfarm.toml).
    #[arg(long)]
    pub driver_version: Option<String>,
    #[command(flatten)]
    pub mirrors: MirrorArgs,
}

/// Default of `--disk-limit`.
pub const DISK_LIMIT_MIB: u64 = 4096;
/// Default of `--max-module-size`.
pub const MAX_MODULE_MIB: u64 = 256;
/// Default of `--max-modules`.
pub const MAX_MODULES: usize = 256;
/// Default of `--max-log`.
pub const MAX_LOG_KIB: u64 = 8192;

/// Where builds run and where their results go.
#[derive(Debug, Args)]
pub struct FarmArgs {
    /// Artifact store: a directory, file:// URL or s3://bucket/prefix[?endpoint=URL&region=R&path_style=true]
    /// (credentials from the standard AWS environment and ~/.aws files).
    #[arg(long, env = "KMODFARM_STORE", default_value = "artifacts/store")]
    pub store: String,
    /// Cache of downloads, extracted packages and builders (default: $XDG_CACHE_HOME/kmodfarm, ~/.cache/kmodfarm,
    /// or /var/cache/kmodfarm as root).
    #[arg(long, env = "KMODFARM_CACHE", value_name = "DIR")]
    pub cache: Option<PathBuf>,
    /// The farm's store whose git cache (git-cache/, see `kmodfarm git-cache`) seeds the mirrors of git
    /// sources this cache lacks, before anything is fetched from their upstream.
    #[arg(long, env = "KMODFARM_GIT_CACHE", value_name = "URL")]
    pub git_cache: Option<String>,
    /// Where build logs and the reports go: results.json, junit.xml, index.html.
    #[arg(long, default_value = "artifacts/report")]
    pub report_dir: PathBuf,
    /// Sandbox for builds: bubblewrap (default), docker (a container per build from the builder's local image;
    /// KMODFARM_DOCKER=podman for Podman) or none (no isolation: trusted code on a disposable host).
    #[arg(long, default_value = "bubblewrap")]
    pub sandbox: String,
    /// Parallel variant builds (default: from cores and memory).
    #[arg(long, short)]
    pub jobs: Option<usize>,
    /// Wall-clock limit per variant build (all kbuild steps together), in seconds. A project's
    /// [build] timeout_secs may only lower it.
    #[arg(long, default_value_t = 1200)]
    pub timeout: u64,
    /// Memory limit per build, in MiB. Under root the build directory is a tmpfs, whose content counts
    /// towards this limit too.
    #[arg(long, default_value_t = 4096)]
    pub memory: u64,
    /// Disk the build directory may use (source copy, objects, modules), in MiB; a build that needs more
    /// fails as `resource_limit`.
    #[arg(long, default_value_t = DISK_LIMIT_MIB, value_name = "MIB")]
    pub disk_limit: u64,
    /// Largest module accepted, in MiB; a larger one fails the variant as `resource_limit`.
    #[arg(long, default_value_t = MAX_MODULE_MIB, value_name = "MIB")]
    pub max_module_size: u64,
    /// Most modules one variant may produce.
    #[arg(long, default_value_t = MAX_MODULES, value_name = "N")]
    pub max_modules: usize,
    /// Build output kept per variant (all steps together), in KiB; a build printing more is stopped and
    /// fails as `resource_limit`.
    #[arg(long, default_value_t = MAX_LOG_KIB, value_name = "KIB")]
    pub max_log: u64,
    /// Build even variants the store already has with the same build key (source, driver version, header
    /// package digests, builder identity, make arguments, kmodfarm's recipe).
    #[arg(long)]
    pub rebuild: bool,
    /// Boot each built variant's real kernel in QEMU and load its modules before publishing (see
    /// `kmodfarm boot-test --help`); a variant whose modules do not load cleanly fails and is not published.
    /// `build`/`sync` boot the modules as published (signed, with --sign-key); `plan --boot-test` carries
    /// each variant's kernel image and busybox in the plan, so that `work --boot-test` boots offline;
    /// `publish --boot-test` boots the re-verified (and signed) modules again before publishing.
    #[arg(long)]
    pub boot_test: bool,
    /// Hard limit per boot with --boot-test, in seconds (a project's [boot] timeout_secs may only lower it).
    #[arg(long, default_value_t = 120, value_name = "SECS")]
    pub boot_timeout: u64,
    /// Sign every module for Secure Boot with this private key (PEM), using the kernel tree's
    /// scripts/sign-file and the kernel's CONFIG_MODULE_SIG_HASH. The key is used only after the build, in a
    /// separate sandboxed run; each signature is verified against --sign-cert before publishing. Needs
    /// --sign-cert.
    #[arg(
        long,
        env = "KMODFARM_SIGN_KEY",
        value_name = "FILE",
        requires = "sign_cert"
    )]
    pub sign_key: Option<PathBuf>,
    /// X.509 certificate (PEM or DER) of --sign-key: the one enrolled on the hosts (MOK or the kernel's
    /// trusted keys).
    #[arg(
        long,
        env = "KMODFARM_SIGN_CERT",
        value_name = "FILE",
        requires = "sign_key"
    )]
    pub sign_cert: Option<PathBuf>,
    /// Print results as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct BootTestArgs {
    /// Driver project directories whose kmodfarm.toml [boot] section (check script, timeout) applies to the
    /// driver of the same name. Optional: without them, modules are only loaded and unloaded.
    pub projects: Vec<PathBuf>,
    /// Artifact store: a directory or file:// URL.
    #[arg(long, env = "KMODFARM_STORE", default_value = "artifacts/store")]
    pub store: String,
    /// Only these drivers (comma separated; default all in the store).
    #[arg(long, value_delimiter = ',')]
    pub driver: Option<Vec<String>>,
    /// Regular expression over the kernel release.
    #[arg(long, value_name = "REGEX")]
    pub kernel_release: Option<String>,
    /// Architectures to test.
    #[arg(long, value_delimiter = ',', default_value = "x86_64,aarch64")]
    pub arch: Vec<Arch>,
    /// Boots at once (default: from cores and memory).
    #[arg(long, short)]
    pub jobs: Option<usize>,
    /// Hard limit per boot, in seconds (a project's [boot] timeout_secs may only lower it).
    #[arg(long, default_value_t = 120)]
    pub timeout: u64,
    /// Guest memory, in MiB.
    #[arg(long, default_value_t = 512)]
    pub memory: u32,
    /// Cache of downloads and extracted packages (default as for `build`).
    #[arg(long, env = "KMODFARM_CACHE", value_name = "DIR")]
    pub cache: Option<PathBuf>,
    /// Where the console logs go (logs/<driver>/<output>/boot.log) and boot-test.json.
    #[arg(long, default_value = "artifacts/report")]
    pub report_dir: PathBuf,
    #[command(flatten)]
    pub mirrors: MirrorArgs,
    /// Print results as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

/// `kmodfarm preflight`'s flags: no --store (preflight never publishes) and the boot test on by default.
#[derive(Debug, Args)]
pub struct PreflightArgs {
    /// Driver project directories or git sources (each may have a kmodfarm.toml).
    #[arg(default_value = ".")]
    pub projects: Vec<PathBuf>,
    /// Debian suites to crawl for upcoming kernels, in order of preference (default: sid, experimental,
    /// and <release>-backports for each --release).
    #[arg(long, value_delimiter = ',')]
    pub suite: Option<Vec<String>>,
    /// Stable releases whose backports are preflighted when --suite is not given.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "bookworm,trixie",
        conflicts_with = "suite"
    )]
    pub release: Vec<String>,
    /// Architectures (aarch64 is cross-built on x86_64 and booted under TCG).
    #[arg(long, value_delimiter = ',', default_value = "x86_64,aarch64")]
    pub arch: Vec<Arch>,
    /// Kernel flavours (amd64, arm64, cloud-amd64, rt-arm64, ...).
    #[arg(long, value_delimiter = ',', default_value = "amd64,arm64")]
    pub flavour: Vec<String>,
    /// Kernels per suite, architecture and flavour, newest first.
    #[arg(long, default_value_t = 1, value_name = "N",
        value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub latest: usize,
    /// Boot each kernel under QEMU and load the modules (the default).
    #[arg(long, overrides_with = "no_boot_test")]
    pub boot_test: bool,
    /// Only build and verify; no boot test.
    #[arg(long, overrides_with = "boot_test")]
    pub no_boot_test: bool,
    /// Hard limit per boot, in seconds (a project's [boot] timeout_secs may only lower it).
    #[arg(long, default_value_t = 120, value_name = "SECS")]
    pub boot_timeout: u64,
    #[command(flatten)]
    pub mirrors: MirrorArgs,
    /// Where preflight.json, the reports, the logs and the throwaway store go.
    #[arg(long, default_value = "artifacts/preflight", value_name = "DIR")]
    pub report: PathBuf,
    /// Print preflight.json on stdout.
    #[arg(long)]
    pub json: bool,
    /// Driver version (default: each project's kmodfarm.toml).
    #[arg(long)]
    pub driver_version: Option<String>,
    /// Cache of downloads, extracted packages and builders (default as for `build`).
    #[arg(long, env = "KMODFARM_CACHE", value_name = "DIR")]
    pub cache: Option<PathBuf>,
    /// The farm's store whose git cache seeds the mirrors of git sources (read only).
    #[arg(long, env = "KMODFARM_GIT_CACHE", value_name = "URL")]
    pub git_cache: Option<String>,
    /// Sandbox for builds: bubblewrap, docker or none (as for `build`).
    #[arg(long, default_value = "bubblewrap")]
    pub sandbox: String,
    /// Parallel variant builds (default: from cores and memory).
    #[arg(long, short)]
    pub jobs: Option<usize>,
    /// Wall-clock limit per variant build, in seconds.
    #[arg(long, default_value_t = 1200, value_name = "SECS")]
    pub timeout: u64,
    /// Refused: preflight never publishes to a store.
    #[arg(long, hide = true, value_name = "URL")]
    pub store: Option<String>,
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// The driver project's directory.
    #[arg(default_value = ".")]
    pub dir: PathBuf,
    /// Replace an existing kmodfarm.toml.
    #[arg(long)]
    pub force: bool,
    /// Print what was written as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct InstallArgs {
    /// Store to install from: a directory, file://, s3://bucket/prefix[?endpoint=..] or http(s):// URL.
    #[arg(long, env = "KMODFARM_STORE", default_value = "artifacts/store")]
    pub store: String,
    /// The driver (default: the store's only one).
    #[arg(long)]
    pub driver: Option<String>,
    /// Driver version whose published matrix to use (default: the newest published).
    #[arg(long)]
    pub driver_version: Option<String>,
    /// The host's root directory: os-release is read and modules installed under it.
    #[arg(long, default_value = "/", value_name = "DIR")]
    pub root: PathBuf,
    /// Install into DIR instead of under the root: the modules flat (each under its destination's file
    /// name), firmware into DIR/firmware/, the modprobe configuration into DIR/modprobe.d/; depmod skipped.
    #[arg(long, value_name = "DIR")]
    pub dest: Option<PathBuf>,
    /// Kernel release to install for (default: the running kernel's, uname -r).
    #[arg(long, value_name = "RELEASE")]
    pub kernel_release: Option<String>,
    /// Kernel version string (default: the running kernel's, uname -v), e.g.
    /// '#1 SMP PREEMPT_DYNAMIC Debian 6.1.192-2 (2025-10-16)'.
    #[arg(long, value_name = "VERSION")]
    pub kernel_version: Option<String>,
    /// Architecture (default: this machine's).
    #[arg(long)]
    pub arch: Option<Arch>,
    /// Distribution in kmodfarm's spelling (default: from os-release; debian, ubuntu, amazonlinux2023, ...).
    #[arg(long)]
    pub distro: Option<String>,
    /// Load the modules with modprobe after installing (only with --root /).
    #[arg(long)]
    pub load: bool,
    /// Install only modules whose appended signature verifies against this X.509 certificate (PEM or
    /// DER), the one the host's kernel trusts; anything unsigned or signed by another key is refused before
    /// a file is written.
    #[arg(long, env = "KMODFARM_VERIFY_CERT", value_name = "FILE")]
    pub verify_cert: Option<PathBuf>,
    /// When the store has no module for this kernel, build one here from the driver project in DIR:
    /// headers from the Debian mirror (the host's VERSION_CODENAME and its security suite) or from
    /// --kernels, the kernel's own compiler, the --sandbox; published to a local store under the cache, then
    /// installed from it with the same checks. Not with --verify-cert: a local build is not signed.
    #[arg(long, value_name = "DIR", conflicts_with = "verify_cert")]
    pub build_fallback: Option<PathBuf>,
    /// Kernel lists (kernel-crawler JSON or `kernels crawl` output) where --build-fallback looks for the
    /// kernel's header packages; needed for distributions other than Debian.
    #[arg(long = "kernels", value_name = "FILE|URL", requires = "build_fallback")]
    pub fallback_kernels: Vec<String>,
    #[command(flatten)]
    pub mirrors: MirrorArgs,
    /// Cache for --build-fallback (downloads, extracted headers, builders; its local store).
    #[arg(long, env = "KMODFARM_CACHE", value_name = "DIR")]
    pub cache: Option<PathBuf>,
    /// Sandbox for --build-fallback builds: bubblewrap, docker or none.
    #[arg(long, default_value = "bubblewrap")]
    pub sandbox: String,
    /// Print what was installed as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum CiCommand {
    /// Write the AWS IAM policy documents: per role, its permissions over the store's and the farm's
    /// prefixes and nothing more (`<name>.policy.json`), and who may assume it (`<name>.trust.json`: the
    /// workflow's jobs through GitHub's OIDC provider, the role's service account through the cluster's).
    ///
    /// Roles: planner (reads the store, writes plans and their input cache), worker (reads plans and the
    /// cache, writes only staging), publisher (reads plans, cache and staging, writes the store), boot
    /// tester (reads the store), git-cache updater (the only writer of the git cache).
    ///
    /// Example:
    ///   kmodfarm ci iam --config examples/farm.toml --out iam/
    Iam(CiIamArgs),
    /// Write the nightly GitHub Actions workflow (.github/workflows/kmodfarm-<environment>.yml) and the
    /// actionlint configuration naming its self-hosted runner labels (.github/actionlint.yaml).
    ///
    /// Jobs: `plan` (planner role through OIDC; writes the plan to the farm's store and the shard matrices
    /// as job outputs), per architecture and matrix chunk a build job on that architecture's runners
    /// (`permissions: {}`, no secrets, `fail-fast: false`; bundles to the plan's staging prefix with the
    /// runner's own identity), and `publish` (`if: always()`, the publisher role, the signing key from the
    /// protected environment's secrets, one at a time).
    ///
    /// Example:
    ///   kmodfarm ci github --config examples/farm.toml --out .
    Github(CiGithubArgs),
    /// Write Kubernetes manifests: the farm's ServiceAccounts (IRSA role annotations, no API token), the
    /// NetworkPolicy confining build pods to the store and DNS, the nightly plan CronJob; with --plan, the
    /// run's jobs: per runner label an Indexed Job (completions = the runner's shards, each pod builds shard
    /// JOB_COMPLETION_INDEX of its runner) and the publish Job.
    ///
    /// Build pods are never privileged: they run as a non-root user in their own user namespace (`hostUsers:
    /// false`) with `/proc` unmasked and unconfined seccomp and AppArmor, which bubblewrap needs to make its
    /// namespaces; no capability, no privilege escalation, a read-only root.
    ///
    /// Examples:
    ///   kmodfarm ci kubernetes --config examples/farm.toml --out farm.yaml
    ///   kmodfarm ci kubernetes --config examples/farm.toml --plan s3://bucket/farm/plans/<id> --out run.yaml
    Kubernetes(Box<CiKubernetesArgs>),
    /// Write the nightly GitLab CI pipeline (.gitlab-ci.yml).
    ///
    /// Jobs: `plan` (planner role through its ID token; writes the plan to the farm's store and its
    /// location to the kmodfarm-plan.env artifact), per architecture a build job on that architecture's
    /// runners (`tags`), fanned out by `parallel: matrix` to one leg per runner (`max_runners`, at most 200;
    /// leg i of n builds every n-th of the architecture's shards from the i-th), with no ID token and no
    /// secret, bundles to the plan's staging prefix with the runner's own identity; and `publish` (`when:
    /// always`, the publisher role, the signing key from CI/CD variables protected and scoped to its
    /// environment, one at a time through a resource group).
    ///
    /// Example:
    ///   kmodfarm ci gitlab --config examples/farm.toml --out .
    Gitlab(CiGitlabArgs),
}

#[derive(Debug, Args)]
pub struct CiGitlabArgs {
    /// The farm configuration.
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
    /// The repository's root (the file is .gitlab-ci.yml there).
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub out: PathBuf,
}

#[derive(Debug, Args)]
pub struct CiKubernetesArgs {
    /// The farm configuration.
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
    /// A plan in the farm's store (<farm>/plans/<id>): write that run's jobs instead of the standing objects.
    #[arg(long, value_name = "URL")]
    pub plan: Option<String>,
    /// Where the YAML goes (default: stdout).
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    #[command(flatten)]
    pub farm: FarmArgs,
}

#[derive(Debug, Args)]
pub struct CiGithubArgs {
    /// The farm configuration.
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
    /// The repository's root (the files go under .github/).
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub out: PathBuf,
    /// Build jobs per architecture, 256 shards each (GitHub's matrix limit).
    #[arg(long, value_name = "N", default_value_t = 2)]
    pub chunks: usize,
}

#[derive(Debug, Args)]
pub struct CiIamArgs {
    /// The farm configuration.
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
    /// Directory for the documents (one file each); without it, one JSON object on stdout.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// List the objects no published matrix references; --delete removes them.
    ///
    /// Kept: every <driver>/<version>/matrix.json, every <driver>/index.json and every object under a variant
    /// prefix some matrix lists. Everything else (variants pruned or never admitted, leftovers of an
    /// interrupted publish, artifacts of `build` runs that no `sync` published) is reported, and deleted only
    /// with --delete. Do not run it while a sync publishes to the same store.
    Gc(StoreGcArgs),
}

#[derive(Debug, Args)]
pub struct StoreGcArgs {
    /// The store: a directory, file:// or s3:// URL (http stores cannot be listed).
    #[arg(long, env = "KMODFARM_STORE", default_value = "artifacts/store")]
    pub store: String,
    /// Delete the unreferenced objects (default: only list them).
    #[arg(long)]
    pub delete: bool,
    /// Leave alone unreferenced objects younger than this many seconds, and everything in their
    /// directory: a sync publishing to the store writes a variant before the matrix that lists it.
    #[arg(long, default_value_t = 3600, value_name = "SECS")]
    pub min_age: u64,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

pub fn parse() -> Result<Cli, clap::Error> {
    Cli::try_parse()
}

#[derive(Debug, Subcommand)]
pub enum BuilderCommand {
    /// Create the Debian builders with mmdebstrap (from the apt mirror) and import each into the container
    /// engine as kmodfarm-builder:<builder id>; works without any registry.
    ///
    /// The images are what `--sandbox docker` runs builds in; they are reused while the builder's content
    /// (its dpkg status) is unchanged.
    Create(BuilderCreateArgs),
    /// Build the Dockerfiles in builders/ (all families, or the ones named), tagged
    /// kmodfarm-<family>:<content hash>; Debian families start FROM the imported builder images, offline.
    Build(BuilderBuildArgs),
    /// List kmodfarm's images in the container engine: imported builders and Dockerfile builds.
    List,
    /// Remove kmodfarm images that no current builder or Dockerfile produces.
    Prune(BuilderPruneArgs),
}

#[derive(Debug, Args)]
pub struct BuilderCreateArgs {
    #[command(flatten)]
    pub mirrors: MirrorArgs,
    /// Debian suites to create builders for (bullseye, bookworm, trixie, sid): the suite's kernel compiler.
    #[arg(long, value_delimiter = ',', default_value = "bookworm,trixie")]
    pub suite: Vec<String>,
    /// Cache holding the builders (default as for `build`).
    #[arg(long, env = "KMODFARM_CACHE", value_name = "DIR")]
    pub cache: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct BuilderBuildArgs {
    /// Families to build (directory names under builders/: debian-bookworm, ubuntu-24.04, fedora, ...);
    /// default all.
    pub family: Vec<String>,
    /// The directory of Dockerfiles.
    #[arg(long, default_value = "builders", value_name = "DIR")]
    pub builders_dir: PathBuf,
    #[command(flatten)]
    pub mirrors: MirrorArgs,
    /// Cache holding the builders (default as for `build`).
    #[arg(long, env = "KMODFARM_CACHE", value_name = "DIR")]
    pub cache: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct BuilderPruneArgs {
    /// The directory of Dockerfiles (their current content hashes are kept).
    #[arg(long, default_value = "builders", value_name = "DIR")]
    pub builders_dir: PathBuf,
    /// Only say what would be removed.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Subcommand)]
pub enum GitCacheCommand {
    /// Refresh the cache's copy of each repository (all it holds when none is named): `git ls-remote`, and
    /// only when its MD5 differs from the stored one, restore the tarball, fetch, and write the new tarball
    /// (streamed, as a multipart upload) and then the MD5. One updater at a time: a lock object created only
    /// if absent, taken over once expired; another updater waits up to --wait or exits 2.
    ///
    /// The git-cache updater role is the only writer of <store>/git-cache/.
    ///
    /// Examples:
    ///   kmodfarm git-cache update https://git.example/acme/driver.git --store s3://acme-kmods/farm
    ///   kmodfarm git-cache update --store s3://acme-kmods/farm --wait 600
    Update(GitCacheUpdateArgs),
    /// Restore a repository from the cache into DIR as a bare mirror, then fetch what is new upstream (with
    /// a warning and the cached copy alone when the upstream is unreachable; a clone when the cache lacks
    /// it).
    ///
    /// Example:
    ///   kmodfarm git-cache restore https://git.example/acme/driver.git driver.git --store s3://acme-kmods/farm
    Restore(GitCacheRestoreArgs),
}

#[derive(Debug, Args)]
pub struct GitCacheUpdateArgs {
    /// Repository URLs (`https://…`, `ssh://…`, `git://…`, `file://…`, or a `git+…` source).
    pub repos: Vec<String>,
    /// The farm's store (the cache is its git-cache/ prefix).
    #[arg(long, env = "KMODFARM_FARM", value_name = "URL")]
    pub store: String,
    /// Seconds to wait for another updater's lock (0: exit at once).
    #[arg(long, default_value_t = 0, value_name = "SECS")]
    pub wait: u64,
    /// Seconds after which a lock is considered abandoned (its updater killed) and taken over.
    #[arg(long, default_value_t = 3600, value_name = "SECS")]
    pub lock_ttl: u64,
    /// Largest repository tarball accepted, in MiB.
    #[arg(long, default_value_t = 16384, value_name = "MIB")]
    pub max_size: u64,
    /// Scratch space (default: the cache directory).
    #[arg(long, env = "KMODFARM_CACHE", value_name = "DIR")]
    pub cache: Option<PathBuf>,
    /// Print what was done as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct GitCacheRestoreArgs {
    /// The repository URL (or a `git+…` source).
    pub repo: String,
    /// Where the bare mirror goes (must not exist).
    pub dir: PathBuf,
    /// The farm's store (the cache is its git-cache/ prefix).
    #[arg(long, env = "KMODFARM_FARM", value_name = "URL")]
    pub store: String,
    /// Largest repository tarball accepted, in MiB.
    #[arg(long, default_value_t = 16384, value_name = "MIB")]
    pub max_size: u64,
}
