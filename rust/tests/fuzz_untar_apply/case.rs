//! What a generated case is: layers of tar members (paths, kinds, link
//! targets, encodings) plus an optional bulk pattern, with `Debug` output that
//! reads as the minimal failing input when proptest has shrunk one. Kept apart
//! from the strategies that generate them and the code that writes them as tar.

use std::fmt;

use proptest::sample::Index;

#[derive(Clone)]
pub(crate) struct PathSpec {
    pub(crate) leading_slash: bool,
    /// `a/` repeated this many times first (long and deep paths).
    pub(crate) deep: usize,
    pub(crate) comps: Vec<String>,
    pub(crate) trailing_slash: bool,
}

impl PathSpec {
    pub(crate) fn render(&self) -> Vec<u8> {
        let mut s = String::new();
        if self.leading_slash {
            s.push('/');
        }
        s.push_str(&"a/".repeat(self.deep));
        s.push_str(&self.comps.join("/"));
        if self.trailing_slash {
            s.push('/');
        }
        s.into_bytes()
    }
}

impl fmt::Debug for PathSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = String::from_utf8_lossy(&self.render()).into_owned();
        if self.deep > 0 || r.len() > 80 {
            let tail = self.comps.join("/");
            let tail: String = if tail.len() > 40 {
                format!("{}…({} bytes)", &tail[..20], tail.len())
            } else {
                tail
            };
            write!(
                f,
                "\"{}(a/)x{}{}{}\"",
                if self.leading_slash { "/" } else { "" },
                self.deep,
                tail,
                if self.trailing_slash { "/" } else { "" }
            )
        } else {
            write!(f, "{r:?}")
        }
    }
}

#[derive(Clone, Debug)]
pub(crate) enum Target {
    Path(PathSpec),
    /// `../` n times, then the components.
    Up(usize, Vec<String>),
    /// Absolute path into the sandbox's `outside/`.
    Outside(&'static str),
    /// Absolute path into the sandbox.
    Sandbox(&'static str),
    Root,
    DevZero,
    /// An earlier member of the same layer (hardlinks), or itself.
    Member(Index),
    SelfPath,
    Empty,
    /// Longer than PATH_MAX.
    Long(usize),
}

#[derive(Clone, Copy, Debug)]
pub(crate) enum SparseFormat {
    Gnu,
    Pax00,
    Pax01,
    Pax10,
}

#[derive(Clone, Debug)]
pub(crate) enum Kind {
    File(usize),
    Sparse {
        format: SparseFormat,
        /// (gap before, length) of each data region.
        regions: Vec<(u64, u64)>,
        /// Bytes of hole after the last region.
        tail: u64,
    },
    Dir,
    Symlink(Target),
    Hardlink(Target),
    Fifo,
    /// Character device 1:minor (3 = null, 5 = zero: harmless if written).
    Char(u32),
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Enc {
    Ustar,
    Gnu,
    Pax,
    V7,
}

#[derive(Clone)]
pub(crate) struct Member {
    pub(crate) path: PathSpec,
    pub(crate) kind: Kind,
    pub(crate) enc: Enc,
    pub(crate) mode: u32,
    pub(crate) owner: (u64, u64),
    pub(crate) mtime: u64,
    pub(crate) xattr: bool,
}

impl fmt::Debug for Member {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?} {:?} mode {:o} owner {}:{} mtime {} {:?}{}",
            self.kind,
            self.path,
            self.mode,
            self.owner.0,
            self.owner.1,
            self.mtime,
            self.enc,
            if self.xattr { " +xattr" } else { "" }
        )
    }
}

#[derive(Clone, Copy, Debug)]
pub(crate) enum End {
    /// Two zero blocks.
    Marker,
    /// The stream just stops after the last member.
    NoMarker,
    /// Cut somewhere inside.
    Truncated(Index),
}

#[derive(Clone)]
pub(crate) struct Layer {
    pub(crate) members: Vec<Member>,
    /// Many members in a pattern that costs a naive engine more than linear time.
    pub(crate) bulk: Option<Bulk>,
    /// Capacity of the BufReader the tar is read through (chunk boundaries).
    pub(crate) chunk: usize,
    pub(crate) end: End,
}

/// Patterns of many members (after the layer's own), for the time and memory
/// bounds: each is linear work for a sound engine.
#[derive(Clone, Debug)]
pub(crate) enum Bulk {
    /// Dir `c/x/x/…` (`depth` levels), symlinks `c/l{j}` -> `x/x/…/../../…/l{j-1}`
    /// (down `depth` levels and back up; `c/l0` ends at `c`), then `members`
    /// files below the last link: every member's parent is the whole chain.
    Chain {
        links: usize,
        depth: usize,
        members: usize,
    },
    /// `dirs` directories, then `flips` times: `f` and `f/x` made directories,
    /// then `f` replaced by a file.
    Flip { dirs: usize, flips: usize },
    /// `dirs` directories, each `depth` levels down with a long name.
    Wide { dirs: usize, depth: usize },
}

#[derive(Clone)]
pub(crate) struct Case {
    pub(crate) layers: Vec<Layer>,
}

impl fmt::Debug for Layer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "(read in {}-byte chunks, end {:?}):",
            self.chunk, self.end
        )?;
        for m in &self.members {
            writeln!(f, "    {m:?}")?;
        }
        if let Some(bulk) = &self.bulk {
            writeln!(f, "    then {bulk:?}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Case {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, layer) in self.layers.iter().enumerate() {
            write!(f, "layer {i} {layer:?}")?;
        }
        Ok(())
    }
}

impl Bulk {
    pub(crate) fn members(&self) -> Vec<Member> {
        let m = |comps: &[&str], kind: Kind| Member {
            path: PathSpec {
                leading_slash: false,
                deep: 0,
                comps: comps.iter().map(|c| c.to_string()).collect(),
                trailing_slash: false,
            },
            kind,
            enc: Enc::Pax,
            mode: 0o755,
            owner: (0, 0),
            mtime: 1_700_000_000,
            xattr: false,
        };
        let link = |comps: Vec<String>| {
            Kind::Symlink(Target::Path(PathSpec {
                leading_slash: false,
                deep: 0,
                comps,
                trailing_slash: false,
            }))
        };
        let mut out = Vec::new();
        match *self {
            Bulk::Chain {
                links,
                depth,
                members,
            } => {
                let mut down = vec!["c"];
                down.extend(std::iter::repeat_n("x", depth));
                out.push(m(&down, Kind::Dir));
                for j in 0..links {
                    let mut target: Vec<String> = vec!["x".into(); depth];
                    target.extend(std::iter::repeat_n("..".to_string(), depth));
                    if j > 0 {
                        target.push(format!("l{}", j - 1));
                    }
                    out.push(m(&["c", &format!("l{j}")], link(target)));
                }
                let last = format!("l{}", links - 1);
                for i in 0..members {
                    out.push(m(&["c", &last, &format!("f{i}")], Kind::File(0)));
                }
            }
            Bulk::Flip { dirs, flips } => {
                for i in 0..dirs {
                    out.push(m(&["k", &format!("d{i}")], Kind::Dir));
                }
                for _ in 0..flips {
                    out.push(m(&["f"], Kind::Dir));
                    out.push(m(&["f", "x"], Kind::Dir));
                    out.push(m(&["f"], Kind::File(0)));
                }
            }
            Bulk::Wide { dirs, depth } => {
                let long = "w".repeat(200);
                for i in 0..dirs {
                    let mut comps: Vec<&str> = vec![&long; depth];
                    let last = format!("d{i}");
                    comps.push(&last);
                    out.push(m(&comps, Kind::Dir));
                }
            }
        }
        out
    }
}
