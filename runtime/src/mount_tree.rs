//! Detached mount trees through the kernel's new mount API (Linux ≥ 5.12):
//! `open_tree(2)` clones a mount tree, `mount_setattr(2)` changes its
//! attributes — read-only for every submount at once, or an ID mapping
//! through a user namespace — and `move_mount(2)` attaches it. Neither
//! nix nor libc wraps these calls (libc has only their numbers), so the
//! raw syscalls live here, each behind a function named for what it does.

use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::error::{Error, Result};

/// `open_tree` flag: clone the tree instead of opening the mount itself.
const OPEN_TREE_CLONE: libc::c_uint = 1;
/// `mount_setattr` attribute: read-only.
const MOUNT_ATTR_RDONLY: u64 = 0x0000_0001;
/// `mount_setattr` attribute: ID-mapped through `userns_fd`.
const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;
/// `mount_attr.propagation`: private (`MS_PRIVATE`, as `mount(2)` has it).
const PROPAGATION_PRIVATE: u64 = 0x0004_0000;
/// `move_mount` flag: the source is the fd itself.
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x0000_0004;

/// `struct mount_attr` (MOUNT_ATTR_SIZE_VER0).
#[repr(C)]
#[derive(Debug, Default)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

fn c_path(path: &Path) -> Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| Error::InvalidArgument(format!("path {} contains a NUL", path.display())))
}

fn last_error(what: String) -> Error {
    Error::io(what, std::io::Error::last_os_error())
}

/// A copy of a mount tree, attached nowhere until [`attach`](Self::attach)
/// (the kernel drops it with the fd otherwise).
#[derive(Debug)]
pub struct DetachedTree {
    fd: OwnedFd,
    source: String,
}

impl DetachedTree {
    /// Clones the mount at `path` with every mount below it (as an rbind
    /// would), private all the way down.
    ///
    /// A clone of a shared mount joins its peer group (as a bind mount
    /// does), and then unmounting the clone's submounts would propagate
    /// back and unmount the host's own: on a systemd node, where `/` is
    /// shared, releasing a staged copy of a hostPath would unmount a tmpfs
    /// the host has beneath it. So the copy leaves every peer group before
    /// anything else is done with it (as runc does for its own copies).
    pub fn clone_recursive(path: &Path) -> Result<Self> {
        let c = c_path(path)?;
        let flags = OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint | libc::AT_RECURSIVE as u32;
        // SAFETY: `c` is a NUL-terminated path that outlives the call; the
        // kernel returns a new fd or -1 and touches no memory of ours.
        let fd = unsafe { libc::syscall(libc::SYS_open_tree, libc::AT_FDCWD, c.as_ptr(), flags) };
        if fd < 0 {
            return Err(last_error(format!("clone mount tree {}", path.display())));
        }
        let fd = i32::try_from(fd)
            .map_err(|_| Error::Internal(format!("open_tree returned fd {fd}")))?;
        let tree = Self {
            // SAFETY: the kernel just gave us this fd; nothing else owns it.
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
            source: path.display().to_string(),
        };
        tree.set_attr(
            &MountAttr {
                propagation: PROPAGATION_PRIVATE,
                ..Default::default()
            },
            "private",
        )?;
        Ok(tree)
    }

    fn set_attr(&self, attr: &MountAttr, what: &str) -> Result<()> {
        let empty = c"";
        let flags = libc::AT_EMPTY_PATH | libc::AT_RECURSIVE;
        // SAFETY: the fd is ours and open; `empty` is a valid C string and
        // `attr` a live `struct mount_attr` whose size is passed along.
        let r = unsafe {
            libc::syscall(
                libc::SYS_mount_setattr,
                self.fd.as_raw_fd(),
                empty.as_ptr(),
                flags,
                attr as *const MountAttr,
                std::mem::size_of::<MountAttr>(),
            )
        };
        if r < 0 {
            return Err(last_error(format!("make {} {what}", self.source)));
        }
        Ok(())
    }

    /// Makes the tree read-only, every submount included.
    pub fn make_readonly(&self) -> Result<()> {
        self.set_attr(
            &MountAttr {
                attr_set: MOUNT_ATTR_RDONLY,
                ..Default::default()
            },
            "recursively read-only",
        )
    }

    /// Maps the tree's file owners through the user namespace `userns` (an
    /// open `/proc/…/ns/user` or a pin of one): host ID `h` shows as the
    /// ID that `h` is inside it, every submount included.
    pub fn map_ids(&self, userns: &impl AsFd) -> Result<()> {
        let fd = userns.as_fd().as_raw_fd();
        self.set_attr(
            &MountAttr {
                attr_set: MOUNT_ATTR_IDMAP,
                userns_fd: u64::try_from(fd).unwrap_or_default(),
                ..Default::default()
            },
            "ID-mapped",
        )
    }

    /// Attaches the tree at `target` (an existing directory, or file when
    /// the source is one).
    pub fn attach(self, target: &Path) -> Result<()> {
        let c = c_path(target)?;
        let empty = c"";
        // SAFETY: the fd is ours; both paths are valid C strings that
        // outlive the call.
        let r = unsafe {
            libc::syscall(
                libc::SYS_move_mount,
                self.fd.as_raw_fd(),
                empty.as_ptr(),
                libc::AT_FDCWD,
                c.as_ptr(),
                MOVE_MOUNT_F_EMPTY_PATH,
            )
        };
        if r < 0 {
            return Err(last_error(format!(
                "attach a copy of {} at {}",
                self.source,
                target.display()
            )));
        }
        Ok(())
    }
}
