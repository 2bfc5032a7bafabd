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

    /// Another handle on the staged file, for a writer on another thread; the
    /// guard keeps deciding whether the file is committed or removed.
    pub fn handle(&self) -> Result<File> {
        self.file
            .as_ref()
            .ok_or(Error::Closed("the file was already committed"))?
            .try_clone()
            .map_err(|e| Error::io("open", &self.tmp, e))
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;
    use std::os::unix::fs::{symlink, DirBuilderExt};

    fn names(dir: &Path) -> BTreeSet<String> {
        fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect()
    }

    fn mode_of(path: &Path) -> u32 {
        fs::symlink_metadata(path).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn sibling_is_a_unique_hidden_name_in_the_same_directory() {
        let pid = std::process::id();
        let a = sibling(Path::new("/store/blobs/sha256-abc")).unwrap();
        let b = sibling(Path::new("/store/blobs/sha256-abc")).unwrap();
        assert_ne!(a, b, "two stagings of one destination must not collide");
        for tmp in [&a, &b] {
            assert_eq!(tmp.parent(), Some(Path::new("/store/blobs")));
            let name = tmp.file_name().unwrap().to_str().unwrap();
            // Store recovery sweeps exactly this prefix after a crash.
            let prefix = format!(".tmp-sha256-abc-{pid}-");
            assert!(name.starts_with(&prefix), "{name}");
        }
        // A bare name is staged in the current directory, not at the root.
        let bare = sibling(Path::new("layer")).unwrap();
        assert_eq!(bare.parent(), Some(Path::new(".")));
        assert!(bare
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with(".tmp-layer-"));
        // No file name to stage next to: refused, not staged somewhere odd.
        for bad in ["/", "a/..", ""] {
            assert!(
                matches!(sibling(Path::new(bad)), Err(Error::InvalidArgument(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn staged_file_appears_only_on_commit() {
        let tmp = tempfile::tempdir().unwrap();
        let dest = tmp.path().join("blob");
        let mut staged = StagedFile::create(&dest).unwrap();
        assert_eq!(staged.dir(), tmp.path());
        staged.write_all(b"hello ").unwrap();
        staged.write_all(b"world").unwrap();
        assert!(
            !dest.exists(),
            "the destination must not exist before commit"
        );
        let staging: Vec<_> = names(tmp.path()).into_iter().collect();
        assert_eq!(staging.len(), 1);
        assert!(staging[0].starts_with(".tmp-blob-"), "{staging:?}");
        staged.commit(false).unwrap();
        assert_eq!(fs::read(&dest).unwrap(), b"hello world");
        assert_eq!(mode_of(&dest) & 0o777, 0o644 & !current_umask());
        assert_eq!(names(tmp.path()), BTreeSet::from(["blob".to_string()]));
    }

    fn current_umask() -> u32 {
        // Read back what a 0777 mkdir gets; cannot change the process umask in a
        // multi-threaded test run.
        let tmp = tempfile::tempdir().unwrap();
        let probe = tmp.path().join("probe");
        fs::DirBuilder::new().mode(0o777).create(&probe).unwrap();
        !mode_of(&probe) & 0o777
    }

    #[test]
    fn staged_file_commit_replaces_an_existing_destination_durably() {
        let tmp = tempfile::tempdir().unwrap();
        let dest = tmp.path().join("blob");
        fs::write(&dest, b"old content, longer than the new one").unwrap();
        let mut staged = StagedFile::create(&dest).unwrap();
        staged.write_all(b"new").unwrap();
        assert_eq!(
            fs::read(&dest).unwrap(),
            b"old content, longer than the new one"
        );
        staged.commit(true).unwrap();
        assert_eq!(fs::read(&dest).unwrap(), b"new");
        assert_eq!(names(tmp.path()), BTreeSet::from(["blob".to_string()]));
    }

    #[test]
    fn staged_file_dropped_uncommitted_leaves_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let dest = tmp.path().join("blob");
        let mut staged = StagedFile::create(&dest).unwrap();
        staged.write_all(&[7; 10_000]).unwrap();
        assert_eq!(names(tmp.path()).len(), 1);
        drop(staged);
        assert!(names(tmp.path()).is_empty());
        assert!(!dest.exists());
    }

    #[test]
    fn staged_file_in_a_missing_directory_is_an_io_error() {
        let tmp = tempfile::tempdir().unwrap();
        let err = StagedFile::create(&tmp.path().join("missing/blob"))
            .err()
            .expect("no parent directory");
        assert!(matches!(err, Error::Io { op: "create", .. }), "{err}");
        assert_eq!(err.slug(), "io");
    }

    #[test]
    fn staged_file_early_write_back_goes_through_the_syncer() {
        let tmp = tempfile::tempdir().unwrap();
        let dest = tmp.path().join("blob");
        let syncer = crate::syncer::Syncer::start(tmp.path()).unwrap();
        let mut staged = StagedFile::create(&dest).unwrap();
        staged.write_back_early(syncer.queue());
        let chunk = vec![0x5a; 1 << 20];
        // Past WRITEBACK_EVERY, so at least one file is handed to the syncer.
        for _ in 0..(WRITEBACK_EVERY >> 20) + 1 {
            staged.write_all(&chunk).unwrap();
        }
        staged.stop_write_back();
        syncer.wait(&dest).unwrap();
        staged.commit(true).unwrap();
        assert_eq!(
            fs::metadata(&dest).unwrap().len(),
            WRITEBACK_EVERY + (1 << 20)
        );
    }

    #[test]
    fn staged_dir_appears_only_on_commit() {
        let tmp = tempfile::tempdir().unwrap();
        let dest = tmp.path().join("layer");
        let staged = StagedDir::create(&dest).unwrap();
        assert_eq!(staged.path().parent(), Some(tmp.path()));
        fs::create_dir(staged.path().join("etc")).unwrap();
        fs::write(staged.path().join("etc/hostname"), b"ours").unwrap();
        assert!(!dest.exists());
        assert!(!staged.commit(false).unwrap(), "nothing was there before");
        assert_eq!(fs::read(dest.join("etc/hostname")).unwrap(), b"ours");
        assert_eq!(names(tmp.path()), BTreeSet::from(["layer".to_string()]));
    }

    #[test]
    fn staged_dir_commit_durable() {
        let tmp = tempfile::tempdir().unwrap();
        let dest = tmp.path().join("layer");
        let staged = StagedDir::create(&dest).unwrap();
        fs::write(staged.path().join("f"), b"x").unwrap();
        assert!(!staged.commit(true).unwrap());
        assert_eq!(fs::read(dest.join("f")).unwrap(), b"x");
        assert_eq!(names(tmp.path()), BTreeSet::from(["layer".to_string()]));
    }

    #[test]
    fn staged_dir_onto_an_existing_tree_keeps_theirs_and_removes_ours() {
        for durable in [false, true] {
            let tmp = tempfile::tempdir().unwrap();
            let dest = tmp.path().join("layer");
            fs::create_dir(&dest).unwrap();
            fs::write(dest.join("theirs"), b"first writer").unwrap();
            let staged = StagedDir::create(&dest).unwrap();
            fs::write(staged.path().join("ours"), b"second writer").unwrap();
            // A read-only directory in ours must not keep the staging alive.
            fs::create_dir(staged.path().join("ro")).unwrap();
            fs::set_permissions(staged.path().join("ro"), fs::Permissions::from_mode(0o555))
                .unwrap();
            assert!(staged.commit(durable).unwrap(), "dest existed");
            assert_eq!(names(&dest), BTreeSet::from(["theirs".to_string()]));
            assert_eq!(fs::read(dest.join("theirs")).unwrap(), b"first writer");
            assert_eq!(names(tmp.path()), BTreeSet::from(["layer".to_string()]));
        }
    }

    #[test]
    fn staged_dir_onto_a_file_is_an_error_and_cleans_up() {
        let tmp = tempfile::tempdir().unwrap();
        let dest = tmp.path().join("layer");
        fs::write(&dest, b"a file, not a tree").unwrap();
        let staged = StagedDir::create(&dest).unwrap();
        fs::write(staged.path().join("f"), b"x").unwrap();
        let err = staged.commit(false).unwrap_err();
        assert!(
            matches!(
                err,
                Error::Io {
                    op: "rename into place",
                    ..
                }
            ),
            "{err}"
        );
        assert_eq!(fs::read(&dest).unwrap(), b"a file, not a tree");
        assert_eq!(names(tmp.path()), BTreeSet::from(["layer".to_string()]));
    }

    #[test]
    fn staged_dir_dropped_uncommitted_removes_its_whole_tree() {
        let tmp = tempfile::tempdir().unwrap();
        let dest = tmp.path().join("layer");
        let staged = StagedDir::create(&dest).unwrap();
        let locked = staged.path().join("usr/locked");
        fs::create_dir_all(&locked).unwrap();
        fs::write(locked.join("f"), b"x").unwrap();
        fs::set_permissions(&locked, fs::Permissions::from_mode(0o000)).unwrap();
        fs::set_permissions(staged.path().join("usr"), fs::Permissions::from_mode(0o555)).unwrap();
        drop(staged);
        assert!(names(tmp.path()).is_empty());
        assert!(!dest.exists());
    }

    /// As root nothing is denied, so `make_writable` never runs: the test then
    /// runs again in a child process as `nobody` to cover the permission path.
    #[test]
    fn remove_tree_removes_read_only_and_unreadable_dirs_but_not_through_symlinks() {
        remove_locked_tree();
        if rustix::process::geteuid().is_root() {
            use std::os::unix::process::CommandExt;
            // A copy nobody can run, wherever the target directory is.
            let bin_dir = tempfile::tempdir().unwrap();
            fs::set_permissions(bin_dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
            let bin = bin_dir.path().join("unit-tests");
            fs::copy(std::env::current_exe().unwrap(), &bin).unwrap();
            let name = "atomic::tests::\
                        remove_tree_removes_read_only_and_unreadable_dirs_but_not_through_symlinks";
            let out = std::process::Command::new(&bin)
                .args([name, "--exact", "--test-threads=1"])
                .env("TMPDIR", "/tmp")
                .uid(65534)
                .gid(65534)
                .output()
                .expect("run the test binary as nobody");
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success() && stdout.contains("1 passed"),
                "as nobody: {}\n{stdout}\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }

    fn remove_locked_tree() {
        let tmp = tempfile::tempdir().unwrap();
        // Outside the tree, reachable only through a symlink inside it.
        let outside = tmp.path().join("outside");
        fs::create_dir(&outside).unwrap();
        fs::write(outside.join("keep"), b"host file").unwrap();
        fs::set_permissions(&outside, fs::Permissions::from_mode(0o555)).unwrap();

        let root = tmp.path().join("tree");
        fs::create_dir_all(root.join("a/b/c")).unwrap();
        fs::write(root.join("a/b/c/file"), b"x").unwrap();
        fs::write(root.join("a/file"), b"y").unwrap();
        fs::create_dir_all(root.join("z")).unwrap();
        fs::write(root.join("z/file"), b"z").unwrap();
        symlink(&outside, root.join("a/link")).unwrap();
        fs::set_permissions(root.join("a/b/c"), fs::Permissions::from_mode(0o000)).unwrap();
        fs::set_permissions(root.join("a/b"), fs::Permissions::from_mode(0o000)).unwrap();
        fs::set_permissions(root.join("a"), fs::Permissions::from_mode(0o555)).unwrap();
        fs::set_permissions(root.join("z"), fs::Permissions::from_mode(0o500)).unwrap();
        fs::set_permissions(&root, fs::Permissions::from_mode(0o555)).unwrap();

        remove_tree(&root).unwrap();
        assert!(!root.exists());
        assert_eq!(mode_of(&outside), 0o555, "chmod followed a symlink");
        assert_eq!(fs::read(outside.join("keep")).unwrap(), b"host file");
        fs::set_permissions(&outside, fs::Permissions::from_mode(0o755)).unwrap();

        let err = remove_tree(&root).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
    }
}
