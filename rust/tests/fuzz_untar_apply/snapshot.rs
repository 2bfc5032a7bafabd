//! Snapshots of a whole directory tree (type, mode, owner, size, content,
//! link target, times, nlink, inode) and the comparisons the worker makes
//! with them: what changed outside a step's target, and how two trees that
//! should be equal differ.

use std::collections::BTreeMap;
use std::fmt;
use std::fs::File;
use std::hash::Hasher;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Node {
    kind: char,
    mode: u32,
    uid: u32,
    gid: u32,
    size: u64,
    hash: u64,
    link: Option<Vec<u8>>,
    mtime: (i64, i64),
    ctime: (i64, i64),
    nlink: u64,
    rdev: u64,
    pub(crate) ino: u64,
    /// Bytes allocated on disk (not compared: content and size are).
    pub(crate) allocated: u64,
}

impl fmt::Debug for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} mode {:o} owner {}:{} size {} nlink {}",
            self.kind, self.mode, self.uid, self.gid, self.size, self.nlink
        )?;
        if let Some(l) = &self.link {
            write!(f, " -> {:?}", String::from_utf8_lossy(l))?;
        }
        Ok(())
    }
}

impl Node {
    /// What differs between two nodes, field by field.
    fn diff(&self, other: &Node, deterministic_only: bool) -> Vec<String> {
        let mut d = Vec::new();
        macro_rules! field {
            ($f:ident, $fmt:literal) => {
                if self.$f != other.$f {
                    d.push(format!(
                        concat!(stringify!($f), " ", $fmt, " -> ", $fmt),
                        self.$f, other.$f
                    ));
                }
            };
        }
        field!(kind, "{}");
        field!(mode, "{:o}");
        field!(uid, "{}");
        field!(gid, "{}");
        field!(size, "{}");
        if self.hash != other.hash {
            d.push("content".into());
        }
        if self.link != other.link {
            d.push(format!(
                "link target {:?} -> {:?}",
                self.link.as_deref().map(String::from_utf8_lossy),
                other.link.as_deref().map(String::from_utf8_lossy)
            ));
        }
        field!(nlink, "{}");
        field!(rdev, "{}");
        // Directory times are not the layer's to decide (implied parents get
        // "now"), nor are ctimes and inode numbers, between two runs.
        if !deterministic_only || self.kind != 'd' {
            field!(mtime, "{:?}");
        }
        if !deterministic_only {
            field!(ctime, "{:?}");
            field!(ino, "{}");
        }
        d
    }
}

/// Root-relative paths ("" is the root itself, `/` separates components),
/// compared as bytes: deep paths stay cheap.
pub(crate) type Snapshot = BTreeMap<Vec<u8>, Node>;

/// A snapshot path for a message, shortened when long.
pub(crate) fn show(p: &[u8]) -> String {
    if p.len() <= 120 {
        return format!("/{}", String::from_utf8_lossy(p));
    }
    format!(
        "/{}…({} bytes)…{}",
        String::from_utf8_lossy(&p[..40]),
        p.len(),
        String::from_utf8_lossy(&p[p.len() - 60..])
    )
}

pub(crate) fn key(p: &Path) -> &[u8] {
    p.as_os_str().as_bytes()
}

/// Whether `p` is `dir` or below it.
fn within(p: &[u8], dir: &[u8]) -> bool {
    p.starts_with(dir) && (p.len() == dir.len() || dir.is_empty() || p[dir.len()] == b'/')
}

fn child_key(rel: &[u8], name: &[u8]) -> Vec<u8> {
    let mut k = rel.to_vec();
    if !k.is_empty() {
        k.push(b'/');
    }
    k.extend_from_slice(name);
    k
}

/// A node from `lstat` data (field types differ between rustix backends).
#[allow(clippy::unnecessary_cast)]
fn node_of(st: &rustix::fs::Stat) -> Node {
    use rustix::fs::FileType as T;
    let kind = match T::from_raw_mode(st.st_mode as _) {
        T::Directory => 'd',
        T::Symlink => 'l',
        T::RegularFile => 'f',
        T::Fifo => 'p',
        T::CharacterDevice => 'c',
        T::BlockDevice => 'b',
        _ => 's',
    };
    Node {
        kind,
        mode: st.st_mode as u32 & 0o7777,
        uid: st.st_uid as u32,
        gid: st.st_gid as u32,
        size: if kind == 'd' { 0 } else { st.st_size as u64 },
        hash: 0,
        link: None,
        mtime: (st.st_mtime as i64, st.st_mtime_nsec as i64),
        ctime: (st.st_ctime as i64, st.st_ctime_nsec as i64),
        nlink: st.st_nlink as u64,
        rdev: st.st_rdev as u64,
        ino: st.st_ino as u64,
        allocated: st.st_blocks as u64 * 512,
    }
}

/// Everything below `root` (and `root` itself, as ""), never following a
/// symlink; walked by directory fd, so deep trees cost no more than wide ones.
pub(crate) fn snapshot(root: &Path) -> Snapshot {
    use rustix::fd::OwnedFd;
    use rustix::fs::{openat, readlinkat, statat, AtFlags, Dir, Mode, OFlags};
    use std::rc::Rc;
    let dir_flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let file_flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
    let mut snap = Snapshot::new();
    let Ok(st) = rustix::fs::lstat(root) else {
        return snap;
    };
    snap.insert(Vec::new(), node_of(&st));
    let Ok(root_fd) = rustix::fs::open(root, dir_flags, Mode::empty()) else {
        return snap;
    };
    // Directories still to read: (the root's fd, or its parent's fd and its name; its path).
    type Pending = (Rc<OwnedFd>, Option<Vec<u8>>, Vec<u8>);
    let mut stack: Vec<Pending> = vec![(Rc::new(root_fd), None, Vec::new())];
    while let Some((parent, name, rel)) = stack.pop() {
        let fd = match name {
            None => parent,
            Some(name) => match openat(&*parent, name.as_slice(), dir_flags, Mode::empty()) {
                Ok(fd) => Rc::new(fd),
                Err(_) => continue,
            },
        };
        let Ok(dir) = Dir::read_from(&*fd) else {
            continue;
        };
        for entry in dir.flatten() {
            let name = entry.file_name().to_bytes().to_vec();
            if name == b"." || name == b".." {
                continue;
            }
            let Ok(st) = statat(&*fd, name.as_slice(), AtFlags::SYMLINK_NOFOLLOW) else {
                continue;
            };
            let mut node = node_of(&st);
            let child = child_key(&rel, &name);
            match node.kind {
                'f' => {
                    // Content, up to the first MiB (a sparse file is not read whole).
                    let mut h = std::collections::hash_map::DefaultHasher::new();
                    if let Ok(f) = openat(&*fd, name.as_slice(), file_flags, Mode::empty()) {
                        let mut buf = Vec::new();
                        let _ = File::from(f).take(1 << 20).read_to_end(&mut buf);
                        h.write(&buf);
                    }
                    node.hash = h.finish();
                }
                'l' => {
                    node.link = Some(
                        readlinkat(&*fd, name.as_slice(), Vec::new())
                            .map(|t| t.into_bytes())
                            .unwrap_or_default(),
                    );
                }
                'd' => stack.push((fd.clone(), Some(name), child.clone())),
                _ => {}
            }
            snap.insert(child, node);
        }
    }
    snap
}

/// The changes between two snapshots outside `allowed` (a root-relative path
/// whose subtree may change), one line each.
pub(crate) fn changes_outside(before: &Snapshot, after: &Snapshot, allowed: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    let inside = |p: &[u8]| !allowed.is_empty() && within(p, allowed);
    for (path, old) in before {
        if inside(path) {
            continue;
        }
        match after.get(path) {
            None => out.push(format!("removed {}: was {old:?}", show(path))),
            Some(new) => {
                let d = old.diff(new, false);
                if !d.is_empty() {
                    out.push(format!("changed {}: {}", show(path), d.join(", ")));
                }
            }
        }
    }
    for (path, new) in after {
        if !inside(path) && !before.contains_key(path) {
            out.push(format!("added {}: {new:?}", show(path)));
        }
    }
    out
}

/// The five files that take the most disk, one per line.
pub(crate) fn largest(snap: &Snapshot) -> String {
    let mut v: Vec<(&Vec<u8>, &Node)> = snap.iter().filter(|(_, n)| n.allocated > 0).collect();
    v.sort_by_key(|(_, n)| std::cmp::Reverse(n.allocated));
    v.iter()
        .take(5)
        .map(|(p, n)| {
            format!(
                "{}: {} MiB allocated, size {}",
                show(p),
                n.allocated >> 20,
                n.size
            )
        })
        .collect::<Vec<_>>()
        .join("\n  ")
}

/// The subtree below `dir`, with paths relative to it.
pub(crate) fn subtree(snap: &Snapshot, dir: &[u8]) -> Snapshot {
    snap.iter()
        .filter(|(p, _)| within(p, dir))
        .map(|(p, n)| {
            let rest = p.get(dir.len() + 1..).unwrap_or_default();
            (rest.to_vec(), n.clone())
        })
        .collect()
}

/// Differences between two unpacked (or merged) trees that should be equal.
/// towline's own bookkeeping files at the root (`.wh..wh..towline*`) may
/// carry the time they were written.
pub(crate) fn tree_differences(a: &Snapshot, b: &Snapshot) -> Vec<String> {
    let mut out = Vec::new();
    for (p, n) in a {
        match b.get(p) {
            None => out.push(format!("only in the first: {} {n:?}", show(p))),
            Some(m) => {
                let mut d = n.diff(m, true);
                if !p.contains(&b'/') && p.starts_with(b".wh..wh..towline") {
                    d.retain(|line| !line.starts_with("mtime"));
                }
                if !d.is_empty() {
                    out.push(format!("{}: {}", show(p), d.join(", ")));
                }
            }
        }
    }
    for (p, n) in b {
        if !a.contains_key(p) {
            out.push(format!("only in the second: {} {n:?}", show(p)));
        }
    }
    out
}
