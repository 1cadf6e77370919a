//! RPM packages: the lead, the signature header and the main header are read and checked, then the
//! payload (a cpio archive in the SVR4 "newc" format, compressed with gzip, xz or zstd, or not at
//! all) is streamed through the same confined extractor as a `.deb`'s tar.
//!
//! Layout of an RPM (v3/v4 file format): a 96-byte lead starting `ed ab ee db`; the signature header,
//! padded to 8 bytes; the main header; the payload. Each header is `8e ad e8 01`, 4 reserved bytes,
//! the number of index entries and the size of the data store (big-endian u32 each), then 16 bytes
//! per index entry and the store. Only two tags of the main header matter for extraction: the payload format
//! (1124, `cpio`) and its compressor (1125); the compression is recognised by its magic bytes, the
//! tag only names an unsupported one in the error.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fs;
use std::io::{self, BufReader, Read};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use crate::error::ExtractError;
use crate::unpack::{self, Extractor, Failure, MemberKind};
use crate::{pipelined_with, read_up_to, ExtractLimits, ExtractReport};

/// The first bytes of every RPM file.
pub(crate) const LEAD_MAGIC: [u8; 4] = [0xed, 0xab, 0xee, 0xdb];
const LEAD_SIZE: usize = 96;
const HEADER_MAGIC: [u8; 4] = [0x8e, 0xad, 0xe8, 0x01];
/// rpm itself refuses headers with more tags than this.
const MAX_INDEX_ENTRIES: u32 = 0xffff;
/// A kernel-devel main header (its file list) is a few MiB; this is far above any real one.
const MAX_HEADER_STORE: u32 = 64 << 20;

const TAG_NAME: i32 = 1000;
const TAG_PAYLOADFORMAT: i32 = 1124;
const TAG_PAYLOADCOMPRESSOR: i32 = 1125;
const TYPE_STRING: u32 = 6;

/// Longest member name accepted in the cpio payload (PATH_MAX, with its terminating NUL).
const MAX_NAME: u32 = 4096;
/// Longest symlink target accepted.
const MAX_LINK_TARGET: u32 = 4095;
const CPIO_HEADER: usize = 110;

/// Extracts the payload of the RPM package `rpm` into `dest` (created if missing), with the
/// default [`ExtractLimits`].
pub fn extract_rpm(rpm: &Path, dest: &Path) -> Result<ExtractReport, ExtractError> {
    extract_rpm_with_limits(rpm, dest, &ExtractLimits::default())
}

/// [`extract_rpm`] with explicit limits.
pub fn extract_rpm_with_limits(
    rpm: &Path,
    dest: &Path,
    limits: &ExtractLimits,
) -> Result<ExtractReport, ExtractError> {
    let mut file = unpack::open_buffered(rpm)?;
    let not_an_rpm = |reason: String| ExtractError::NotAnRpm {
        path: rpm.to_path_buf(),
        reason,
    };
    // The signature header is not used here: [`crate::verify_rpm_signature`] checks it before
    // extraction where the family has keys (and the download was verified by its SHA256 already).
    let (_, header) = read_headers(&mut file, rpm)?;
    let name = header.string(TAG_NAME).unwrap_or_default();
    let label = format!("{} ({name} payload)", rpm.display());
    match header.string(TAG_PAYLOADFORMAT) {
        None | Some("cpio") => {}
        Some(other) => {
            return Err(not_an_rpm(format!(
                "payload format {other:?}, not cpio (a delta RPM?)"
            )))
        }
    }
    let compressor = header.string(TAG_PAYLOADCOMPRESSOR).unwrap_or("gzip");

    let mut head = [0u8; 6];
    let n = read_up_to(&mut file, &mut head).map_err(|e| ExtractError::io(rpm, e))?;
    let head = &head[..n];
    let payload = io::Cursor::new(head.to_vec()).chain(file);
    let unsupported = || ExtractError::UnsupportedCompression {
        path: rpm.to_path_buf(),
        member: format!("payload ({compressor})"),
    };
    let run = |r: crate::ChannelReader| extract_cpio_stream(r, dest, limits, &label);
    if head.starts_with(&[0x1f, 0x8b]) {
        pipelined_with(flate2::read::MultiGzDecoder::new(payload), run)
    } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
        pipelined_with(xz2::read::XzDecoder::new_multi_decoder(payload), run)
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        let decoder =
            zstd::stream::read::Decoder::new(payload).map_err(|e| ExtractError::Corrupt {
                archive: label.clone(),
                source: e,
            })?;
        pipelined_with(decoder, run)
    } else if head.starts_with(b"07070") {
        extract_cpio_stream(payload, dest, limits, &label)
    } else if head.is_empty() {
        Err(ExtractError::Corrupt {
            archive: label.clone(),
            source: io::Error::new(io::ErrorKind::UnexpectedEof, "no payload"),
        })
    } else {
        Err(unsupported())
    }
}

/// Reads the lead, the signature header (and its padding) and the main header of the RPM `file`,
/// leaving `file` at the first byte of the payload. Extraction and signature checks both locate the
/// headers here, so that the header whose signature is checked is the one extraction reads.
pub(crate) fn read_headers(
    file: &mut impl Read,
    rpm: &Path,
) -> Result<(Header, Header), ExtractError> {
    let not_an_rpm = |reason: String| ExtractError::NotAnRpm {
        path: rpm.to_path_buf(),
        reason,
    };
    let mut lead = [0u8; LEAD_SIZE];
    file.read_exact(&mut lead)
        .map_err(|e| not_an_rpm(format!("short lead: {e}")))?;
    if lead[..4] != LEAD_MAGIC {
        return Err(not_an_rpm("no RPM lead magic".to_string()));
    }
    if !matches!(lead[4], 3 | 4) {
        return Err(not_an_rpm(format!(
            "unsupported format version {}",
            lead[4]
        )));
    }
    let signature = read_header(file).map_err(|e| not_an_rpm(format!("signature header: {e}")))?;
    // The signature header is padded to a multiple of 8 bytes.
    let pad = (8 - signature.blob.len() % 8) % 8;
    let mut padding = [0u8; 8];
    file.read_exact(&mut padding[..pad])
        .map_err(|_| not_an_rpm("truncated signature header".to_string()))?;
    let header = read_header(file).map_err(|e| not_an_rpm(format!("main header: {e}")))?;
    Ok((signature, header))
}

/// One header structure (the signature header or the main header), as it is in the file.
pub(crate) struct Header {
    /// Magic, reserved bytes, counts, index and data store: the bytes header signatures and digests
    /// cover.
    blob: Vec<u8>,
    entries: usize,
}

/// A header index entry's data type.
const TYPE_INT32: u32 = 4;
const TYPE_BIN: u32 = 7;
const TYPE_STRING_ARRAY: u32 = 8;

impl Header {
    /// The header as it is in the file.
    pub(crate) fn blob(&self) -> &[u8] {
        &self.blob
    }

    fn index(&self) -> &[u8] {
        &self.blob[16..16 + 16 * self.entries]
    }

    fn store(&self) -> &[u8] {
        &self.blob[16 + 16 * self.entries..]
    }

    /// (type, offset into the store, count) of the first entry with `tag`.
    fn entry(&self, tag: i32) -> Option<(u32, usize, usize)> {
        self.index().chunks_exact(16).find_map(|e| {
            let be = |i: usize| u32::from_be_bytes(e[i..i + 4].try_into().expect("4 bytes"));
            (be(0) as i32 == tag).then(|| (be(4), be(8) as usize, be(12) as usize))
        })
    }

    /// NUL-terminated strings from `offset`, `count` of them.
    fn strings_at(&self, offset: usize, count: usize) -> Option<Vec<&str>> {
        let mut rest = self.store().get(offset..)?;
        let mut out = Vec::new();
        for _ in 0..count {
            let end = rest.iter().position(|&b| b == 0)?;
            out.push(std::str::from_utf8(&rest[..end]).ok()?);
            rest = &rest[end + 1..];
        }
        Some(out)
    }

    /// The value of a STRING tag, if present and well-formed.
    pub(crate) fn string(&self, tag: i32) -> Option<&str> {
        match self.entry(tag)? {
            (TYPE_STRING, offset, _) => self.strings_at(offset, 1)?.pop(),
            _ => None,
        }
    }

    /// The values of a STRING_ARRAY tag, if present and well-formed.
    pub(crate) fn string_array(&self, tag: i32) -> Option<Vec<&str>> {
        match self.entry(tag)? {
            (TYPE_STRING_ARRAY, offset, count) if count <= MAX_INDEX_ENTRIES as usize => {
                self.strings_at(offset, count)
            }
            _ => None,
        }
    }

    /// The bytes of a BIN tag, if present and within the store.
    pub(crate) fn bin(&self, tag: i32) -> Option<&[u8]> {
        match self.entry(tag)? {
            (TYPE_BIN, offset, count) => self.store().get(offset..offset.checked_add(count)?),
            _ => None,
        }
    }

    /// The first value of an INT32 tag.
    pub(crate) fn int32(&self, tag: i32) -> Option<u32> {
        match self.entry(tag)? {
            (TYPE_INT32, offset, count) if count >= 1 => {
                let b = self.store().get(offset..offset.checked_add(4)?)?;
                Some(u32::from_be_bytes(b.try_into().expect("4 bytes")))
            }
            _ => None,
        }
    }

    /// Whether a tag is present, whatever its type.
    pub(crate) fn has(&self, tag: i32) -> bool {
        self.entry(tag).is_some()
    }
}

/// Reads one header: its intro (checked against the caps), index and data store.
fn read_header(r: &mut impl Read) -> Result<Header, String> {
    let mut intro = [0u8; 16];
    r.read_exact(&mut intro).map_err(|e| e.to_string())?;
    if intro[..4] != HEADER_MAGIC {
        return Err("bad header magic".to_string());
    }
    let entries = u32::from_be_bytes(intro[8..12].try_into().expect("4 bytes"));
    let store = u32::from_be_bytes(intro[12..16].try_into().expect("4 bytes"));
    if entries == 0 || entries > MAX_INDEX_ENTRIES {
        return Err(format!("{entries} index entries"));
    }
    if store > MAX_HEADER_STORE {
        return Err(format!("data store of {store} bytes"));
    }
    let len = 16 * u64::from(entries) + u64::from(store);
    let mut blob = intro.to_vec();
    r.take(len)
        .read_to_end(&mut blob)
        .map_err(|e| e.to_string())?;
    if blob.len() as u64 != 16 + len {
        return Err("truncated".to_string());
    }
    Ok(Header {
        blob,
        entries: entries as usize,
    })
}

/// The members of one hardlink set seen so far.
#[derive(Default)]
struct LinkSet {
    /// Path of the member that carried the contents, once written.
    content: Option<PathBuf>,
    /// Members seen before the contents: (name, path).
    waiting: Vec<(String, PathBuf)>,
}

/// Extracts a newc cpio stream (what RPM payloads are) into `dest`.
pub(crate) fn extract_cpio_stream<R: Read>(
    reader: R,
    dest: &Path,
    limits: &ExtractLimits,
    label: &str,
) -> Result<ExtractReport, ExtractError> {
    fs::create_dir_all(dest).map_err(|e| ExtractError::io(dest, e))?;
    let mut r = BufReader::with_capacity(1 << 16, reader);
    let mut x = Extractor::new(dest, limits, label);
    let corrupt = |source: io::Error| ExtractError::Corrupt {
        archive: label.to_string(),
        source,
    };
    let invalid = |msg: String| corrupt(io::Error::new(io::ErrorKind::InvalidData, msg));
    let failure = |f: Failure| match f {
        Failure::Read(e) => corrupt(e),
        Failure::Other(e) => e,
    };
    // Hardlink sets by (device major, device minor, inode). RPM stores the contents with the last
    // member of a set and none with the others; GNU cpio may store them with the first.
    let mut links: HashMap<(u32, u32, u32), LinkSet> = HashMap::new();
    let mut order: Vec<(u32, u32, u32)> = Vec::new();
    loop {
        let mut hdr = [0u8; CPIO_HEADER];
        r.read_exact(&mut hdr).map_err(|e| {
            if e.kind() == io::ErrorKind::UnexpectedEof {
                invalid("cpio archive ends without its trailer".to_string())
            } else {
                corrupt(e)
            }
        })?;
        match &hdr[..6] {
            b"070701" | b"070702" => {}
            b"07070X" => {
                return Err(invalid(
                    "stripped cpio payload (RPM large-file format) is not supported".to_string(),
                ))
            }
            other => {
                return Err(invalid(format!(
                    "bad cpio magic {:?} (only the newc format is read)",
                    String::from_utf8_lossy(other)
                )))
            }
        }
        let mut fields = [0u32; 13];
        for (i, f) in fields.iter_mut().enumerate() {
            let hex = &hdr[6 + 8 * i..14 + 8 * i];
            *f = std::str::from_utf8(hex)
                .ok()
                .and_then(|h| u32::from_str_radix(h, 16).ok())
                .ok_or_else(|| invalid(format!("bad cpio header field {i}")))?;
        }
        let [ino, mode, _uid, _gid, nlink, mtime, size, devmajor, devminor, _, _, namesize, _] =
            fields;
        if namesize == 0 || namesize > MAX_NAME {
            return Err(invalid(format!("cpio name size {namesize}")));
        }
        let mut name = vec![0u8; namesize as usize];
        r.read_exact(&mut name).map_err(corrupt)?;
        if name.pop() != Some(0) || name.contains(&0) {
            return Err(invalid("cpio name is not NUL-terminated".to_string()));
        }
        skip(&mut r, pad4(CPIO_HEADER as u64 + u64::from(namesize))).map_err(corrupt)?;
        if name == b"TRAILER!!!" {
            break;
        }
        x.admit(u64::from(size))?;
        let display = String::from_utf8_lossy(&name).into_owned();
        let path = PathBuf::from(OsString::from_vec(name));
        let size = u64::from(size);
        let mtime = u64::from(mtime);
        let mut data = (&mut r).take(size);
        match mode & 0o170000 {
            0o100000 if nlink > 1 => {
                let key = (devmajor, devminor, ino);
                let set = links.entry(key).or_insert_with(|| {
                    order.push(key);
                    LinkSet::default()
                });
                if let (0, Some(content)) = (size, &set.content) {
                    let kind = MemberKind::Hardlink(Some(content.clone()));
                    x.add(&display, &path, kind, mode, mtime, &mut data, 0)
                        .map_err(failure)?;
                } else if size == 0 {
                    set.waiting.push((display.clone(), path));
                } else {
                    x.add(
                        &display,
                        &path,
                        MemberKind::File,
                        mode,
                        mtime,
                        &mut data,
                        size,
                    )
                    .map_err(failure)?;
                    set.content = Some(path.clone());
                    for (name, waiting) in std::mem::take(&mut set.waiting) {
                        let kind = MemberKind::Hardlink(Some(path.clone()));
                        x.add(&name, &waiting, kind, mode, mtime, &mut io::empty(), 0)
                            .map_err(failure)?;
                    }
                }
            }
            0o100000 => x
                .add(
                    &display,
                    &path,
                    MemberKind::File,
                    mode,
                    mtime,
                    &mut data,
                    size,
                )
                .map_err(failure)?,
            0o040000 => x
                .add(&display, &path, MemberKind::Dir, mode, mtime, &mut data, 0)
                .map_err(failure)?,
            0o120000 if size > u64::from(MAX_LINK_TARGET) => {
                x.skip(&display, format!("symlink target of {size} bytes"));
            }
            0o120000 => {
                let mut target = Vec::with_capacity(size as usize);
                data.read_to_end(&mut target).map_err(corrupt)?;
                let target =
                    (!target.contains(&0)).then(|| PathBuf::from(OsStr::from_bytes(&target)));
                let kind = MemberKind::Symlink(target);
                x.add(&display, &path, kind, mode, mtime, &mut io::empty(), 0)
                    .map_err(failure)?;
            }
            t => {
                let reason = match t {
                    0o020000 | 0o060000 | 0o010000 => "device node or fifo".to_string(),
                    0o140000 => "socket".to_string(),
                    t => format!("unknown file type {t:o}"),
                };
                x.add(
                    &display,
                    &path,
                    MemberKind::Unsupported(reason),
                    mode,
                    mtime,
                    &mut data,
                    0,
                )
                .map_err(failure)?;
            }
        }
        // Whatever of the member's data was not consumed (skipped members), then the padding.
        let left = data.limit();
        if left > 0 && io::copy(&mut data, &mut io::sink()).map_err(corrupt)? != left {
            return Err(corrupt(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("member {display} is cut short"),
            )));
        }
        skip(&mut r, pad4(size)).map_err(corrupt)?;
    }
    // Sets whose members all had no contents: empty files linked together.
    for key in order {
        let set = links.remove(&key).unwrap_or_default();
        let mut waiting = set.waiting.into_iter();
        if set.content.is_some() {
            continue;
        }
        let Some((name, first)) = waiting.next() else {
            continue;
        };
        x.add(
            &name,
            &first,
            MemberKind::File,
            0o644,
            0,
            &mut io::empty(),
            0,
        )
        .map_err(failure)?;
        for (name, path) in waiting {
            let kind = MemberKind::Hardlink(Some(first.clone()));
            x.add(&name, &path, kind, 0o644, 0, &mut io::empty(), 0)
                .map_err(failure)?;
        }
    }
    x.finish()
}

fn pad4(n: u64) -> u64 {
    (4 - n % 4) % 4
}

fn skip(r: &mut impl Read, n: u64) -> io::Result<()> {
    let mut buf = [0u8; 4];
    r.read_exact(&mut buf[..n as usize])
}
