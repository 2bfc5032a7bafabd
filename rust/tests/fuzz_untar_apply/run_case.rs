//! The parent side of a case: writes its layers into a fresh case directory,
//! runs them in a worker process (this test binary again) under the time
//! bound, and turns the worker's log and exit into a verdict; tallies what
//! the engine accepted and refused.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use proptest::test_runner::TestCaseError;

use crate::case::Case;
use crate::{Budget, PADDING, TEST_NAME, WORKER_ENV};

pub(crate) struct Ctx {
    base: PathBuf,
    pub(crate) chroot: bool,
    /// Engine results over the passing cases: [unpack ok, refused, apply ok, refused].
    pub(crate) outcomes: std::cell::Cell<[u64; 4]>,
}

impl Ctx {
    pub(crate) fn new(base: &Path, chroot: bool) -> Self {
        Ctx {
            base: base.to_path_buf(),
            chroot,
            outcomes: std::cell::Cell::new([0; 4]),
        }
    }

    /// The case directory: `in/` (the tars), `root/` (the worker's root),
    /// `result` (its progress and verdict), `stderr`.
    fn case_dir(&self) -> PathBuf {
        self.base.join("case")
    }

    pub(crate) fn root(&self) -> PathBuf {
        self.case_dir().join("root")
    }

    /// The absolute path of the sandbox as the worker sees it.
    pub(crate) fn sandbox_abs(&self) -> String {
        if self.chroot {
            "/s".into()
        } else {
            let mut p = self.root().to_string_lossy().into_owned();
            for i in 0..PADDING {
                p.push_str(&format!("/p{i}"));
            }
            p.push_str("/s");
            p
        }
    }

    pub(crate) fn render_sandbox(&self) -> String {
        if self.chroot {
            "/s inside the worker's chroot".into()
        } else {
            format!("{} (no chroot)", self.sandbox_abs())
        }
    }

    /// Runs the case in a worker; a case over the time bound runs once more
    /// before it counts (a loaded machine is not the engine's fault).
    pub(crate) fn run(&self, case: &Case, budget: &Budget) -> Result<(), TestCaseError> {
        match self.run_once(case, budget) {
            Err((true, first)) => match self.run_once(case, budget) {
                Err((_, again)) => Err(TestCaseError::fail(format!(
                    "{again}\n(and on the first run: {first})"
                ))),
                Ok(()) => {
                    eprintln!("fuzz_untar_apply: a case passed only on its second run: {first}");
                    Ok(())
                }
            },
            Err((false, msg)) => Err(TestCaseError::fail(msg)),
            Ok(()) => Ok(()),
        }
    }

    /// Runs the case in a worker: Err((timed out, why)) if it fails.
    fn run_once(&self, case: &Case, budget: &Budget) -> Result<(), (bool, String)> {
        let dir = self.case_dir();
        if dir.exists() {
            towline_native::atomic::remove_tree(&dir).expect("remove the last case");
        }
        fs::create_dir_all(dir.join("in")).expect("create the case directory");
        fs::create_dir(self.root()).expect("create the worker root");
        for (i, layer) in case.layers.iter().enumerate() {
            fs::write(dir.join("in").join(format!("{i}.tar")), self.tar(layer))
                .expect("write a layer tar");
            fs::write(
                dir.join("in").join(format!("{i}.chunk")),
                layer.chunk.to_string(),
            )
            .expect("write a layer chunk size");
        }
        fs::write(
            dir.join("mode"),
            if self.chroot { "chroot" } else { "plain" },
        )
        .expect("write the mode");
        let stderr = File::create(dir.join("stderr")).expect("create stderr");
        let expected = listing(&dir);
        let exe = std::env::current_exe().expect("current_exe");
        let mut child = Command::new(exe)
            .args([
                "--exact",
                TEST_NAME,
                "--nocapture",
                "--test-threads=1",
                "-q",
            ])
            .env(WORKER_ENV, &dir)
            .env_remove("RUST_BACKTRACE")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("start a worker");
        let started = Instant::now();
        let mut pause = Duration::from_micros(200);
        let (status, timed_out): (ExitStatus, bool) = loop {
            if let Some(status) = child.try_wait().expect("wait for the worker") {
                break (status, false);
            }
            if started.elapsed() > budget.timeout {
                let _ = child.kill();
                break (child.wait().expect("reap the worker"), true);
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(2));
        };
        let took = started.elapsed();
        let result = fs::read_to_string(dir.join("result")).unwrap_or_default();
        let stderr = fs::read(dir.join("stderr")).unwrap_or_default();
        let stderr = String::from_utf8_lossy(&stderr[stderr.len().saturating_sub(1500)..]);
        let phase = result
            .lines()
            .rev()
            .find_map(|l| l.strip_prefix("phase: "))
            .unwrap_or("(none: the worker did not start)");
        let fail = |msg: String| Err((false, msg));
        if timed_out {
            return Err((
                true,
                format!(
                    "time bound exceeded: the case ran over {} ms and was killed, in phase: \
                     {phase}\nworker log:\n{result}",
                    budget.timeout.as_millis()
                ),
            ));
        }
        if let Some(pos) = result.find("\nFAIL\n") {
            return fail(format!(
                "{}\nworker log (the engine's results, step by step):\n{}",
                &result[pos + 6..],
                &result[..pos]
            ));
        }
        if !status.success() {
            let how = match (
                status.code(),
                std::os::unix::process::ExitStatusExt::signal(&status),
            ) {
                (Some(c), _) => format!("exited with code {c}"),
                (None, Some(s)) => format!("was killed by signal {s}"),
                _ => "ended abnormally".into(),
            };
            let hint = if stderr.contains("memory allocation") {
                " (memory bound: an allocation failed under RLIMIT_AS)"
            } else if stderr.contains("stack overflow") {
                " (stack overflow)"
            } else {
                ""
            };
            return fail(format!(
                "the worker {how}{hint} in phase: {phase} after {} ms; its stderr ends:\n{stderr}",
                took.as_millis()
            ));
        }
        let Some(ok) = result.lines().find_map(|l| l.strip_prefix("ok ")) else {
            return fail(format!(
                "the worker exited 0 without a verdict (phase: {phase}); stderr:\n{stderr}"
            ));
        };
        let mut nums = ok.split_whitespace().map(|n| n.parse::<u64>().unwrap_or(0));
        let (start_kib, peak_kib) = (nums.next().unwrap_or(0), nums.next().unwrap_or(0));
        if peak_kib.saturating_sub(start_kib) > budget.mem_mib << 10 {
            return fail(format!(
                "memory bound exceeded: peak RSS grew by {} MiB (limit {} MiB)\nworker log:\n{result}",
                (peak_kib - start_kib) >> 10,
                budget.mem_mib
            ));
        }
        // The case directory holds what it held: nothing escaped the worker's root.
        let now = listing(&dir);
        if now != expected_after(&expected) {
            return fail(format!(
                "the case directory changed outside the worker's root: {expected:?} -> {now:?}"
            ));
        }
        if listing(&self.base) != ["case"] {
            return fail(format!(
                "the fuzz base directory changed: {:?}",
                listing(&self.base)
            ));
        }
        let mut counts = self.outcomes.get();
        let mut phase = "";
        for line in result.lines() {
            if let Some(p) = line.strip_prefix("phase: ") {
                phase = p;
            } else if let Some(r) = line.trim_start().strip_prefix("-> ") {
                let i = usize::from(phase.starts_with("apply")) * 2
                    + usize::from(r != "Ok" && !r.starts_with("Ok "));
                counts[i] += 1;
            }
        }
        self.outcomes.set(counts);
        if budget.verbose {
            eprintln!("case of {} ms:\n{case:?}{result}", took.as_millis());
        }
        Ok(())
    }
}

fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

fn expected_after(before: &[String]) -> Vec<String> {
    let mut v = before.to_vec();
    v.push("result".into());
    v.sort();
    v.dedup();
    v
}
