//! Keeping every write inside the target root.
//!
//! The rule is containerd's: a member name is cleaned as if joined to "/"
//! (absolute names and ".." are confined to the root), and every parent
//! directory is resolved inside the root, symlinks included: a symlink to "/"
//! means the layer's root, "../.." stops at the root. The final component is
//! never followed; it is replaced. So no write can land outside the root.
//!
//! Resolution walks real directories with `lstat`; directories proven real are
//! cached (every prefix of a cached path is cached too), so a typical layer
//! costs one hash lookup per member.

use std::collections::{HashSet, VecDeque};
use std::ffi::OsStr;
use std::fs;
use std::io::ErrorKind;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Most symlinks followed while resolving one path (Linux's own limit is 40).
const MAX_LINKS: usize = 40;

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

pub fn join(parts: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::with_capacity(parts.iter().map(|p| p.len() + 1).sum());
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            out.push(b'/');
        }
        out.extend_from_slice(p);
    }
    out
}

pub fn child(parent: &[u8], name: &[u8]) -> Vec<u8> {
    let mut out = parent.to_vec();
    if !out.is_empty() {
        out.push(b'/');
    }
    out.extend_from_slice(name);
    out
}

pub struct Resolver {
    root: PathBuf,
    real_dirs: HashSet<Vec<u8>>,
    /// Parents created because a member needed them, not declared by the layer.
    implied: HashSet<Vec<u8>>,
}

impl Resolver {
    pub fn new(root: &Path) -> Self {
        let mut real_dirs = HashSet::new();
        real_dirs.insert(Vec::new());
        Resolver {
            root: root.to_path_buf(),
            real_dirs,
            implied: HashSet::new(),
        }
    }

    pub fn full(&self, rel: &[u8]) -> PathBuf {
        if rel.is_empty() {
            return self.root.clone();
        }
        self.root.join(OsStr::from_bytes(rel))
    }

    /// Records a directory the layer declares (it is no longer implied).
    pub fn note_dir(&mut self, rel: Vec<u8>) {
        self.implied.remove(&rel);
        self.real_dirs.insert(rel);
    }

    /// Directories that exist only because members below them needed a parent.
    pub fn implied_dirs(&self) -> Vec<&[u8]> {
        let mut dirs: Vec<&[u8]> = self.implied.iter().map(Vec::as_slice).collect();
        dirs.sort_unstable();
        dirs
    }

    /// Forgets `rel` and everything below it (it was removed or replaced).
    pub fn forget(&mut self, rel: &[u8]) {
        let mut prefix = rel.to_vec();
        prefix.push(b'/');
        let doomed = |d: &Vec<u8>| d.as_slice() == rel || d.starts_with(&prefix);
        self.real_dirs.retain(|d| !doomed(d));
        self.implied.retain(|d| !doomed(d));
    }

    /// Resolves the directory named by `parts` to a real directory inside the
    /// root and returns its root-relative path. Missing directories are
    /// created (0755) when `create` is set, as tar does for implicit parents.
    pub fn resolve_dir(&mut self, parts: &[&[u8]], create: bool, member: &[u8]) -> Result<Vec<u8>> {
        let lexical = join(parts);
        if self.real_dirs.contains(&lexical) {
            return Ok(lexical);
        }
        let mut resolved: Vec<Vec<u8>> = Vec::new();
        let mut pending: VecDeque<Vec<u8>> = parts.iter().map(|p| p.to_vec()).collect();
        let mut links = 0;
        while let Some(part) = pending.pop_front() {
            match part.as_slice() {
                b"" | b"." => continue,
                b".." => {
                    resolved.pop();
                    continue;
                }
                _ => {}
            }
            resolved.push(part);
            let rel = join(&resolved.iter().map(Vec::as_slice).collect::<Vec<_>>());
            if self.real_dirs.contains(&rel) {
                continue;
            }
            let full = self.full(&rel);
            match fs::symlink_metadata(&full) {
                Ok(meta) if meta.is_dir() => {
                    self.real_dirs.insert(rel);
                }
                Ok(meta) if meta.file_type().is_symlink() => {
                    links += 1;
                    if links > MAX_LINKS {
                        return Err(Error::unsafe_path(
                            member,
                            "too many levels of symbolic links (a symlink loop)",
                        ));
                    }
                    let target =
                        fs::read_link(&full).map_err(|e| Error::io("read symlink", &full, e))?;
                    let target = target.as_os_str().as_bytes();
                    resolved.pop();
                    if target.starts_with(b"/") {
                        // An absolute target means the layer's root, not the host's.
                        resolved.clear();
                    }
                    for piece in target.split(|&b| b == b'/').rev() {
                        pending.push_front(piece.to_vec());
                    }
                }
                Ok(_) => {
                    return Err(Error::unsafe_path(
                        member,
                        format!(
                            "parent {:?} is not a directory",
                            String::from_utf8_lossy(&rel)
                        ),
                    ));
                }
                Err(e) if e.kind() == ErrorKind::NotFound && create => {
                    match fs::create_dir(&full) {
                        Ok(()) => {}
                        Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
                        Err(e) => return Err(Error::io("create directory", &full, e)),
                    }
                    self.implied.insert(rel.clone());
                    self.real_dirs.insert(rel);
                }
                Err(e) if e.kind() == ErrorKind::NotFound => {
                    return Err(Error::unsafe_path(
                        member,
                        format!("{:?} is not in the layer", String::from_utf8_lossy(&rel)),
                    ));
                }
                Err(e) => return Err(Error::io("inspect", &full, e)),
            }
        }
        Ok(join(
            &resolved.iter().map(Vec::as_slice).collect::<Vec<_>>(),
        ))
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
        let mut r = Resolver::new(root);
        assert_eq!(
            r.resolve_dir(&[b"toroot", b"etc"], true, b"m").unwrap(),
            b"etc"
        );
        assert_eq!(r.resolve_dir(&[b"up", b"tmp"], true, b"m").unwrap(), b"tmp");
        assert_eq!(
            r.resolve_dir(&[b"rel", b"x"], true, b"m").unwrap(),
            b"real/x"
        );
        let err = r.resolve_dir(&[b"loop1"], true, b"m").unwrap_err();
        assert!(err.to_string().contains("symlink loop"), "{err}");
        assert!(root.join("etc").is_dir() && root.join("tmp").is_dir());
    }
}
