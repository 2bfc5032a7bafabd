//! Creating one member on disk: files (sparse too), directories, symlinks,
//! hardlinks, devices and FIFOs, with modes, owners, mtimes and xattrs.
//! Existing paths are replaced, never followed: creation uses O_EXCL /
//! O_NOFOLLOW semantics and, on EEXIST, removes what is there and retries.

use std::fs::{self, OpenOptions};
use std::io::{ErrorKind, Seek, SeekFrom};
use std::os::unix::fs::{symlink, OpenOptionsExt};
use std::path::Path;

use rustix::fs::{FileType, Gid, Mode, Uid, XattrFlags, CWD};

use super::confine::{check_name, child, clean, Declared, DirState, Resolver};
use super::data::{copy_data, copy_limited};
use super::header::{Entry, Kind};
use super::metadata::{id, os_err, timestamps};
use super::options::{DevicePolicy, UnpackOptions, UnpackStats};
use super::reader::TarReader;
use crate::atomic::remove_tree;
use crate::dirtree::{ident_of, set_dir_metadata, NodeId, Visit, ROOT};
use crate::error::{Error, Result};
use crate::implied_dirs;

/// Files at least this large are written back early; smaller ones are left to syncfs.
const EARLY_WRITEBACK: u64 = 256 << 10;

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
    pub stats: UnpackStats,
    /// Apparent bytes of the files written so far (holes of sparse files
    /// included), counted against the decompression-ratio limit.
    expanded: u64,
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
    pub fn new(root: &Path, opts: UnpackOptions) -> Result<Self> {
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
        Ok(Unpacker {
            resolver: Resolver::new(root)?,
            umask: current_umask(),
            me,
            owner_for_free,
            opts,
            stats: UnpackStats::default(),
            expanded: 0,
        })
    }

    /// Creates `entry` (reading its data from `tar`) inside the root.
    pub fn apply<R: std::io::BufRead>(
        &mut self,
        entry: &Entry,
        tar: &mut TarReader<R>,
    ) -> Result<()> {
        self.stats.entries += 1;
        let parts = clean(&entry.path);
        for (i, part) in parts.iter().enumerate() {
            check_name(part, i == 0, &entry.path)?;
        }
        let Some((name, parent)) = parts.split_last() else {
            // "./" names the root itself: keep its metadata, nothing to create.
            if entry.kind == Kind::Dir {
                if let Some(root) = self.resolver.tree_mut().data_mut(ROOT) {
                    root.declared = Some(Declared {
                        mode: entry.mode,
                        mtime: entry.mtime,
                    });
                }
            }
            return Ok(());
        };
        let parent = self.resolver.resolve_dir(parent, true, &entry.path)?;
        // Through a symlink to the root, the name may land there after all.
        check_name(name, parent.dir == ROOT, &entry.path)?;
        let at = At {
            dir: parent.dir,
            name,
            full: self.resolver.full(&child(&parent.rel, name)),
        };
        match entry.kind {
            Kind::Dir => self.make_dir(entry, &at),
            Kind::File => self.make_file(entry, &at, tar),
            Kind::Symlink => {
                self.replace_with(&at, |p| {
                    symlink(std::ffi::OsStr::from_bytes_ref(&entry.link), p)
                })?;
                self.resolver
                    .tree_mut()
                    .add_symlink(at.dir, name, &entry.link);
                self.finish_nofollow(entry, &at.full)
            }
            Kind::Hardlink => self.make_hardlink(entry, &at),
            Kind::Char | Kind::Block => self.make_device(entry, &at),
            Kind::Fifo => {
                self.replace_with(&at, |p| {
                    rustix::fs::mknodat(CWD, p, FileType::Fifo, Mode::from_raw_mode(0o600), 0)
                        .map_err(Into::into)
                })?;
                self.finish_nofollow(entry, &at.full)?;
                self.chmod(&at.full, entry.mode)
            }
        }
    }

    /// Runs `create`; if something already sits at `at`, removes it (a
    /// directory with all its contents) and runs `create` again.
    fn replace_with<T>(
        &mut self,
        at: &At<'_>,
        create: impl Fn(&Path) -> std::io::Result<T>,
    ) -> Result<T> {
        let full = &at.full;
        match create(full) {
            Ok(created) => Ok(created),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                self.remove_existing(at)?;
                create(full).map_err(|e| Error::io("create", full, e))
            }
            Err(e) => Err(Error::io("create", full, e)),
        }
    }

    fn remove_existing(&mut self, at: &At<'_>) -> Result<()> {
        let full = &at.full;
        let meta = fs::symlink_metadata(full).map_err(|e| Error::io("inspect", full, e))?;
        if meta.is_dir() {
            remove_tree(full).map_err(|e| Error::io("remove directory", full, e))?;
        } else {
            fs::remove_file(full).map_err(|e| Error::io("remove", full, e))?;
        }
        self.resolver.tree_mut().remove(at.dir, at.name);
        Ok(())
    }

    fn make_dir(&mut self, entry: &Entry, at: &At<'_>) -> Result<()> {
        let full = &at.full;
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
                    self.remove_existing(at)?;
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
        let declared = Some(Declared {
            mode: entry.mode,
            mtime: entry.mtime,
        });
        let tree = self.resolver.tree_mut();
        match tree.child(at.dir, at.name).and_then(|n| tree.data_mut(n)) {
            Some(known) if !fresh => {
                known.declared = declared;
                known.implied = false;
            }
            _ => {
                let meta = fs::symlink_metadata(full).map_err(|e| Error::io("inspect", full, e))?;
                let state = DirState {
                    declared,
                    implied: false,
                    ident: ident_of(&meta),
                };
                self.resolver.tree_mut().add_dir(at.dir, at.name, state);
            }
        }
        Ok(())
    }

    fn make_file<R: std::io::BufRead>(
        &mut self,
        entry: &Entry,
        at: &At<'_>,
        tar: &mut TarReader<R>,
    ) -> Result<()> {
        // Holes cost no input: count a file's full size against the ratio limit
        // before it is made, so a few bytes cannot ask for a terabyte.
        self.expanded = self.expanded.saturating_add(entry.real_size);
        if let Some(guard) = &self.opts.ratio {
            guard.check(self.expanded)?;
        }
        let full = &at.full;
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
        let mut file = self.replace_with(at, open)?;
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

    fn make_hardlink(&mut self, entry: &Entry, at: &At<'_>) -> Result<()> {
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
        let parent = match self.resolver.resolve_dir(parent, false, &entry.path) {
            Err(Error::UnsafePath { reason, .. }) if reason.ends_with("is not in the layer") => {
                return Err(not_in_layer())
            }
            other => other?,
        };
        if parent.dir == at.dir && *name == at.name {
            // containerd refuses it too: linking a name to itself would first
            // remove the only copy.
            return Err(Error::unsafe_path(&entry.path, "hardlink to itself"));
        }
        let target = self.resolver.full(&child(&parent.rel, name));
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
        self.replace_with(at, |p| fs::hard_link(&target, p))
    }

    fn make_device(&mut self, entry: &Entry, at: &At<'_>) -> Result<()> {
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
        self.replace_with(at, |p| {
            rustix::fs::mknodat(CWD, p, kind, Mode::from_raw_mode(0o600), dev).map_err(Into::into)
        })?;
        self.finish_nofollow(entry, &at.full)?;
        self.chmod(&at.full, entry.mode)
    }

    /// Applies the deferred directory modes and times (deepest first, so a
    /// 0555 parent is still writable while its children are done), and records
    /// which directories were only implied (see `implied_dirs`).
    pub fn finish(self) -> Result<UnpackStats> {
        let tree = self.resolver.tree();
        implied_dirs::write(
            &self.resolver.full(implied_dirs::NAME),
            tree,
            |d: &DirState| d.implied,
        )?;
        tree.walk(|visit| {
            let Visit::Leave { path, data } = visit else {
                return Ok(());
            };
            match data.declared {
                Some(d) => set_dir_metadata(
                    &self.resolver.full(path),
                    data.ident,
                    Some(d.mode),
                    &timestamps(d.mtime),
                ),
                None => Ok(()),
            }
        })?;
        Ok(self.stats)
    }
}

/// Where a member goes: the resolved parent directory, the member's name in
/// it, and the full path.
pub(super) struct At<'a> {
    dir: NodeId,
    name: &'a [u8],
    full: std::path::PathBuf,
}

trait FromBytesRef {
    fn from_bytes_ref(bytes: &[u8]) -> &Self;
}

impl FromBytesRef for std::ffi::OsStr {
    fn from_bytes_ref(bytes: &[u8]) -> &Self {
        std::os::unix::ffi::OsStrExt::from_bytes(bytes)
    }
}
