//! Merging unpacked layers into one root filesystem, lowest layer first,
//! honouring OCI whiteouts: `.wh.<name>` deletes `<name>` from the layers
//! below, `.wh..wh..opq` hides everything the lower layers put in its
//! directory, other `.wh..wh.*` names are bookkeeping and are skipped.
//!
//! The walk goes top-down and only ever descends into directories it has
//! itself made sure are real directories in `dest`, so a symlink left by a
//! lower layer is replaced, never followed. Whiteouts must name one real
//! entry (`.wh.`, `.wh..` and `.wh...` are refused, or they would delete the
//! directory itself or its parent). The directories made are kept as a
//! [`DirTree`], so a directory removed by a later layer leaves no entry behind,
//! and their modes and times are set at the end only through the very
//! directory that was made, never through a symlink now at its path.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, ErrorKind};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, FileExt, FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use rustix::fs::{
    AtFlags, FileType, Gid, Mode, OFlags, SeekFrom, Timestamps, Uid, XattrFlags, CWD,
};
use rustix::io::Errno;

use crate::atomic::remove_tree;
use crate::dirtree::{ident_of, set_dir_metadata, DirTree, Ident, NodeId, Visit, ROOT};
use crate::error::{Error, Result};
use crate::implied_dirs;

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

#[derive(Clone, Copy)]
struct Meta {
    mode: u32,
    atime: (i64, i64),
    mtime: (i64, i64),
}

/// A directory of the destination that the merge made or took over.
struct DestDir {
    /// Mode and times to set at the end; None keeps what the directory has.
    meta: Option<Meta>,
    ident: Ident,
}

struct Merger<'a> {
    dest: &'a Path,
    opts: &'a ApplyOptions,
    stats: ApplyStats,
    tree: DirTree<DestDir>,
    /// The current layer's directories that it did not declare itself.
    implied: DirTree<bool>,
}

pub fn apply_layers(layers: &[PathBuf], dest: &Path, opts: &ApplyOptions) -> Result<ApplyStats> {
    match fs::create_dir(dest) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::AlreadyExists && dest.is_dir() => {}
        Err(e) => return Err(Error::io("create directory", dest, e)),
    }
    // The caller's own path may go through symlinks; below it, nothing is followed.
    let dest = fs::canonicalize(dest).map_err(|e| Error::io("resolve", dest, e))?;
    let root = fs::symlink_metadata(&dest).map_err(|e| Error::io("inspect", &dest, e))?;
    let mut merger = Merger {
        dest: &dest,
        opts,
        stats: ApplyStats::default(),
        tree: DirTree::new(DestDir {
            meta: None,
            ident: ident_of(&root),
        }),
        implied: DirTree::new(false),
    };
    for layer in layers {
        let meta = fs::symlink_metadata(layer).map_err(|e| Error::io("open layer", layer, e))?;
        if !meta.is_dir() {
            return Err(Error::InvalidArgument(format!(
                "layer {} is not a directory",
                layer.display()
            )));
        }
        if let Some(root) = merger.tree.data_mut(ROOT) {
            root.meta = Some(meta_of(&meta));
        }
        merger.implied = implied_dirs::read(layer)?;
        let mut links = HashMap::new();
        merger.merge_dir(layer, Path::new(""), ROOT, Some(ROOT), &mut links)?;
    }
    // === directory modes and times, deepest first, through the directories made
    merger.tree.walk(|visit| match visit {
        Visit::Leave {
            path,
            data: DestDir {
                meta: Some(meta),
                ident,
            },
        } => set_dir_metadata(
            &dest.join(std::ffi::OsStr::from_bytes(path)),
            *ident,
            Some(meta.mode),
            &timestamps(meta),
        ),
        _ => Ok(()),
    })?;
    Ok(merger.stats)
}

fn meta_of(m: &fs::Metadata) -> Meta {
    Meta {
        mode: m.mode() & 0o7777,
        atime: (m.atime(), m.atime_nsec()),
        mtime: (m.mtime(), m.mtime_nsec()),
    }
}

fn timestamps(meta: &Meta) -> Timestamps {
    let ts = |(s, n): (i64, i64)| rustix::fs::Timespec {
        tv_sec: s,
        tv_nsec: n as _,
    };
    Timestamps {
        last_access: ts(meta.atime),
        last_modification: ts(meta.mtime),
    }
}

fn set_times(path: &Path, meta: &Meta) -> Result<()> {
    rustix::fs::utimensat(CWD, path, &timestamps(meta), AtFlags::SYMLINK_NOFOLLOW)
        .map_err(|e| Error::io("set times", path, e.into()))
}

fn whiteout_target<'a>(name: &'a [u8], rel: &Path) -> Result<Option<&'a [u8]>> {
    let Some(target) = name.strip_prefix(WHITEOUT_PREFIX) else {
        return Ok(None);
    };
    if matches!(target, b"" | b"." | b"..") {
        return Err(Error::unsafe_path(
            rel.join(std::ffi::OsStr::from_bytes(name))
                .as_os_str()
                .as_bytes(),
            "invalid whiteout name",
        ));
    }
    Ok(Some(target))
}

impl Merger<'_> {
    /// Removes whatever `dest/rel/name` is, without following it, and forgets
    /// every directory the merge knew below it.
    fn remove(&mut self, dir: NodeId, rel: &Path, name: &[u8]) -> Result<()> {
        let path = self.dest.join(rel).join(std::ffi::OsStr::from_bytes(name));
        match fs::symlink_metadata(&path) {
            Ok(m) if m.is_dir() => remove_tree(&path).map_err(|e| Error::io("remove", &path, e))?,
            Ok(_) => fs::remove_file(&path).map_err(|e| Error::io("remove", &path, e))?,
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("inspect", &path, e)),
        }
        self.tree.remove(dir, name);
        Ok(())
    }

    /// The node of directory `dir/name` of the destination, whose metadata is
    /// `found`: the known one if it is that directory, else a new node.
    fn dest_dir(&mut self, dir: NodeId, name: &[u8], found: &fs::Metadata) -> NodeId {
        let ident = ident_of(found);
        match self.tree.child(dir, name) {
            Some(node) if self.tree.data(node).is_some_and(|d| d.ident == ident) => node,
            _ => self.tree.add_dir(dir, name, DestDir { meta: None, ident }),
        }
    }

    fn merge_dir(
        &mut self,
        layer: &Path,
        rel: &Path,
        node: NodeId,
        implied_node: Option<NodeId>,
        links: &mut HashMap<(u64, u64), PathBuf>,
    ) -> Result<()> {
        let src_dir = layer.join(rel);
        let mut names: Vec<OsString> = fs::read_dir(&src_dir)
            .map_err(|e| Error::io("read directory", &src_dir, e))?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<io::Result<_>>()
            .map_err(|e| Error::io("read directory", &src_dir, e))?;
        names.sort();
        for name in &names {
            whiteout_target(name.as_bytes(), rel)?;
        }

        // === opaque directory: hide what the lower layers put here
        if names.iter().any(|n| n.as_bytes() == OPAQUE) {
            let dir = self.dest.join(rel);
            let existing: Vec<OsString> = fs::read_dir(&dir)
                .map_err(|e| Error::io("read directory", &dir, e))?
                .map(|e| e.map(|e| e.file_name()))
                .collect::<io::Result<_>>()
                .map_err(|e| Error::io("read directory", &dir, e))?;
            for name in existing {
                self.remove(node, rel, name.as_bytes())?;
            }
            self.stats.whiteouts += 1;
        }

        for name in names {
            let bytes = name.as_bytes();
            if bytes.starts_with(META_PREFIX) {
                continue;
            }
            // === whiteout: delete the named path from the lower layers
            if let Some(target) = whiteout_target(bytes, rel)? {
                self.remove(node, rel, target)?;
                self.stats.whiteouts += 1;
                continue;
            }
            let rel_child = rel.join(&name);
            let src = layer.join(&rel_child);
            let meta = fs::symlink_metadata(&src).map_err(|e| Error::io("inspect", &src, e))?;
            let ft = meta.file_type();
            let dst = self.dest.join(&rel_child);
            if ft.is_dir() {
                self.merge_child_dir(layer, rel, node, implied_node, &name, &meta, links)?;
                continue;
            }
            self.remove(node, rel, bytes)?;
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
                copy_file(&src, &dst, &meta)?;
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
            self.chown(&dst, &meta, AtFlags::SYMLINK_NOFOLLOW)?;
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

    /// Merges the layer's directory `parent_rel/name` (whose metadata is
    /// `meta`) into the destination directory `node`: makes sure it is a real
    /// directory there, then descends.
    #[allow(clippy::too_many_arguments)]
    fn merge_child_dir(
        &mut self,
        layer: &Path,
        parent_rel: &Path,
        node: NodeId,
        implied_node: Option<NodeId>,
        name: &std::ffi::OsStr,
        meta: &fs::Metadata,
        links: &mut HashMap<(u64, u64), PathBuf>,
    ) -> Result<()> {
        let bytes = name.as_bytes();
        let rel = parent_rel.join(name);
        let dst = self.dest.join(&rel);
        let implied_child = implied_node.and_then(|i| self.implied.child(i, bytes));
        let implied = implied_child.and_then(|c| self.implied.data(c)) == Some(&true);
        let found = match fs::symlink_metadata(&dst) {
            // Only implied here: the lower layer's directory keeps its metadata.
            Ok(m) if m.is_dir() && implied => {
                let child = self.dest_dir(node, bytes, &m);
                return self.merge_dir(layer, &rel, child, implied_child, links);
            }
            Ok(m) if m.is_dir() => m,
            Ok(_) => {
                self.remove(node, parent_rel, bytes)?;
                make_dir(&dst)?
            }
            Err(e) if e.kind() == ErrorKind::NotFound => make_dir(&dst)?,
            Err(e) => return Err(Error::io("inspect", &dst, e)),
        };
        // Owner-writable until the end, so this walk can create what is below.
        rustix::fs::chmodat(
            CWD,
            &dst,
            Mode::from_raw_mode(0o700 | (meta.mode() & 0o7777)),
            AtFlags::empty(),
        )
        .map_err(|e| Error::io("chmod", &dst, e.into()))?;
        self.chown(&dst, meta, AtFlags::empty())?;
        copy_xattrs(&layer.join(&rel), &dst);
        let child = self.dest_dir(node, bytes, &found);
        if let Some(data) = self.tree.data_mut(child) {
            data.meta = Some(meta_of(meta));
        }
        self.stats.dirs += 1;
        self.merge_dir(layer, &rel, child, implied_child, links)
    }

    fn chown(&self, dst: &Path, meta: &fs::Metadata, flags: AtFlags) -> Result<()> {
        if !self.opts.same_owner {
            return Ok(());
        }
        rustix::fs::chownat(
            CWD,
            dst,
            Some(Uid::from_raw(meta.uid())),
            Some(Gid::from_raw(meta.gid())),
            flags,
        )
        .map_err(|e| Error::io("chown", dst, e.into()))
    }
}

fn make_dir(path: &Path) -> Result<fs::Metadata> {
    fs::create_dir(path).map_err(|e| Error::io("create directory", path, e))?;
    fs::symlink_metadata(path).map_err(|e| Error::io("inspect", path, e))
}

/// Copies a file's contents. A fully allocated file goes through `io::copy`
/// (copy_file_range on Linux, reflinks where the filesystem can); a sparse one
/// has only its data ranges copied (SEEK_DATA / SEEK_HOLE), so a terabyte of
/// holes stays a hole instead of a terabyte of zeros on disk.
fn copy_file(src: &Path, dst: &Path, meta: &fs::Metadata) -> Result<()> {
    let mut from = OpenOptions::new()
        .read(true)
        .custom_flags(OFlags::NOFOLLOW.bits() as i32)
        .open(src)
        .map_err(|e| Error::io("open", src, e))?;
    let mut to = OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(OFlags::NOFOLLOW.bits() as i32)
        .mode(0o600)
        .open(dst)
        .map_err(|e| Error::io("create", dst, e))?;
    let size = meta.len();
    if meta.blocks().saturating_mul(512) >= size {
        io::copy(&mut from, &mut to).map_err(|e| Error::io("copy", dst, e))?;
        return Ok(());
    }
    let mut pos = 0;
    while pos < size {
        let start = match rustix::fs::seek(&from, SeekFrom::Data(pos)) {
            Ok(start) => start,
            Err(Errno::NXIO) => break, // only a hole is left
            Err(e) => return Err(Error::io("seek", src, e.into())),
        };
        let end = rustix::fs::seek(&from, SeekFrom::Hole(start))
            .map_err(|e| Error::io("seek", src, e.into()))?
            .min(size);
        copy_range(&from, &to, start, end).map_err(|e| Error::io("copy", dst, e))?;
        pos = end;
    }
    to.set_len(size).map_err(|e| Error::io("truncate", dst, e))
}

/// Copies bytes `start..end` of `from` to the same offsets of `to`.
fn copy_range(from: &File, to: &File, start: u64, end: u64) -> io::Result<()> {
    let (mut off_in, mut off_out) = (start, start);
    while off_in < end {
        let want = usize::try_from(end - off_in)
            .unwrap_or(usize::MAX)
            .min(1 << 30);
        match rustix::fs::copy_file_range(from, Some(&mut off_in), to, Some(&mut off_out), want) {
            Ok(0) => return Err(ErrorKind::UnexpectedEof.into()),
            Ok(_) => {}
            // Filesystems (or kernels) without it: copy through a buffer.
            Err(Errno::XDEV | Errno::INVAL | Errno::NOSYS | Errno::OPNOTSUPP) => {
                return copy_range_buffered(from, to, off_in, end)
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

fn copy_range_buffered(from: &File, to: &File, mut off: u64, end: u64) -> io::Result<()> {
    let mut buf = vec![0u8; 1 << 20];
    while off < end {
        let want = usize::try_from(end - off)
            .unwrap_or(usize::MAX)
            .min(buf.len());
        let n = from.read_at(&mut buf[..want], off)?;
        if n == 0 {
            return Err(ErrorKind::UnexpectedEof.into());
        }
        to.write_all_at(&buf[..n], off)?;
        off += n as u64;
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn opts() -> ApplyOptions {
        ApplyOptions {
            same_owner: false,
            devices: false,
        }
    }

    /// A layer directory built by hand: `(path, what)` with what = "dir:<mode>",
    /// "link:<target>" or file contents.
    fn layer(root: &Path, entries: &[(&str, &str)]) -> PathBuf {
        fs::create_dir_all(root).unwrap();
        for (rel, what) in entries {
            let path = root.join(rel);
            if let Some(mode) = what.strip_prefix("dir:") {
                fs::create_dir(&path).unwrap();
                let mode = u32::from_str_radix(mode, 8).unwrap();
                fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
            } else if let Some(target) = what.strip_prefix("link:") {
                symlink(target, &path).unwrap();
            } else {
                fs::write(&path, what).unwrap();
            }
        }
        root.to_path_buf()
    }

    fn mode(path: &Path) -> u32 {
        fs::symlink_metadata(path).unwrap().mode() & 0o7777
    }

    #[test]
    fn whiteouts_opaque_dirs_and_replacements_merge_in_order() {
        let t = tempfile::tempdir().unwrap();
        let one = layer(
            &t.path().join("one"),
            &[
                ("gone", "dir:755"),
                ("gone/x", "x"),
                ("opq", "dir:755"),
                ("opq/old", "o"),
                ("f", "file"),
                ("d", "dir:755"),
                ("d/inner", "i"),
            ],
        );
        let two = layer(
            &t.path().join("two"),
            &[
                (".wh.gone", ""),
                ("opq", "dir:750"),
                ("opq/.wh..wh..opq", ""),
                ("opq/new", "n"),
                ("f", "dir:700"),
                ("d", "now a file"),
            ],
        );
        let dest = t.path().join("rootfs");
        let stats = apply_layers(&[one, two], &dest, &opts()).unwrap();
        assert!(!dest.join("gone").exists());
        let mut names: Vec<_> = fs::read_dir(dest.join("opq"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        assert_eq!(names, ["new"]);
        assert_eq!(mode(&dest.join("opq")), 0o750);
        assert!(dest.join("f").is_dir() && mode(&dest.join("f")) == 0o700);
        assert_eq!(fs::read(dest.join("d")).unwrap(), b"now a file");
        assert_eq!(stats.whiteouts, 2);
    }

    #[test]
    fn invalid_whiteouts_are_refused_and_nothing_outside_is_deleted() {
        for name in [".wh.", ".wh..", ".wh..."] {
            let t = tempfile::tempdir().unwrap();
            fs::write(t.path().join("precious"), "keep").unwrap();
            let bad = layer(&t.path().join("bad"), &[("sub", "dir:755")]);
            fs::write(bad.join(name), "").unwrap();
            let err = apply_layers(&[bad], &t.path().join("rootfs"), &opts()).unwrap_err();
            assert!(err.to_string().contains("invalid whiteout name"), "{err}");
            assert_eq!(fs::read(t.path().join("precious")).unwrap(), b"keep");
        }
    }

    #[test]
    fn a_symlink_over_a_lower_directory_is_never_followed_at_the_end() {
        let t = tempfile::tempdir().unwrap();
        let host = t.path().join("host");
        fs::write(&host, "secret").unwrap();
        fs::set_permissions(&host, fs::Permissions::from_mode(0o600)).unwrap();
        let one = layer(
            &t.path().join("one"),
            &[("a", "dir:6777"), ("a/sub", "dir:755"), ("b", "dir:755")],
        );
        let link = format!("link:{}", host.display());
        let two = layer(&t.path().join("two"), &[("a", &link), ("b", "dir:755")]);
        let dest = t.path().join("rootfs");
        apply_layers(&[one, two], &dest, &opts()).unwrap();
        assert_eq!(fs::read_link(dest.join("a")).unwrap(), host);
        assert_eq!(mode(&host), 0o600);
    }

    #[test]
    fn implied_directories_keep_the_lower_layers_metadata() {
        let t = tempfile::tempdir().unwrap();
        let one = layer(&t.path().join("one"), &[("usr", "dir:700")]);
        let two = layer(
            &t.path().join("two"),
            &[
                ("usr", "dir:755"),
                ("usr/bin", "dir:755"),
                ("etc", "dir:755"),
            ],
        );
        let mut implied = DirTree::new(false);
        implied.add_dir(ROOT, b"usr", true);
        implied.add_dir(ROOT, b"etc", true);
        implied_dirs::write(
            &two.join(std::ffi::OsStr::from_bytes(implied_dirs::NAME)),
            &implied,
            |&f| f,
        )
        .unwrap();
        let dest = t.path().join("rootfs");
        apply_layers(&[one, two], &dest, &opts()).unwrap();
        assert_eq!(
            mode(&dest.join("usr")),
            0o700,
            "implied: lower metadata kept"
        );
        assert_eq!(
            mode(&dest.join("etc")),
            0o755,
            "implied but new: made as it is"
        );
        assert!(dest.join("usr/bin").is_dir());
        assert!(!dest
            .join(std::ffi::OsStr::from_bytes(implied_dirs::NAME))
            .exists());
    }

    #[test]
    fn sparse_files_are_copied_with_their_holes() {
        let t = tempfile::tempdir().unwrap();
        let one = layer(&t.path().join("one"), &[]);
        let sparse = one.join("sparse");
        let f = File::create(&sparse).unwrap();
        f.write_all_at(b"head", 0).unwrap();
        f.write_all_at(b"tail", (4 << 30) - 4).unwrap();
        drop(f);
        let dest = t.path().join("rootfs");
        apply_layers(&[one], &dest, &opts()).unwrap();
        let copy = fs::metadata(dest.join("sparse")).unwrap();
        assert_eq!(copy.len(), 4 << 30);
        assert!(
            copy.blocks() * 512 < 4 << 20,
            "{} bytes allocated",
            copy.blocks() * 512
        );
        let f = File::open(dest.join("sparse")).unwrap();
        let mut buf = [0u8; 4];
        f.read_exact_at(&mut buf, (4 << 30) - 4).unwrap();
        assert_eq!(&buf, b"tail");
        f.read_exact_at(&mut buf, 0).unwrap();
        assert_eq!(&buf, b"head");
    }

    #[test]
    fn hardlinks_of_a_layer_stay_hardlinks_and_directory_modes_are_set_last() {
        let t = tempfile::tempdir().unwrap();
        let one = layer(&t.path().join("one"), &[("ro", "dir:755"), ("ro/f", "x")]);
        fs::hard_link(one.join("ro/f"), one.join("g")).unwrap();
        fs::set_permissions(one.join("ro"), fs::Permissions::from_mode(0o555)).unwrap();
        let dest = t.path().join("rootfs");
        let stats = apply_layers(&[one], &dest, &opts()).unwrap();
        assert_eq!(stats.hardlinks, 1);
        let (f, g) = (
            fs::metadata(dest.join("ro/f")).unwrap(),
            fs::metadata(dest.join("g")).unwrap(),
        );
        assert_eq!(f.ino(), g.ino());
        assert_eq!(mode(&dest.join("ro")), 0o555);
    }
}
