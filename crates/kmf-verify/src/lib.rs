//! Checks of a built `.ko` before it is published: that it is a relocatable ELF object for the target
//! architecture, carries a `.modinfo`, and was built against the kernel release asked for.
//!
//! [`read_module`] reads what `modinfo` would show; [`verify_module`] adds the checks; [`verify_expected`]
//! checks that every module a project promises was produced.

mod error;
pub mod signature;

use std::path::{Component, Path, PathBuf};

use kmf_types::Arch;
use object::elf;
use object::read::elf::{ElfFile, FileHeader};
use object::{Endianness, FileKind, Object, ObjectSection};

pub use error::VerifyError;
/// What a module's `.modinfo` says: the type published records carry ([`kmf_types::published`]).
pub use kmf_types::published::ModuleInfo;

/// A readable name for an ELF machine number, for messages.
pub fn machine_name(machine: u16) -> &'static str {
    match machine {
        elf::EM_X86_64 => "x86_64",
        elf::EM_AARCH64 => "aarch64",
        elf::EM_386 => "i386",
        elf::EM_ARM => "arm",
        elf::EM_RISCV => "riscv",
        elf::EM_PPC64 => "ppc64",
        elf::EM_S390 => "s390",
        elf::EM_MIPS => "mips",
        elf::EM_LOONGARCH => "loongarch",
        _ => "unknown",
    }
}

/// What the ELF header and sections tell, before any policy.
struct Parsed {
    e_type: u16,
    e_machine: u16,
    modinfo: Option<Vec<u8>>,
}

fn parse_elf<Elf: FileHeader<Endian = Endianness>>(data: &[u8]) -> Result<Parsed, object::Error> {
    let file = ElfFile::<Elf>::parse(data)?;
    let endian = file.endian();
    let header = file.elf_header();
    let modinfo = match file.section_by_name(".modinfo") {
        Some(section) => Some(section.data()?.to_vec()),
        None => None,
    };
    Ok(Parsed {
        e_type: header.e_type(endian),
        e_machine: header.e_machine(endian),
        modinfo,
    })
}

/// Larger files are refused rather than read into memory: the file comes from an untrusted build.
pub const MAX_MODULE_BYTES: u64 = 1 << 30;

/// Reads a build output without following a symlink (a hostile build could point one at a host file).
fn read_regular_file(path: &Path) -> Result<Vec<u8>, VerifyError> {
    use std::io::Read;
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
    let io = |source| VerifyError::Io {
        path: path.to_path_buf(),
        source,
    };
    let meta = std::fs::symlink_metadata(path).map_err(io)?;
    let ft = meta.file_type();
    let what = if ft.is_symlink() {
        "a symbolic link"
    } else if ft.is_dir() {
        "a directory"
    } else if ft.is_fifo() || ft.is_socket() || ft.is_block_device() || ft.is_char_device() {
        "a special file"
    } else {
        ""
    };
    if !what.is_empty() {
        return Err(VerifyError::NotAFile {
            path: path.to_path_buf(),
            what,
        });
    }
    // O_NOFOLLOW: the path cannot have been swapped for a symlink since the check.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .map_err(io)?;
    let size = file.metadata().map_err(io)?.len();
    if size > MAX_MODULE_BYTES {
        return Err(VerifyError::TooLarge {
            path: path.to_path_buf(),
            size,
            limit: MAX_MODULE_BYTES,
        });
    }
    let mut data = Vec::with_capacity(size as usize);
    file.take(MAX_MODULE_BYTES + 1)
        .read_to_end(&mut data)
        .map_err(io)?;
    Ok(data)
}

fn inspect(path: &Path) -> Result<(ModuleInfo, u16), VerifyError> {
    let data = read_regular_file(path)?;
    let not_elf = |detail: String| VerifyError::NotElf {
        path: path.to_path_buf(),
        detail,
    };
    let parsed = match FileKind::parse(&*data) {
        Ok(FileKind::Elf64) => parse_elf::<elf::FileHeader64<Endianness>>(&data),
        Ok(FileKind::Elf32) => parse_elf::<elf::FileHeader32<Endianness>>(&data),
        Ok(other) => return Err(not_elf(format!("it is a {other:?} file"))),
        Err(e) => return Err(not_elf(e.to_string())),
    }
    .map_err(|e| not_elf(format!("malformed ELF: {e}")))?;
    let modinfo = parsed.modinfo.ok_or_else(|| VerifyError::NoModinfo {
        path: path.to_path_buf(),
    })?;
    let fields = parse_modinfo(&modinfo);
    let get = |key: &str| {
        fields
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
    };
    let name = get("name")
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| module_name_of_file(path));
    let depends = get("depends")
        .map(|d| {
            d.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    let info = ModuleInfo {
        name,
        vermagic: get("vermagic").unwrap_or_default(),
        depends,
        license: get("license"),
        version: get("version"),
        srcversion: get("srcversion"),
        signer: signer(&data),
        elf_machine: parsed.e_machine,
        fields,
    };
    Ok((info, parsed.e_type))
}

/// `.modinfo` is a run of NUL-terminated `key=value` strings, with NUL padding between some.
fn parse_modinfo(section: &[u8]) -> Vec<(String, String)> {
    section
        .split(|b| *b == 0)
        .filter(|entry| !entry.is_empty())
        .filter_map(|entry| {
            let entry = String::from_utf8_lossy(entry);
            let (k, v) = entry.split_once('=')?;
            Some((k.to_string(), v.to_string()))
        })
        .collect()
}

const SIGNATURE_MAGIC: &[u8] = b"~Module signature appended~\n";
/// `struct module_signature`: algo, hash, id_type, signer_len, key_id_len, 3 bytes of padding, be32 sig_len.
const SIGNATURE_INFO_LEN: usize = 12;
const PKEY_ID_PKCS7: u8 = 2;

/// The signer of an appended module signature: the issuer CN of the PKCS#7 signer (what `modinfo` shows),
/// or the explicit signer name of the old signature format.
fn signer(data: &[u8]) -> Option<String> {
    let body = data.strip_suffix(SIGNATURE_MAGIC)?;
    let split = body.len().checked_sub(SIGNATURE_INFO_LEN)?;
    let (rest, info) = body.split_at(split);
    let id_type = info[2];
    let signer_len = usize::from(info[3]);
    let key_id_len = usize::from(info[4]);
    let sig_len = u32::from_be_bytes([info[8], info[9], info[10], info[11]]) as usize;
    let sig_start = rest.len().checked_sub(sig_len)?;
    if id_type == PKEY_ID_PKCS7 {
        return pkcs7_issuer_cn(&rest[sig_start..]);
    }
    let signer_start = sig_start.checked_sub(key_id_len)?.checked_sub(signer_len)?;
    let name = &rest[signer_start..signer_start + signer_len];
    (!name.is_empty()).then(|| String::from_utf8_lossy(name).into_owned())
}

/// The first commonName in a DER PKCS#7 blob. Kernel module signatures carry no certificates, so the first
/// name in them is the issuer in the SignerInfo.
fn pkcs7_issuer_cn(der: &[u8]) -> Option<String> {
    // OBJECT IDENTIFIER 2.5.4.3 (id-at-commonName).
    const CN_OID: &[u8] = &[0x06, 0x03, 0x55, 0x04, 0x03];
    let at = der.windows(CN_OID.len()).position(|w| w == CN_OID)? + CN_OID.len();
    let tag = *der.get(at)?;
    // UTF8String, PrintableString, TeletexString, IA5String, BMPString.
    if !matches!(tag, 0x0c | 0x13 | 0x14 | 0x16 | 0x1e) {
        return None;
    }
    let (len, start) = match *der.get(at + 1)? {
        n if n < 0x80 => (usize::from(n), at + 2),
        0x81 => (usize::from(*der.get(at + 2)?), at + 3),
        0x82 => (
            usize::from(u16::from_be_bytes([*der.get(at + 2)?, *der.get(at + 3)?])),
            at + 4,
        ),
        _ => return None,
    };
    let value = der.get(start..start.checked_add(len)?)?;
    if tag == 0x1e {
        let units: Vec<u16> = value
            .chunks_exact(2)
            .map(|c| u16::from_be_bytes([c[0], c[1]]))
            .collect();
        return Some(String::from_utf16_lossy(&units));
    }
    Some(String::from_utf8_lossy(value).into_owned())
}

/// Reads a module's ELF header and `.modinfo`. Fails on anything that is not an ELF file with a
/// `.modinfo` section; makes no judgement beyond that (see [`verify_module`]).
pub fn read_module(path: &Path) -> Result<ModuleInfo, VerifyError> {
    inspect(path).map(|(info, _)| info)
}

/// Reads a module and accepts it only if it is a relocatable ELF object for `arch` whose vermagic is
/// `kernel_release` followed by a space (so `6.1.0-5` does not accept a module for `6.1.0-56`).
pub fn verify_module(
    path: &Path,
    arch: Arch,
    kernel_release: &str,
) -> Result<ModuleInfo, VerifyError> {
    let (info, e_type) = inspect(path)?;
    if e_type != elf::ET_REL {
        let kind = match e_type {
            elf::ET_EXEC => "executable".to_string(),
            elf::ET_DYN => "shared object or PIE executable".to_string(),
            elf::ET_CORE => "core dump".to_string(),
            n => format!("file of type {n}"),
        };
        return Err(VerifyError::NotRelocatable {
            path: path.to_path_buf(),
            kind,
        });
    }
    if info.elf_machine != arch.elf_machine() {
        return Err(VerifyError::WrongMachine {
            path: path.to_path_buf(),
            expected: arch.elf_machine(),
            actual: info.elf_machine,
        });
    }
    if !info.fields.iter().any(|(k, _)| k == "vermagic") {
        return Err(VerifyError::NoVermagic {
            path: path.to_path_buf(),
        });
    }
    // The release is everything before the first space: a release given with a space in it never matches.
    let accepted = info
        .vermagic
        .split_once(' ')
        .is_some_and(|(release, _)| release == kernel_release);
    if !accepted {
        return Err(VerifyError::VermagicMismatch {
            path: path.to_path_buf(),
            expected_release: kernel_release.to_string(),
            vermagic: info.vermagic,
        });
    }
    // modprobe finds a module by its file name and the kernel registers it under its own: a valid module
    // of another name under this file name would load something other than what is published.
    let file_name = module_name_of_file(path);
    if info.name != file_name {
        return Err(VerifyError::NameMismatch {
            path: path.to_path_buf(),
            file_name,
            modinfo_name: info.name,
        });
    }
    Ok(info)
}

/// The module name a file stands for, as kmod derives it: the file name without `.ko` (or a compressed
/// `.ko.xz`, `.ko.zst`, `.ko.gz`), with `-` read as `_`.
pub fn module_name_of_file(path: &Path) -> String {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let stem = [".ko.xz", ".ko.zst", ".ko.gz", ".ko"]
        .iter()
        .find_map(|ext| name.strip_suffix(ext))
        .unwrap_or(&name);
    stem.replace('-', "_")
}

/// Checks that every expected module file (`hello.ko`, or a path such as `drivers/foo.ko`, relative to
/// `dir`) exists as a regular file, and returns their paths in the order given. The error lists every
/// missing one.
pub fn verify_expected(dir: &Path, expected: &[String]) -> Result<Vec<PathBuf>, VerifyError> {
    let mut found = Vec::with_capacity(expected.len());
    let mut missing = Vec::new();
    for name in expected {
        let rel = Path::new(name);
        let safe = !name.is_empty()
            && rel
                .components()
                .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
        if !safe {
            return Err(VerifyError::BadName { name: name.clone() });
        }
        let path = dir.join(rel);
        match std::fs::symlink_metadata(&path) {
            Ok(m) if m.is_file() => found.push(path),
            Ok(_) => missing.push(name.clone()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => missing.push(name.clone()),
            Err(source) => return Err(VerifyError::Io { path, source }),
        }
    }
    if missing.is_empty() {
        Ok(found)
    } else {
        Err(VerifyError::Missing {
            dir: dir.to_path_buf(),
            names: missing,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modinfo_pairs_in_order_with_padding_and_junk() {
        let section =
            b"license=GPL\0\0\0name=hello\0alias=a\0alias=b\0junk\0depends=x,y\0\xff=\xfe\0";
        let fields = parse_modinfo(section);
        assert_eq!(
            fields,
            vec![
                ("license".into(), "GPL".into()),
                ("name".into(), "hello".into()),
                ("alias".into(), "a".into()),
                ("alias".into(), "b".into()),
                ("depends".into(), "x,y".into()),
                ("\u{fffd}".into(), "\u{fffd}".into()),
            ]
        );
        assert!(parse_modinfo(b"").is_empty());
    }

    #[test]
    fn signature_trailers_never_panic_on_bad_lengths() {
        // A huge sig_len, a short body, and a PKCS#7 blob with no CN.
        let mut data = vec![0u8; 4];
        data.extend_from_slice(&[0, 0, 2, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff]);
        data.extend_from_slice(SIGNATURE_MAGIC);
        assert_eq!(signer(&data), None);
        assert_eq!(signer(SIGNATURE_MAGIC), None);
        let mut data = b"\x30\x03\x02\x01\x01".to_vec();
        data.extend_from_slice(&[0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 5]);
        data.extend_from_slice(SIGNATURE_MAGIC);
        assert_eq!(signer(&data), None);
        // A CN whose length runs past the end.
        assert_eq!(
            pkcs7_issuer_cn(&[0x06, 0x03, 0x55, 0x04, 0x03, 0x0c, 0x7f, b'a']),
            None
        );
    }

    #[test]
    fn old_style_signatures_name_the_signer() {
        let mut data = b"ELF...".to_vec();
        data.extend_from_slice(b"Build key");
        data.extend_from_slice(b"KEYID");
        data.extend_from_slice(b"SIG");
        data.extend_from_slice(&[1, 4, 1, 9, 5, 0, 0, 0, 0, 0, 0, 3]);
        data.extend_from_slice(SIGNATURE_MAGIC);
        assert_eq!(signer(&data).as_deref(), Some("Build key"));
    }

    #[test]
    fn machine_names() {
        assert_eq!(machine_name(Arch::X86_64.elf_machine()), "x86_64");
        assert_eq!(machine_name(Arch::Aarch64.elf_machine()), "aarch64");
        assert_eq!(machine_name(9999), "unknown");
    }
}
