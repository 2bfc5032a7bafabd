//! A member's metadata once it exists: mode, owner, extended attributes and
//! times, applied without following symlinks where the member may be one.

use std::path::Path;

use rustix::fs::{AtFlags, Gid, Mode, Timestamps, Uid, XattrFlags, CWD};
use rustix::io::Errno;

use super::entries::Unpacker;
use super::header::{Entry, Timestamp};
use crate::error::{Error, Result};

pub(super) fn timestamps(t: Timestamp) -> Timestamps {
    let ts = rustix::fs::Timespec {
        tv_sec: t.secs,
        tv_nsec: t.nanos.into(),
    };
    Timestamps {
        last_access: ts,
        last_modification: ts,
    }
}

pub(super) fn id(value: u64, what: &str, member: &[u8]) -> Result<u32> {
    u32::try_from(value)
        .map_err(|_| Error::unsafe_path(member, format!("{what} {value} does not fit in 32 bits")))
}

pub(super) fn os_err(op: &'static str, path: &Path, e: Errno) -> Error {
    Error::io(op, path, e.into())
}

impl Unpacker {
    pub(super) fn chmod(&self, full: &Path, mode: u32) -> Result<()> {
        rustix::fs::chmodat(CWD, full, Mode::from_raw_mode(mode), AtFlags::empty())
            .map_err(|e| os_err("chmod", full, e))
    }

    /// Whether `entry` must be chowned to carry the archive's owner.
    pub(super) fn needs_chown(&self, entry: &Entry) -> bool {
        self.opts.same_owner && !(self.owner_for_free && (entry.uid, entry.gid) == self.me)
    }

    pub(super) fn chown(&self, entry: &Entry, full: &Path, nofollow: bool) -> Result<()> {
        if !self.needs_chown(entry) {
            return Ok(());
        }
        let flags = if nofollow {
            AtFlags::SYMLINK_NOFOLLOW
        } else {
            AtFlags::empty()
        };
        let uid = Uid::from_raw(id(entry.uid, "uid", &entry.path)?);
        let gid = Gid::from_raw(id(entry.gid, "gid", &entry.path)?);
        rustix::fs::chownat(CWD, full, Some(uid), Some(gid), flags)
            .map_err(|e| os_err("chown", full, e))
    }

    pub(super) fn set_xattrs_path(&mut self, entry: &Entry, full: &Path) -> Result<()> {
        if !self.opts.xattrs {
            return Ok(());
        }
        for (name, value) in &entry.xattrs {
            let res = rustix::fs::lsetxattr(full, name.as_slice(), value, XattrFlags::empty());
            self.xattr_result(res, full)?;
        }
        Ok(())
    }

    /// Extended attributes are applied "where the filesystem allows": a
    /// filesystem or namespace that refuses them is counted, not fatal.
    pub(super) fn xattr_result(&mut self, res: rustix::io::Result<()>, full: &Path) -> Result<()> {
        match res {
            Ok(()) => Ok(()),
            Err(Errno::NOTSUP | Errno::PERM | Errno::ACCESS | Errno::INVAL) => {
                self.stats.skipped_xattrs += 1;
                Ok(())
            }
            // The file's attribute space is full while the disk is not: the
            // layer asks for more than a file here can carry.
            Err(e @ (Errno::NOSPC | Errno::TOOBIG | Errno::RANGE)) if !disk_full(full) => {
                Err(Error::LimitExceeded(format!(
                    "the extended attributes of {} do not fit in one file on this \
                     filesystem ({e})",
                    full.display()
                )))
            }
            Err(e) => Err(os_err("set xattr", full, e)),
        }
    }

    /// Owner, xattrs and times of a member that must not be followed.
    pub(super) fn finish_nofollow(&mut self, entry: &Entry, full: &Path) -> Result<()> {
        self.chown(entry, full, true)?;
        self.set_xattrs_path(entry, full)?;
        rustix::fs::utimensat(
            CWD,
            full,
            &timestamps(entry.mtime),
            AtFlags::SYMLINK_NOFOLLOW,
        )
        .map_err(|e| os_err("set times", full, e))
    }
}

/// True when the filesystem holding `path` has (almost) no space left, so an
/// ENOSPC is about the disk, not about one file's attribute space.
fn disk_full(path: &Path) -> bool {
    match rustix::fs::statvfs(path.parent().unwrap_or(path)) {
        Ok(st) => st.f_bavail.saturating_mul(st.f_frsize) < (1 << 20),
        Err(_) => true,
    }
}
