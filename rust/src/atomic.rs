//! Staging next to the destination, then fsync and rename into place, so a
//! destination path only ever holds complete, verified content. Whatever is
//! not committed is removed when the guard drops.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::error::{Error, Result};
use crate::syncer::SyncQueue;

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// `<dir>/.tmp-<name>-<pid>-<n>`: unique per process and call; the `.tmp-`
/// prefix is what store recovery sweeps after a crash.
fn sibling(dest: &Path) -> Result<PathBuf> {
    let parent = dest
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = dest
        .file_name()
        .ok_or_else(|| Error::InvalidArgument(format!("{} has no file name", dest.display())))?;
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut tmp_name = std::ffi::OsString::from(".tmp-");
    tmp_name.push(name);
    tmp_name.push(format!("-{}-{n}-{nanos:x}", std::process::id()));
    Ok(parent.join(tmp_name))
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io("fsync directory", dir, e))
}

fn parent_of(path: &Path) -> &Path {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// Bytes between two early-writeback requests for a staged file.
const WRITEBACK_EVERY: u64 = 16 << 20;

/// A file written under a temporary name and renamed over `dest` on commit.
pub struct StagedFile {
    tmp: PathBuf,
    dest: PathBuf,
    file: Option<File>,
    sync: Option<SyncQueue>,
    unsynced: u64,
}

impl StagedFile {
    pub fn create(dest: &Path) -> Result<Self> {
        let tmp = sibling(dest)?;
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&tmp)
            .map_err(|e| Error::io("create", &tmp, e))?;
        Ok(StagedFile {
            tmp,
            dest: dest.to_path_buf(),
            file: Some(file),
            sync: None,
            unsynced: 0,
        })
    }

    /// The directory the file is staged in (and will be renamed within).
    pub fn dir(&self) -> &Path {
        parent_of(&self.dest)
    }

    /// Writes back what was written so far every few MiB, in the background.
    pub fn write_back_early(&mut self, queue: SyncQueue) {
        self.sync = Some(queue);
    }

    /// Stops early writeback (the syncer is about to be waited for).
    pub fn stop_write_back(&mut self) {
        self.sync = None;
    }

    pub fn write_all(&mut self, data: &[u8]) -> Result<()> {
        let Some(f) = &mut self.file else {
            return Err(Error::Closed("the blob file was already committed"));
        };
        f.write_all(data)
            .map_err(|e| Error::io("write", &self.tmp, e))?;
        self.unsynced += data.len() as u64;
        if let Some(queue) = &self.sync {
            if self.unsynced >= WRITEBACK_EVERY {
                if let Ok(clone) = f.try_clone() {
                    queue.submit(clone);
                }
                self.unsynced = 0;
            }
        }
        Ok(())
    }

    pub fn commit(mut self, durable: bool) -> Result<()> {
        if let Some(file) = self.file.take() {
            if durable {
                file.sync_all()
                    .map_err(|e| Error::io("fsync", &self.tmp, e))?;
            }
        }
        fs::rename(&self.tmp, &self.dest)
            .map_err(|e| Error::io("rename into place", &self.dest, e))?;
        self.tmp = PathBuf::new();
        if durable {
            sync_dir(parent_of(&self.dest))?;
        }
        Ok(())
    }
}

impl Drop for StagedFile {
    fn drop(&mut self) {
        if !self.tmp.as_os_str().is_empty() {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

/// A directory tree built under a temporary name and renamed to `dest`.
pub struct StagedDir {
    tmp: PathBuf,
    dest: PathBuf,
}

impl StagedDir {
    pub fn create(dest: &Path) -> Result<Self> {
        let tmp = sibling(dest)?;
        fs::create_dir(&tmp).map_err(|e| Error::io("create directory", &tmp, e))?;
        Ok(StagedDir {
            tmp,
            dest: dest.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.tmp
    }

    /// Renames the tree into place. Returns true when `dest` already existed:
    /// it was produced by another verified writer of the same content, so ours
    /// is discarded and theirs kept.
    pub fn commit(mut self, durable: bool) -> Result<bool> {
        if durable {
            sync_filesystem(&self.tmp)?;
        }
        let existed = match fs::rename(&self.tmp, &self.dest) {
            Ok(()) => {
                self.tmp = PathBuf::new();
                false
            }
            Err(e) if is_dest_exists(&e) && self.dest.is_dir() => true,
            Err(e) => return Err(Error::io("rename into place", &self.dest, e)),
        };
        if durable {
            sync_dir(parent_of(&self.dest))?;
        }
        Ok(existed)
    }
}

fn is_dest_exists(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(code) if code == rustix::io::Errno::NOTEMPTY.raw_os_error()
            || code == rustix::io::Errno::EXIST.raw_os_error()
    )
}

/// One `syncfs(2)` flushes every file of the tree (and anything else dirty on
/// that filesystem): far cheaper than an fsync per file for 20k small files.
fn sync_filesystem(path: &Path) -> Result<()> {
    let dir = File::open(path).map_err(|e| Error::io("open", path, e))?;
    rustix::fs::syncfs(&dir).map_err(|e| Error::io("syncfs", path, e.into()))
}

impl Drop for StagedDir {
    fn drop(&mut self) {
        if !self.tmp.as_os_str().is_empty() {
            let _ = remove_tree(&self.tmp);
        }
    }
}

/// `remove_dir_all` that also copes with directories whose final mode denies
/// writing (a layer may ship 0555 directories), as non-root.
pub fn remove_tree(path: &Path) -> io::Result<()> {
    match fs::remove_dir_all(path) {
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
            make_writable(path);
            fs::remove_dir_all(path)
        }
        other => other,
    }
}

fn make_writable(dir: &Path) {
    if let Ok(meta) = fs::symlink_metadata(dir) {
        if meta.is_dir() {
            let mode = meta.permissions().mode() | 0o700;
            let _ = fs::set_permissions(dir, fs::Permissions::from_mode(mode));
            if let Ok(entries) = fs::read_dir(dir) {
                for entry in entries.flatten() {
                    make_writable(&entry.path());
                }
            }
        }
    }
}
