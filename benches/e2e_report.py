"""What one run of ``benches/e2e.py`` measured, and its Markdown and JSON reports."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any

from e2e_images import BenchImage

__all__ = [
    "BASELINES",
    "COPY_TARGETS",
    "PODMAN_TARGETS",
    "TAR_TARGETS",
    "Cell",
    "Report",
    "ToolRow",
    "render_markdown",
    "report_json",
]

#: Issue 3: how many times faster than podman towline must be, per image.
PODMAN_TARGETS = {"small-files": 1.5, "large-gzip": 2.0, "large-zstd": 2.0}
# Issue 3 asks towline to keep up with `tar -x` on the file-creation-bound image only;
# on the large ones the ratio is printed for orientation (tar neither verifies nor keeps blobs).
TAR_TARGETS = {"small-files"}
#: Issue 10: how many times faster than `skopeo copy docker://... oci:...` `towline copy` to
#: the same destination must be (blobs only), per image; elsewhere the ratio is only shown.
COPY_TARGETS = {"large-gzip": 1.5, "large-zstd": 1.5}
#: The tools ratios are taken against, in order of preference: the first that ran.
BASELINES = ("towline", "towline-copy")


@dataclass
class Cell:
    """The runs of one tool on one image."""

    samples: list[float] = field(default_factory=list)
    verified: int = 0  # runs whose result was checked, warm-up included
    error: str | None = None

    @property
    def median(self) -> float | None:
        """Median seconds, None without samples or after a failure."""
        return statistics.median(self.samples) if self.samples and not self.error else None


@dataclass
class ToolRow:
    """One tool, why it did not run (if so), and its cells by image."""

    key: str
    label: str
    unavailable: str | None
    cells: dict[str, Cell] = field(default_factory=dict)


@dataclass
class Report:
    """Everything one run of the benchmark measured, and how."""

    command: str
    rounds: int
    images: list[BenchImage]
    rows: list[ToolRow]
    notes: list[str]
    environment: dict[str, str]

    def row(self, key: str) -> ToolRow | None:
        """The row of tool ``key``."""
        return next((row for row in self.rows if row.key == key), None)

    @property
    def baseline(self) -> str:
        """The tool the table's ratios are against: ``towline`` (pull), else ``towline-copy``."""
        keys = [row.key for row in self.rows]
        return next((key for key in BASELINES if key in keys), BASELINES[0])

    def _cells(self, key: str, image: str, base: str | None) -> tuple[Cell, Cell] | None:
        towline, other = self.row(base or self.baseline), self.row(key)
        if towline is None or other is None or image not in towline.cells:
            return None
        first, cell = towline.cells[image], other.cells.get(image, Cell())
        return (first, cell) if first.median and cell.median is not None else None

    def _ratios(self, key: str, image: str, base: str | None) -> list[float] | None:
        cells = self._cells(key, image, base)
        if cells is None:
            return None
        first, cell = cells
        return [mine / theirs for mine, theirs in zip(cell.samples, first.samples, strict=True)]

    def ratio(self, key: str, image: str, base: str | None = None) -> float | None:
        """Median over rounds of ``key``'s time over ``base``'s in the same round, on ``image``.

        ``base`` defaults to :attr:`baseline`. Pairing the runs of a round cancels drifts in
        the machine's speed (other work, the disk's state) that a ratio of medians keeps.
        Above 1: ``base`` is faster.
        """
        ratios = self._ratios(key, image, base)
        return statistics.median(ratios) if ratios is not None else None

    def ratio_range(
        self, key: str, image: str, base: str | None = None
    ) -> tuple[float, float] | None:
        """The lowest and highest of the per-round ratios whose median :meth:`ratio` gives."""
        ratios = self._ratios(key, image, base)
        return (min(ratios), max(ratios)) if ratios is not None else None

    def ratio_of_medians(self, key: str, image: str, base: str | None = None) -> float | None:
        """``key``'s median over ``base``'s (default :attr:`baseline`) median on ``image``."""
        cells = self._cells(key, image, base)
        if cells is None or cells[0].median is None or cells[1].median is None:
            return None
        return cells[1].median / cells[0].median


def _seconds(cell: Cell, ratio: float | None) -> str:
    if cell.error:
        return "failed"
    if cell.median is None:
        return "n/a"
    shown = f"{cell.median:.2f} s" if cell.median >= 0.1 else f"{cell.median * 1000:.0f} ms"
    return f"{shown} ({ratio:.2f}x)" if ratio is not None else shown


def _blobs_only(report: Report, image: str) -> tuple[float, float, float] | None:
    """skopeo copy's time over towline copy's, both to oci:: median and min-max over rounds."""
    ratio = report.ratio("skopeo", image, "towline-copy")
    spread = report.ratio_range("skopeo", image, "towline-copy")
    return (ratio, *spread) if ratio is not None and spread is not None else None


def _blobs_only_lines(report: Report) -> list[str]:
    if report.baseline == "towline-copy":
        return []  # the table's skopeo column and the spreads below say it already
    lines = []
    for image in report.images:
        found = _blobs_only(report, image.name)
        if found is None:
            continue
        ratio, low, high = found
        spread = f" (per round {low:.2f}-{high:.2f})" if report.rounds > 1 else ""
        lines.append(
            f"- blobs only on {image.name}: skopeo copy to oci: takes {ratio:.2f}x towline "
            f"copy's time{spread}"
        )
    return lines


def _targets(report: Report) -> list[str]:
    lines = []
    for image in report.images:
        name = image.name
        found = _blobs_only(report, name)
        if found is not None and name in COPY_TARGETS:
            goal, got = COPY_TARGETS[name], found[0]
            verdict = "met" if got >= goal else "NOT met"
            lines.append(
                f"{name}: skopeo copy to oci: takes {got:.2f}x towline copy's time "
                f"(goal >= {goal}): {verdict}"
            )
        if report.baseline != "towline":
            continue  # the goals below are towline pull's
        podman = [r for r in (report.ratio(k, name) for k in ("podman-overlay", "podman-vfs")) if r]
        if name in PODMAN_TARGETS and podman:
            goal, got = PODMAN_TARGETS[name], min(podman)
            verdict = "met" if got >= goal else "NOT met"
            lines.append(f"{name}: towline {got:.2f}x faster than podman (goal {goal}x): {verdict}")
        tar = report.ratio("tar", name)
        if tar is not None and name in TAR_TARGETS:
            verdict = "met" if tar >= 1.0 else "NOT met"
            lines.append(f"{name}: tar -x takes {tar:.2f}x towline's time (goal >= 1): {verdict}")
    return lines


def _spreads(report: Report) -> list[str]:
    """How far the per-round ratios spread: a median near a goal needs this beside it."""
    lines = []
    for image in report.images:
        parts = []
        for row in report.rows:
            spread = report.ratio_range(row.key, image.name)
            spread = spread if row.key != report.baseline else None
            if spread is not None:
                parts.append(f"{row.label} {spread[0]:.2f}-{spread[1]:.2f}")
        if parts:
            lines.append(f"- per-round ratios on {image.name} (min-max): " + ", ".join(parts))
    return lines


def render_markdown(report: Report) -> str:
    """The table (tool x image: median seconds and ratio to towline) with how it was made."""
    names = [image.name for image in report.images]
    base = report.row(report.baseline)
    base_label = base.label if base is not None else "towline"
    lines = [
        f"`{report.command}` ({report.rounds} round{'s' if report.rounds > 1 else ''}; "
        "median seconds per run into an empty destination; in brackets, the median over "
        f"rounds of the tool's time over {base_label}'s in the same round: above 1, "
        f"{base_label} is faster)",
        "",
        "| tool | " + " | ".join(names) + " |",
        "|---|" + "---:|" * len(names),
    ]
    for row in report.rows:
        if row.unavailable:
            label = f"{row.label}: {row.unavailable}"
            lines.append(f"| {label} | " + " | ".join("n/a" for _ in names) + " |")
            continue
        cells = [_seconds(row.cells[n], report.ratio(row.key, n)) for n in names]
        lines.append(f"| {row.label} | " + " | ".join(cells) + " |")
    lines.append("")
    for image in report.images:
        lines.append(
            f"- {image.name}: {image.description}; {image.entries} tar entries, "
            f"{image.uncompressed_size / 1e6:.0f} MB unpacked, "
            f"{image.compressed_size / 1e6:.0f} MB compressed"
        )
    failures = [(r, n, r.cells[n].error) for r in report.rows for n in names if r.cells[n].error]
    lines += [f"- {row.label} on {name} failed: {error}" for row, name, error in failures]
    lines += [f"- {note}" for note in report.notes]
    lines += _blobs_only_lines(report)
    lines += [f"- target: {line}" for line in _targets(report)]
    if report.rounds > 1:
        lines += _spreads(report)
    env = report.environment
    lines.append("- environment: " + "; ".join(f"{k}: {v}" for k, v in env.items()))
    return "\n".join(lines) + "\n"


def report_json(report: Report) -> dict[str, Any]:
    """The report as plain JSON data, every sample included."""
    return {
        "command": report.command,
        "rounds": report.rounds,
        "environment": report.environment,
        "notes": report.notes,
        "targets": _targets(report),
        "baseline": report.baseline,
        "blobs_only": {
            image.name: {"skopeo_over_towline_copy": found[0], "min": found[1], "max": found[2]}
            for image in report.images
            if (found := _blobs_only(report, image.name)) is not None
        },
        "images": {
            image.name: {
                "description": image.description,
                "manifest_digest": image.manifest_digest,
                "layers": len(image.layers),
                "entries": image.entries,
                "uncompressed_size": image.uncompressed_size,
                "compressed_size": image.compressed_size,
            }
            for image in report.images
        },
        "tools": {
            row.key: {
                "label": row.label,
                "unavailable": row.unavailable,
                "results": {
                    name: {
                        "samples": cell.samples,
                        "median": cell.median,
                        # against the baseline: towline pull, else towline copy
                        "ratio_vs_towline": report.ratio(row.key, name),
                        "ratio_of_medians": report.ratio_of_medians(row.key, name),
                        "verified_runs": cell.verified,
                        "error": cell.error,
                    }
                    for name, cell in row.cells.items()
                },
            }
            for row in report.rows
        },
    }
