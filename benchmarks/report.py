"""What every benchmark shares: naming the machine and appending dated rows to its
section's table in docs/benchmarks.md, and what a benchmark reads of another process."""
from __future__ import annotations

import os
import platform
import statistics
import time
from pathlib import Path


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo (else what ``platform`` knows)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load_avg() -> float:
    """The 1-minute load average (NaN where the OS has none): CPU rows on a shared machine need it."""
    try:
        return os.getloadavg()[0]
    except OSError:
        return float("nan")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far, in seconds (NaN once it is gone)."""
    try:
        # Fields after the command name (which may hold spaces, hence the split at ')'):
        # utime and stime are the 12th and 13th (proc(5) fields 14 and 15), in clock ticks.
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return float("nan")


def median_ms(fn, repeats: int, device=None) -> float:
    """Median milliseconds of ``repeats`` calls of ``fn``, after one call not timed (first-call
    costs: imports, lazy initialisation, caches). On a CUDA ``device`` (a torch.device) each
    call is waited for, so that the timer times the work and not its launch."""
    sync = None
    if device is not None and device.type == "cuda":
        import torch
        sync = torch.cuda.synchronize

    def call():
        fn()
        if sync is not None:
            sync(device)
    call()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def device_label(device) -> str:
    """A row's device column: the GPU's name on a CUDA ``device`` (a torch.device), else the CPU's
    (the threads go in a column of their own)."""
    if device.type == "cuda":
        import torch
        return torch.cuda.get_device_name(device)
    return cpu_name()


BENCHMARKS_PAGE = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"


def add_record_arguments(parser) -> None:
    """``--output`` (the page rows go to, docs/benchmarks.md) and ``--no-record``: what every
    benchmark that records rows takes."""
    parser.add_argument("--output", type=Path, default=BENCHMARKS_PAGE, help="page to append the rows to")
    parser.add_argument("--no-record", action="store_true", help="print only; leave docs/benchmarks.md alone")


def print_and_record(args, section: str, table_header: str, rows: list[str], intro: str = "") -> None:
    """Print ``rows`` under ``table_header``; unless ``args.no_record``, append them to
    ``args.output`` (:func:`add_record_arguments`) with :func:`append_rows`."""
    print(table_header + "".join(rows), end="")
    if not args.no_record:
        append_rows(args.output, section, table_header, rows, intro=intro)


def append_rows(path: Path, section: str, table_header: str, rows: list[str], intro: str = "") -> None:
    """Insert ``rows`` at the end of ``table_header``'s table inside ``section`` of ``path``.

    Creates the file, the section (with ``intro``) or the table when missing; text after the
    table (notes, an optimisation log) stays below the new rows.
    """
    text = path.read_text() if path.exists() else "# viewseg benchmarks\n"
    if section not in text:
        text = text.rstrip("\n") + "\n\n" + section + "\n\n" + intro + table_header
    start = text.index(section)
    next_section = text.find("\n## ", start + len(section))
    end = len(text) if next_section < 0 else next_section + 1
    body = text[start:end]
    if table_header not in body:
        body = body.rstrip("\n") + "\n\n" + table_header + ("\n" if next_section >= 0 else "")
    table = body.index(table_header) + len(table_header)
    lines = body[table:].splitlines(keepends=True)
    kept = 0
    while kept < len(lines) and lines[kept].startswith("|"):
        kept += 1
    insert_at = table + sum(len(line) for line in lines[:kept])
    body = body[:insert_at] + "".join(rows) + body[insert_at:]
    path.write_text(text[:start] + body + text[end:])


CHART_COLOURS = ((31, 119, 180), (214, 39, 40), (44, 160, 44), (148, 103, 189), (255, 127, 14))  # RGB


def line_chart(path: Path, x: list[float] | dict[str, list[float]], series: dict[str, list[float]], title: str,
               xlabel: str, ylabel: str, size: tuple[int, int] = (800, 400)) -> None:
    """A PNG line chart of ``series`` (name -> y values, one per ``x``; ``x`` may also map each
    name to its own x values) over a shared y axis from 0, with its max tick, a legend under
    the plot and axis labels. NaN values break a line. For the figures a benchmark's numbers
    come from (memory over time), where the table gives only two points."""
    import cv2
    import numpy as np

    xs = x if isinstance(x, dict) else {name: x for name in series}
    width, height = size
    legend_rows = -(-len(series) // 3)
    left, right, top, bottom = 70, 20, 40, 50 + 18 * legend_rows
    image = np.full((height, width, 3), 255, np.uint8)
    values = np.array([v for ys in series.values() for v in ys], dtype=float)
    finite = values[np.isfinite(values)]
    y_max = float(finite.max()) * 1.05 if finite.size and finite.max() > 0 else 1.0
    every_x = [v for name in series for v in xs[name]]
    x0, x1 = (min(every_x), max(every_x)) if every_x else (0.0, 1.0)
    x1 = x1 if x1 > x0 else x0 + 1.0

    def to_pixel(xv: float, yv: float) -> tuple[int, int]:
        return (int(round(left + (xv - x0) / (x1 - x0) * (width - left - right))),
                int(round(height - bottom - yv / y_max * (height - top - bottom))))

    black, font = (0, 0, 0), cv2.FONT_HERSHEY_SIMPLEX
    cv2.line(image, to_pixel(x0, 0), to_pixel(x1, 0), black, 1)
    cv2.line(image, to_pixel(x0, 0), to_pixel(x0, y_max), black, 1)
    for yv in (0.0, y_max / 1.05):
        cv2.putText(image, f"{yv:.0f}", (5, to_pixel(x0, yv)[1] + 4), font, 0.4, black, 1, cv2.LINE_AA)
    for xv in (x0, x1):
        cv2.putText(image, f"{xv:.0f}", (to_pixel(xv, 0)[0] - 10, height - bottom + 15), font, 0.4, black, 1,
                    cv2.LINE_AA)
    cv2.putText(image, xlabel, (width // 2 - 40, height - bottom + 35), font, 0.45, black, 1, cv2.LINE_AA)
    cv2.putText(image, ylabel, (5, top - 8), font, 0.45, black, 1, cv2.LINE_AA)
    cv2.putText(image, title, (left, 20), font, 0.5, black, 1, cv2.LINE_AA)
    for index, (name, ys) in enumerate(series.items()):
        r, g, b = CHART_COLOURS[index % len(CHART_COLOURS)]
        colour = (b, g, r)   # OpenCV draws BGR
        run: list[tuple[int, int]] = []
        for xv, yv in list(zip(xs[name], ys)) + [(float("nan"), float("nan"))]:
            if np.isfinite(yv):
                run.append(to_pixel(xv, yv))
                continue
            if len(run) > 1:
                cv2.polylines(image, [np.array(run, np.int32)], False, colour, 2, cv2.LINE_AA)
            run = []
        legend_x = left + (index % 3) * (width - left - right) // 3
        legend_y = height - bottom + 50 + 18 * (index // 3)
        cv2.line(image, (legend_x, legend_y), (legend_x + 25, legend_y), colour, 2)
        cv2.putText(image, name, (legend_x + 30, legend_y + 4), font, 0.4, black, 1, cv2.LINE_AA)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), image):
        raise OSError(f"could not write {path}")
