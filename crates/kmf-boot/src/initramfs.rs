//! The test's initramfs: busybox, an init script, the modules and the optional check script.

use std::io::Write;
use std::path::Path;

use crate::cpio::CpioWriter;

/// A module as the init loads it.
#[derive(Debug, Clone)]
pub struct InitModule {
    pub name: String,
    /// Plain ELF bytes (decompressed).
    pub data: Vec<u8>,
}

/// Where modules and the check script are in the guest.
const DIR: &str = "kmf";

/// The path of the `i`-th module in the guest.
fn guest_path(i: usize, name: &str) -> String {
    format!("/{DIR}/{i:02}-{name}.ko")
}

/// A module name as the kernel spells it is `[A-Za-z0-9_]`; anything else is refused rather than quoted.
fn safe_name(name: &str) -> bool {
    !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The init script: mounts, loads each module in order (stopping at the first failure), runs the check,
/// unloads in reverse, reports the taint flags, dumps the kernel log and powers off. Every step prints a
/// `KMF:` marker line on the console.
pub fn init_script(modules: &[String], has_check: bool) -> String {
    let mut s = String::from(
        r#"#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
# Everything the kernel logs from here on reaches the console, so an oops or a hang is visible there.
echo 7 > /proc/sys/kernel/printk
# Each marker goes to the console at once (a hang or a panic may follow) and to a file that is printed
# again at the end, when the kernel no longer prints into the middle of a line.
mark() {
  echo "KMF:$*"
  echo "KMF:$*" >> /tmp/kmf.log
}
mark INIT
mark "TAINT0:$(cat /proc/sys/kernel/tainted)"
ok=1
loaded=""
load() {
  [ "$ok" = 1 ] || return
  mark "LOADING:$1"
  out=$(insmod "$2" 2>&1)
  rc=$?
  if [ "$rc" = 0 ]; then
    mark "LOAD:OK:$1"
    loaded="$1 $loaded"
  else
    mark "LOAD:FAIL:$1:$rc:"$out
    ok=0
  fi
}
"#,
    );
    for (i, name) in modules.iter().enumerate() {
        s.push_str(&format!("load {name} {}\n", guest_path(i, name)));
    }
    if has_check {
        s.push_str(&format!(
            "if [ \"$ok\" = 1 ]; then\n  (cd /tmp && sh /{DIR}/check.sh)\n  mark \"CHECK:$?\"\nfi\n"
        ));
    }
    s.push_str(
        r#"for m in $loaded; do
  out=$(rmmod "$m" 2>&1)
  rc=$?
  if [ "$rc" = 0 ]; then mark "UNLOAD:OK:$m"; else mark "UNLOAD:FAIL:$m:$rc:"$out; fi
done
mark "TAINT:$(cat /proc/sys/kernel/tainted)"
echo 1 > /proc/sys/kernel/printk
echo "KMF:DMESG:BEGIN"
dmesg
echo "KMF:DMESG:END"
echo "KMF:SUMMARY:BEGIN"
cat /tmp/kmf.log
echo "KMF:SUMMARY:END"
echo "KMF:DONE"
poweroff -f
"#,
    );
    s
}

/// Writes the gzip'd newc initramfs to `out`.
pub fn write_initramfs(
    out: &Path,
    busybox: &[u8],
    modules: &[InitModule],
    check_script: Option<&[u8]>,
) -> std::io::Result<()> {
    for m in modules {
        if !safe_name(&m.name) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("unexpected module name {:?}", m.name),
            ));
        }
    }
    let file = std::fs::File::create(out)?;
    let gz =
        flate2::write::GzEncoder::new(std::io::BufWriter::new(file), flate2::Compression::fast());
    let mut w = CpioWriter::new(gz);
    for dir in ["bin", "dev", "proc", "sys", "tmp", "root", DIR] {
        w.dir(dir, 0o755)?;
    }
    w.char_dev("dev/console", 0o600, 5, 1)?;
    w.char_dev("dev/null", 0o666, 1, 3)?;
    w.file("bin/busybox", 0o755, busybox)?;
    w.symlink("bin/sh", "busybox")?;
    let names: Vec<String> = modules.iter().map(|m| m.name.clone()).collect();
    w.file(
        "init",
        0o755,
        init_script(&names, check_script.is_some()).as_bytes(),
    )?;
    for (i, m) in modules.iter().enumerate() {
        w.file(
            guest_path(i, &m.name).trim_start_matches('/'),
            0o644,
            &m.data,
        )?;
    }
    if let Some(check) = check_script {
        w.file(&format!("{DIR}/check.sh"), 0o755, check)?;
    }
    let gz = w.finish()?;
    let mut buf = gz.finish()?;
    buf.flush()?;
    buf.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_loads_in_order_and_unloads_in_reverse() {
        let s = init_script(&["pair_producer".into(), "pair_consumer".into()], true);
        let p = s
            .find("load pair_producer /kmf/00-pair_producer.ko")
            .unwrap();
        let c = s
            .find("load pair_consumer /kmf/01-pair_consumer.ko")
            .unwrap();
        assert!(p < c);
        assert!(s.contains("sh /kmf/check.sh"));
        assert!(
            s.contains("loaded=\"$1 $loaded\""),
            "reverse order for rmmod"
        );
        assert!(s.trim_end().ends_with("poweroff -f"));
        assert!(!init_script(&[], false).contains("check.sh"));
    }

    #[test]
    fn archive_holds_everything() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("initrd.gz");
        let modules = vec![InitModule {
            name: "hello".into(),
            data: b"\x7fELF".to_vec(),
        }];
        write_initramfs(&out, b"BUSYBOX", &modules, Some(b"exit 0\n")).unwrap();
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(
            &mut flate2::read::GzDecoder::new(std::fs::File::open(&out).unwrap()),
            &mut bytes,
        )
        .unwrap();
        let members = crate::cpio::parse(&bytes).unwrap();
        let get = |n: &str| members.iter().find(|m| m.name == n).unwrap();
        assert_eq!(get("bin/busybox").data, b"BUSYBOX");
        assert_eq!(get("kmf/00-hello.ko").data, b"\x7fELF");
        assert_eq!(get("kmf/check.sh").data, b"exit 0\n");
        assert_eq!(get("dev/console").mode, 0o020600);
        assert!(String::from_utf8_lossy(&get("init").data).contains("load hello /kmf/00-hello.ko"));

        let bad = vec![InitModule {
            name: "a;reboot".into(),
            data: vec![],
        }];
        assert!(write_initramfs(&out, b"", &bad, None).is_err());
    }
}
