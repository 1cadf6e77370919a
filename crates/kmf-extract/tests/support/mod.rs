//! Builders for hostile tar streams and .deb packages.

#![allow(dead_code)]

use std::io::Write;

use tar::{EntryType, Header};

pub const MTIME: u64 = 1_700_000_000;

/// A tar stream built member by member, with names and link targets written raw into the
/// header so that `..` and absolute paths (which `tar::Builder` refuses) get in.
pub struct HostileTar {
    builder: tar::Builder<Vec<u8>>,
}

impl Default for HostileTar {
    fn default() -> Self {
        Self::new()
    }
}

impl HostileTar {
    pub fn new() -> Self {
        HostileTar {
            builder: tar::Builder::new(Vec::new()),
        }
    }

    pub fn raw(
        &mut self,
        path: &str,
        kind: EntryType,
        mode: u32,
        link: Option<&str>,
        data: &[u8],
    ) -> &mut Self {
        let mut h = Header::new_gnu();
        {
            let old = h.as_old_mut();
            assert!(
                path.len() <= old.name.len(),
                "use long names some other way"
            );
            old.name.fill(0);
            old.name[..path.len()].copy_from_slice(path.as_bytes());
            if let Some(link) = link {
                old.linkname.fill(0);
                old.linkname[..link.len()].copy_from_slice(link.as_bytes());
            }
        }
        h.set_entry_type(kind);
        h.set_size(data.len() as u64);
        h.set_mode(mode);
        h.set_mtime(MTIME);
        h.set_uid(0);
        h.set_gid(0);
        h.set_cksum();
        self.builder.append(&h, data).unwrap();
        self
    }

    pub fn file(&mut self, path: &str, data: &[u8]) -> &mut Self {
        self.raw(path, EntryType::Regular, 0o644, None, data)
    }

    pub fn file_mode(&mut self, path: &str, mode: u32, data: &[u8]) -> &mut Self {
        self.raw(path, EntryType::Regular, mode, None, data)
    }

    pub fn dir(&mut self, path: &str, mode: u32) -> &mut Self {
        self.raw(path, EntryType::Directory, mode, None, b"")
    }

    pub fn symlink(&mut self, path: &str, target: &str) -> &mut Self {
        self.raw(path, EntryType::Symlink, 0o777, Some(target), b"")
    }

    pub fn hardlink(&mut self, path: &str, target: &str) -> &mut Self {
        self.raw(path, EntryType::Link, 0o644, Some(target), b"")
    }

    /// A member with a long name, through the builder (GNU long-name record).
    pub fn long_file(&mut self, path: &str, data: &[u8]) -> &mut Self {
        let mut h = Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(MTIME);
        h.set_entry_type(EntryType::Regular);
        self.builder.append_data(&mut h, path, data).unwrap();
        self
    }

    pub fn finish(self) -> Vec<u8> {
        self.builder.into_inner().unwrap()
    }
}

#[derive(Clone, Copy, Debug)]
pub enum Compression {
    None,
    Xz,
    Zstd,
    Gzip,
}

impl Compression {
    pub fn suffix(self) -> &'static str {
        match self {
            Compression::None => "",
            Compression::Xz => ".xz",
            Compression::Zstd => ".zst",
            Compression::Gzip => ".gz",
        }
    }

    pub fn compress(self, data: &[u8]) -> Vec<u8> {
        match self {
            Compression::None => data.to_vec(),
            Compression::Xz => {
                let mut e = xz2::write::XzEncoder::new(Vec::new(), 6);
                e.write_all(data).unwrap();
                e.finish().unwrap()
            }
            Compression::Zstd => zstd::encode_all(data, 3).unwrap(),
            Compression::Gzip => {
                let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                e.write_all(data).unwrap();
                e.finish().unwrap()
            }
        }
    }
}

/// A .deb: debian-binary, control.tar.xz, data.tar<compression>.
pub fn deb(data_tar: &[u8], compression: Compression) -> Vec<u8> {
    let control = {
        let mut t = HostileTar::new();
        t.file("./control", b"Package: hostile\nVersion: 1\n");
        Compression::Xz.compress(&t.finish())
    };
    let data = compression.compress(data_tar);
    let data_name = format!("data.tar{}", compression.suffix());
    ar_archive(&[
        ("debian-binary", b"2.0\n".as_slice()),
        ("control.tar.xz", &control),
        (&data_name, &data),
    ])
}

pub fn ar_archive(members: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = ar::Builder::new(Vec::new());
    for (name, data) in members {
        let header = ar::Header::new(name.as_bytes().to_vec(), data.len() as u64);
        b.append(&header, *data).unwrap();
    }
    b.into_inner().unwrap()
}
