//! A minimal writer of the `newc` cpio format, the one the kernel unpacks as an initramfs.

use std::io::{self, Write};

const MAGIC: &str = "070701";
const TRAILER: &str = "TRAILER!!!";

/// Writes a newc archive: directories, regular files and symlinks, owned by root, mtime 0.
pub struct CpioWriter<W: Write> {
    out: W,
    ino: u32,
    written: u64,
    rdev: (u32, u32),
}

impl<W: Write> CpioWriter<W> {
    pub fn new(out: W) -> Self {
        CpioWriter {
            out,
            ino: 1,
            written: 0,
            rdev: (0, 0),
        }
    }

    /// A directory (`path` without a leading slash).
    pub fn dir(&mut self, path: &str, mode: u32) -> io::Result<()> {
        self.entry(path, 0o040000 | (mode & 0o7777), 2, b"")
    }

    /// A regular file.
    pub fn file(&mut self, path: &str, mode: u32, data: &[u8]) -> io::Result<()> {
        self.entry(path, 0o100000 | (mode & 0o7777), 1, data)
    }

    /// A symbolic link to `target`.
    pub fn symlink(&mut self, path: &str, target: &str) -> io::Result<()> {
        self.entry(path, 0o120777, 1, target.as_bytes())
    }

    /// A character device node (`/dev/console` must exist before init runs).
    pub fn char_dev(&mut self, path: &str, mode: u32, major: u32, minor: u32) -> io::Result<()> {
        self.rdev = (major, minor);
        let r = self.entry(path, 0o020000 | (mode & 0o7777), 1, b"");
        self.rdev = (0, 0);
        r
    }

    /// Writes the trailer and returns the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.header(TRAILER, 0, 1, 0, 0)?;
        self.out.flush()?;
        Ok(self.out)
    }

    fn entry(&mut self, path: &str, mode: u32, nlink: u32, data: &[u8]) -> io::Result<()> {
        let path = path.trim_start_matches('/');
        if path.is_empty() || path.contains('\0') {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("bad cpio member name {path:?}"),
            ));
        }
        let size = u32::try_from(data.len())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "cpio member over 4 GiB"))?;
        self.ino += 1;
        let ino = self.ino;
        self.header(path, mode, nlink, size, ino)?;
        self.write(data)?;
        self.pad()
    }

    fn header(&mut self, name: &str, mode: u32, nlink: u32, size: u32, ino: u32) -> io::Result<()> {
        let namesize = name.len() as u32 + 1;
        let (rmaj, rmin) = self.rdev;
        let fields = [
            ino, mode, 0, 0, nlink, 0, size, 0, 0, rmaj, rmin, namesize, 0,
        ];
        let mut header = String::with_capacity(110);
        header.push_str(MAGIC);
        for f in fields {
            header.push_str(&format!("{f:08x}"));
        }
        self.write(header.as_bytes())?;
        self.write(name.as_bytes())?;
        self.write(&[0])?;
        self.pad()
    }

    fn write(&mut self, data: &[u8]) -> io::Result<()> {
        self.out.write_all(data)?;
        self.written += data.len() as u64;
        Ok(())
    }

    fn pad(&mut self) -> io::Result<()> {
        let pad = (4 - (self.written % 4) as usize) % 4;
        self.write(&[0u8; 3][..pad])
    }
}

/// One member read back by [`parse`] (for tests and diagnostics).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub name: String,
    pub mode: u32,
    pub data: Vec<u8>,
}

/// Parses a newc archive up to its trailer.
pub fn parse(mut bytes: &[u8]) -> Result<Vec<Member>, String> {
    let mut out = Vec::new();
    let mut offset = 0usize;
    let align = |n: usize| (n + 3) & !3;
    loop {
        if bytes.len() < 110 {
            return Err(format!("truncated header at {offset}"));
        }
        if &bytes[..6] != MAGIC.as_bytes() {
            return Err(format!("bad magic at {offset}"));
        }
        let field = |i: usize| -> Result<usize, String> {
            let s =
                std::str::from_utf8(&bytes[6 + i * 8..14 + i * 8]).map_err(|e| e.to_string())?;
            usize::from_str_radix(s, 16).map_err(|e| e.to_string())
        };
        let mode = field(1)? as u32;
        let size = field(6)?;
        let namesize = field(11)?;
        let name_end = 110 + namesize;
        let data_start = align(name_end);
        let data_end = data_start + size;
        if bytes.len() < data_end {
            return Err(format!("truncated member at {offset}"));
        }
        let name = String::from_utf8_lossy(&bytes[110..name_end - 1]).into_owned();
        if name == TRAILER {
            return Ok(out);
        }
        out.push(Member {
            name,
            mode,
            data: bytes[data_start..data_end].to_vec(),
        });
        let next = align(data_end).min(bytes.len());
        offset += next;
        bytes = &bytes[next..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let mut w = CpioWriter::new(Vec::new());
        w.dir("bin", 0o755).unwrap();
        w.file("bin/busybox", 0o755, b"\x7fELF0123").unwrap();
        w.symlink("bin/sh", "busybox").unwrap();
        w.file("init", 0o755, b"#!/bin/sh\n").unwrap();
        w.file("empty", 0o644, b"").unwrap();
        w.char_dev("dev/console", 0o600, 5, 1).unwrap();
        let bytes = w.finish().unwrap();
        assert_eq!(bytes.len() % 4, 0);
        let members = parse(&bytes).unwrap();
        let names: Vec<_> = members.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "bin",
                "bin/busybox",
                "bin/sh",
                "init",
                "empty",
                "dev/console"
            ]
        );
        assert_eq!(members[5].mode, 0o020600);
        assert_eq!(members[0].mode, 0o040755);
        assert_eq!(members[1].data, b"\x7fELF0123");
        assert_eq!(members[2].mode, 0o120777);
        assert_eq!(members[2].data, b"busybox");
        assert_eq!(members[3].mode, 0o100755);
        assert!(members[4].data.is_empty());
    }

    /// The system's cpio, when installed, reads what we write.
    #[test]
    fn system_cpio_reads_it() {
        if std::process::Command::new("cpio")
            .arg("--version")
            .output()
            .is_err()
        {
            eprintln!("skipping: no cpio on this machine");
            return;
        }
        let mut w = CpioWriter::new(Vec::new());
        w.dir("d", 0o755).unwrap();
        w.file("d/f", 0o644, b"hello\n").unwrap();
        w.symlink("d/l", "f").unwrap();
        let bytes = w.finish().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut child = std::process::Command::new("cpio")
            .args(["-i", "-d", "--quiet", "--no-absolute-filenames"])
            .current_dir(dir.path())
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(&bytes).unwrap();
        assert!(child.wait().unwrap().success());
        assert_eq!(std::fs::read(dir.path().join("d/f")).unwrap(), b"hello\n");
        assert_eq!(
            std::fs::read_link(dir.path().join("d/l")).unwrap(),
            std::path::Path::new("f")
        );
    }

    #[test]
    fn refuses_bad_names() {
        let mut w = CpioWriter::new(Vec::new());
        assert!(w.file("", 0o644, b"").is_err());
        assert!(w.file("a\0b", 0o644, b"").is_err());
    }
}
