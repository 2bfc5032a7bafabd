//! The worker process: chroots (as root) into the case's own root, lays out
//! the sandbox, unpacks every layer twice and applies them twice, and after
//! each step checks the snapshot, the disk bound and determinism; writes its
//! progress and verdict to the case's `result` file for the parent to read.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, DirBuilderExt, FileExt};
use std::path::{Path, PathBuf};
use std::time::Instant;

use towline_native::apply::{apply_layers, ApplyOptions};
use towline_native::limits::Limits;
use towline_native::untar::{self, UnpackOptions};

use crate::snapshot::{
    changes_outside, key, largest, show, snapshot, subtree, tree_differences, Snapshot,
};
use crate::{Budget, PADDING};

struct Progress {
    file: File,
    status: File,
    started: Instant,
    phase_started: Instant,
}

impl Progress {
    fn phase(&mut self, what: &str) {
        let ms = self.started.elapsed().as_millis();
        let _ = writeln!(self.file, "phase: {what} (from {ms} ms)");
        self.phase_started = Instant::now();
    }

    fn outcome(&mut self, r: &Result<(), String>) {
        let ms = self.phase_started.elapsed().as_millis();
        let shown = match r {
            Ok(()) => "Ok".to_string(),
            Err(e) if e.len() > 300 => {
                let b = e.as_bytes();
                format!(
                    "Err({}…{})",
                    String::from_utf8_lossy(&b[..150]),
                    String::from_utf8_lossy(&b[b.len() - 150..])
                )
            }
            Err(e) => format!("Err({e})"),
        };
        let _ = writeln!(self.file, "    -> {shown} in {ms} ms");
    }

    /// (VmHWM, VmSize) in KiB.
    fn memory(&self) -> (u64, u64) {
        let mut buf = vec![0u8; 4096];
        let n = self.status.read_at(&mut buf, 0).unwrap_or(0);
        let text = String::from_utf8_lossy(&buf[..n]);
        let field = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
                .unwrap_or(0)
        };
        (field("VmHWM:"), field("VmSize:"))
    }
}

pub(crate) fn main(dir: &Path) {
    let mut progress = Progress {
        file: OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("result"))
            .expect("open the result file"),
        status: File::open("/proc/self/status").expect("open /proc/self/status"),
        started: Instant::now(),
        phase_started: Instant::now(),
    };
    match run(dir, &mut progress) {
        Ok(()) => {
            let (peak, _) = progress.memory();
            let start = START_HWM.load(std::sync::atomic::Ordering::Relaxed);
            let _ = writeln!(progress.file, "ok {start} {peak}");
        }
        Err(msg) => {
            let _ = write!(progress.file, "\nFAIL\n{msg}");
        }
    }
}

static START_HWM: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// A thread's verdict: the engine's result, or its panic message.
fn joined<T>(r: std::thread::Result<T>, phase: &str) -> Result<T, String> {
    r.map_err(|p| {
        let msg = p
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "(no message)".into());
        format!("panic in {phase}: {msg}")
    })
}

fn run(dir: &Path, progress: &mut Progress) -> Result<(), String> {
    // === inputs, read before the chroot
    let mut tars = Vec::new();
    for i in 0.. {
        let Ok(tar) = fs::read(dir.join("in").join(format!("{i}.tar"))) else {
            break;
        };
        let chunk: usize = fs::read_to_string(dir.join("in").join(format!("{i}.chunk")))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(65536);
        tars.push((tar, chunk));
    }
    let chroot = fs::read_to_string(dir.join("mode")).map_err(|e| e.to_string())? == "chroot";

    // === bounds: a runaway allocation fails instead of taking the machine
    let (hwm, vmsize) = progress.memory();
    START_HWM.store(hwm, std::sync::atomic::Ordering::Relaxed);
    let cap = (vmsize + (1 << 20)) << 10;
    let old = rustix::process::getrlimit(rustix::process::Resource::As);
    rustix::process::setrlimit(
        rustix::process::Resource::As,
        rustix::process::Rlimit {
            current: Some(old.maximum.map_or(cap, |m| m.min(cap))),
            maximum: old.maximum,
        },
    )
    .map_err(|e| format!("setrlimit: {e}"))?;

    // === the root: a chroot of its own when root, else a padded directory
    let root: PathBuf = if chroot {
        rustix::process::chroot(dir.join("root")).map_err(|e| format!("chroot: {e}"))?;
        std::env::set_current_dir("/").map_err(|e| format!("chdir: {e}"))?;
        PathBuf::from("/")
    } else {
        dir.join("root")
    };
    let mut sandbox = PathBuf::from("s");
    if !chroot {
        sandbox = (0..PADDING)
            .map(|i| format!("p{i}"))
            .collect::<PathBuf>()
            .join("s");
    }
    let abs = |rel: &Path| root.join(rel);
    layout(&root, &sandbox, chroot, tars.len()).map_err(|e| format!("layout: {e}"))?;

    let disk_limit = Budget::from_env().disk_mib << 20;
    let mut snap = snapshot(&root);
    let check = |snap: &mut Snapshot, allowed: &Path, phase: &str| -> Result<(), String> {
        let after = snapshot(&root);
        let mut inodes = std::collections::HashSet::new();
        let allocated: u64 = after
            .values()
            .filter(|n| inodes.insert(n.ino))
            .map(|n| n.allocated)
            .sum();
        if allocated > disk_limit {
            return Err(format!(
                "disk bound exceeded: after {phase}, the root holds {} MiB (limit {} MiB); \
                 largest files:\n  {}",
                allocated >> 20,
                disk_limit >> 20,
                largest(&after)
            ));
        }
        let allowed = allowed.as_os_str().as_bytes();
        let changes = changes_outside(snap, &after, allowed);
        if !changes.is_empty() {
            let shown: Vec<&String> = changes.iter().take(25).collect();
            return Err(format!(
                "ESCAPE: {phase} changed {} path(s) outside its target {}:\n  {}",
                changes.len(),
                show(allowed),
                shown
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join("\n  ")
            ));
        }
        *snap = after;
        Ok(())
    };

    // === unpack each layer twice
    let mut outcomes: Vec<[Result<(), String>; 2]> = Vec::new();
    for (i, (tar, chunk)) in tars.iter().enumerate() {
        let mut pair: Vec<Result<(), String>> = Vec::new();
        for copy in ["layer", "again"] {
            let rel = sandbox.join(format!("{copy}{i}"));
            let phase = format!("unpack layer {i} into /{}", rel.display());
            progress.phase(&phase);
            let (tar, target, chunk) = (tar.clone(), abs(&rel), *chunk);
            let r = joined(
                std::thread::Builder::new()
                    .name("towline-layer".into())
                    .spawn(move || {
                        let input =
                            std::io::BufReader::with_capacity(chunk, std::io::Cursor::new(tar));
                        untar::unpack(
                            input,
                            &target,
                            &UnpackOptions::default(),
                            &Limits::default(),
                            "tar",
                        )
                        .map(|_| ())
                        .map_err(|e| e.to_string())
                    })
                    .expect("spawn")
                    .join(),
                &phase,
            )?;
            progress.outcome(&r);
            check(&mut snap, &rel, &phase)?;
            pair.push(r);
        }
        let again = pair.pop().unwrap_or(Ok(()));
        let first = pair.pop().unwrap_or(Ok(()));
        if first.is_ok() != again.is_ok() {
            return Err(format!(
                "NONDETERMINISM: unpacking layer {i} twice gave {first:?}, then {again:?}"
            ));
        }
        // A refused layer leaves a partial tree that the sinks discard.
        let (a, b) = (
            subtree(&snap, key(&sandbox.join(format!("layer{i}")))),
            subtree(&snap, key(&sandbox.join(format!("again{i}")))),
        );
        let diff = if first.is_ok() {
            tree_differences(&a, &b)
        } else {
            Vec::new()
        };
        if !diff.is_empty() {
            return Err(format!(
                "NONDETERMINISM: layer {i} unpacked twice gave different trees:\n  {}",
                diff.into_iter().take(20).collect::<Vec<_>>().join("\n  ")
            ));
        }
        outcomes.push([first, again]);
    }

    // === apply the unpacked layers, twice
    let root_is_root = rustix::process::geteuid().is_root();
    let mut applied = Vec::new();
    for (copy, dest) in [("layer", "dest"), ("again", "dest2")] {
        let layers: Vec<PathBuf> = outcomes
            .iter()
            .enumerate()
            .filter(|(_, o)| o[0].is_ok())
            .map(|(i, _)| abs(&sandbox.join(format!("{copy}{i}"))))
            .collect();
        let rel = sandbox.join(dest);
        let phase = format!("apply {} layer(s) into /{}", layers.len(), rel.display());
        progress.phase(&phase);
        let target = abs(&rel);
        let r = joined(
            std::thread::Builder::new()
                .name("apply".into())
                .stack_size(8 << 20)
                .spawn(move || {
                    let opts = ApplyOptions {
                        same_owner: root_is_root,
                        devices: root_is_root,
                    };
                    apply_layers(&layers, &target, &opts)
                        .map(|_| ())
                        .map_err(|e| e.to_string())
                })
                .expect("spawn")
                .join(),
            &phase,
        )?;
        progress.outcome(&r);
        check(&mut snap, &rel, &phase)?;
        applied.push(r);
    }
    if applied[0].is_ok() != applied[1].is_ok() {
        return Err(format!(
            "NONDETERMINISM: applying twice gave {:?}, then {:?}",
            applied[0], applied[1]
        ));
    }
    let diff = if applied[0].is_ok() {
        tree_differences(
            &subtree(&snap, key(&sandbox.join("dest"))),
            &subtree(&snap, key(&sandbox.join("dest2"))),
        )
    } else {
        Vec::new()
    };
    if !diff.is_empty() {
        return Err(format!(
            "NONDETERMINISM: applying twice gave different trees:\n  {}",
            diff.into_iter().take(20).collect::<Vec<_>>().join("\n  ")
        ));
    }
    progress.phase("done");
    Ok(())
}

/// The sandbox: `outside/` (what must not change), a fresh directory per
/// unpacked layer and the two destinations; `/dev/zero` in a chroot.
fn layout(root: &Path, sandbox: &Path, chroot: bool, layers: usize) -> std::io::Result<()> {
    let s = root.join(sandbox);
    fs::create_dir_all(&s)?;
    if chroot {
        fs::create_dir(root.join("dev"))?;
        // Without CAP_MKNOD the target simply does not exist.
        let _ = rustix::fs::mknodat(
            rustix::fs::CWD,
            root.join("dev/zero"),
            rustix::fs::FileType::CharacterDevice,
            rustix::fs::Mode::from_raw_mode(0o666),
            rustix::fs::makedev(1, 5),
        );
    }
    let o = s.join("outside");
    fs::create_dir(&o)?;
    let file = |name: &str, mode: u32, data: &[u8]| -> std::io::Result<()> {
        let p = o.join(name);
        fs::write(&p, data)?;
        fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(mode))
    };
    file("secret", 0o600, b"top secret\n")?;
    file("ro", 0o444, b"read only\n")?;
    file("suid", 0o4755, b"#!/bin/false\n")?;
    fs::DirBuilder::new().mode(0o700).create(o.join("dir"))?;
    fs::write(o.join("dir/inner"), b"inner\n")?;
    symlink("secret", o.join("link"))?;
    symlink("dir", o.join("dirlink"))?;
    if rustix::process::geteuid().is_root() {
        let id = Some(rustix::process::Uid::from_raw(1234));
        rustix::fs::chownat(
            rustix::fs::CWD,
            o.join("secret"),
            id,
            Some(rustix::process::Gid::from_raw(1234)),
            rustix::fs::AtFlags::empty(),
        )?;
    }
    for i in 0..layers {
        fs::create_dir(s.join(format!("layer{i}")))?;
        fs::create_dir(s.join(format!("again{i}")))?;
    }
    fs::create_dir(s.join("dest"))?;
    fs::create_dir(s.join("dest2"))?;
    Ok(())
}
