//! The bookkeeping file in which an unpacked layer records the directories it
//! did not declare (parents made only because members needed them). Merging
//! keeps a lower layer's metadata for those, as an extractor applying layers in
//! place (umoci, podman's vfs) does.
//!
//! It lives at the layer root under a `.wh..wh.` name, which layer consumers
//! skip, and the untar refuses that name in a layer: only towline writes it.
//! It is still read as hostile (a layer unpacked by an older version may hold
//! anything there): opened without following a symlink or blocking on a FIFO,
//! a regular file only, size-capped, parsed with every length checked.
//!
//! Format: a magic line, then the directories in depth-first order, each as
//! `depth: u16 LE, implied: u8, name length: u8, name`, where depth 1 is a child
//! of the root and each record's parent is the last record one level up. Only
//! implied directories and their ancestors are listed, each name once, so the
//! file is never larger than the names of the tree it describes.

use std::ffi::OsStr;
use std::fs::File;
use std::io::{BufReader, BufWriter, ErrorKind, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use rustix::fs::{Mode, OFlags};

use crate::dirtree::{DirTree, NodeId, Visit, ROOT};
use crate::error::{Error, Result};

/// The file's name at the layer root.
pub const NAME: &[u8] = b".wh..wh..towline-implied";

const MAGIC: &[u8] = b"towline implied dirs 2\n";

/// Largest file read back: far more than any real layer needs.
const MAX_SIZE: u64 = 256 << 20;

/// Writes the list for `tree` (whose nodes say whether they are implied) to
/// `path`, unless no directory is implied.
pub fn write<T>(path: &Path, tree: &DirTree<T>, implied: impl Fn(&T) -> bool) -> Result<()> {
    let mut out: Option<BufWriter<File>> = None;
    // The current directory's ancestors: name, implied, already written.
    let mut stack: Vec<(Vec<u8>, bool, bool)> = Vec::new();
    tree.walk(|visit| {
        let Visit::Enter {
            depth, name, data, ..
        } = visit
        else {
            return Ok(());
        };
        if depth == 0 {
            return Ok(());
        }
        stack.truncate(depth - 1);
        stack.push((name.to_vec(), implied(data), false));
        if !implied(data) {
            return Ok(());
        }
        if out.is_none() {
            let file = File::create(path).map_err(|e| Error::io("create", path, e))?;
            let mut writer = BufWriter::new(file);
            writer
                .write_all(MAGIC)
                .map_err(|e| Error::io("write", path, e))?;
            out = Some(writer);
        }
        let writer = out.as_mut().expect("created above");
        for (i, (name, flag, written)) in stack.iter_mut().enumerate() {
            if *written {
                continue;
            }
            let depth = u16::try_from(i + 1).map_err(|_| deep(path))?;
            let len = u8::try_from(name.len()).map_err(|_| deep(path))?;
            let head = [
                depth.to_le_bytes()[0],
                depth.to_le_bytes()[1],
                *flag as u8,
                len,
            ];
            writer
                .write_all(&head)
                .and_then(|()| writer.write_all(name))
                .map_err(|e| Error::io("write", path, e))?;
            *written = true;
        }
        Ok(())
    })?;
    if let Some(writer) = out {
        writer
            .into_inner()
            .map_err(|e| Error::io("write", path, e.into_error()))?;
    }
    Ok(())
}

fn deep(path: &Path) -> Error {
    Error::io(
        "write",
        path,
        std::io::Error::other("a directory is nested too deep or named too long to record"),
    )
}

/// Reads the list at the root of `layer`: a tree whose nodes say whether the
/// directory is implied. No file means nothing is implied.
pub fn read(layer: &Path) -> Result<DirTree<bool>> {
    let path = layer.join(OsStr::from_bytes(NAME));
    let mut tree = DirTree::new(false);
    let fd = match rustix::fs::open(
        &path,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(tree),
        Err(e) => return Err(corrupt(&path, &format!("cannot open it: {e}"))),
    };
    let file = File::from(fd);
    let meta = file
        .metadata()
        .map_err(|e| Error::io("inspect", &path, e))?;
    if !meta.is_file() {
        return Err(corrupt(&path, "it is not a regular file"));
    }
    if meta.len() > MAX_SIZE {
        return Err(corrupt(
            &path,
            &format!("{} bytes, more than the {MAX_SIZE} allowed", meta.len()),
        ));
    }
    let mut input = BufReader::new(file.take(MAX_SIZE));
    let mut magic = vec![0u8; MAGIC.len()];
    input
        .read_exact(&mut magic)
        .map_err(|_| corrupt(&path, "it is truncated"))?;
    if magic != MAGIC {
        return Err(corrupt(&path, "unknown format"));
    }
    let mut stack: Vec<NodeId> = Vec::new();
    let mut head = [0u8; 4];
    loop {
        match input.read_exact(&mut head) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(Error::io("read", &path, e)),
        }
        let depth = usize::from(u16::from_le_bytes([head[0], head[1]]));
        if depth == 0 || depth > stack.len() + 1 || head[2] > 1 || head[3] == 0 {
            return Err(corrupt(&path, "a record is malformed"));
        }
        let mut name = vec![0u8; usize::from(head[3])];
        input
            .read_exact(&mut name)
            .map_err(|_| corrupt(&path, "it is truncated"))?;
        if name.contains(&b'/') || name == b"." || name == b".." {
            return Err(corrupt(&path, "a record names no directory"));
        }
        stack.truncate(depth - 1);
        let parent = stack.last().copied().unwrap_or(ROOT);
        let node = match tree.child(parent, &name) {
            Some(node) => node,
            None => tree.add_dir(parent, &name, false),
        };
        if head[2] == 1 {
            if let Some(flag) = tree.data_mut(node) {
                *flag = true;
            }
        }
        stack.push(node);
    }
    Ok(tree)
}

fn corrupt(path: &Path, why: &str) -> Error {
    Error::io(
        "read",
        path,
        std::io::Error::other(format!(
            "towline's list of implied directories is unusable ({why}); remove the image \
             using this layer and pull it again"
        )),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn implied_paths(tree: &DirTree<bool>) -> Vec<String> {
        let mut out = Vec::new();
        tree.walk(|v| {
            if let Visit::Enter {
                path, data: true, ..
            } = v
            {
                out.push(String::from_utf8_lossy(path).into_owned());
            }
            Ok(())
        })
        .unwrap();
        out
    }

    #[test]
    fn round_trip_keeps_only_implied_dirs_and_their_ancestors() {
        let dir = tempfile::tempdir().unwrap();
        let mut tree = DirTree::new(false);
        let a = tree.add_dir(ROOT, b"a", false);
        let b = tree.add_dir(a, b"b", true);
        tree.add_dir(b, b"c", true);
        tree.add_dir(a, b"declared", false);
        let z = tree.add_dir(ROOT, b"z", false);
        tree.add_dir(z, b"nested", false);
        write(&dir.path().join("implied"), &tree, |&f| f).unwrap();
        std::fs::rename(
            dir.path().join("implied"),
            dir.path().join(OsStr::from_bytes(NAME)),
        )
        .unwrap();
        let back = read(dir.path()).unwrap();
        assert_eq!(implied_paths(&back), ["a/b", "a/b/c"]);
        assert!(
            back.child(ROOT, b"z").is_none(),
            "branches without implied dirs stay out"
        );
    }

    #[test]
    fn nothing_implied_writes_nothing_and_reads_empty() {
        let dir = tempfile::tempdir().unwrap();
        let mut tree = DirTree::new(false);
        tree.add_dir(ROOT, b"a", false);
        let path = dir.path().join(OsStr::from_bytes(NAME));
        write(&path, &tree, |&f| f).unwrap();
        assert!(!path.exists());
        assert!(implied_paths(&read(dir.path()).unwrap()).is_empty());
    }

    #[test]
    fn a_symlink_fifo_or_garbage_in_its_place_is_refused_without_reading_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(OsStr::from_bytes(NAME));
        std::os::unix::fs::symlink("/dev/zero", &path).unwrap();
        assert!(read(dir.path()).is_err());
        std::fs::remove_file(&path).unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &path,
            rustix::fs::FileType::Fifo,
            Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        let err = read(dir.path()).unwrap_err();
        assert!(err.to_string().contains("not a regular file"), "{err}");
        std::fs::remove_file(&path).unwrap();
        let mut bad = MAGIC.to_vec();
        bad.extend_from_slice(&[2, 0, 1, 1, b'x']); // depth 2 with no depth-1 parent
        std::fs::write(&path, bad).unwrap();
        assert!(read(dir.path()).is_err());
    }
}
