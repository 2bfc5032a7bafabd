//! Fuzz target for the untar + apply engine (issue 7, "Keep it fixed").
//!
//! proptest generates one to four layers of hostile tar members (files, sparse
//! files in every encoding, directories, symlinks, hardlinks, FIFOs, devices
//! and whiteouts, over a small alphabet of names so that they collide), written
//! as raw headers so that names with `..`, `/` and `.wh.` survive; now and then
//! a layer ends with a bulk pattern (symlink chains, directory/file flips, wide
//! trees) that costs a naive engine more than linear time.
//!
//! Each case runs in a worker process (this test binary again, with
//! `TOWLINE_FUZZ_WORKER` set) that, as root, first chroots into a directory of
//! its own: a symlink to "/" or "../../.." then cannot reach the host, and all
//! that an escape could touch is in the snapshot. The worker lays out a sandbox
//! holding `outside/` (files 0600/0444/04755, a 0700 directory, symlinks),
//! unpacks every layer into a fresh directory (twice: unpacking must be
//! deterministic), applies the unpacked layers into `dest` (twice: so must
//! merging), and after every step compares a snapshot of the whole root (type,
//! mode, owner, size, content, link target, mtime, ctime, nlink, inode) with
//! the one before: only the step's own target may change.
//!
//! Errors from the engine are fine (hostile input may be refused). A case fails
//! on a panic, a change outside the step's target, different trees from the
//! same input, or a bound: time (the parent kills a worker over
//! TOWLINE_FUZZ_TIMEOUT_MS, 2000; a case over it runs once more before it
//! counts), memory (peak RSS growth over TOWLINE_FUZZ_MEM_MIB, 256, with
//! RLIMIT_AS at 1 GiB more as the hard stop) or disk (blocks allocated in the
//! root over TOWLINE_FUZZ_DISK_MIB, 64: a hole written out in full). proptest
//! then shrinks the input; the minimal case is printed and saved as tar files.
//!
//! Budget: TOWLINE_FUZZ_CASES (400), TOWLINE_FUZZ_SEED (7),
//! TOWLINE_FUZZ_BULK_SCALE (1: bulk pattern sizes, for release-build runs),
//! TOWLINE_FUZZ_SHRINK_ITERS (256) and TOWLINE_FUZZ_SHRINK_SECS (120);
//! TOWLINE_FUZZ_VERBOSE=1 prints every case with its worker's log. README,
//! "Fuzzing the untar and apply engine", has the commands.

mod case;
mod layer_tar;
mod run_case;
mod snapshot;
mod strategies;
mod tar_header;
mod worker;

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use proptest::test_runner::{Config, RngSeed, TestError, TestRunner};

use crate::case::Case;
use crate::run_case::Ctx;
use crate::strategies::case_strategy;

/// Set in the worker's environment: the case directory it is to run.
const WORKER_ENV: &str = "TOWLINE_FUZZ_WORKER";
/// This test's name, as the worker is asked to run it.
const TEST_NAME: &str = "fuzz_untar_apply";
/// Padding directories above the sandbox when the worker cannot chroot, so
/// that a `../../..` escape still lands inside the snapshot.
const PADDING: usize = 12;

#[test]
fn fuzz_untar_apply() {
    if let Some(dir) = std::env::var_os(WORKER_ENV) {
        worker::main(Path::new(&dir));
        return;
    }
    let budget = Budget::from_env();
    let base = tempfile::Builder::new()
        .prefix("towline-fuzz-")
        .tempdir()
        .expect("create the fuzz base directory");
    let chroot = rustix::process::geteuid().is_root();
    let ctx = Ctx::new(base.path(), chroot);
    eprintln!(
        "fuzz_untar_apply: {} cases, seed {}, {} ms and {} MiB per case, {} (set \
         TOWLINE_FUZZ_CASES / TOWLINE_FUZZ_SEED for another budget)",
        budget.cases,
        budget.seed,
        budget.timeout.as_millis(),
        budget.mem_mib,
        if chroot {
            "each case chrooted"
        } else {
            "not root: no chroot, absolute targets point into the case directory"
        }
    );
    let mut runner = TestRunner::new(Config {
        cases: budget.cases,
        rng_seed: RngSeed::Fixed(budget.seed),
        failure_persistence: None,
        max_shrink_iters: budget.shrink_iters,
        max_shrink_time: budget.shrink_secs.saturating_mul(1000),
        ..Config::default()
    });
    let started = Instant::now();
    let slowest = std::cell::Cell::new(Duration::ZERO);
    let result = runner.run(&case_strategy(budget.bulk_scale), |case| {
        let t = Instant::now();
        let r = ctx.run(&case, &budget);
        slowest.set(slowest.get().max(t.elapsed()));
        r
    });
    let elapsed = started.elapsed();
    let _ = towline_native::atomic::remove_tree(base.path());
    match result {
        Ok(()) => {
            let [unpack_ok, unpack_err, apply_ok, apply_err] = ctx.outcomes.get();
            eprintln!(
                "fuzz_untar_apply: {} cases passed in {:.1} s (slowest case {} ms); the engine \
                 unpacked {unpack_ok} layers and refused {unpack_err}, merged {apply_ok} times \
                 and refused {apply_err}",
                budget.cases,
                elapsed.as_secs_f64(),
                slowest.get().as_millis()
            )
        }
        Err(TestError::Fail(reason, case)) => {
            let saved = save_case(&ctx, &case);
            panic!(
                "fuzz_untar_apply failed (seed {}; $S is the sandbox, {}):\n{reason}\n\
                 minimal failing input:\n{case:?}{saved}",
                budget.seed,
                ctx.render_sandbox()
            )
        }
        Err(TestError::Abort(reason)) => panic!("fuzz_untar_apply aborted: {reason}"),
    }
}

/// Writes the failing case's layers as tar files next to the build, for a
/// reproducer (their absolute link targets are the worker's paths).
fn save_case(ctx: &Ctx, case: &Case) -> String {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("fuzz_untar_apply-failure");
    let _ = towline_native::atomic::remove_tree(&dir);
    if fs::create_dir_all(&dir).is_err() {
        return String::new();
    }
    for (i, layer) in case.layers.iter().enumerate() {
        if fs::write(dir.join(format!("layer{i}.tar")), ctx.tar(layer)).is_err() {
            return String::new();
        }
    }
    format!("its layers, as tar files: {}/layer*.tar", dir.display())
}

struct Budget {
    cases: u32,
    seed: u64,
    timeout: Duration,
    mem_mib: u64,
    disk_mib: u64,
    shrink_iters: u32,
    shrink_secs: u32,
    bulk_scale: usize,
    /// Print every case with its worker's log.
    verbose: bool,
}

impl Budget {
    fn from_env() -> Self {
        fn var<T: std::str::FromStr>(name: &str, default: T) -> T {
            match std::env::var(name) {
                Ok(v) => v
                    .trim()
                    .parse()
                    .unwrap_or_else(|_| panic!("{name}={v:?} is not a number")),
                Err(_) => default,
            }
        }
        Budget {
            cases: var("TOWLINE_FUZZ_CASES", 400),
            seed: var("TOWLINE_FUZZ_SEED", 7),
            timeout: Duration::from_millis(var("TOWLINE_FUZZ_TIMEOUT_MS", 2000)),
            mem_mib: var("TOWLINE_FUZZ_MEM_MIB", 256),
            disk_mib: var("TOWLINE_FUZZ_DISK_MIB", 64),
            shrink_iters: var("TOWLINE_FUZZ_SHRINK_ITERS", 256),
            shrink_secs: var("TOWLINE_FUZZ_SHRINK_SECS", 120),
            bulk_scale: var("TOWLINE_FUZZ_BULK_SCALE", 1usize).max(1),
            verbose: var("TOWLINE_FUZZ_VERBOSE", 0u8) != 0,
        }
    }
}
