"""What every benchmark shares: naming the machine and appending dated rows to its
section's table in docs/benchmarks.md, and what a benchmark reads of another process."""
from __future__ import annotations

import os
import platform
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
