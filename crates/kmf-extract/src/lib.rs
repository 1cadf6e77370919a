//! Package extraction confined to one root directory.
//!
//! Packages come from mirrors but are handled as hostile: no member is written outside the
//! destination, nothing is written through a symlink, symlinks and hardlinks that lead out of the
//! tree are dropped, device nodes are not created, setuid/setgid/sticky bits are stripped, and the
//! unpacked size is capped (see [`ExtractLimits`]). Dropped members are listed in
//! [`ExtractReport::skipped`]. Mtimes are kept, since the kernel build compares timestamps.
//!
//! * [`extract_deb`]: a `.deb`'s `data.tar` (uncompressed, xz, zstd or gzip), streamed.
//! * [`extract_rpm`]: an RPM's payload (a cpio archive, uncompressed or gzip, xz or zstd), streamed.
//! * [`verify_rpm_signature`]: an RPM's OpenPGP signature and digests, checked as `rpm -K` does
//!   against the family's keys, before it is unpacked.
//! * [`extract_tar`]: any tar stream.
//! * [`PackageTrees`]: one extracted tree per package, shared by every build that needs it.

mod error;
mod rpm;
mod rpmsig;
mod trees;
mod unpack;

use std::io::{BufReader, Read};
use std::path::Path;

pub use error::ExtractError;
pub use rpm::{extract_rpm, extract_rpm_with_limits};
pub use rpmsig::{verify_rpm_signature, RpmSignature};
pub use trees::PackageTrees;

/// Caps that defeat decompression bombs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExtractLimits {
    /// Total size of all members (declared and written).
    pub max_bytes: u64,
    /// Number of tar members, of any type.
    pub max_entries: u64,
}

impl Default for ExtractLimits {
    /// 4 GiB and 500,000 members: several times the largest kernel header package.
    fn default() -> Self {
        ExtractLimits {
            max_bytes: 4 << 30,
            max_entries: 500_000,
        }
    }
}

/// What an extraction did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExtractReport {
    pub files: u64,
    pub dirs: u64,
    pub symlinks: u64,
    pub hardlinks: u64,
    /// Bytes written to regular files.
    pub bytes: u64,
    /// Members not extracted: (member path as in the archive, why).
    pub skipped: Vec<(String, String)>,
}

/// Extracts the `data.tar` of the Debian package `deb` into `dest` (created if missing), with the
/// default [`ExtractLimits`].
pub fn extract_deb(deb: &Path, dest: &Path) -> Result<ExtractReport, ExtractError> {
    extract_deb_with_limits(deb, dest, &ExtractLimits::default())
}

/// [`extract_deb`] with explicit limits.
pub fn extract_deb_with_limits(
    deb: &Path,
    dest: &Path,
    limits: &ExtractLimits,
) -> Result<ExtractReport, ExtractError> {
    let mut archive = ar::Archive::new(unpack::open_buffered(deb)?);
    let not_a_deb = |reason: String| ExtractError::NotADeb {
        path: deb.to_path_buf(),
        reason,
    };
    let mut first = true;
    while let Some(member) = archive.next_entry() {
        let mut member = member.map_err(|e| {
            if first {
                not_a_deb(e.to_string())
            } else {
                ExtractError::Corrupt {
                    archive: deb.display().to_string(),
                    source: e,
                }
            }
        })?;
        let name = String::from_utf8_lossy(member.header().identifier())
            .trim_end_matches('/')
            .to_string();
        if first {
            first = false;
            if name != "debian-binary" {
                return Err(not_a_deb(format!(
                    "first member is {name:?}, not debian-binary"
                )));
            }
            let mut version = String::new();
            (&mut member)
                .take(16)
                .read_to_string(&mut version)
                .map_err(|e| not_a_deb(format!("unreadable debian-binary: {e}")))?;
            if !version.starts_with("2.") {
                return Err(not_a_deb(format!(
                    "unsupported format version {:?}",
                    version.trim()
                )));
            }
            continue;
        }
        let Some(compression) = name.strip_prefix("data.tar") else {
            continue; // control.tar.*, signatures
        };
        let label = format!("{} ({name})", deb.display());
        return match compression {
            "" => unpack::extract_tar_stream(
                BufReader::with_capacity(1 << 20, member),
                dest,
                limits,
                &label,
            ),
            ".xz" => pipelined(
                xz2::read::XzDecoder::new_multi_decoder(member),
                dest,
                limits,
                &label,
            ),
            ".zst" => {
                let decoder = zstd::stream::read::Decoder::new(member).map_err(|e| {
                    ExtractError::Corrupt {
                        archive: label.clone(),
                        source: e,
                    }
                })?;
                pipelined(decoder, dest, limits, &label)
            }
            ".gz" => pipelined(
                flate2::read::MultiGzDecoder::new(member),
                dest,
                limits,
                &label,
            ),
            _ => Err(ExtractError::UnsupportedCompression {
                path: deb.to_path_buf(),
                member: name,
            }),
        };
    }
    if first {
        return Err(not_a_deb("empty archive".to_string()));
    }
    Err(ExtractError::NoData {
        path: deb.to_path_buf(),
    })
}

/// Extracts an uncompressed tar stream into `dest` (created if missing), with the default
/// [`ExtractLimits`].
pub fn extract_tar<R: Read>(reader: R, dest: &Path) -> Result<ExtractReport, ExtractError> {
    extract_tar_with_limits(reader, dest, &ExtractLimits::default())
}

/// [`extract_tar`] with explicit limits.
pub fn extract_tar_with_limits<R: Read>(
    reader: R,
    dest: &Path,
    limits: &ExtractLimits,
) -> Result<ExtractReport, ExtractError> {
    unpack::extract_tar_stream(
        BufReader::with_capacity(1 << 20, reader),
        dest,
        limits,
        "tar stream",
    )
}

/// Extracts a package file whatever its format, recognised by content: a `.deb`, an `.rpm`, or a
/// tar that is uncompressed or compressed with xz, zstd or gzip.
pub fn extract_package(
    package: &Path,
    dest: &Path,
    limits: &ExtractLimits,
) -> Result<ExtractReport, ExtractError> {
    let mut head = [0u8; 512];
    let mut file = unpack::open_buffered(package)?;
    let n = read_up_to(&mut file, &mut head).map_err(|e| ExtractError::io(package, e))?;
    drop(file);
    let head = &head[..n];
    let label = package.display().to_string();
    let open = || unpack::open_buffered(package);
    if head.starts_with(b"!<arch>\n") {
        extract_deb_with_limits(package, dest, limits)
    } else if head.starts_with(&rpm::LEAD_MAGIC) {
        extract_rpm_with_limits(package, dest, limits)
    } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
        let decoder = xz2::read::XzDecoder::new_multi_decoder(open()?);
        pipelined(decoder, dest, limits, &label)
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        let decoder =
            zstd::stream::read::Decoder::new(open()?).map_err(|e| ExtractError::Corrupt {
                archive: label.clone(),
                source: e,
            })?;
        pipelined(decoder, dest, limits, &label)
    } else if head.starts_with(&[0x1f, 0x8b]) {
        let decoder = flate2::read::MultiGzDecoder::new(open()?);
        pipelined(decoder, dest, limits, &label)
    } else if head.len() >= 262 && &head[257..262] == b"ustar" {
        unpack::extract_tar_stream(open()?, dest, limits, &label)
    } else {
        Err(ExtractError::UnknownFormat {
            path: package.to_path_buf(),
        })
    }
}

/// Chunks decompressed ahead of the extractor; bounds how far a bomb is inflated in advance.
const PIPELINE_DEPTH: usize = 8;
const PIPELINE_CHUNK: usize = 1 << 20;

/// Extracts the tar that `decoder` produces, decompressing on a second thread so that
/// decompression overlaps with creating files (each takes about half the time for header
/// packages).
fn pipelined<D: Read + Send>(
    decoder: D,
    dest: &Path,
    limits: &ExtractLimits,
    label: &str,
) -> Result<ExtractReport, ExtractError> {
    pipelined_with(decoder, |reader| {
        unpack::extract_tar_stream(reader, dest, limits, label)
    })
}

/// Runs `consume` on what `decoder` produces, decoding on a second thread.
pub(crate) fn pipelined_with<D: Read + Send, T>(
    decoder: D,
    consume: impl FnOnce(ChannelReader) -> T,
) -> T {
    let (tx, rx) = std::sync::mpsc::sync_channel::<std::io::Result<Vec<u8>>>(PIPELINE_DEPTH);
    std::thread::scope(|scope| {
        scope.spawn(move || {
            let mut decoder = decoder;
            loop {
                let mut chunk = vec![0u8; PIPELINE_CHUNK];
                let sent = match read_up_to(&mut decoder, &mut chunk) {
                    Ok(0) => return,
                    Ok(n) => {
                        chunk.truncate(n);
                        tx.send(Ok(chunk))
                    }
                    Err(e) => tx.send(Err(e)),
                };
                // A closed channel means the extractor stopped (error or limit): stop too.
                if sent.is_err() {
                    return;
                }
            }
        });
        let reader = ChannelReader {
            rx,
            chunk: Vec::new(),
            pos: 0,
        };
        // `reader` is dropped when this returns, which releases the decoder thread.
        consume(reader)
    })
}

pub(crate) struct ChannelReader {
    rx: std::sync::mpsc::Receiver<std::io::Result<Vec<u8>>>,
    chunk: Vec<u8>,
    pos: usize,
}

impl Read for ChannelReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.pos == self.chunk.len() {
            match self.rx.recv() {
                Ok(Ok(chunk)) => {
                    self.chunk = chunk;
                    self.pos = 0;
                }
                Ok(Err(e)) => return Err(e),
                // The decoder thread finished: end of stream.
                Err(_) => return Ok(0),
            }
        }
        let n = out.len().min(self.chunk.len() - self.pos);
        out[..n].copy_from_slice(&self.chunk[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

pub(crate) fn read_up_to(reader: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match reader.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}
