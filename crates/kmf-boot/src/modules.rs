//! Which modules to load, in which order: the built modules after the in-tree modules they depend on
//! (`depends` of `.modinfo`, recursively), each after its own dependencies.

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::path::{Path, PathBuf};

/// The kernel's module name for a file or `depends` entry: `-` becomes `_`.
pub fn module_name(name: &str) -> String {
    name.replace('-', "_")
}

/// The module name of a file: its name up to `.ko` (`videobuf2-common.ko.xz` → `videobuf2_common`).
pub fn name_of_file(path: &Path) -> Option<String> {
    let file = path.file_name()?.to_str()?;
    let stem = [".ko", ".ko.xz", ".ko.zst", ".ko.gz"]
        .iter()
        .find_map(|ext| file.strip_suffix(ext))?;
    Some(module_name(stem))
}

/// The in-tree modules of a kernel image package, by module name.
#[derive(Debug, Default)]
pub struct InTreeModules {
    by_name: HashMap<String, PathBuf>,
}

impl InTreeModules {
    /// Indexes `<modules_dir>/kernel/**/*.ko[.xz|.zst|.gz]` (`modules_dir` is `lib/modules/<release>`).
    pub fn index(modules_dir: &Path) -> std::io::Result<InTreeModules> {
        let mut by_name = HashMap::new();
        let kernel = modules_dir.join("kernel");
        if !kernel.is_dir() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("{} is missing", kernel.display()),
            ));
        }
        for entry in walkdir::WalkDir::new(&kernel).follow_links(false) {
            let entry = entry.map_err(std::io::Error::other)?;
            if !entry.file_type().is_file() {
                continue;
            }
            if let Some(name) = name_of_file(entry.path()) {
                by_name.insert(name, entry.path().to_path_buf());
            }
        }
        Ok(InTreeModules { by_name })
    }

    pub fn get(&self, name: &str) -> Option<&Path> {
        self.by_name.get(&module_name(name)).map(PathBuf::as_path)
    }

    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }
}

/// Larger modules are refused (the biggest in-tree modules are a few tens of MB uncompressed).
const MAX_MODULE_BYTES: u64 = 256 << 20;

/// A module file's bytes, decompressed according to its extension (`.xz`, `.zst`, `.gz`): busybox's
/// insmod loads plain ELF only.
pub fn read_decompressed(path: &Path) -> std::io::Result<Vec<u8>> {
    let file = std::fs::File::open(path)?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let mut reader: Box<dyn Read> = if name.ends_with(".xz") {
        Box::new(xz2::read::XzDecoder::new(file))
    } else if name.ends_with(".zst") {
        Box::new(zstd::stream::read::Decoder::new(file)?)
    } else if name.ends_with(".gz") {
        Box::new(flate2::read::GzDecoder::new(file))
    } else {
        Box::new(file)
    };
    let mut out = Vec::new();
    (&mut reader)
        .take(MAX_MODULE_BYTES + 1)
        .read_to_end(&mut out)?;
    if out.len() as u64 > MAX_MODULE_BYTES {
        return Err(std::io::Error::other(format!(
            "{} is larger than {MAX_MODULE_BYTES} bytes",
            path.display()
        )));
    }
    Ok(out)
}

/// The ELF kernel inside an x86 bzImage: the first xz, zstd or gzip stream that decompresses to an ELF
/// file. `None` when there is none.
pub fn unpack_bzimage(data: &[u8]) -> std::io::Result<Option<Vec<u8>>> {
    const LIMIT: u64 = 512 << 20;
    let magics: [(&[u8], u8); 3] = [
        (b"\xfd7zXZ\x00", 0),
        (b"\x28\xb5\x2f\xfd", 1),
        (b"\x1f\x8b\x08", 2),
    ];
    for (magic, kind) in magics {
        let mut from = 0;
        while let Some(pos) = find(&data[from..], magic).map(|p| p + from) {
            from = pos + 1;
            let stream = &data[pos..];
            let mut out = Vec::new();
            let res = match kind {
                0 => xz_single_stream(stream, LIMIT as usize, &mut out),
                1 => match zstd::stream::read::Decoder::with_buffer(stream) {
                    Ok(d) => d.single_frame().take(LIMIT).read_to_end(&mut out),
                    Err(e) => Err(e),
                },
                _ => flate2::read::GzDecoder::new(stream)
                    .take(LIMIT)
                    .read_to_end(&mut out),
            };
            if res.is_ok() && out.starts_with(b"\x7fELF") {
                return Ok(Some(out));
            }
        }
    }
    Ok(None)
}

/// Decodes one xz stream and ignores what follows it (a bzImage has trailing bytes, which the
/// reader API takes for a corrupt second stream).
fn xz_single_stream(input: &[u8], limit: usize, out: &mut Vec<u8>) -> std::io::Result<usize> {
    use xz2::stream::{Action, Status, Stream};
    let mut stream = Stream::new_stream_decoder(u64::MAX, 0).map_err(std::io::Error::other)?;
    let mut rest = input;
    loop {
        if out.len() == out.capacity() {
            if out.len() >= limit {
                return Err(std::io::Error::other("decompressed kernel too large"));
            }
            out.reserve(16 << 20);
        }
        let (in_before, out_before) = (stream.total_in(), out.len());
        let status = stream
            .process_vec(rest, out, Action::Run)
            .map_err(std::io::Error::other)?;
        rest = &rest[(stream.total_in() - in_before) as usize..];
        match status {
            Status::StreamEnd => return Ok(out.len()),
            _ if stream.total_in() == in_before && out.len() == out_before && rest.is_empty() => {
                return Err(std::io::Error::other("truncated xz stream"));
            }
            _ => {}
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// One module to load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedModule {
    pub name: String,
    pub path: PathBuf,
    /// True for a module of the kernel image package (a dependency), false for a built one.
    pub in_tree: bool,
}

/// A module known by name with its dependencies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleDeps {
    pub name: String,
    pub depends: Vec<String>,
    pub path: PathBuf,
}

/// The load order: in-tree dependencies first (each after its own), then the built modules, each after
/// the built modules it depends on. `in_tree` looks an in-tree module up by name (`Ok(None)`: no such
/// module). Unload in the reverse order.
pub fn plan(
    built: &[ModuleDeps],
    mut in_tree: impl FnMut(&str) -> Result<Option<ModuleDeps>, String>,
) -> Result<Vec<PlannedModule>, String> {
    let mut planner = Planner {
        built: built.iter().map(|m| (module_name(&m.name), m)).collect(),
        done: HashSet::new(),
        tree_order: Vec::new(),
        built_order: Vec::new(),
    };
    for m in built {
        planner.visit(&m.name, true, &mut in_tree, &mut Vec::new())?;
    }
    let mut order = planner.tree_order;
    order.extend(planner.built_order);
    Ok(order)
}

struct Planner<'a> {
    built: HashMap<String, &'a ModuleDeps>,
    done: HashSet<String>,
    tree_order: Vec<PlannedModule>,
    built_order: Vec<PlannedModule>,
}

impl Planner<'_> {
    /// Depth-first: dependencies are planned before the module; `path` is the chain being visited.
    fn visit(
        &mut self,
        name: &str,
        from_built: bool,
        in_tree: &mut dyn FnMut(&str) -> Result<Option<ModuleDeps>, String>,
        path: &mut Vec<String>,
    ) -> Result<(), String> {
        let name = module_name(name);
        if self.done.contains(&name) {
            return Ok(());
        }
        if path.contains(&name) {
            path.push(name);
            return Err(format!("circular module dependency: {}", path.join(" -> ")));
        }
        // A built module's dependency may be another built module; an in-tree module's never is.
        let (deps, is_built) = match self.built.get(&name).filter(|_| from_built) {
            Some(m) => ((*m).clone(), true),
            None => match in_tree(&name)? {
                Some(m) => (m, false),
                None => {
                    let needed_by = path.last().cloned().unwrap_or_default();
                    return Err(format!(
                        "{needed_by} depends on {name}, which is neither a built module nor a module of \
                         the kernel image package"
                    ));
                }
            },
        };
        path.push(name.clone());
        for dep in deps.depends.iter().filter(|d| !d.is_empty()) {
            self.visit(dep, is_built, in_tree, path)?;
        }
        path.pop();
        self.done.insert(name.clone());
        let planned = PlannedModule {
            name,
            path: deps.path,
            in_tree: !is_built,
        };
        if is_built {
            self.built_order.push(planned);
        } else {
            self.tree_order.push(planned);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deps(name: &str, depends: &[&str]) -> ModuleDeps {
        ModuleDeps {
            name: name.into(),
            depends: depends.iter().map(|s| s.to_string()).collect(),
            path: PathBuf::from(format!("/m/{name}.ko")),
        }
    }

    fn names(plan: &[PlannedModule]) -> Vec<&str> {
        plan.iter().map(|p| p.name.as_str()).collect()
    }

    #[test]
    fn built_modules_follow_their_dependencies() {
        // Listed consumer first: the plan still loads the producer first.
        let built = [
            deps("pair_consumer", &["pair_producer"]),
            deps("pair_producer", &[]),
        ];
        let plan = plan(&built, |_| Ok(None)).unwrap();
        assert_eq!(names(&plan), ["pair_producer", "pair_consumer"]);
        assert!(plan.iter().all(|p| !p.in_tree));
    }

    #[test]
    fn in_tree_dependencies_come_first_recursively() {
        let tree: HashMap<&str, ModuleDeps> = [
            ("videodev", deps("videodev", &["mc"])),
            ("mc", deps("mc", &[])),
            (
                "videobuf2_common",
                deps("videobuf2_common", &["videodev", "mc"]),
            ),
        ]
        .into_iter()
        .collect();
        let built = [
            deps("mydrv", &["videobuf2-common", "mylib"]),
            deps("mylib", &["videodev"]),
        ];
        let plan = plan(&built, |n| Ok(tree.get(n).cloned())).unwrap();
        assert_eq!(
            names(&plan),
            ["mc", "videodev", "videobuf2_common", "mylib", "mydrv"]
        );
        assert_eq!(
            plan.iter().map(|p| p.in_tree).collect::<Vec<_>>(),
            [true, true, true, false, false]
        );
    }

    #[test]
    fn missing_dependency_and_cycles_are_errors() {
        let e = plan(&[deps("a", &["nosuch"])], |_| Ok(None)).unwrap_err();
        assert!(e.contains("a depends on nosuch"), "{e}");
        let e = plan(&[deps("a", &["b"]), deps("b", &["a"])], |_| Ok(None)).unwrap_err();
        assert!(e.contains("circular"), "{e}");
    }

    #[test]
    fn names_of_files() {
        assert_eq!(
            name_of_file(Path::new("/x/videobuf2-common.ko.xz")).as_deref(),
            Some("videobuf2_common")
        );
        assert_eq!(name_of_file(Path::new("a.ko")).as_deref(), Some("a"));
        assert_eq!(name_of_file(Path::new("a.ko.zst")).as_deref(), Some("a"));
        assert_eq!(name_of_file(Path::new("a.o")), None);
    }

    #[test]
    fn finds_the_elf_kernel_in_a_bzimage() {
        use std::io::Write;
        let elf = b"\x7fELF kernel".repeat(50);
        let mut enc = xz2::write::XzEncoder::new(Vec::new(), 6);
        enc.write_all(&elf).unwrap();
        let mut image = b"MZ setup code \xfd7zXZ\x00 false start".to_vec();
        image.extend(enc.finish().unwrap());
        image.extend(b"\x00\x10\x00\x00 trailer");
        assert_eq!(unpack_bzimage(&image).unwrap(), Some(elf.clone()));
        let mut image = b"MZ".to_vec();
        image.extend(zstd::encode_all(&elf[..], 3).unwrap());
        image.extend(b"trailer");
        assert_eq!(unpack_bzimage(&image).unwrap(), Some(elf));
        assert_eq!(unpack_bzimage(b"MZ nothing").unwrap(), None);
    }

    #[test]
    fn decompresses_by_extension() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let data = b"\x7fELF module bytes".repeat(100);
        let xz = dir.path().join("m.ko.xz");
        let mut enc = xz2::write::XzEncoder::new(std::fs::File::create(&xz).unwrap(), 6);
        enc.write_all(&data).unwrap();
        enc.finish().unwrap();
        let zst = dir.path().join("m.ko.zst");
        std::fs::write(&zst, zstd::encode_all(&data[..], 3).unwrap()).unwrap();
        let plain = dir.path().join("m.ko");
        std::fs::write(&plain, &data).unwrap();
        for p in [xz, zst, plain] {
            assert_eq!(read_decompressed(&p).unwrap(), data);
        }
    }
}
