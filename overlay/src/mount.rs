//! The mount syscalls for a rootfs: overlay through the new mount API (one
//! `lowerdir+` per layer, no page-size limit), the classic mount(2) string as
//! a fallback, read-only bind mounts, and unmounting.

use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{Mode, OFlags, CWD};
use rustix::io::Errno;
use rustix::mount::{
    fsconfig_create, fsconfig_set_string, fsmount, fsopen, mount, mount_bind, mount_remount,
    move_mount, unmount as umount2, FsMountFlags, FsOpenFlags, MountAttrFlags, MountFlags,
    MoveMountFlags, UnmountFlags,
};

/// The classic mount(2) data string must fit in one page.
const PAGE_LIMIT: usize = 4095;

/// An overlay to mount: lower layers top-first and an optional writable layer.
#[derive(Debug, Clone)]
pub(crate) struct OverlaySpec<'a> {
    /// Lower directories, top-most first.
    pub lowers: &'a [PathBuf],
    /// `(upperdir, workdir)`; `None` makes a read-only overlay (≥ 2 lowers).
    pub upper: Option<(&'a Path, &'a Path)>,
}

/// Which mount interface to use; the classic one exists as a fallback for
/// kernels without `lowerdir+` (before 6.8) and is forced in tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Method {
    /// fsopen/fsconfig/fsmount/move_mount, falling back to `Classic` when refused.
    NewApi,
    /// mount(2) with `/proc/self/fd/N` paths (short, so 128 layers fit a page).
    // Chosen directly only by tests; production reaches it by fallback.
    #[cfg_attr(not(test), allow(dead_code))]
    Classic,
}

/// Mounts `spec` on `target`.
pub(crate) fn mount_overlay(
    spec: &OverlaySpec<'_>,
    target: &Path,
    method: Method,
) -> io::Result<()> {
    if method == Method::NewApi {
        match mount_new_api(spec, target) {
            Ok(()) => return Ok(()),
            Err(NewApiError::Refused(e)) => {
                tracing::debug!(error = %e, "new mount API refused overlay lowerdir+; using mount(2)");
            }
            Err(NewApiError::Failed(e)) => return Err(e),
        }
    }
    mount_classic(spec, target)
}

enum NewApiError {
    /// The kernel lacks the interface or `lowerdir+`: try mount(2).
    Refused(io::Error),
    /// The mount itself failed (bad dirs, ...): mount(2) would fail too.
    Failed(io::Error),
}

fn mount_new_api(spec: &OverlaySpec<'_>, target: &Path) -> Result<(), NewApiError> {
    let fs = fsopen("overlay", FsOpenFlags::FSOPEN_CLOEXEC)
        .map_err(|e| NewApiError::Refused(e.into()))?;
    let failed = |e: Errno| NewApiError::Failed(with_fs_log(&fs, e));
    fsconfig_set_string(&fs, "source", "overlay").map_err(failed)?;
    for lower in spec.lowers {
        fsconfig_set_string(&fs, "lowerdir+", lower).map_err(|e| match e {
            // An unknown parameter: a kernel before 6.8.
            Errno::INVAL => NewApiError::Refused(with_fs_log(&fs, e)),
            e => failed(e),
        })?;
    }
    if let Some((upper, work)) = spec.upper {
        fsconfig_set_string(&fs, "upperdir", upper).map_err(failed)?;
        fsconfig_set_string(&fs, "workdir", work).map_err(failed)?;
    }
    fsconfig_create(&fs).map_err(failed)?;
    let mnt =
        fsmount(&fs, FsMountFlags::FSMOUNT_CLOEXEC, MountAttrFlags::empty()).map_err(failed)?;
    move_mount(
        mnt.as_fd(),
        "",
        CWD,
        target,
        MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
    )
    .map_err(|e| NewApiError::Failed(e.into()))
}

/// Adds the kernel's message from the fs context log (e.g. "overlayfs:
/// failed to resolve ...") to `errno`.
fn with_fs_log(fs: &OwnedFd, errno: Errno) -> io::Error {
    let mut buf = [0u8; 1024];
    let mut file = std::fs::File::from(match fs.try_clone() {
        Ok(fd) => fd,
        Err(_) => return errno.into(),
    });
    match file.read(&mut buf) {
        Ok(n) if n > 0 => {
            let msg = String::from_utf8_lossy(&buf[..n]);
            io::Error::new(
                io::Error::from(errno).kind(),
                format!("{errno}: {}", msg.trim()),
            )
        }
        _ => errno.into(),
    }
}

fn mount_classic(spec: &OverlaySpec<'_>, target: &Path) -> io::Result<()> {
    // Each directory is opened and named as /proc/self/fd/N: short, free of
    // characters that need escaping, and thread-safe (no chdir).
    let open = |path: &Path| -> io::Result<OwnedFd> {
        Ok(rustix::fs::open(
            path,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?)
    };
    let fd_path = |fd: &OwnedFd| format!("/proc/self/fd/{}", fd.as_raw_fd());
    let lowers = spec
        .lowers
        .iter()
        .map(|p| open(p))
        .collect::<io::Result<Vec<_>>>()?;
    let mut data = String::from("lowerdir=");
    data.push_str(&lowers.iter().map(fd_path).collect::<Vec<_>>().join(":"));
    let upper = match spec.upper {
        Some((upper, work)) => Some((open(upper)?, open(work)?)),
        None => None,
    };
    if let Some((upper, work)) = &upper {
        data.push_str(&format!(
            ",upperdir={},workdir={}",
            fd_path(upper),
            fd_path(work)
        ));
    }
    if data.len() > PAGE_LIMIT {
        return Err(io::Error::other(format!(
            "overlay options need {} bytes, more than one page",
            data.len()
        )));
    }
    let data = std::ffi::CString::new(data).map_err(io::Error::other)?;
    mount(
        "overlay",
        target,
        "overlay",
        MountFlags::empty(),
        data.as_c_str(),
    )?;
    Ok(())
}

/// Bind-mounts `source` on `target` read-only (a one-layer read-only rootfs:
/// overlayfs needs two lowers when there is no upper).
pub(crate) fn bind_read_only(source: &Path, target: &Path) -> io::Result<()> {
    mount_bind(source, target)?;
    if let Err(e) = mount_remount(target, MountFlags::BIND | MountFlags::RDONLY, "") {
        let _ = umount2(target, UnmountFlags::DETACH);
        return Err(e.into());
    }
    Ok(())
}

/// Unmounts `target`; lazily (MNT_DETACH) if it is busy. Not mounted is fine.
pub(crate) fn unmount(target: &Path) -> io::Result<()> {
    match umount2(target, UnmountFlags::empty()) {
        Ok(()) => Ok(()),
        Err(Errno::BUSY) => Ok(umount2(target, UnmountFlags::DETACH)?),
        // Not a mount point, or gone: nothing to undo.
        Err(Errno::INVAL | Errno::NOENT) => Ok(()),
        Err(e) => Err(e.into()),
    }
}
