//! Keeping every write inside the target root.
//!
//! The rule is containerd's: a member name is cleaned as if joined to "/"
//! (absolute names and ".." are confined to the root), and every parent
//! directory is resolved inside the root, symlinks included: a symlink to "/"
//! means the layer's root, "../.." stops at the root. The final component is
//! never followed; it is replaced. So no write can land outside the root.
//!
//! Resolution walks the model of what this unpack made ([`DirTree`]: its
//! directories and symlinks), so a member under known directories costs no
//! system call, and each step costs one lookup of one name: time per member is
//! bounded by the components walked, and those are capped (`MAX_LINK_STEPS`),
//! so hostile symlink chains cost time linear in the input. Only names the model
//! does not know (files, or what was in the root before) are asked of the
//! filesystem with `lstat`.

use std::ffi::OsStr;
use std::fs;
use std::io::ErrorKind;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::header::Timestamp;
use crate::dirtree::{ident_of, DirTree, Ident, Node, NodeId, ROOT};
use crate::error::{Error, Result};
use crate::implied_dirs;

/// Most symlinks followed while resolving one path (Linux's own limit is 40).
const MAX_LINKS: usize = 40;

/// Most path components that symlink targets may add to one resolution: legit
/// layers need a handful, and the cap bounds the work a member can cause.
const MAX_LINK_STEPS: usize = 4096;

/// Lexically cleans a member name: drops "", "." and leading "/", resolves
/// ".." without ever going above the root.
pub fn clean(name: &[u8]) -> Vec<&[u8]> {
    let mut parts: Vec<&[u8]> = Vec::new();
    for part in name.split(|&b| b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    parts
}

pub fn child(parent: &[u8], name: &[u8]) -> Vec<u8> {
    let mut out = parent.to_vec();
    if !out.is_empty() {
        out.push(b'/');
    }
    out.extend_from_slice(name);
    out
}

/// Refuses a name no member may create: a whiteout of nothing, "." or ".."
/// (merging it would delete the directory itself or its parent: containerd's
/// "invalid whiteout name"), a name longer than 255 bytes, and towline's
/// bookkeeping name at the root (`in_root`).
pub fn check_name(name: &[u8], in_root: bool, member: &[u8]) -> Result<()> {
    if let Some(target) = name.strip_prefix(b".wh.") {
        if matches!(target, b"" | b"." | b"..") {
            return Err(Error::unsafe_path(member, "invalid whiteout name"));
        }
    }
    if name.len() > 255 {
        return Err(Error::unsafe_path(
            member,
            "a name component is longer than 255 bytes",
        ));
    }
    if in_root && name == implied_dirs::NAME {
        return Err(Error::unsafe_path(
            member,
            "the name is reserved for towline's bookkeeping",
        ));
    }
    Ok(())
}

/// Mode and mtime a layer declares for a directory, applied at the end.
#[derive(Clone, Copy, Debug)]
pub struct Declared {
    pub mode: u32,
    pub mtime: Timestamp,
}

/// What the unpack knows of one directory in the root.
pub struct DirState {
    /// Set once the layer declares the directory; until then it keeps its mode.
    pub declared: Option<Declared>,
    /// Made because a member needed a parent that the layer did not declare.
    pub implied: bool,
    pub ident: Ident,
}

/// A resolved parent directory: its node and its path relative to the root.
pub struct Resolved {
    pub dir: NodeId,
    pub rel: Vec<u8>,
}

pub struct Resolver {
    root: PathBuf,
    tree: DirTree<DirState>,
}

impl Resolver {
    pub fn new(root: &Path) -> Result<Self> {
        let meta = fs::symlink_metadata(root).map_err(|e| Error::io("inspect", root, e))?;
        Ok(Resolver {
            root: root.to_path_buf(),
            tree: DirTree::new(DirState {
                declared: None,
                implied: false,
                ident: ident_of(&meta),
            }),
        })
    }

    pub fn full(&self, rel: &[u8]) -> PathBuf {
        if rel.is_empty() {
            return self.root.clone();
        }
        self.root.join(OsStr::from_bytes(rel))
    }

    pub fn tree(&self) -> &DirTree<DirState> {
        &self.tree
    }

    pub fn tree_mut(&mut self) -> &mut DirTree<DirState> {
        &mut self.tree
    }

    /// Resolves the directory named by `parts` to a real directory inside the
    /// root. Missing directories are created (0755) when `create` is set, as
    /// tar does for implicit parents.
    pub fn resolve_dir(
        &mut self,
        parts: &[&[u8]],
        create: bool,
        member: &[u8],
    ) -> Result<Resolved> {
        // Components still to walk, last first; symlink targets are pushed on top.
        let mut pending: Vec<Vec<u8>> = Vec::new();
        let mut next_part = parts.len();
        let mut cur = ROOT;
        let mut rel: Vec<u8> = Vec::new();
        // Length of `rel` before each component of it, so ".." is a truncate.
        let mut lens: Vec<usize> = Vec::new();
        let (mut links, mut link_steps) = (0usize, 0usize);
        loop {
            let owned;
            let part: &[u8] = if let Some(p) = pending.pop() {
                owned = p;
                &owned
            } else if next_part > 0 {
                next_part -= 1;
                parts[parts.len() - 1 - next_part]
            } else {
                break;
            };
            match part {
                b"" | b"." => continue,
                b".." => {
                    cur = self.tree.parent(cur);
                    rel.truncate(lens.pop().unwrap_or(0));
                    continue;
                }
                _ => {}
            }
            let node = match self.tree.child(cur, part) {
                Some(id) => id,
                None => self.discover(cur, &rel, part, create, member)?,
            };
            match self.tree.node(node) {
                Node::Dir { .. } => {
                    lens.push(rel.len());
                    if !rel.is_empty() {
                        rel.push(b'/');
                    }
                    rel.extend_from_slice(part);
                    cur = node;
                }
                Node::Symlink(target) => {
                    links += 1;
                    if links > MAX_LINKS {
                        return Err(Error::unsafe_path(
                            member,
                            "too many levels of symbolic links (a symlink loop)",
                        ));
                    }
                    if target.starts_with(b"/") {
                        // An absolute target means the layer's root, not the host's.
                        cur = ROOT;
                        rel.clear();
                        lens.clear();
                    }
                    let pieces: Vec<&[u8]> = target.split(|&b| b == b'/').collect();
                    link_steps += pieces.len();
                    if link_steps > MAX_LINK_STEPS {
                        return Err(Error::unsafe_path(
                            member,
                            format!(
                                "its symlinks add more than {MAX_LINK_STEPS} path components \
                                 to resolve"
                            ),
                        ));
                    }
                    pending.extend(pieces.into_iter().rev().map(<[u8]>::to_vec));
                }
                Node::Free => unreachable!("a child is never a free slot"),
            }
        }
        Ok(Resolved { dir: cur, rel })
    }

    /// Asks the filesystem about `name` in the directory `dir` (at `rel`), which
    /// the model does not know: a file, nothing (then a parent is made when
    /// `create`), or what was in the root before this unpack.
    fn discover(
        &mut self,
        dir: NodeId,
        rel: &[u8],
        name: &[u8],
        create: bool,
        member: &[u8],
    ) -> Result<NodeId> {
        let rel_child = child(rel, name);
        let full = self.full(&rel_child);
        match fs::symlink_metadata(&full) {
            Ok(meta) if meta.is_dir() => Ok(self.tree.add_dir(
                dir,
                name,
                DirState {
                    declared: None,
                    implied: false,
                    ident: ident_of(&meta),
                },
            )),
            Ok(meta) if meta.file_type().is_symlink() => {
                let target =
                    fs::read_link(&full).map_err(|e| Error::io("read symlink", &full, e))?;
                Ok(self
                    .tree
                    .add_symlink(dir, name, target.as_os_str().as_bytes()))
            }
            Ok(_) => Err(Error::unsafe_path(
                member,
                format!(
                    "parent {:?} is not a directory",
                    String::from_utf8_lossy(&rel_child)
                ),
            )),
            Err(e) if e.kind() == ErrorKind::NotFound && create => {
                // The name may come from a symlink's target, which no check has seen.
                check_name(name, dir == ROOT, member)?;
                fs::create_dir(&full).map_err(|e| Error::io("create directory", &full, e))?;
                let meta =
                    fs::symlink_metadata(&full).map_err(|e| Error::io("inspect", &full, e))?;
                Ok(self.tree.add_dir(
                    dir,
                    name,
                    DirState {
                        declared: None,
                        implied: true,
                        ident: ident_of(&meta),
                    },
                ))
            }
            Err(e) if e.kind() == ErrorKind::NotFound => Err(Error::unsafe_path(
                member,
                format!(
                    "{:?} is not in the layer",
                    String::from_utf8_lossy(&rel_child)
                ),
            )),
            Err(e) => Err(Error::io("inspect", &full, e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn clean_confines_dotdot_and_absolute_names() {
        assert_eq!(clean(b"/etc/passwd"), vec![&b"etc"[..], b"passwd"]);
        assert_eq!(clean(b"../../x"), vec![&b"x"[..]]);
        assert_eq!(clean(b"a/./b/../c/"), vec![&b"a"[..], b"c"]);
        assert!(clean(b"./").is_empty());
    }

    #[test]
    fn symlinks_resolve_inside_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        symlink("/", root.join("toroot")).unwrap();
        symlink("../../..", root.join("up")).unwrap();
        fs::create_dir(root.join("real")).unwrap();
        symlink("real", root.join("rel")).unwrap();
        symlink("loop2", root.join("loop1")).unwrap();
        symlink("loop1", root.join("loop2")).unwrap();
        let mut r = Resolver::new(root).unwrap();
        let mut rel = |parts: &[&[u8]]| r.resolve_dir(parts, true, b"m").map(|d| d.rel);
        assert_eq!(rel(&[b"toroot", b"etc"]).unwrap(), b"etc");
        assert_eq!(rel(&[b"up", b"tmp"]).unwrap(), b"tmp");
        assert_eq!(rel(&[b"rel", b"x"]).unwrap(), b"real/x");
        let err = rel(&[b"loop1"]).unwrap_err();
        assert!(err.to_string().contains("symlink loop"), "{err}");
        assert!(root.join("etc").is_dir() && root.join("tmp").is_dir());
    }
}
