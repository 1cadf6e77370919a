//! A cgroup per run, for the memory and process limits and for finding every process of the run.
//!
//! cgroup v2 is used when its hierarchy has the `memory`/`pids` controllers and a cgroup to enable them in;
//! otherwise cgroup v1's `memory` and `pids` hierarchies. Whatever cannot be had (not root, read-only
//! cgroupfs, a container without delegation) is left to rlimits by the caller.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::sys;

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// Prefix of the cgroups kmodfarm makes.
const PREFIX: &str = "kmodfarm-";

/// Who made a run's cgroup, in its name: pid namespace, pid and start time of the kmodfarm process. A
/// kmodfarm killed outright (SIGKILL, OOM) cannot clean up, and a sandbox killed during bwrap's own
/// start-up may even outlive it (bwrap arms the parent-death signal of its namespace init only after its
/// set-up); the next run finds such cgroups by their dead owner and clears them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Owner {
    pid_ns: u64,
    pid: u32,
    start_time: u64,
}

impl Owner {
    fn of(pid: u32) -> Option<Owner> {
        use std::os::unix::fs::MetadataExt;
        let proc_dir = PathBuf::from(format!("/proc/{pid}"));
        let pid_ns = std::fs::metadata(proc_dir.join("ns/pid")).ok()?.ino();
        let stat = std::fs::read_to_string(proc_dir.join("stat")).ok()?;
        Some(Owner {
            pid_ns,
            pid,
            start_time: start_time(&stat)?,
        })
    }

    /// This process.
    fn current() -> Option<Owner> {
        static ME: std::sync::OnceLock<Option<Owner>> = std::sync::OnceLock::new();
        *ME.get_or_init(|| Owner::of(std::process::id()))
    }

    fn parse(name: &str) -> Option<(Owner, u64)> {
        let mut parts = name.strip_prefix(PREFIX)?.split('-');
        let mut next = || parts.next()?.parse::<u64>().ok();
        let owner = Owner {
            pid_ns: next()?,
            pid: u32::try_from(next()?).ok()?,
            start_time: next()?,
        };
        Some((owner, next()?))
    }

    fn name(&self, n: u64) -> String {
        format!(
            "{PREFIX}{}-{}-{}-{n}",
            self.pid_ns, self.pid, self.start_time
        )
    }

    /// The owner is known to be gone: same pid namespace as ours (a pid elsewhere says nothing), and no
    /// process with its pid and start time.
    fn is_dead(&self, me: &Owner) -> bool {
        if self.pid_ns != me.pid_ns || self == me {
            return false;
        }
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid));
        match stat {
            Ok(stat) => start_time(&stat) != Some(self.start_time),
            Err(e) => e.kind() == std::io::ErrorKind::NotFound,
        }
    }
}

/// Field 22 of `/proc/<pid>/stat` (start time in clock ticks since boot), counted after the command name,
/// which may itself hold spaces and parentheses.
fn start_time(stat: &str) -> Option<u64> {
    let after_comm = &stat[stat.rfind(')')? + 1..];
    after_comm.split_whitespace().nth(19)?.parse().ok()
}

/// Clears the cgroups under `parent` whose kmodfarm is gone: kills what is left in them and removes them.
fn sweep_stale(parent: &Path, me: &Owner) {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some((owner, _)) = name.to_str().and_then(Owner::parse) else {
            continue;
        };
        if !owner.is_dead(me) {
            continue;
        }
        let dir = entry.path();
        let mut killed = 0;
        for _ in 0..100 {
            let members = members_of(&dir);
            if members.is_empty() {
                break;
            }
            for pid in members {
                if sys::kill(pid, libc::SIGKILL).is_ok() {
                    killed += 1;
                }
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        match std::fs::remove_dir(&dir) {
            Ok(()) if killed > 0 => tracing::warn!(
                cgroup = %dir.display(),
                killed,
                "killed processes left behind by a kmodfarm that died during a run"
            ),
            Ok(()) => {
                tracing::debug!(cgroup = %dir.display(), "removed the cgroup of a dead kmodfarm")
            }
            Err(e) => {
                tracing::debug!(cgroup = %dir.display(), error = %e, "cannot remove a stale cgroup")
            }
        }
    }
}

fn members_of(dir: &Path) -> Vec<i32> {
    std::fs::read_to_string(dir.join("cgroup.procs"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse::<i32>().ok())
        .collect()
}

/// A cgroup hierarchy mounted on this machine.
#[derive(Debug, Clone, PartialEq, Eq)]
struct CgroupMount {
    mountpoint: PathBuf,
    /// The part of the hierarchy the mount shows (`/` unless it is a bind of a sub-cgroup).
    root: String,
    v2: bool,
    /// v1: the controllers bound to the hierarchy.
    controllers: Vec<String>,
}

/// A line of `/proc/self/cgroup`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Membership {
    v2: bool,
    controllers: Vec<String>,
    path: String,
}

/// Undoes mountinfo's octal escapes (`\040` for a space).
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && bytes[i + 1..i + 4]
                .iter()
                .all(|b| (b'0'..=b'7').contains(b))
        {
            let v = (bytes[i + 1] - b'0') as u32 * 64
                + (bytes[i + 2] - b'0') as u32 * 8
                + (bytes[i + 3] - b'0') as u32;
            if let Ok(b) = u8::try_from(v) {
                out.push(b);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn parse_mountinfo(text: &str) -> Vec<CgroupMount> {
    let mut mounts = Vec::new();
    for line in text.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let left: Vec<&str> = left.split(' ').collect();
        let right: Vec<&str> = right.split(' ').collect();
        if left.len() < 5 || right.len() < 3 {
            continue;
        }
        let (fstype, superopts) = (right[0], right[2]);
        let v2 = match fstype {
            "cgroup2" => true,
            "cgroup" => false,
            _ => continue,
        };
        let controllers = if v2 {
            Vec::new()
        } else {
            superopts
                .split(',')
                .filter(|o| {
                    !o.contains('=')
                        && !matches!(
                            *o,
                            "rw" | "ro"
                                | "xattr"
                                | "noprefix"
                                | "clone_children"
                                | "cpuset_v2_mode"
                                | "favordynmods"
                        )
                })
                .map(str::to_string)
                .collect()
        };
        mounts.push(CgroupMount {
            mountpoint: PathBuf::from(unescape(left[4])),
            root: unescape(left[3]),
            v2,
            controllers,
        });
    }
    mounts
}

fn parse_proc_cgroup(text: &str) -> Vec<Membership> {
    text.lines()
        .filter_map(|line| {
            let mut parts = line.splitn(3, ':');
            let id = parts.next()?;
            let controllers = parts.next()?;
            let path = parts.next()?;
            Some(Membership {
                v2: id == "0" && controllers.is_empty(),
                controllers: controllers
                    .split(',')
                    .filter(|c| !c.is_empty())
                    .map(str::to_string)
                    .collect(),
                path: path.to_string(),
            })
        })
        .collect()
}

/// This process's cgroup directory in `mount`, or the mount's top when the membership lies outside what
/// the mount shows.
fn own_dir(mount: &CgroupMount, member: &Membership) -> PathBuf {
    let rel = if mount.root == "/" {
        Some(member.path.as_str())
    } else {
        member
            .path
            .strip_prefix(mount.root.as_str())
            .filter(|rest| rest.is_empty() || rest.starts_with('/'))
    };
    match rel {
        Some(rel) => mount.mountpoint.join(rel.trim_start_matches('/')),
        None => mount.mountpoint.clone(),
    }
}

fn write(path: &Path, value: &str) -> std::io::Result<()> {
    std::fs::write(path, value)
}

/// How one limit is enforced by the run's cgroup.
#[derive(Debug, Clone)]
pub(crate) struct Via {
    pub description: String,
}

/// The cgroups of one run. Removed (after killing what is left in them) by [`RunCgroup::remove`], or on
/// drop as a last resort.
#[derive(Debug, Default)]
pub(crate) struct RunCgroup {
    /// Created directories, one per hierarchy, with whether they are v2.
    dirs: Vec<(PathBuf, bool)>,
    /// The directory with the memory controller, and whether it is v2.
    memory_dir: Option<(PathBuf, bool)>,
    pub memory: Option<Via>,
    pub pids: Option<Via>,
    removed: bool,
}

impl RunCgroup {
    /// Makes the run's cgroups and sets the limits that cgroups can enforce here. Never fails: what could
    /// not be set up is `None` in [`RunCgroup::memory`] / [`RunCgroup::pids`].
    pub(crate) fn create(memory_bytes: Option<u64>, max_processes: Option<u64>) -> RunCgroup {
        let mut cg = RunCgroup::default();
        let (Ok(mountinfo), Ok(own)) = (
            std::fs::read_to_string("/proc/self/mountinfo"),
            std::fs::read_to_string("/proc/self/cgroup"),
        ) else {
            return cg;
        };
        let mounts = parse_mountinfo(&mountinfo);
        let members = parse_proc_cgroup(&own);
        let Some(me) = Owner::current() else {
            return cg;
        };
        let name = me.name(COUNTER.fetch_add(1, Ordering::Relaxed));
        cg.try_v2(&mounts, &members, &name, memory_bytes, max_processes);
        if cg.memory.is_none() {
            if let Some(limit) = memory_bytes {
                cg.try_v1_memory(&mounts, &members, &name, limit);
            }
        }
        if cg.pids.is_none() {
            cg.try_v1_pids(&mounts, &members, &name, max_processes);
        }
        cg
    }

    fn try_v2(
        &mut self,
        mounts: &[CgroupMount],
        members: &[Membership],
        name: &str,
        memory_bytes: Option<u64>,
        max_processes: Option<u64>,
    ) {
        let Some(mount) = mounts.iter().find(|m| m.v2) else {
            return;
        };
        let Some(member) = members.iter().find(|m| m.v2) else {
            return;
        };
        let own = own_dir(mount, member);
        let mut candidates = vec![own.clone()];
        if mount.mountpoint != own {
            candidates.push(mount.mountpoint.clone());
        }
        for parent in candidates {
            let available =
                std::fs::read_to_string(parent.join("cgroup.controllers")).unwrap_or_default();
            let has = |c: &str| available.split_whitespace().any(|a| a == c);
            let want_memory = memory_bytes.is_some() && has("memory");
            let want_pids = has("pids");
            if !want_memory && !want_pids {
                continue;
            }
            let enable: Vec<&str> = [("+memory", want_memory), ("+pids", want_pids)]
                .iter()
                .filter(|(_, w)| *w)
                .map(|(c, _)| *c)
                .collect();
            // Fails with EBUSY where the parent has processes of its own (not the root): next candidate.
            if let Err(e) = write(&parent.join("cgroup.subtree_control"), &enable.join(" ")) {
                tracing::debug!(cgroup = %parent.display(), error = %e, "cannot enable cgroup v2 controllers");
                continue;
            }
            let dir = parent.join(name);
            if let Some(me) = Owner::current() {
                sweep_stale(&parent, &me);
            }
            if let Err(e) = std::fs::create_dir(&dir) {
                tracing::debug!(cgroup = %dir.display(), error = %e, "cannot create cgroup v2");
                continue;
            }
            let mut ok = true;
            if want_memory {
                let limit = memory_bytes.unwrap_or(u64::MAX).to_string();
                ok &= write(&dir.join("memory.max"), &limit).is_ok();
                // Swap would let the build go past the limit; absent when the kernel has no swap accounting.
                let _ = write(&dir.join("memory.swap.max"), "0");
            }
            if want_pids {
                let limit = max_processes.map_or("max".to_string(), |n| n.to_string());
                ok &= write(&dir.join("pids.max"), &limit).is_ok();
            }
            if !ok {
                let _ = std::fs::remove_dir(&dir);
                continue;
            }
            if want_memory {
                self.memory = Some(Via {
                    description: format!(
                        "cgroup v2 memory.max={} ({})",
                        memory_bytes.unwrap_or(0),
                        dir.display()
                    ),
                });
                self.memory_dir = Some((dir.clone(), true));
            }
            if want_pids {
                self.pids = Some(Via {
                    description: format!(
                        "cgroup v2 pids.max={} ({})",
                        max_processes.map_or("max".to_string(), |n| n.to_string()),
                        dir.display()
                    ),
                });
            }
            self.dirs.push((dir, true));
            return;
        }
    }

    fn v1_dir(
        mounts: &[CgroupMount],
        members: &[Membership],
        controller: &str,
        name: &str,
    ) -> Option<PathBuf> {
        let mount = mounts
            .iter()
            .find(|m| !m.v2 && m.controllers.iter().any(|c| c == controller))?;
        let member = members
            .iter()
            .find(|m| !m.v2 && m.controllers.iter().any(|c| c == controller))?;
        let parent = own_dir(mount, member);
        if let Some(me) = Owner::current() {
            sweep_stale(&parent, &me);
        }
        let dir = parent.join(name);
        match std::fs::create_dir(&dir) {
            Ok(()) => Some(dir),
            Err(e) => {
                tracing::debug!(cgroup = %dir.display(), error = %e, "cannot create cgroup v1");
                None
            }
        }
    }

    fn try_v1_memory(
        &mut self,
        mounts: &[CgroupMount],
        members: &[Membership],
        name: &str,
        limit: u64,
    ) {
        let Some(dir) = Self::v1_dir(mounts, members, "memory", name) else {
            return;
        };
        if let Err(e) = write(&dir.join("memory.limit_in_bytes"), &limit.to_string()) {
            tracing::debug!(cgroup = %dir.display(), error = %e, "cannot set the v1 memory limit");
            let _ = std::fs::remove_dir(&dir);
            return;
        }
        // Only there with swap accounting; must not be below memory.limit_in_bytes, hence second.
        let _ = write(&dir.join("memory.memsw.limit_in_bytes"), &limit.to_string());
        self.memory = Some(Via {
            description: format!(
                "cgroup v1 memory.limit_in_bytes={limit} ({})",
                dir.display()
            ),
        });
        self.memory_dir = Some((dir.clone(), false));
        self.dirs.push((dir, false));
    }

    fn try_v1_pids(
        &mut self,
        mounts: &[CgroupMount],
        members: &[Membership],
        name: &str,
        max: Option<u64>,
    ) {
        let Some(dir) = Self::v1_dir(mounts, members, "pids", name) else {
            return;
        };
        let limit = max.map_or("max".to_string(), |n| n.to_string());
        if let Err(e) = write(&dir.join("pids.max"), &limit) {
            tracing::debug!(cgroup = %dir.display(), error = %e, "cannot set the v1 pids limit");
            let _ = std::fs::remove_dir(&dir);
            return;
        }
        self.pids = Some(Via {
            description: format!("cgroup v1 pids.max={limit} ({})", dir.display()),
        });
        self.dirs.push((dir, false));
    }

    /// The `cgroup.procs` files the child writes itself into before exec.
    pub(crate) fn procs_files(&self) -> Vec<CString> {
        self.dirs
            .iter()
            .filter_map(|(d, _)| CString::new(d.join("cgroup.procs").as_os_str().as_bytes()).ok())
            .collect()
    }

    /// Whether any cgroup was made (and so every process of the run can be found).
    #[cfg(test)]
    fn tracks_processes(&self) -> bool {
        !self.dirs.is_empty()
    }

    fn members(&self) -> Vec<i32> {
        let mut pids = Vec::new();
        for (dir, _) in &self.dirs {
            pids.extend(members_of(dir));
        }
        pids.sort_unstable();
        pids.dedup();
        pids
    }

    /// SIGKILLs every process in the run's cgroups.
    pub(crate) fn kill_all(&self) {
        for (dir, v2) in &self.dirs {
            if *v2 {
                // Linux 5.14+: kills the whole cgroup at once, forks in flight included.
                let _ = write(&dir.join("cgroup.kill"), "1");
            }
        }
        for pid in self.members() {
            let _ = sys::kill(pid, libc::SIGKILL);
        }
    }

    /// The kernel's OOM killer acted inside the run's memory cgroup.
    pub(crate) fn oom_killed(&self) -> bool {
        let Some((dir, v2)) = &self.memory_dir else {
            return false;
        };
        let file = if *v2 {
            "memory.events"
        } else {
            "memory.oom_control"
        };
        std::fs::read_to_string(dir.join(file))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.strip_prefix("oom_kill "))
            .any(|n| n.trim().parse::<u64>().is_ok_and(|n| n > 0))
    }

    /// Kills what is left, waits for the cgroups to empty and removes them.
    pub(crate) async fn remove(mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            self.kill_all();
            if self.members().is_empty() || Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.rmdirs();
    }

    fn rmdirs(&mut self) {
        for (dir, _) in &self.dirs {
            if let Err(e) = std::fs::remove_dir(dir) {
                tracing::warn!(cgroup = %dir.display(), error = %e, "cannot remove the run's cgroup");
            }
        }
        self.removed = true;
    }
}

impl Drop for RunCgroup {
    fn drop(&mut self) {
        if self.removed || self.dirs.is_empty() {
            return;
        }
        // The run was abandoned (its future dropped): kill and clean up without an executor.
        for _ in 0..50 {
            self.kill_all();
            if self.members().is_empty() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.rmdirs();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
24 1 0:22 / / rw,relatime - overlay overlay rw
30 24 0:26 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
31 30 0:27 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
32 30 0:28 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
33 30 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
34 30 0:30 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
35 30 0:31 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
36 24 0:32 /sub /mnt/with\\040space rw shared:5 - cgroup2 cgroup2 rw,nsdelegate
";

    const PROC_CGROUP: &str = "\
9:name=systemd:/
8:pids:/
4:memory:/process_api/abc
2:cpu,cpuacct:/
0::/
";

    #[test]
    fn mountinfo_gives_cgroup_hierarchies() {
        let mounts = parse_mountinfo(MOUNTINFO);
        assert_eq!(mounts.len(), 6);
        assert_eq!(mounts[0].mountpoint, PathBuf::from("/sys/fs/cgroup/memory"));
        assert_eq!(mounts[0].controllers, vec!["memory"]);
        assert!(!mounts[0].v2);
        assert_eq!(mounts[2].controllers, vec!["cpu", "cpuacct"]);
        assert!(mounts[3].v2);
        assert_eq!(mounts[4].controllers, Vec::<String>::new());
        assert_eq!(mounts[5].mountpoint, PathBuf::from("/mnt/with space"));
        assert_eq!(mounts[5].root, "/sub");
    }

    #[test]
    fn proc_cgroup_gives_own_paths() {
        let members = parse_proc_cgroup(PROC_CGROUP);
        let mounts = parse_mountinfo(MOUNTINFO);
        let memory = members
            .iter()
            .find(|m| m.controllers.contains(&"memory".into()))
            .unwrap();
        assert_eq!(
            own_dir(&mounts[0], memory),
            PathBuf::from("/sys/fs/cgroup/memory/process_api/abc")
        );
        let v2 = members.iter().find(|m| m.v2).unwrap();
        assert_eq!(
            own_dir(&mounts[3], v2),
            PathBuf::from("/sys/fs/cgroup/unified")
        );
        // A mount of a sub-cgroup: the path is taken relative to it, or the mount's top if outside it.
        let inside = Membership {
            v2: true,
            controllers: vec![],
            path: "/sub/x".into(),
        };
        assert_eq!(
            own_dir(&mounts[5], &inside),
            PathBuf::from("/mnt/with space/x")
        );
        let outside = Membership {
            v2: true,
            controllers: vec![],
            path: "/subway".into(),
        };
        assert_eq!(
            own_dir(&mounts[5], &outside),
            PathBuf::from("/mnt/with space")
        );
    }

    #[test]
    fn owners_round_trip_through_names() {
        let me = Owner::current().unwrap();
        assert_eq!(me.pid, std::process::id());
        let name = me.name(7);
        assert_eq!(Owner::parse(&name), Some((me, 7)));
        assert!(!me.is_dead(&me));
        assert_eq!(Owner::parse("kmodfarm-1-2"), None);
        assert_eq!(Owner::parse("other-1-2-3-4"), None);
        // A start time that does not match: the pid was reused, the owner is gone.
        let reused = Owner {
            start_time: me.start_time + 1,
            ..me
        };
        assert!(reused.is_dead(&me));
        // Another pid namespace: nothing can be said.
        let foreign = Owner {
            pid_ns: me.pid_ns + 1,
            start_time: 1,
            ..me
        };
        assert!(!foreign.is_dead(&me));
        assert_eq!(
            start_time("1 (a b) c) S 1 1 1 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 4242 0"),
            Some(4242)
        );
    }

    /// Tests that make cgroups: one at a time, or one's sweep removes the other's fake stale cgroup while it
    /// is still empty.
    static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

    /// A cgroup left by a kmodfarm that was killed, with a process still in it: the next run clears it.
    #[tokio::test]
    async fn stale_cgroups_of_dead_owners_are_cleared() {
        let _serial = SERIAL.lock().await;
        let probe = RunCgroup::create(None, Some(8));
        let Some((dir, _)) = probe.dirs.first().cloned() else {
            eprintln!("skipped: no writable cgroup hierarchy here (not root, or no delegation)");
            return;
        };
        probe.remove().await;
        let me = Owner::current().unwrap();
        // A pid that no process has.
        let dead_pid = (1_000_000..4_000_000)
            .find(|p| !Path::new(&format!("/proc/{p}")).exists())
            .unwrap();
        let ghost = Owner {
            pid: dead_pid,
            start_time: 1,
            ..me
        };
        let stale = dir.parent().unwrap().join(ghost.name(0));
        let mut orphan = std::process::Command::new("sleep")
            .arg("1000")
            .spawn()
            .unwrap();
        // Another process's run may sweep the fake cgroup while it is still empty: make it again then.
        let mut moved = false;
        for _ in 0..20 {
            let _ = std::fs::create_dir(&stale);
            if std::fs::write(stale.join("cgroup.procs"), orphan.id().to_string()).is_ok() {
                moved = true;
                break;
            }
        }
        assert!(moved, "cannot put a process into {}", stale.display());

        let next = RunCgroup::create(None, Some(8));
        let status = orphan.wait().unwrap();
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(libc::SIGKILL)
        );
        assert!(!stale.exists(), "{} left behind", stale.display());
        next.remove().await;
    }

    #[test]
    fn garbage_is_ignored() {
        assert!(parse_mountinfo("nonsense\n - \n1 2 3 - cgroup\n").is_empty());
        assert!(parse_proc_cgroup("x\n").is_empty());
        assert_eq!(unescape("a\\0"), "a\\0");
        assert_eq!(unescape("a\\134b"), "a\\b");
    }

    /// On a machine where kmodfarm may make cgroups (root with a writable cgroupfs, as the CI machine),
    /// the run's cgroup gets the limits and is gone after removal.
    #[tokio::test]
    async fn creates_limits_and_removes_the_cgroup() {
        let _serial = SERIAL.lock().await;
        let cg = RunCgroup::create(Some(256 << 20), Some(64));
        if !cg.tracks_processes() {
            eprintln!("skipped: no writable cgroup hierarchy here (not root, or no delegation)");
            return;
        }
        let dirs: Vec<PathBuf> = cg.dirs.iter().map(|(d, _)| d.clone()).collect();
        if let Some((dir, v2)) = &cg.memory_dir {
            let file = if *v2 {
                "memory.max"
            } else {
                "memory.limit_in_bytes"
            };
            let set = std::fs::read_to_string(dir.join(file)).unwrap();
            assert_eq!(set.trim(), (256u64 << 20).to_string());
        }
        assert!(cg.memory.is_some() || cg.pids.is_some());
        assert!(!cg.oom_killed());
        assert_eq!(cg.procs_files().len(), dirs.len());
        cg.remove().await;
        for d in dirs {
            assert!(!d.exists(), "{} left behind", d.display());
        }
    }
}
