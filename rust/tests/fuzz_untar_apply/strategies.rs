//! The proptest strategies that generate cases: small alphabets of names,
//! modes, owners and targets (so that members collide and whiteouts hit),
//! weighted towards the hostile shapes the engine must refuse or contain.

use proptest::prelude::*;
use proptest::sample::{select, Index};

use crate::case::{Bulk, Case, Enc, End, Kind, Layer, Member, PathSpec, SparseFormat, Target};

/// Name components: few, so that members collide and whiteouts hit.
const NAMES: &[&str] = &["a", "b", "c"];
const DOTS: &[&str] = &[".", "..", ""];
const WHITEOUTS: &[&str] = &[".wh.a", ".wh.b", ".wh..wh..opq", ".wh..wh.other"];
/// Whiteouts of nothing, ".", "..", and towline's own bookkeeping name (before
/// and after issue 7): hostile, and a sound engine refuses the layer, so they
/// are rarer than the others.
const BAD_WHITEOUTS: &[&str] = &[
    ".wh..",
    ".wh...",
    ".wh.",
    ".wh..wh..towline-implied-dirs",
    ".wh..wh..towline-implied",
];
const MODES: &[u32] = &[
    0o755, 0o644, 0, 0o555, 0o6777, 0o4755, 0o1777, 0o600, 0o7777, 0o111,
];
const OWNERS: &[(u64, u64)] = &[(0, 0), (1000, 1000), (65534, 65534)];
/// An owner that does not fit in 32 bits: refused, so rare (it ends the layer).
const BAD_OWNER: (u64, u64) = (1 << 32, 7);
const MTIMES: &[u64] = &[1_700_000_000, 0, 0o77777777777, 1 << 40];
/// What `outside/` holds (see `worker::layout`).
const OUTSIDE: &[&str] = &[
    "secret",
    "",
    "dir",
    "link",
    "ro",
    "dir/inner",
    "dirlink",
    "suid",
];
/// Sandbox paths other than `outside/` that an absolute target may name.
const SANDBOX: &[&str] = &["dest", "", "layer0", "dest/a", "again0", "dest2"];
/// A hole larger than the disk bound: writing it out in full (instead of
/// keeping it a hole) fails the case.
const HUGE_HOLE: u64 = 256 << 20;

fn comp() -> impl Strategy<Value = String> {
    prop_oneof![
        12 => select(NAMES).prop_map(str::to_string),
        3 => select(DOTS).prop_map(str::to_string),
        3 => select(WHITEOUTS).prop_map(str::to_string),
        1 => select(BAD_WHITEOUTS).prop_map(str::to_string),
        // Long names; past 255 bytes, refused.
        1 => prop_oneof![9 => 100usize..=255, 1 => 256usize..300].prop_map(|n| "l".repeat(n)),
    ]
}

fn path_spec() -> impl Strategy<Value = PathSpec> {
    (
        prop::bool::weighted(0.15),
        // Deep paths (rare: a few hundred levels cost the debug build tens of
        // ms per member); 2100 levels are over PATH_MAX, refused before any work.
        prop_oneof![
            80 => Just(0usize),
            3 => 20usize..200,
            1 => 300usize..600,
            1 => Just(2100usize),
        ],
        prop::collection::vec(comp(), 1..=3),
        prop::bool::weighted(0.1),
    )
        .prop_map(|(leading_slash, deep, comps, trailing_slash)| PathSpec {
            leading_slash,
            deep,
            comps,
            trailing_slash,
        })
}

fn target() -> impl Strategy<Value = Target> {
    prop_oneof![
        3 => path_spec().prop_map(Target::Path),
        2 => (1usize..=4, prop::collection::vec(comp(), 0..=2))
            .prop_map(|(n, tail)| Target::Up(n, tail)),
        3 => select(OUTSIDE).prop_map(Target::Outside),
        1 => select(SANDBOX).prop_map(Target::Sandbox),
        1 => Just(Target::Root),
        1 => Just(Target::DevZero),
        2 => any::<Index>().prop_map(Target::Member),
        1 => Just(Target::SelfPath),
        1 => Just(Target::Empty),
        1 => (2049usize..2600).prop_map(Target::Long),
    ]
}

/// Mostly earlier members (a hardlink elsewhere is refused).
fn hardlink_target() -> impl Strategy<Value = Target> {
    prop_oneof![
        6 => any::<Index>().prop_map(Target::Member),
        2 => path_spec().prop_map(Target::Path),
        1 => Just(Target::SelfPath),
        1 => select(OUTSIDE).prop_map(Target::Outside),
        1 => (1usize..=4, prop::collection::vec(comp(), 0..=2))
            .prop_map(|(n, tail)| Target::Up(n, tail)),
        1 => Just(Target::Root),
    ]
}

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        4 => (0usize..64).prop_map(Kind::File),
        4 => Just(Kind::Dir),
        3 => target().prop_map(Kind::Symlink),
        2 => hardlink_target().prop_map(Kind::Hardlink),
        1 => Just(Kind::Fifo),
        1 => select(&[3u32, 5][..]).prop_map(Kind::Char),
        1 => (
            select(&[SparseFormat::Gnu, SparseFormat::Pax00, SparseFormat::Pax01, SparseFormat::Pax10][..]),
            prop::collection::vec((0u64..3000, 0u64..700), 0..=6),
            prop_oneof![6 => 0u64..2000, 1 => Just(HUGE_HOLE)],
        )
            .prop_map(|(format, regions, tail)| Kind::Sparse { format, regions, tail }),
    ]
}

fn member() -> impl Strategy<Value = Member> {
    (
        path_spec(),
        kind(),
        select(&[Enc::Ustar, Enc::Pax, Enc::Gnu, Enc::V7][..]),
        select(MODES),
        prop_oneof![30 => select(OWNERS), 1 => Just(BAD_OWNER)],
        select(MTIMES),
        prop::bool::weighted(0.1),
    )
        .prop_map(|(path, kind, enc, mode, owner, mtime, xattr)| Member {
            path,
            kind,
            enc,
            mode,
            owner,
            mtime,
            xattr,
        })
}

/// Sized so that a linear engine stays well inside the time bound in a debug
/// build; `scale` multiplies the counts for longer runs (release builds).
fn bulk(scale: usize) -> impl Strategy<Value = Bulk> {
    prop_oneof![
        (1..=40usize, 1..=100usize, 1..=300 * scale).prop_map(|(links, depth, members)| {
            Bulk::Chain {
                links,
                depth,
                members,
            }
        }),
        (1..=1000 * scale, 1..=500 * scale).prop_map(|(dirs, flips)| Bulk::Flip { dirs, flips }),
        (1..=500 * scale, 1..=8usize).prop_map(|(dirs, depth)| Bulk::Wide { dirs, depth }),
    ]
}

fn layer(scale: usize) -> impl Strategy<Value = Layer> {
    (
        prop::collection::vec(member(), 0..=10),
        prop::option::weighted(0.02, bulk(scale)),
        prop_oneof![6 => Just(65536usize), 1 => Just(512usize), 1 => Just(7usize), 1 => Just(1usize)],
        prop_oneof![
            16 => Just(End::Marker),
            1 => Just(End::NoMarker),
            1 => any::<Index>().prop_map(End::Truncated),
        ],
    )
        .prop_map(|(members, bulk, chunk, end)| Layer {
            members,
            bulk,
            chunk,
            end,
        })
}

pub(crate) fn case_strategy(bulk_scale: usize) -> impl Strategy<Value = Case> {
    prop::collection::vec(layer(bulk_scale), 1..=4).prop_map(|layers| Case { layers })
}
