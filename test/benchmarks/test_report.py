"""benchmarks/report.py: rows land at the end of their own section's table, nowhere else."""
from __future__ import annotations

SECTION = "## Bench"
HEADER = "| date | v |\n|---|---|\n"


def test_append_creates_section_then_appends_to_its_table(tmp_path, load_benchmark):
    report = load_benchmark("report")
    page = tmp_path / "benchmarks.md"
    page.write_text("# viewseg benchmarks\n\n## Other\n\ntext\n")
    report.append_rows(page, SECTION, HEADER, ["| 1 | a |\n"], intro="How to run.\n\n")
    report.append_rows(page, SECTION, HEADER, ["| 2 | b |\n"])
    assert page.read_text() == ("# viewseg benchmarks\n\n## Other\n\ntext\n\n## Bench\n\nHow to run.\n\n"
                                + HEADER + "| 1 | a |\n| 2 | b |\n")


def test_rows_go_above_notes_and_before_the_next_section(tmp_path, load_benchmark):
    report = load_benchmark("report")
    page = tmp_path / "benchmarks.md"
    page.write_text("# b\n\n## Bench\n\n" + HEADER + "| 1 | a |\n\nA log below the table.\n\n## Next\n\nx\n")
    report.append_rows(page, SECTION, HEADER, ["| 2 | b |\n"])
    assert page.read_text() == ("# b\n\n## Bench\n\n" + HEADER + "| 1 | a |\n| 2 | b |\n\n"
                                "A log below the table.\n\n## Next\n\nx\n")
    assert report.cpu_name()


def test_cpu_seconds_of_a_process_from_proc(load_benchmark):
    import os
    import subprocess
    import sys
    import time

    report = load_benchmark("report")
    own = report.cpu_seconds(os.getpid())
    assert abs(own - time.process_time()) < 0.1       # the same clock, read from /proc
    # A child that burns about 0.4 s of CPU, then waits to be read.
    child = subprocess.Popen([sys.executable, "-c", "import sys, time\nt = time.process_time()\n"
                              "while time.process_time() - t < 0.4: pass\nprint(flush=True)\nsys.stdin.read()"],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        child.stdout.readline()
        used = report.cpu_seconds(child.pid)
        assert 0.4 <= used < 2.0, used                  # its loop, plus starting Python
    finally:
        child.communicate("")
    assert report.cpu_seconds(child.pid) != report.cpu_seconds(child.pid)   # reaped: NaN


def test_line_chart_draws_each_series_at_its_height(tmp_path, load_benchmark):
    import cv2
    import numpy as np

    report = load_benchmark("report")
    chart = tmp_path / "sub" / "chart.png"
    x = [0.0, 5.0, 10.0]
    # y from 0 to 1.05 x 100; the plot area is rows 40..332 of 400 (the bottom margin holds the
    # axis label and one row of legend). "late" has x values of its own, from 5 on.
    report.line_chart(chart, {"flat": x, "gap": x, "late": [5.0, 10.0]},
                      {"flat": [50.0, 50.0, 50.0], "gap": [100.0, float("nan"), 100.0], "late": [25.0, 25.0]},
                      "title", "x", "y", size=(800, 400))
    image = cv2.imread(str(chart))[:, :, ::-1]                    # RGB
    assert image.shape == (400, 800, 3)
    bottom = 400 - 50 - 18

    def row_of(y):
        return int(round(bottom - y / 105.0 * (bottom - 40)))

    row = row_of(50.0)
    blue, red = np.array(report.CHART_COLOURS[0]), np.array(report.CHART_COLOURS[1])
    middle = image[row - 1:row + 2, 200:600].astype(int)          # the flat line, away from the legend
    assert (np.abs(middle - blue).sum(-1) < 60).any(axis=0).mean() > 0.95
    top_row = row_of(100.0)
    # "gap" has no segment: NaN breaks the line, so nothing red is drawn at its height.
    assert not (np.abs(image[top_row - 2:top_row + 3, 100:600].astype(int) - red).sum(-1) < 60).any()
    green = np.array(report.CHART_COLOURS[2])
    late = (np.abs(image[row_of(25.0) - 1:row_of(25.0) + 2].astype(int) - green).sum(-1) < 60).any(axis=0)
    middle_x = 70 + (800 - 70 - 20) // 2                          # x = 5 of 0..10
    assert late[middle_x + 20:780].mean() > 0.95 and not late[80:middle_x - 20].any()
