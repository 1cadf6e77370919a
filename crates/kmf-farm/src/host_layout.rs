//! `--sandbox none` runs make on the host, where Debian's header trees must sit at their absolute paths
//! (`/usr/src/linux-headers-X-common` is included by absolute path, and relative links such as
//! `scripts -> ../../lib/linux-kbuild-6.1/scripts` must resolve from `/usr/src`, which make's realpath of a
//! symlinked tree would break). Like installing the packages would, this puts each package's top-level
//! directories under /usr/src and /usr/lib in place, as hard links to the cache (a copy across file systems);
//! it never replaces anything that already exists.

use std::path::{Path, PathBuf};

pub(crate) fn install(roots: &[PathBuf]) -> std::io::Result<()> {
    for root in roots {
        for base in ["usr/src", "usr/lib"] {
            let Ok(rd) = std::fs::read_dir(root.join(base)) else {
                continue;
            };
            for entry in rd.flatten() {
                let dest = Path::new("/").join(base).join(entry.file_name());
                if std::fs::symlink_metadata(&dest).is_ok() {
                    continue;
                }
                // Build beside the destination and rename, so a concurrent build never sees half a tree.
                let tmp = dest.with_extension(format!("kmf-tmp-{}", std::process::id()));
                let _ = std::fs::remove_dir_all(&tmp);
                link_tree(&entry.path(), &tmp)?;
                if std::fs::rename(&tmp, &dest).is_err() {
                    let _ = std::fs::remove_dir_all(&tmp);
                }
            }
        }
    }
    Ok(())
}

fn link_tree(src: &Path, dest: &Path) -> std::io::Result<()> {
    let meta = std::fs::symlink_metadata(src)?;
    if meta.file_type().is_symlink() {
        return std::os::unix::fs::symlink(std::fs::read_link(src)?, dest);
    }
    if meta.is_file() {
        return std::fs::hard_link(src, dest).or_else(|_| std::fs::copy(src, dest).map(|_| ()));
    }
    std::fs::create_dir(dest)?;
    for entry in std::fs::read_dir(src)? {
        let entry = entry?;
        link_tree(&entry.path(), &dest.join(entry.file_name()))?;
    }
    Ok(())
}
