//! Creating one member on disk: files (sparse too), directories, symlinks,
//! hardlinks, devices and FIFOs, with modes, owners, mtimes and xattrs.
//! Existing paths are replaced, never followed: creation uses O_EXCL /
//! O_NOFOLLOW semantics and, on EEXIST, removes what is there and retries.

use std::collections::HashMap;
use std::fs::{self, OpenOptions};
use std::io::{ErrorKind, Seek, SeekFrom};
use std::os::unix::fs::{symlink, OpenOptionsExt};
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Gid, Mode, Uid, XattrFlags, CWD};

use super::confine::{child, clean, Resolver};
use super::data::{copy_data, copy_limited};
use super::header::{Entry, Kind, Timestamp};
use super::metadata::{id, os_err, timestamps};
use super::options::{DevicePolicy, UnpackOptions, UnpackStats};
use super::reader::TarReader;
use crate::atomic::remove_tree;
use crate::error::{Error, Result};

/// Files at least this large are written back early; smaller ones are left to syncfs.
const EARLY_WRITEBACK: u64 = 256 << 10;

/// A bookkeeping file (a `.wh..wh.` name, which layer consumers skip) listing,
/// NUL-separated, the parent directories a layer did not declare. Merging
/// keeps a lower layer's metadata for them, as an extractor applying layers
/// in place (umoci, podman's vfs) does.
pub const IMPLIED_DIRS: &[u8] = b".wh..wh..towline-implied-dirs";

/// Directory metadata applied once the whole layer is written: creating
/// children would bump the mtime, and a 0555 directory would refuse them.
struct DirMeta {
    mode: u32,
    mtime: Timestamp,
}

pub struct Unpacker {
    resolver: Resolver,
    /// The process umask (what the kernel strips from creation modes).
    umask: u32,
    /// Who new files belong to without a chown, while `owner_for_free` holds.
    pub(super) me: (u64, u64),
    /// True while every directory in the tree has our gid and no set-group-ID
    /// bit: then a new file is ours by construction (with or without BSD
    /// `grpid` inheritance), and a member owned by us needs no chown. The
    /// first directory that breaks this turns it off for the rest of the layer.
    pub(super) owner_for_free: bool,
    pub(super) opts: UnpackOptions,
    dirs: HashMap<Vec<u8>, DirMeta>,
    pub stats: UnpackStats,
}

/// The umask, read without changing it (umask(2) would race other threads).
/// Unknown means "assume everything is masked": then every file gets a chmod.
fn current_umask() -> u32 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("Umask:"))
                .and_then(|v| u32::from_str_radix(v.trim(), 8).ok())
        })
        .unwrap_or(0o777)
}

impl Unpacker {
    pub fn new(root: &Path, opts: UnpackOptions) -> Self {
        let me = (
            u64::from(rustix::process::geteuid().as_raw()),
            u64::from(rustix::process::getegid().as_raw()),
        );
        let owner_for_free = fs::metadata(root)
            .map(|m| {
                use std::os::unix::fs::MetadataExt;
                u64::from(m.gid()) == me.1 && m.mode() & 0o2000 == 0
            })
            .unwrap_or(false);
        Unpacker {
            resolver: Resolver::new(root),
            umask: current_umask(),
            me,
            owner_for_free,
            opts,
            dirs: HashMap::new(),
            stats: UnpackStats::default(),
        }
    }

    /// Creates `entry` (reading its data from `tar`) inside the root.
    pub fn apply<R: std::io::BufRead>(
        &mut self,
        entry: &Entry,
        tar: &mut TarReader<R>,
    ) -> Result<()> {
        self.stats.entries += 1;
        let parts = clean(&entry.path);
        let Some((name, parent)) = parts.split_last() else {
            // "./" names the root itself: keep its metadata, nothing to create.
            if entry.kind == Kind::Dir {
                self.dirs.insert(
                    Vec::new(),
                    DirMeta {
                        mode: entry.mode,
                        mtime: entry.mtime,
                    },
                );
            }
            return Ok(());
        };
        if name.len() > 255 {
            return Err(Error::unsafe_path(
                &entry.path,
                "a name component is longer than 255 bytes",
            ));
        }
        let parent_rel = self.resolver.resolve_dir(parent, true, &entry.path)?;
        let rel = child(&parent_rel, name);
        let full = self.resolver.full(&rel);
        match entry.kind {
            Kind::Dir => self.make_dir(entry, rel, &full),
            Kind::File => self.make_file(entry, &rel, &full, tar),
            Kind::Symlink => {
                self.replace_with(&rel, &full, |p| {
                    symlink(std::ffi::OsStr::from_bytes_ref(&entry.link), p)
                })?;
                self.finish_nofollow(entry, &full)
            }
            Kind::Hardlink => self.make_hardlink(entry, &rel, &full),
            Kind::Char | Kind::Block => self.make_device(entry, &rel, &full),
            Kind::Fifo => {
                self.replace_with(&rel, &full, |p| {
                    rustix::fs::mknodat(CWD, p, FileType::Fifo, Mode::from_raw_mode(0o600), 0)
                        .map_err(Into::into)
                })?;
                self.finish_nofollow(entry, &full)?;
                self.chmod(&full, entry.mode)
            }
        }
    }

    /// Runs `create`; if something already sits at `full`, removes it (a
    /// directory with all its contents) and runs `create` again.
    fn replace_with<T>(
        &mut self,
        rel: &[u8],
        full: &Path,
        create: impl Fn(&Path) -> std::io::Result<T>,
    ) -> Result<T> {
        match create(full) {
            Ok(created) => Ok(created),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                self.remove_existing(rel, full)?;
                create(full).map_err(|e| Error::io("create", full, e))
            }
            Err(e) => Err(Error::io("create", full, e)),
        }
    }

    fn remove_existing(&mut self, rel: &[u8], full: &Path) -> Result<()> {
        let meta = fs::symlink_metadata(full).map_err(|e| Error::io("inspect", full, e))?;
        if meta.is_dir() {
            remove_tree(full).map_err(|e| Error::io("remove directory", full, e))?;
            self.resolver.forget(rel);
            let mut prefix = rel.to_vec();
            prefix.push(b'/');
            self.dirs
                .retain(|k, _| k.as_slice() != rel && !k.starts_with(&prefix));
        } else {
            fs::remove_file(full).map_err(|e| Error::io("remove", full, e))?;
        }
        Ok(())
    }

    fn make_dir(&mut self, entry: &Entry, rel: Vec<u8>, full: &Path) -> Result<()> {
        // Owner-writable until the end, so members below it can be created.
        let working_mode = entry.mode | 0o700;
        let mut builder = fs::DirBuilder::new();
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, working_mode & 0o777);
        let fresh = match builder.create(full) {
            Ok(()) => true,
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                if !fs::symlink_metadata(full)
                    .map(|m| m.is_dir())
                    .unwrap_or(false)
                {
                    self.remove_existing(&rel, full)?;
                    builder
                        .create(full)
                        .map_err(|e| Error::io("create directory", full, e))?;
                    true
                } else {
                    false
                }
            }
            Err(e) => return Err(Error::io("create directory", full, e)),
        };
        // mkdir applied the mode already unless the umask took bits or set-id /
        // sticky bits are wanted (mkdir ignores those).
        if !fresh || working_mode & (0o7000 | self.umask) != 0 {
            self.chmod(full, working_mode)?;
        }
        self.chown(entry, full, false)?;
        if entry.gid != self.me.1 || entry.mode & 0o2000 != 0 {
            self.owner_for_free = false;
        }
        self.set_xattrs_path(entry, full)?;
        self.resolver.note_dir(rel.clone());
        self.dirs.insert(
            rel,
            DirMeta {
                mode: entry.mode,
                mtime: entry.mtime,
            },
        );
        Ok(())
    }

    fn make_file<R: std::io::BufRead>(
        &mut self,
        entry: &Entry,
        rel: &[u8],
        full: &Path,
        tar: &mut TarReader<R>,
    ) -> Result<()> {
        // Created with its final permission bits, so the common case needs no
        // chmod; create_new gives EEXIST on any existing path, symlinks included
        // (never followed), and the fd stays writable whatever the mode.
        let open = |p: &Path| {
            OpenOptions::new()
                .write(true)
                .create_new(true)
                .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
                .mode(entry.mode & 0o777)
                .open(p)
        };
        let mut file = self.replace_with(rel, full, open)?;
        match &entry.sparse {
            None => copy_data(tar, &mut file, full)?,
            Some(regions) => {
                for region in regions {
                    file.seek(SeekFrom::Start(region.offset))
                        .map_err(|e| Error::io("seek", full, e))?;
                    copy_limited(tar, &mut file, full, region.len)?;
                }
                file.set_len(entry.real_size)
                    .map_err(|e| Error::io("truncate", full, e))?;
            }
        }
        if self.needs_chown(entry) {
            rustix::fs::fchown(
                &file,
                Some(Uid::from_raw(id(entry.uid, "uid", &entry.path)?)),
                Some(Gid::from_raw(id(entry.gid, "gid", &entry.path)?)),
            )
            .map_err(|e| os_err("chown", full, e))?;
        }
        // After chown, which clears set-id bits; also restores bits the umask took.
        if entry.mode & (0o7000 | self.umask) != 0 {
            rustix::fs::fchmod(&file, Mode::from_raw_mode(entry.mode))
                .map_err(|e| os_err("chmod", full, e))?;
        }
        if self.opts.xattrs {
            for (name, value) in &entry.xattrs {
                let res = rustix::fs::fsetxattr(&file, name.as_slice(), value, XattrFlags::empty());
                self.xattr_result(res, full)?;
            }
        }
        rustix::fs::futimens(&file, &timestamps(entry.mtime))
            .map_err(|e| os_err("set times", full, e))?;
        if let Some(queue) = &self.opts.sync {
            queue.wrote(entry.size);
            if entry.real_size >= EARLY_WRITEBACK {
                queue.submit(file);
            }
        }
        Ok(())
    }

    fn make_hardlink(&mut self, entry: &Entry, rel: &[u8], full: &Path) -> Result<()> {
        let target_parts = clean(&entry.link);
        let Some((name, parent)) = target_parts.split_last() else {
            return Err(Error::unsafe_path(
                &entry.path,
                "hardlink to the layer root",
            ));
        };
        let not_in_layer = || {
            Error::unsafe_path(
                &entry.path,
                format!(
                    "hardlink target {:?} is not in the layer",
                    String::from_utf8_lossy(&entry.link)
                ),
            )
        };
        let parent_rel = match self.resolver.resolve_dir(parent, false, &entry.path) {
            Err(Error::UnsafePath { reason, .. }) if reason.ends_with("is not in the layer") => {
                return Err(not_in_layer())
            }
            other => other?,
        };
        let target_rel = child(&parent_rel, name);
        if target_rel == rel {
            return Ok(());
        }
        let target = self.resolver.full(&target_rel);
        match fs::symlink_metadata(&target) {
            Ok(m) if m.is_dir() => {
                return Err(Error::unsafe_path(&entry.path, "hardlink to a directory"))
            }
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {
                return Err(Error::unsafe_path(
                    &entry.path,
                    format!(
                        "hardlink target {:?} is not in the layer",
                        String::from_utf8_lossy(&entry.link)
                    ),
                ))
            }
            Err(e) => return Err(Error::io("inspect", &target, e)),
        }
        self.replace_with(rel, full, |p| fs::hard_link(&target, p))
    }

    fn make_device(&mut self, entry: &Entry, rel: &[u8], full: &Path) -> Result<()> {
        match self.opts.devices {
            DevicePolicy::Skip => {
                self.stats.skipped_devices += 1;
                return Ok(());
            }
            DevicePolicy::Refuse => {
                return Err(Error::unsafe_path(
                    &entry.path,
                    "device nodes are not permitted here (not running as root)",
                ));
            }
            DevicePolicy::Create => {}
        }
        let kind = if entry.kind == Kind::Char {
            FileType::CharacterDevice
        } else {
            FileType::BlockDevice
        };
        let dev = rustix::fs::makedev(entry.dev_major, entry.dev_minor);
        self.replace_with(rel, full, |p| {
            rustix::fs::mknodat(CWD, p, kind, Mode::from_raw_mode(0o600), dev).map_err(Into::into)
        })?;
        self.finish_nofollow(entry, full)?;
        self.chmod(full, entry.mode)
    }

    /// Applies the deferred directory modes and times, and records which
    /// directories were only implied (see `IMPLIED_DIRS`).
    pub fn finish(self) -> Result<UnpackStats> {
        let implied = self.resolver.implied_dirs();
        if !implied.is_empty() {
            let path = self.resolver.full(IMPLIED_DIRS);
            let _ = fs::remove_file(&path);
            fs::write(&path, implied.join(&b"\0"[..])).map_err(|e| Error::io("write", &path, e))?;
        }
        for (rel, meta) in &self.dirs {
            let full: PathBuf = self.resolver.full(rel);
            // make_dir left the working mode (mode | 0o700) in place: when that is the
            // mode itself, as for nearly every directory, there is nothing to restore.
            if meta.mode & 0o7700 != 0o700 {
                self.chmod(&full, meta.mode)?;
            }
            rustix::fs::utimensat(
                CWD,
                &full,
                &timestamps(meta.mtime),
                AtFlags::SYMLINK_NOFOLLOW,
            )
            .map_err(|e| os_err("set times", &full, e))?;
        }
        Ok(self.stats)
    }
}

trait FromBytesRef {
    fn from_bytes_ref(bytes: &[u8]) -> &Self;
}

impl FromBytesRef for std::ffi::OsStr {
    fn from_bytes_ref(bytes: &[u8]) -> &Self {
        std::os::unix::ffi::OsStrExt::from_bytes(bytes)
    }
}
