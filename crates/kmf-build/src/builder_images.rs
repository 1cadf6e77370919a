//! The container images `--sandbox docker` builds in (`kmodfarm builder create|build|list|prune`).
//!
//! * [`create`] makes the Debian builders with mmdebstrap (the same root filesystems bubblewrap uses) and
//!   imports each as `kmodfarm-builder:<builder id>`.
//! * [`build`] builds the Dockerfiles under `builders/`, tagged `kmodfarm-<family>:<content hash>`; the
//!   Debian families (`debian-<suite>`) start FROM the imported builder of their suite, passed as the build
//!   argument `BASE`, so they build offline.
//! * [`list`] and [`prune`] manage what is in the engine. Prune keeps what today's toolchain table
//!   ([`toolchain::all_builders`]) and today's Dockerfiles produce; [`images_to_remove`] is that decision
//!   on its own, without an engine.
//!
//! Nothing here prints: progress goes to the caller as [`Event`]s, in the order it happens (the output of
//! `docker build` itself goes to the process's stdout and stderr, between them).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};

use kmf_sandbox::docker::{self, Docker, ImageInfo, LABEL_FAMILY};
use kmf_sandbox::SandboxError;

use crate::toolchain;
use crate::{BuildError, BuilderSpec, BuilderStore};

/// Repository prefix of Dockerfile builds: `kmodfarm-<family>`.
const FAMILY_REPO_PREFIX: &str = "kmodfarm-";
/// Hex digits of the context digest in a family's tag: enough to tell contexts apart, short enough to read.
const FAMILY_TAG_HEX: usize = 16;
/// Families named `debian-<suite>` are built FROM the imported builder of that suite.
const DEBIAN_FAMILY_PREFIX: &str = "debian-";

/// The error of a mirror lookup, whatever the caller's error type is.
pub type MirrorError = Box<dyn std::error::Error + Send + Sync>;

/// Where a missing builder is created from: the Debian mirror URI serving a suite. Asked only when a
/// builder has to be created, so commands whose builders all exist work with no mirror configured.
pub trait MirrorSource {
    /// The repository `suite` is served from, with the keys that prove it.
    fn apt_source(&self, suite: &str) -> Result<crate::AptSource, MirrorError>;
}

impl<F> MirrorSource for F
where
    F: Fn(&str) -> Result<String, MirrorError>,
{
    fn apt_source(&self, suite: &str) -> Result<crate::AptSource, MirrorError> {
        self(suite).map(|uri| crate::AptSource::uri(&uri))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BuilderImageError {
    #[error("no builder for suite `{suite}` (known: {known})")]
    UnknownSuite { suite: String, known: String },
    /// The caller's own message (it knows which flag or setting would fix it).
    #[error(transparent)]
    Mirror(MirrorError),
    #[error("creating builder {id}")]
    CreateBuilder {
        id: String,
        #[source]
        source: BuildError,
    },
    #[error("importing {}", rootfs.display())]
    Import {
        rootfs: PathBuf,
        #[source]
        source: SandboxError,
    },
    #[error("reading {}", dir.display())]
    ReadBuildersDir {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("no builders/{family}/Dockerfile (families: {known})")]
    UnknownFamily { family: String, known: String },
    #[error("running {} build", cli.display())]
    RunBuild {
        cli: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The container engine, or reading a build context.
    #[error(transparent)]
    Engine(#[from] SandboxError),
    #[error(transparent)]
    Task(#[from] tokio::task::JoinError),
}

/// What happens, in order, for the caller to show.
#[derive(Debug)]
pub enum Event<'a> {
    /// A builder is missing and mmdebstrap creates it now.
    CreatingBuilder { id: &'a str, suite: &'a str },
    /// A builder's image is current: `imported` now, or already up to date.
    BuilderImage { image: &'a str, imported: bool },
    /// An image the command was asked for is ready (its reference is the command's result).
    Ready { image: &'a str },
    /// A family's image with this tag already exists.
    FamilyUpToDate { tag: &'a str },
    /// `docker build` of a family starts.
    Building { tag: &'a str, dockerfile: &'a Path },
    /// A family could not be built because its base builder image could not be made; the others go on.
    BaseFailed {
        family: &'a str,
        error: BuilderImageError,
    },
    /// `docker build` of a family failed.
    BuildFailed { tag: &'a str, status: ExitStatus },
    /// Prune removes this image (or would, on a dry run).
    Removing { image: &'a str, dry_run: bool },
}

/// The outcome of [`build`]: the families not built (each already reported by an [`Event`]).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct BuildSummary {
    pub failed: Vec<String>,
}

/// Where a listed image comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageOrigin {
    /// A build of `builders/<family>/Dockerfile`.
    Dockerfile {
        family: String,
    },
    /// A builder root filesystem imported as an image.
    ImportedBuilder {
        builder_id: String,
    },
    Unknown,
}

impl std::fmt::Display for ImageOrigin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ImageOrigin::Dockerfile { family } => write!(f, "builders/{family}/Dockerfile"),
            ImageOrigin::ImportedBuilder { builder_id } => {
                write!(f, "builder {builder_id} (imported root filesystem)")
            }
            ImageOrigin::Unknown => Ok(()),
        }
    }
}

/// One kmodfarm image in the engine, as [`list`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedImage {
    pub info: ImageInfo,
    pub origin: ImageOrigin,
}

/// Where an image comes from, by its labels; a family label wins (a Dockerfile build FROM an imported
/// builder inherits the builder's label).
pub fn image_origin(info: &ImageInfo) -> ImageOrigin {
    match (&info.builder_id, &info.family) {
        (_, Some(family)) => ImageOrigin::Dockerfile {
            family: family.clone(),
        },
        (Some(builder_id), None) => ImageOrigin::ImportedBuilder {
            builder_id: builder_id.clone(),
        },
        (None, None) => ImageOrigin::Unknown,
    }
}

/// The builder of a Debian suite, from the toolchain table.
pub fn suite_builder(suite: &str) -> Result<BuilderSpec, BuilderImageError> {
    toolchain::suite_builder(suite).ok_or_else(|| BuilderImageError::UnknownSuite {
        suite: suite.to_string(),
        known: toolchain::known_suites().join(", "),
    })
}

/// Creates (when missing) each suite's builder and imports it; reports [`Event::Ready`] with the image
/// reference of each, in order. Stops at the first failure.
pub async fn create(
    docker: &Docker,
    store: &BuilderStore,
    mirror: &dyn MirrorSource,
    suites: &[String],
    report: &mut impl FnMut(Event<'_>),
) -> Result<(), BuilderImageError> {
    for suite in suites {
        let image = ensure_builder_image(docker, store, mirror, suite, report).await?;
        report(Event::Ready { image: &image });
    }
    Ok(())
}

/// Creates (when missing) the suite's builder and imports it; returns the image reference.
async fn ensure_builder_image(
    docker: &Docker,
    store: &BuilderStore,
    mirror: &dyn MirrorSource,
    suite: &str,
    report: &mut impl FnMut(Event<'_>),
) -> Result<String, BuilderImageError> {
    let spec = suite_builder(suite)?;
    let rootfs = match store.existing(&spec) {
        Some(r) => r,
        None => {
            let source = mirror
                .apt_source(&spec.suite)
                .map_err(BuilderImageError::Mirror)?;
            report(Event::CreatingBuilder {
                id: &spec.id,
                suite,
            });
            store.ensure(&spec, &source).await.map_err(|source| {
                BuilderImageError::CreateBuilder {
                    id: spec.id.clone(),
                    source,
                }
            })?
        }
    };
    let image = docker::builder_image_tag(&spec.id);
    let (cli, r, img) = (docker.cli().to_path_buf(), rootfs.clone(), image.clone());
    // Importing writes the whole tree through the client: blocking, and long.
    let imported = tokio::task::spawn_blocking(move || docker::ensure_image(&cli, &r, &img))
        .await?
        .map_err(|source| BuilderImageError::Import { rootfs, source })?;
    report(Event::BuilderImage {
        image: &image,
        imported,
    });
    Ok(image)
}

/// The families under `dir` (its subdirectories holding a `Dockerfile`), sorted; only `wanted`, in its
/// order, when it names any, each checked to be one.
pub fn families(dir: &Path, wanted: &[String]) -> Result<Vec<String>, BuilderImageError> {
    let read_err = |source| BuilderImageError::ReadBuildersDir {
        dir: dir.to_path_buf(),
        source,
    };
    let mut all: Vec<String> = std::fs::read_dir(dir)
        .map_err(read_err)?
        .flatten()
        .filter(|e| e.path().join("Dockerfile").is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    all.sort();
    if wanted.is_empty() {
        return Ok(all);
    }
    if let Some(missing) = wanted.iter().find(|w| !all.contains(w)) {
        return Err(BuilderImageError::UnknownFamily {
            family: missing.clone(),
            known: all.join(", "),
        });
    }
    Ok(wanted.to_vec())
}

/// `kmodfarm-<family>:<first 16 hex of the digest of builders/<family> and the build arguments>`: the tag
/// changes exactly when what the build would see changes, so an existing tag means nothing to rebuild.
pub fn family_tag(
    builders_dir: &Path,
    family: &str,
    build_args: &[String],
) -> Result<String, BuilderImageError> {
    let digest = docker::context_digest(&builders_dir.join(family), build_args)?;
    Ok(format!(
        "{FAMILY_REPO_PREFIX}{family}:{}",
        &digest[..FAMILY_TAG_HEX]
    ))
}

/// The build argument that makes a Debian family start FROM an imported builder image.
fn base_arg(image: &str) -> String {
    format!("BASE={image}")
}

/// The build arguments of a family: Debian ones start FROM the imported builder image of their suite.
async fn family_build_args(
    docker: &Docker,
    store: &BuilderStore,
    mirror: &dyn MirrorSource,
    family: &str,
    report: &mut impl FnMut(Event<'_>),
) -> Result<Vec<String>, BuilderImageError> {
    match family.strip_prefix(DEBIAN_FAMILY_PREFIX) {
        Some(suite) => {
            let image = ensure_builder_image(docker, store, mirror, suite, report).await?;
            Ok(vec![base_arg(&image)])
        }
        None => Ok(vec![]),
    }
}

/// Builds the images of the families under `builders_dir` (all, or the `wanted` ones) that do not exist
/// yet; reports [`Event::Ready`] for each image built or found current. A family that fails is reported
/// and listed in the summary, and the others still build.
pub async fn build(
    docker: &Docker,
    store: &BuilderStore,
    mirror: &dyn MirrorSource,
    builders_dir: &Path,
    wanted: &[String],
    report: &mut impl FnMut(Event<'_>),
) -> Result<BuildSummary, BuilderImageError> {
    let mut summary = BuildSummary::default();
    for family in families(builders_dir, wanted)? {
        let build_args = match family_build_args(docker, store, mirror, &family, report).await {
            Ok(a) => a,
            Err(error) => {
                report(Event::BaseFailed {
                    family: &family,
                    error,
                });
                summary.failed.push(family);
                continue;
            }
        };
        let tag = family_tag(builders_dir, &family, &build_args)?;
        if docker::image_exists(docker.cli(), &tag) {
            report(Event::FamilyUpToDate { tag: &tag });
            report(Event::Ready { image: &tag });
            continue;
        }
        let context = builders_dir.join(&family);
        let mut cmd = tokio::process::Command::new(docker.cli());
        cmd.arg("build").args([
            "--tag",
            &tag,
            "--label",
            &format!("{LABEL_FAMILY}={family}"),
        ]);
        for a in &build_args {
            cmd.args(["--build-arg", a]);
        }
        // The build's own output is the user's to see, as it comes.
        cmd.arg(&context)
            .stdin(Stdio::null())
            .stdout(Stdio::inherit())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        report(Event::Building {
            tag: &tag,
            dockerfile: &context.join("Dockerfile"),
        });
        let status = cmd
            .status()
            .await
            .map_err(|source| BuilderImageError::RunBuild {
                cli: docker.cli().to_path_buf(),
                source,
            })?;
        if status.success() {
            report(Event::Ready { image: &tag });
        } else {
            report(Event::BuildFailed { tag: &tag, status });
            summary.failed.push(family);
        }
    }
    Ok(summary)
}

/// kmodfarm's images in the engine, with where each comes from.
pub fn list(docker: &Docker) -> Result<Vec<ListedImage>, BuilderImageError> {
    Ok(docker::list_images(docker.cli())?
        .into_iter()
        .map(|info| ListedImage {
            origin: image_origin(&info),
            info,
        })
        .collect())
}

/// The image references that today's toolchain table and Dockerfiles produce: what prune keeps.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CurrentImages {
    /// `kmodfarm-builder:<id>` of every builder in the toolchain table.
    builders: BTreeSet<String>,
    /// Family → the tags its Dockerfile has today (one per base it can be built FROM).
    families: BTreeMap<String, BTreeSet<String>>,
}

impl CurrentImages {
    /// The images of these builders (every row of the toolchain table, for prune), and no family yet.
    pub fn from_builders(builders: &[BuilderSpec]) -> Self {
        CurrentImages {
            builders: builders
                .iter()
                .map(|b| docker::builder_image_tag(&b.id))
                .collect(),
            families: BTreeMap::new(),
        }
    }

    /// Adds the current tags of `family` from its directory under `builders_dir`: built without build
    /// arguments, and for a Debian family FROM each builder image. A family whose directory cannot be
    /// read has no current tag, so its images all go.
    pub fn add_family(&mut self, builders_dir: &Path, family: &str) {
        let mut args: Vec<Vec<String>> = vec![vec![]];
        if family.starts_with(DEBIAN_FAMILY_PREFIX) {
            args.extend(self.builders.iter().map(|b| vec![base_arg(b)]));
        }
        let tags: BTreeSet<String> = args
            .iter()
            .filter_map(|a| family_tag(builders_dir, family, a).ok())
            .collect();
        self.families.insert(family.to_string(), tags);
    }

    /// Adds tags of a family directly (what [`CurrentImages::add_family`] computes from the Dockerfiles).
    pub fn add_family_tags(
        &mut self,
        family: &str,
        tags: impl IntoIterator<Item = impl Into<String>>,
    ) {
        self.families
            .entry(family.to_string())
            .or_default()
            .extend(tags.into_iter().map(Into::into));
    }

    /// Whether the image is current. A Dockerfile build is current when its tag is one its family's
    /// context has today; any other kmodfarm image when it is the image of a builder in the table.
    pub fn keeps(&self, image: &ImageInfo) -> bool {
        match &image.family {
            Some(family) => self
                .families
                .get(family)
                .is_some_and(|tags| tags.contains(&image.reference)),
            None => self.builders.contains(&image.reference),
        }
    }
}

/// The references of the images prune removes: every one that is not current, in the listing's order.
pub fn images_to_remove(images: &[ImageInfo], current: &CurrentImages) -> Vec<String> {
    images
        .iter()
        .filter(|i| !current.keeps(i))
        .map(|i| i.reference.clone())
        .collect()
}

/// Removes kmodfarm's images that neither a builder of the toolchain table nor a Dockerfile under
/// `builders_dir` produces today (only reports them on a dry run); returns their references.
pub fn prune(
    docker: &Docker,
    builders_dir: &Path,
    dry_run: bool,
    report: &mut impl FnMut(Event<'_>),
) -> Result<Vec<String>, BuilderImageError> {
    // From the table itself: a copy of it once left builders out, and prune deleted their images.
    let mut current = CurrentImages::from_builders(&toolchain::all_builders());
    let images = docker::list_images(docker.cli())?;
    let labelled: BTreeSet<&str> = images.iter().filter_map(|i| i.family.as_deref()).collect();
    for family in labelled {
        current.add_family(builders_dir, family);
    }
    let remove = images_to_remove(&images, &current);
    for image in &remove {
        report(Event::Removing { image, dry_run });
    }
    if !dry_run {
        docker::remove_images(docker.cli(), &remove)?;
    }
    Ok(remove)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(path: &Path, text: &str) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    fn image(reference: &str, builder_id: Option<&str>, family: Option<&str>) -> ImageInfo {
        ImageInfo {
            reference: reference.to_string(),
            id: "sha256:0".to_string(),
            created: "1 day ago".to_string(),
            size: "1GB".to_string(),
            builder_id: builder_id.map(str::to_string),
            family: family.map(str::to_string),
        }
    }

    #[test]
    fn families_are_the_directories_with_a_dockerfile() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        write(&d.join("fedora/Dockerfile"), "FROM fedora:40\n");
        write(
            &d.join("debian-bookworm/Dockerfile"),
            "ARG BASE\nFROM $BASE\n",
        );
        write(&d.join("notes/README"), "no Dockerfile here\n");
        write(&d.join("README.md"), "a file, not a family\n");
        // A directory named Dockerfile is not a Dockerfile.
        std::fs::create_dir_all(d.join("odd/Dockerfile")).unwrap();

        assert_eq!(families(d, &[]).unwrap(), ["debian-bookworm", "fedora"]);
        // The named ones, in the order named.
        let wanted = vec!["fedora".to_string(), "debian-bookworm".to_string()];
        assert_eq!(families(d, &wanted).unwrap(), wanted);

        let err = families(d, &["notes".to_string()]).unwrap_err();
        assert!(matches!(err, BuilderImageError::UnknownFamily { .. }));
        assert_eq!(
            err.to_string(),
            "no builders/notes/Dockerfile (families: debian-bookworm, fedora)"
        );
        assert!(matches!(
            families(&d.join("missing"), &[]).unwrap_err(),
            BuilderImageError::ReadBuildersDir { .. }
        ));
    }

    #[test]
    fn family_tags_follow_the_context_and_the_build_arguments() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        write(&d.join("fedora/Dockerfile"), "FROM fedora:40\n");
        let tag = family_tag(d, "fedora", &[]).unwrap();
        let hex = tag.strip_prefix("kmodfarm-fedora:").unwrap();
        assert_eq!(hex.len(), 16);
        assert!(hex.bytes().all(|b| b.is_ascii_hexdigit()), "{tag}");
        // Stable: the same context gives the same tag, so a built image is found up to date.
        assert_eq!(family_tag(d, "fedora", &[]).unwrap(), tag);
        // The same content elsewhere is the same context.
        let other = tempfile::tempdir().unwrap();
        write(&other.path().join("fedora/Dockerfile"), "FROM fedora:40\n");
        assert_eq!(family_tag(other.path(), "fedora", &[]).unwrap(), tag);

        let based = family_tag(d, "fedora", &[base_arg("kmodfarm-builder:x")]).unwrap();
        assert_ne!(based, tag);
        write(&d.join("fedora/extra.sh"), "true\n");
        let with_file = family_tag(d, "fedora", &[]).unwrap();
        assert_ne!(with_file, tag);
        write(&d.join("fedora/extra.sh"), "false\n");
        assert_ne!(family_tag(d, "fedora", &[]).unwrap(), with_file);
    }

    #[test]
    fn prune_keeps_every_builder_of_the_table() {
        let table = toolchain::all_builders();
        let current = CurrentImages::from_builders(&table);
        let mut images: Vec<ImageInfo> = table
            .iter()
            .map(|b| image(&docker::builder_image_tag(&b.id), Some(&b.id), None))
            .collect();
        images.push(image(
            "kmodfarm-builder:debian-bookworm-gcc12-000000000000",
            Some("debian-bookworm-gcc12-000000000000"),
            None,
        ));
        assert_eq!(
            images_to_remove(&images, &current),
            ["kmodfarm-builder:debian-bookworm-gcc12-000000000000"]
        );
        // gcc-9 and gcc-16 are in the table too: a copied table once left them out.
        for major in [9, 16] {
            let b = toolchain::builder_for(&format!("gcc-{major} (Debian) {major}.1.0")).unwrap();
            assert!(current.keeps(&image(&docker::builder_image_tag(&b.id), Some(&b.id), None)));
        }
    }

    #[test]
    fn prune_keeps_the_current_tags_of_each_family() {
        let table = toolchain::all_builders();
        let builder_tag = docker::builder_image_tag(&table[0].id);
        let mut current = CurrentImages::from_builders(&table);
        current.add_family_tags("fedora", ["kmodfarm-fedora:1111111111111111"]);
        current.add_family_tags(
            "debian-bookworm",
            ["kmodfarm-debian-bookworm:2222222222222222"],
        );
        let images = vec![
            image("kmodfarm-fedora:1111111111111111", None, Some("fedora")),
            image("kmodfarm-fedora:0000000000000000", None, Some("fedora")),
            // A Dockerfile build FROM an imported builder carries both labels; the family decides.
            image(
                "kmodfarm-debian-bookworm:2222222222222222",
                Some(&table[0].id),
                Some("debian-bookworm"),
            ),
            image(
                "kmodfarm-debian-bookworm:3333333333333333",
                Some(&table[0].id),
                Some("debian-bookworm"),
            ),
            // A family whose Dockerfile is gone has no current tag.
            image("kmodfarm-gone:4444444444444444", None, Some("gone")),
            // A builder's tag does not keep a family image, nor a family tag a builder image.
            image(&builder_tag, None, Some("fedora")),
            image("kmodfarm-fedora:1111111111111111x", Some("x"), None),
        ];
        assert_eq!(
            images_to_remove(&images, &current),
            [
                "kmodfarm-fedora:0000000000000000",
                "kmodfarm-debian-bookworm:3333333333333333",
                "kmodfarm-gone:4444444444444444",
                builder_tag.as_str(),
                "kmodfarm-fedora:1111111111111111x",
            ]
        );
    }

    #[test]
    fn current_family_tags_come_from_the_dockerfiles() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        write(&d.join("fedora/Dockerfile"), "FROM fedora:40\n");
        write(
            &d.join("debian-trixie/Dockerfile"),
            "ARG BASE\nFROM $BASE\n",
        );
        let table = toolchain::all_builders();
        let mut current = CurrentImages::from_builders(&table);
        for family in ["fedora", "debian-trixie", "gone"] {
            current.add_family(d, family);
        }
        let fedora = family_tag(d, "fedora", &[]).unwrap();
        assert!(current.keeps(&image(&fedora, None, Some("fedora"))));
        // A Debian family is current FROM whichever builder of the table it was built on.
        let trixie = toolchain::suite_builder("trixie").unwrap();
        let base = base_arg(&docker::builder_image_tag(&trixie.id));
        let debian = family_tag(d, "debian-trixie", &[base]).unwrap();
        assert!(current.keeps(&image(&debian, None, Some("debian-trixie"))));
        let stale = family_tag(d, "debian-trixie", &[base_arg("kmodfarm-builder:old")]).unwrap();
        assert!(!current.keeps(&image(&stale, None, Some("debian-trixie"))));
        assert!(!current.keeps(&image(&fedora, None, Some("gone"))));
    }

    #[test]
    fn origins_by_label() {
        assert_eq!(
            image_origin(&image("a:b", Some("x"), Some("fedora"))).to_string(),
            "builders/fedora/Dockerfile"
        );
        assert_eq!(
            image_origin(&image("a:b", Some("x"), None)).to_string(),
            "builder x (imported root filesystem)"
        );
        assert_eq!(image_origin(&image("a:b", None, None)).to_string(), "");
    }

    #[test]
    fn unknown_suites_name_the_known_ones() {
        let err = suite_builder("jessie").unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "no builder for suite `jessie` (known: {})",
                toolchain::known_suites().join(", ")
            )
        );
        assert_eq!(suite_builder("bookworm").unwrap().gcc_major, 12);
    }
}
