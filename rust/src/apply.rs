//! Merging unpacked layers into one root filesystem, lowest layer first,
//! honouring OCI whiteouts: `.wh.<name>` deletes `<name>` from the layers
//! below, `.wh..wh..opq` hides everything the lower layers put in its
//! directory, other `.wh..wh.*` names are bookkeeping and are skipped.
//!
//! The walk goes top-down and only ever descends into directories it has
//! itself made sure are real directories in `dest`, so a symlink left by a
//! lower layer is replaced, never followed.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::fs::{self, File, OpenOptions};
use std::io::{self, ErrorKind};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Gid, Mode, Timestamps, Uid, XattrFlags, CWD};

use crate::atomic::remove_tree;
use crate::error::{Error, Result};
use crate::untar::entries::IMPLIED_DIRS;

const OPAQUE: &[u8] = b".wh..wh..opq";
const META_PREFIX: &[u8] = b".wh..wh.";
const WHITEOUT_PREFIX: &[u8] = b".wh.";

#[derive(Clone, Debug)]
pub struct ApplyOptions {
    pub same_owner: bool,
    pub devices: bool,
}

#[derive(Clone, Debug, Default)]
pub struct ApplyStats {
    pub files: u64,
    pub dirs: u64,
    pub symlinks: u64,
    pub hardlinks: u64,
    pub whiteouts: u64,
    pub skipped_devices: u64,
}

struct Meta {
    mode: u32,
    atime: (i64, i64),
    mtime: (i64, i64),
}

struct Merger<'a> {
    dest: &'a Path,
    opts: &'a ApplyOptions,
    stats: ApplyStats,
    /// Directory metadata, applied at the very end (children change mtimes).
    dirs: BTreeMap<PathBuf, Meta>,
    /// This layer's directories that it did not declare itself.
    implied: HashSet<PathBuf>,
}

fn read_implied(layer: &Path) -> Result<HashSet<PathBuf>> {
    let path = layer.join(OsStr::from_bytes(IMPLIED_DIRS));
    match fs::read(&path) {
        Ok(data) => Ok(data
            .split(|&b| b == 0)
            .filter(|p| !p.is_empty())
            .map(|p| PathBuf::from(OsStr::from_bytes(p)))
            .collect()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(HashSet::new()),
        Err(e) => Err(Error::io("read", &path, e)),
    }
}

pub fn apply_layers(layers: &[PathBuf], dest: &Path, opts: &ApplyOptions) -> Result<ApplyStats> {
    match fs::create_dir(dest) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::AlreadyExists && dest.is_dir() => {}
        Err(e) => return Err(Error::io("create directory", dest, e)),
    }
    let mut merger = Merger {
        dest,
        opts,
        stats: ApplyStats::default(),
        dirs: BTreeMap::new(),
        implied: HashSet::new(),
    };
    for layer in layers {
        let meta = fs::symlink_metadata(layer).map_err(|e| Error::io("open layer", layer, e))?;
        if !meta.is_dir() {
            return Err(Error::InvalidArgument(format!(
                "layer {} is not a directory",
                layer.display()
            )));
        }
        merger.dirs.insert(PathBuf::new(), meta_of(&meta));
        merger.implied = read_implied(layer)?;
        let mut links = HashMap::new();
        merger.merge_dir(layer, Path::new(""), &mut links)?;
    }
    for (rel, meta) in &merger.dirs {
        let path = dest.join(rel);
        rustix::fs::chmodat(CWD, &path, Mode::from_raw_mode(meta.mode), AtFlags::empty())
            .map_err(|e| Error::io("chmod", &path, e.into()))?;
        set_times(&path, meta)?;
    }
    Ok(merger.stats)
}

fn meta_of(m: &fs::Metadata) -> Meta {
    Meta {
        mode: m.mode() & 0o7777,
        atime: (m.atime(), m.atime_nsec()),
        mtime: (m.mtime(), m.mtime_nsec()),
    }
}

fn set_times(path: &Path, meta: &Meta) -> Result<()> {
    let ts = |(s, n): (i64, i64)| rustix::fs::Timespec {
        tv_sec: s,
        tv_nsec: n as _,
    };
    let times = Timestamps {
        last_access: ts(meta.atime),
        last_modification: ts(meta.mtime),
    };
    rustix::fs::utimensat(CWD, path, &times, AtFlags::SYMLINK_NOFOLLOW)
        .map_err(|e| Error::io("set times", path, e.into()))
}

impl Merger<'_> {
    /// Removes whatever `dest/rel` is, without following it.
    fn remove(&mut self, rel: &Path) -> Result<()> {
        let path = self.dest.join(rel);
        match fs::symlink_metadata(&path) {
            Ok(m) if m.is_dir() => {
                remove_tree(&path).map_err(|e| Error::io("remove", &path, e))?;
                let doomed: Vec<PathBuf> = self
                    .dirs
                    .range(rel.to_path_buf()..)
                    .map(|(k, _)| k.clone())
                    .take_while(|k| k.starts_with(rel))
                    .collect();
                for k in doomed {
                    self.dirs.remove(&k);
                }
                Ok(())
            }
            Ok(_) => fs::remove_file(&path).map_err(|e| Error::io("remove", &path, e)),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io("inspect", &path, e)),
        }
    }

    fn merge_dir(
        &mut self,
        layer: &Path,
        rel: &Path,
        links: &mut HashMap<(u64, u64), PathBuf>,
    ) -> Result<()> {
        let src_dir = layer.join(rel);
        let mut names: Vec<OsString> = fs::read_dir(&src_dir)
            .map_err(|e| Error::io("read directory", &src_dir, e))?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<io::Result<_>>()
            .map_err(|e| Error::io("read directory", &src_dir, e))?;
        names.sort();

        // === opaque directory: hide what the lower layers put here
        if names.iter().any(|n| n.as_bytes() == OPAQUE) {
            let dir = self.dest.join(rel);
            let existing: Vec<OsString> = fs::read_dir(&dir)
                .map_err(|e| Error::io("read directory", &dir, e))?
                .filter_map(|e| e.ok().map(|e| e.file_name()))
                .collect();
            for name in existing {
                self.remove(&rel.join(name))?;
            }
            self.stats.whiteouts += 1;
        }

        for name in names {
            let bytes = name.as_bytes();
            if bytes.starts_with(META_PREFIX) {
                continue;
            }
            // === whiteout: delete the named path from the lower layers
            if let Some(target) = bytes.strip_prefix(WHITEOUT_PREFIX) {
                self.remove(&rel.join(OsStr::from_bytes(target)))?;
                self.stats.whiteouts += 1;
                continue;
            }
            let rel_child = rel.join(&name);
            let src = layer.join(&rel_child);
            let meta = fs::symlink_metadata(&src).map_err(|e| Error::io("inspect", &src, e))?;
            let ft = meta.file_type();
            let dst = self.dest.join(&rel_child);
            if ft.is_dir() {
                // === directory: make sure it is a real one, then descend
                match fs::symlink_metadata(&dst) {
                    Ok(m) if m.is_dir() && self.implied.contains(&rel_child) => {
                        self.merge_dir(layer, &rel_child, links)?;
                        continue;
                    }
                    Ok(m) if m.is_dir() => {}
                    Ok(_) => {
                        self.remove(&rel_child)?;
                        fs::create_dir(&dst).map_err(|e| Error::io("create directory", &dst, e))?;
                    }
                    Err(_) => {
                        fs::create_dir(&dst).map_err(|e| Error::io("create directory", &dst, e))?
                    }
                }
                rustix::fs::chmodat(
                    CWD,
                    &dst,
                    Mode::from_raw_mode(0o700 | (meta.mode() & 0o7777)),
                    AtFlags::empty(),
                )
                .map_err(|e| Error::io("chmod", &dst, e.into()))?;
                self.chown(&dst, &meta)?;
                copy_xattrs(&src, &dst);
                self.dirs.insert(rel_child.clone(), meta_of(&meta));
                self.stats.dirs += 1;
                self.merge_dir(layer, &rel_child, links)?;
                continue;
            }
            self.remove(&rel_child)?;
            if ft.is_symlink() {
                let target = fs::read_link(&src).map_err(|e| Error::io("read symlink", &src, e))?;
                symlink(&target, &dst).map_err(|e| Error::io("create symlink", &dst, e))?;
                self.stats.symlinks += 1;
            } else if ft.is_file() {
                // Hardlinks inside one layer stay hardlinks in the merged tree.
                if meta.nlink() > 1 {
                    if let Some(first) = links.get(&(meta.dev(), meta.ino())) {
                        if fs::hard_link(first, &dst).is_ok() {
                            self.stats.hardlinks += 1;
                            continue;
                        }
                    }
                    links.insert((meta.dev(), meta.ino()), dst.clone());
                }
                copy_file(&src, &dst)?;
                self.stats.files += 1;
            } else if ft.is_char_device() || ft.is_block_device() || ft.is_fifo() {
                if !(self.opts.devices || ft.is_fifo()) {
                    self.stats.skipped_devices += 1;
                    continue;
                }
                let kind = FileType::from_raw_mode(meta.mode());
                rustix::fs::mknodat(CWD, &dst, kind, Mode::from_raw_mode(0o600), meta.rdev())
                    .map_err(|e| Error::io("create device", &dst, e.into()))?;
            } else {
                continue; // sockets and the like have no place in an image
            }
            self.chown_nofollow(&dst, &meta)?;
            if !ft.is_symlink() {
                rustix::fs::chmodat(
                    CWD,
                    &dst,
                    Mode::from_raw_mode(meta.mode() & 0o7777),
                    AtFlags::empty(),
                )
                .map_err(|e| Error::io("chmod", &dst, e.into()))?;
            }
            copy_xattrs(&src, &dst);
            set_times(&dst, &meta_of(&meta))?;
        }
        Ok(())
    }

    fn chown(&self, dst: &Path, meta: &fs::Metadata) -> Result<()> {
        if !self.opts.same_owner {
            return Ok(());
        }
        rustix::fs::chownat(
            CWD,
            dst,
            Some(Uid::from_raw(meta.uid())),
            Some(Gid::from_raw(meta.gid())),
            AtFlags::empty(),
        )
        .map_err(|e| Error::io("chown", dst, e.into()))
    }

    fn chown_nofollow(&self, dst: &Path, meta: &fs::Metadata) -> Result<()> {
        if !self.opts.same_owner {
            return Ok(());
        }
        rustix::fs::chownat(
            CWD,
            dst,
            Some(Uid::from_raw(meta.uid())),
            Some(Gid::from_raw(meta.gid())),
            AtFlags::SYMLINK_NOFOLLOW,
        )
        .map_err(|e| Error::io("chown", dst, e.into()))
    }
}

/// Copies file contents; `io::copy` between files uses copy_file_range on
/// Linux, which shares extents (reflinks) where the filesystem can.
fn copy_file(src: &Path, dst: &Path) -> Result<()> {
    let mut from = File::open(src).map_err(|e| Error::io("open", src, e))?;
    let mut to = OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .mode(0o600)
        .open(dst)
        .map_err(|e| Error::io("create", dst, e))?;
    io::copy(&mut from, &mut to).map_err(|e| Error::io("copy", dst, e))?;
    Ok(())
}

/// Best effort, as for unpacking: a filesystem that refuses xattrs loses them.
fn copy_xattrs(src: &Path, dst: &Path) {
    let mut names = vec![0u8; 4096];
    let Ok(len) = rustix::fs::llistxattr(src, &mut names[..]) else {
        return;
    };
    for name in names[..len].split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let mut value = vec![0u8; 65536];
        if let Ok(n) = rustix::fs::lgetxattr(src, name, &mut value[..]) {
            let _ = rustix::fs::lsetxattr(dst, name, &value[..n], XattrFlags::empty());
        }
    }
}
