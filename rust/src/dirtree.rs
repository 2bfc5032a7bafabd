//! The directories (and symlinks) a walk has made, as an in-memory tree, and
//! the deferred metadata of those directories.
//!
//! Both the untar and the layer merge create directories whose final mode and
//! times can only be set at the end (creating children changes a directory's
//! mtime; a 0555 directory refuses children). They keep those directories here
//! rather than as path strings: one node per directory or symlink, each name
//! stored once, in its parent's child map. So memory is one copy of each name
//! (never of each full path) plus about 100 bytes per node, removing a subtree
//! costs its size (never a scan of everything known), and a removed directory
//! leaves no stale entry that a later symlink at the same path could redirect.
//!
//! At the end, [`set_dir_metadata`] opens each directory without following a
//! symlink and checks it is still the very directory that was made (device and
//! inode) before changing anything through it.

use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use rustix::fs::{Mode, OFlags, Timestamps};

use crate::error::{Error, Result};

pub type NodeId = u32;

/// The node of the tree's root directory.
pub const ROOT: NodeId = 0;

/// (device, inode) of a directory as made: what [`set_dir_metadata`] checks.
pub type Ident = (u64, u64);

pub enum Node<T> {
    Dir {
        parent: NodeId,
        children: BTreeMap<Box<[u8]>, NodeId>,
        data: T,
    },
    Symlink(Box<[u8]>),
    /// A slot whose node was removed, waiting to be reused.
    Free,
}

/// What [`DirTree::walk`] reports: each directory is entered before its
/// children and left after them (so `Leave` is post-order).
pub enum Visit<'a, T> {
    Enter {
        depth: usize,
        name: &'a [u8],
        path: &'a [u8],
        data: &'a T,
    },
    Leave {
        path: &'a [u8],
        data: &'a T,
    },
}

pub struct DirTree<T> {
    nodes: Vec<Node<T>>,
    free: Vec<NodeId>,
}

impl<T> DirTree<T> {
    pub fn new(root: T) -> Self {
        DirTree {
            nodes: vec![Node::Dir {
                parent: ROOT,
                children: BTreeMap::new(),
                data: root,
            }],
            free: Vec::new(),
        }
    }

    pub fn node(&self, id: NodeId) -> &Node<T> {
        &self.nodes[id as usize]
    }

    /// The child `name` of directory `dir`, if the tree has one.
    pub fn child(&self, dir: NodeId, name: &[u8]) -> Option<NodeId> {
        match self.node(dir) {
            Node::Dir { children, .. } => children.get(name).copied(),
            _ => None,
        }
    }

    /// The parent of a directory (the root is its own parent, as "/..").
    pub fn parent(&self, dir: NodeId) -> NodeId {
        match self.node(dir) {
            Node::Dir { parent, .. } => *parent,
            _ => ROOT,
        }
    }

    pub fn data(&self, dir: NodeId) -> Option<&T> {
        match self.node(dir) {
            Node::Dir { data, .. } => Some(data),
            _ => None,
        }
    }

    pub fn data_mut(&mut self, dir: NodeId) -> Option<&mut T> {
        match &mut self.nodes[dir as usize] {
            Node::Dir { data, .. } => Some(data),
            _ => None,
        }
    }

    pub fn add_dir(&mut self, parent: NodeId, name: &[u8], data: T) -> NodeId {
        self.insert(
            parent,
            name,
            Node::Dir {
                parent,
                children: BTreeMap::new(),
                data,
            },
        )
    }

    pub fn add_symlink(&mut self, parent: NodeId, name: &[u8], target: &[u8]) -> NodeId {
        self.insert(parent, name, Node::Symlink(target.into()))
    }

    /// Puts `node` at `parent/name`, dropping whatever subtree was there.
    fn insert(&mut self, parent: NodeId, name: &[u8], node: Node<T>) -> NodeId {
        self.remove(parent, name);
        let id = match self.free.pop() {
            Some(id) => {
                self.nodes[id as usize] = node;
                id
            }
            None => {
                self.nodes.push(node);
                NodeId::try_from(self.nodes.len() - 1).expect("fewer than 2^32 nodes")
            }
        };
        if let Node::Dir { children, .. } = &mut self.nodes[parent as usize] {
            children.insert(name.into(), id);
        }
        id
    }

    /// Forgets `parent/name` and everything below it.
    pub fn remove(&mut self, parent: NodeId, name: &[u8]) {
        let Node::Dir { children, .. } = &mut self.nodes[parent as usize] else {
            return;
        };
        let Some(first) = children.remove(name) else {
            return;
        };
        let mut doomed = vec![first];
        while let Some(id) = doomed.pop() {
            if let Node::Dir { children, .. } =
                std::mem::replace(&mut self.nodes[id as usize], Node::Free)
            {
                doomed.extend(children.into_values());
            }
            self.free.push(id);
        }
    }

    /// Walks every directory depth-first (children in name order), with the
    /// path relative to the root. Iterative: depth costs heap, not stack.
    pub fn walk(&self, mut visit: impl FnMut(Visit<'_, T>) -> Result<()>) -> Result<()> {
        let Node::Dir { children, data, .. } = self.node(ROOT) else {
            return Ok(());
        };
        let mut path: Vec<u8> = Vec::new();
        visit(Visit::Enter {
            depth: 0,
            name: b"",
            path: &path,
            data,
        })?;
        // Each level: the iterator over its children and the path length before it.
        let mut stack = vec![(children.iter(), 0usize, data)];
        while let Some((iter, _, _)) = stack.last_mut() {
            let Some((name, &id)) = iter.next() else {
                let (_, len, data) = stack.pop().expect("non-empty");
                visit(Visit::Leave { path: &path, data })?;
                path.truncate(len);
                continue;
            };
            let Node::Dir { children, data, .. } = self.node(id) else {
                continue;
            };
            let len = path.len();
            if !path.is_empty() {
                path.push(b'/');
            }
            path.extend_from_slice(name);
            visit(Visit::Enter {
                depth: stack.len(),
                name,
                path: &path,
                data,
            })?;
            stack.push((children.iter(), len, data));
        }
        Ok(())
    }
}

impl<T> std::fmt::Debug for DirTree<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let live = self.nodes.len() - self.free.len();
        write!(f, "DirTree({live} nodes)")
    }
}

/// (device, inode) of `meta`.
pub fn ident_of(meta: &std::fs::Metadata) -> Ident {
    (meta.dev(), meta.ino())
}

/// Sets the mode (when given) and times of the directory at `path`, which must
/// still be the directory `ident` that was made: it is opened without
/// following a symlink, and nothing is changed through anything else.
pub fn set_dir_metadata(
    path: &Path,
    ident: Ident,
    mode: Option<u32>,
    times: &Timestamps,
) -> Result<()> {
    let fd = rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| replaced(path, &e.to_string()))?;
    let dir = File::from(fd);
    let meta = dir.metadata().map_err(|e| Error::io("inspect", path, e))?;
    if ident_of(&meta) != ident {
        return Err(replaced(path, "another directory is there now"));
    }
    if let Some(mode) = mode {
        if meta.mode() & 0o7777 != mode & 0o7777 {
            rustix::fs::fchmod(&dir, Mode::from_raw_mode(mode))
                .map_err(|e| Error::io("chmod", path, e.into()))?;
        }
    }
    rustix::fs::futimens(&dir, times).map_err(|e| Error::io("set times", path, e.into()))
}

/// The directory made at `path` is not there any more: something outside this
/// walk changed the tree, so nothing is changed through whatever is there now.
fn replaced(path: &Path, why: &str) -> Error {
    Error::io(
        "set the metadata of",
        path,
        std::io::Error::other(format!(
            "the directory made there was replaced while unpacking ({why})"
        )),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths(tree: &DirTree<u32>) -> Vec<(String, u32, bool)> {
        let mut out = Vec::new();
        tree.walk(|v| {
            match v {
                Visit::Enter { path, data, .. } => {
                    out.push((String::from_utf8_lossy(path).into_owned(), *data, true))
                }
                Visit::Leave { path, data } => {
                    out.push((String::from_utf8_lossy(path).into_owned(), *data, false))
                }
            }
            Ok(())
        })
        .unwrap();
        out
    }

    #[test]
    fn walk_enters_before_and_leaves_after_the_children() {
        let mut t = DirTree::new(0);
        let a = t.add_dir(ROOT, b"a", 1);
        t.add_dir(a, b"b", 2);
        t.add_symlink(a, b"l", b"/x");
        t.add_dir(ROOT, b"c", 3);
        let seen: Vec<_> = paths(&t)
            .into_iter()
            .map(|(p, d, enter)| format!("{}{p}:{d}", if enter { '>' } else { '<' }))
            .collect();
        assert_eq!(
            seen,
            [">:0", ">a:1", ">a/b:2", "<a/b:2", "<a:1", ">c:3", "<c:3", "<:0"]
        );
    }

    #[test]
    fn removing_a_directory_forgets_its_subtree_and_reuses_the_slots() {
        let mut t = DirTree::new(0);
        let a = t.add_dir(ROOT, b"a", 1);
        let b = t.add_dir(a, b"b", 2);
        t.add_dir(b, b"c", 3);
        t.remove(ROOT, b"a");
        assert_eq!(t.child(ROOT, b"a"), None);
        assert_eq!(paths(&t).len(), 2);
        // A symlink put where the directory was is a symlink, not the old directory.
        let l = t.add_symlink(ROOT, b"a", b"/etc");
        assert!(matches!(t.node(l), Node::Symlink(target) if &target[..] == b"/etc"));
        assert!(t.data(l).is_none());
        assert_eq!(t.nodes.len(), 4, "freed slots are reused");
    }

    #[test]
    fn set_dir_metadata_refuses_a_symlink_or_another_directory() {
        let dir = tempfile::tempdir().unwrap();
        let made = dir.path().join("made");
        std::fs::create_dir(&made).unwrap();
        let ident = ident_of(&std::fs::symlink_metadata(&made).unwrap());
        let times = Timestamps {
            last_access: rustix::fs::Timespec {
                tv_sec: 1,
                tv_nsec: 0,
            },
            last_modification: rustix::fs::Timespec {
                tv_sec: 2,
                tv_nsec: 0,
            },
        };
        set_dir_metadata(&made, ident, Some(0o750), &times).unwrap();
        let meta = std::fs::metadata(&made).unwrap();
        assert_eq!((meta.mode() & 0o7777, meta.mtime()), (0o750, 2));

        // Replaced by a symlink to a directory elsewhere: nothing is changed there.
        let elsewhere = dir.path().join("elsewhere");
        std::fs::create_dir(&elsewhere).unwrap();
        std::fs::remove_dir(&made).unwrap();
        std::os::unix::fs::symlink(&elsewhere, &made).unwrap();
        let before = std::fs::metadata(&elsewhere).unwrap();
        assert!(set_dir_metadata(&made, ident, Some(0o7777), &times).is_err());
        // Replaced by another directory (the old one moved away, so the inode
        // number is not simply reused): refused as well.
        std::fs::remove_file(&made).unwrap();
        std::fs::rename(&elsewhere, &made).unwrap();
        let elsewhere = made.clone();
        assert!(set_dir_metadata(&made, ident, Some(0o7777), &times).is_err());
        let after = std::fs::metadata(&elsewhere).unwrap();
        assert_eq!(before.mode(), after.mode());
    }
}
