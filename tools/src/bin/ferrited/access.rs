//! Who may reach ferrited's data and control socket, whatever the umask it was started with:
//! the data directory is 0700 (0710 when a control group must reach a socket inside it),
//! files ferrited creates are 0600, the control socket is 0660 (owner plus `[daemon]
//! rpc_group`), and every control connection's peer credentials (`SO_PEERCRED`) are checked.

use std::os::fd::AsFd;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::path::Path;

/// Makes every file and directory ferrited creates private unless it widens it explicitly:
/// the umask inherited from the caller (000 in some service managers and shells) must not
/// decide who reads pool data.
pub fn restrict_umask() {
    // SAFETY: umask(2) only swaps the process's file mode creation mask; it cannot fail.
    unsafe { libc::umask(0o077) };
}

/// The control socket's access policy.
#[derive(Debug, Clone)]
pub struct ControlAccess {
    daemon_uid: u32,
    /// `[daemon] rpc_group`: its name and gid.
    group: Option<(String, u32)>,
}

fn group_id(name: &str) -> Result<u32, String> {
    let c_name = std::ffi::CString::new(name)
        .map_err(|_| format!("[daemon] rpc_group {name:?}: names contain no NUL byte"))?;
    // SAFETY: group is plain old data; all-zero is a valid value.
    let mut group: libc::group = unsafe { std::mem::zeroed() };
    let mut buf = vec![0 as libc::c_char; 64 * 1024];
    let mut found: *mut libc::group = std::ptr::null_mut();
    // SAFETY: getgrnam_r writes into `group`, `buf` (of the length given) and `found`, all live
    // for the call; the result is read only through `found` and the gid copied out.
    let rc = unsafe {
        libc::getgrnam_r(c_name.as_ptr(), &mut group, buf.as_mut_ptr(), buf.len(), &mut found)
    };
    if rc != 0 || found.is_null() {
        return Err(format!("[daemon] rpc_group: no group named {name:?} on this host"));
    }
    Ok(group.gr_gid)
}

impl ControlAccess {
    /// The policy for this process and `[daemon] rpc_group`.
    ///
    /// # Errors
    /// One line when the group does not exist.
    pub fn new(group: Option<&str>) -> Result<ControlAccess, String> {
        let group = match group {
            Some(name) => Some((name.to_string(), group_id(name)?)),
            None => None,
        };
        // SAFETY: geteuid(2) cannot fail and touches no memory.
        let daemon_uid = unsafe { libc::geteuid() };
        Ok(ControlAccess { daemon_uid, group })
    }

    /// Sets the bound control socket to 0660, group `rpc_group` when configured.
    ///
    /// # Errors
    /// One line naming the path.
    pub fn secure_socket(&self, path: &Path) -> Result<(), String> {
        let fail =
            |e: std::io::Error| format!("{}: cannot set the socket's mode: {e}", path.display());
        if let Some((_, gid)) = &self.group {
            std::os::unix::fs::chown(path, None, Some(*gid)).map_err(fail)?;
        }
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660)).map_err(fail)
    }

    /// Checks the peer of an accepted control connection: root, the daemon's own user, or a
    /// member of `rpc_group` (primary or supplementary group).
    ///
    /// # Errors
    /// One line naming the peer, for the log.
    pub fn check_peer(&self, socket: &impl AsFd) -> Result<(), String> {
        let cred = nix::sys::socket::getsockopt(socket, nix::sys::socket::sockopt::PeerCredentials)
            .map_err(|e| format!("control connection refused: no peer credentials ({e})"))?;
        let uid = cred.uid();
        if uid == 0 || uid == self.daemon_uid {
            return Ok(());
        }
        if let Some((_, gid)) = &self.group {
            if cred.gid() == *gid || supplementary_groups(cred.pid()).contains(gid) {
                return Ok(());
            }
        }
        let allowed = match &self.group {
            Some((name, _)) => format!("root, uid {} and group {name}", self.daemon_uid),
            None => format!("root and uid {}", self.daemon_uid),
        };
        Err(format!(
            "control connection from uid {uid} (pid {}) refused: only {allowed} may use the \
             control socket",
            cred.pid()
        ))
    }

    /// Mode of the data directory: 0710 when a control group must reach `socket` inside it
    /// (it can then open the socket but list and read nothing), 0700 otherwise.
    fn data_dir_mode(&self, data_dir: &Path, socket: &Path) -> u32 {
        if self.group.is_some() && socket.starts_with(data_dir) {
            0o710
        } else {
            0o700
        }
    }
}

/// The supplementary groups of process `pid` (`Groups:` in /proc/PID/status); empty when it
/// cannot be read.
fn supplementary_groups(pid: i32) -> Vec<u32> {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return Vec::new();
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix("Groups:"))
        .map(|list| list.split_whitespace().filter_map(|g| g.parse().ok()).collect())
        .unwrap_or_default()
}

/// Creates the data directory, or brings an existing one to its mode (0700, or 0710 with
/// `rpc_group` owning it when the control socket lives inside), with one log line when the
/// mode changes.
///
/// # Errors
/// One line naming the directory.
pub fn prepare_data_dir(path: &Path, access: &ControlAccess, socket: &Path) -> Result<(), String> {
    let mode = access.data_dir_mode(path, socket);
    let fail = |what: &str, e: std::io::Error| format!("{}: cannot {what}: {e}", path.display());
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(path)
        .map_err(|e| fail("create data directory", e))?;
    if let Some((_, gid)) = &access.group {
        if mode == 0o710 {
            std::os::unix::fs::chown(path, None, Some(*gid)).map_err(|e| fail("chown", e))?;
        }
    }
    let current =
        std::fs::metadata(path).map_err(|e| fail("stat", e))?.permissions().mode() & 0o7777;
    if current != mode {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
            .map_err(|e| fail("chmod", e))?;
        log::warn!(
            "{}: data directory mode {current:04o} changed to {mode:04o} (pool files and state \
             are for ferrited only)",
            path.display()
        );
    }
    Ok(())
}

/// Makes way for the control socket at `path`: nothing there is fine; a socket nobody answers
/// on (left by a daemon that was killed) is removed; a socket a live daemon answers on, or
/// anything that is not a socket, is refused and left alone.
///
/// # Errors
/// One line naming the path and the rule.
pub fn prepare_socket_path(path: &Path) -> Result<(), String> {
    let shown = path.display();
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(format!("{shown}: cannot check the control socket path: {e}")),
    };
    if !meta.file_type().is_socket() {
        return Err(format!(
            "{shown}: exists and is not a socket; ferrited replaces only a stale control \
             socket, never another file"
        ));
    }
    match UnixStream::connect(path) {
        Ok(_) => {
            Err(format!("{shown}: a live daemon answers on this control socket; not replacing it"))
        }
        Err(e) if e.raw_os_error() == Some(libc::ECONNREFUSED) => std::fs::remove_file(path)
            .map_err(|e| format!("{shown}: cannot remove the stale control socket: {e}")),
        Err(e) => Err(format!("{shown}: cannot probe the existing control socket: {e}")),
    }
}

/// Logs one line when an existing pool or LUN file can be read by other users.
pub fn warn_if_shared(path: &Path) {
    let Ok(meta) = std::fs::metadata(path) else { return };
    let mode = meta.permissions().mode() & 0o777;
    if meta.file_type().is_file() && mode & 0o077 != 0 {
        log::warn!(
            "{}: mode {mode:04o} lets other users reach its data; ferrited creates such files \
             0600 (chmod 600 it)",
            path.display()
        );
    }
}
