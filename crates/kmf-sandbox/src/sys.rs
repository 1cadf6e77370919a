//! The few system calls that std does not offer: the child's set-up between fork and exec, and signals.
//! Everything `unsafe` in the crate is here, one function at a time.

use std::ffi::CString;
use std::io;
use std::os::fd::RawFd;
use std::process::Command;

/// A resource limit set in the child, as both soft and hard limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rlimit {
    AddressSpace(u64),
    Processes(u64),
    CoreSize(u64),
}

/// What the child does between fork and exec, in this order: join the run's cgroups (while still
/// privileged enough to write `cgroup.procs`), set resource limits, drop to the run's uid/gid, then ask for
/// SIGKILL when kmodfarm dies (after the uid change, which would clear it).
#[derive(Debug, Default)]
pub(crate) struct ChildSetup {
    /// `cgroup.procs` files to write "0" (this process) to.
    pub cgroup_procs: Vec<CString>,
    pub rlimits: Vec<Rlimit>,
    /// (uid, gid) to switch to, with no supplementary groups.
    pub drop_to: Option<(u32, u32)>,
    /// kmodfarm's pid: if the child's parent is already someone else, kmodfarm died before the
    /// parent-death signal was armed.
    pub parent_pid: i32,
    /// Descriptors (open in the parent, close-on-exec) that the program inherits under the same numbers.
    pub keep_fds: Vec<RawFd>,
}

impl ChildSetup {
    #[allow(unsafe_code)]
    fn apply(&self) -> io::Result<()> {
        // SAFETY: this runs in the forked child of a possibly multi-threaded parent, so it may only call
        // async-signal-safe functions and must not allocate: open/write/close, getrlimit/setrlimit,
        // setgroups/setgid/setuid, prctl, getppid and fcntl are plain system calls, every pointer passed points
        // into memory allocated before the fork (the CStrings, stack values), and io::Error built from an
        // errno does not allocate.
        unsafe {
            // Only this child's copies lose close-on-exec: the parent's stay private to it.
            for &fd in &self.keep_fds {
                if libc::fcntl(fd, libc::F_SETFD, 0) != 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            for path in &self.cgroup_procs {
                let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
                if fd < 0 {
                    return Err(io::Error::last_os_error());
                }
                let written = libc::write(fd, b"0".as_ptr().cast(), 1);
                let err = io::Error::last_os_error();
                libc::close(fd);
                if written != 1 {
                    return Err(err);
                }
            }
            for limit in &self.rlimits {
                let (resource, value) = match *limit {
                    Rlimit::AddressSpace(v) => (libc::RLIMIT_AS, v),
                    Rlimit::Processes(v) => (libc::RLIMIT_NPROC, v),
                    Rlimit::CoreSize(v) => (libc::RLIMIT_CORE, v),
                };
                let mut current = libc::rlimit {
                    rlim_cur: 0,
                    rlim_max: 0,
                };
                if libc::getrlimit(resource, &mut current) != 0 {
                    return Err(io::Error::last_os_error());
                }
                // An unprivileged caller may only lower the hard limit.
                let value = (value as libc::rlim_t).min(current.rlim_max);
                let new = libc::rlimit {
                    rlim_cur: value,
                    rlim_max: value,
                };
                if libc::setrlimit(resource, &new) != 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            if let Some((uid, gid)) = self.drop_to {
                if libc::setgroups(0, std::ptr::null()) != 0
                    || libc::setgid(gid) != 0
                    || libc::setuid(uid) != 0
                {
                    return Err(io::Error::last_os_error());
                }
            }
            if libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0 as libc::c_ulong,
                0 as libc::c_ulong,
                0 as libc::c_ulong,
            ) != 0
            {
                return Err(io::Error::last_os_error());
            }
            if libc::getppid() != self.parent_pid {
                return Err(io::Error::from_raw_os_error(libc::ESRCH));
            }
        }
        Ok(())
    }
}

/// Makes `cmd`'s child run `setup` before exec.
#[allow(unsafe_code)]
pub(crate) fn install_child_setup(cmd: &mut Command, setup: ChildSetup) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the hook only calls ChildSetup::apply, which is async-signal-safe and allocation-free (see
    // there); `setup` is moved into the closure before the fork, so the child only reads its own copy.
    unsafe {
        cmd.pre_exec(move || setup.apply());
    }
}

/// Sends `signal` to one process. Refuses the pids that mean "several processes" or init.
#[allow(unsafe_code)]
pub(crate) fn kill(pid: i32, signal: i32) -> io::Result<()> {
    if pid <= 1 {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    // SAFETY: kill(2) takes no pointers; pid > 1 names exactly one process.
    if unsafe { libc::kill(pid, signal) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Sends `signal` to every process of process group `pgid`.
#[allow(unsafe_code)]
pub(crate) fn kill_group(pgid: i32, signal: i32) -> io::Result<()> {
    if pgid <= 1 {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    // SAFETY: kill(2) takes no pointers; -pgid with pgid > 1 names one process group, never "everyone".
    if unsafe { libc::kill(-pgid, signal) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The effective uid of this process.
#[allow(unsafe_code)]
pub(crate) fn effective_uid() -> u32 {
    // SAFETY: geteuid(2) cannot fail and takes no arguments.
    unsafe { libc::geteuid() }
}

/// Takes an exclusive `flock` on `file` without waiting; `Ok(false)` when someone else holds it. The lock
/// lasts as long as the open file.
#[allow(unsafe_code)]
pub(crate) fn try_lock_exclusive(file: &std::fs::File) -> io::Result<bool> {
    use std::os::fd::AsRawFd;
    // SAFETY: flock(2) takes no pointers; the descriptor is valid for as long as `file` is borrowed.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
        return Ok(true);
    }
    let err = io::Error::last_os_error();
    if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
        Ok(false)
    } else {
        Err(err)
    }
}
