"""mrcnn.progress.Progress: a bar redrawn in place on a terminal, a few plain lines in a log;
and its users, ``inbreast synth`` and the INbreast reader, which never load TensorFlow."""

from __future__ import annotations

import io
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from ftmtl.cli import main
from ftmtl.inbreast.dataset import INbreastDataset
from ftmtl.inbreast.synthetic import generate_synthetic_inbreast
from mrcnn.progress import Progress

REPO = Path(__file__).resolve().parents[1]
ANSI_ESCAPE = "\x1b"


class Clock:
    """A clock the test advances by hand."""

    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


class Terminal(io.StringIO):
    """What a terminal receives: a StringIO that says it is a TTY."""

    def isatty(self) -> bool:
        return True


def count_to(total: int, stream, clock: Clock, seconds_each: float = 1.0, **kwargs) -> None:
    with Progress(total, "things", stream=stream, clock=clock, **kwargs) as bar:
        for _ in range(total):
            clock.now += seconds_each
            bar.update()


# ---------------------------------------------------------------------------- in a log
def test_a_log_gets_the_start_each_quarter_and_the_end_with_the_elapsed_time():
    out, clock = io.StringIO(), Clock()
    count_to(8, out, clock)
    # 2 of 8 after 2 s: 1 s an item, so 6 s left for the other 6.
    assert out.getvalue().splitlines() == [
        "things: 8 to do",
        "things: 2/8 (25 %), 2.0 s, ETA 6.0 s",
        "things: 4/8 (50 %), 4.0 s, ETA 4.0 s",
        "things: 6/8 (75 %), 6.0 s, ETA 2.0 s",
        "things: 8/8 done in 8.0 s",
    ]
    assert "\r" not in out.getvalue() and ANSI_ESCAPE not in out.getvalue()


def test_a_jump_over_two_quarters_writes_one_line_and_a_long_run_is_in_minutes():
    out, clock = io.StringIO(), Clock()
    with Progress(8, "things", stream=out, clock=clock) as bar:
        clock.now += 100.0
        bar.update(5)
        clock.now += 50.0
        bar.update(3)
    # 5 items in 100 s: 20 s an item, 60 s for the last 3.
    assert out.getvalue().splitlines() == [
        "things: 8 to do",
        "things: 5/8 (62 %), 1 min 40 s, ETA 1 min 0 s",
        "things: 8/8 done in 2 min 30 s",
    ]


def test_an_error_in_the_loop_ends_the_output_with_where_it_stopped():
    out, clock = io.StringIO(), Clock()
    with pytest.raises(RuntimeError), Progress(8, "things", stream=out, clock=clock) as bar:
        clock.now += 3.0
        bar.update(3)
        raise RuntimeError("broken file")
    assert out.getvalue().splitlines()[-1] == "things: stopped at 3/8 (37 %) after 3.0 s"


def test_the_default_stream_is_stderr_and_not_stdout(capsys):
    count_to(4, None, Clock())
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.splitlines()[0] == "things: 4 to do"
    assert captured.err.splitlines()[-1] == "things: 4/4 done in 4.0 s"


@pytest.mark.parametrize("stream", [io.StringIO(), Terminal()])
def test_show_false_writes_nothing(stream):
    count_to(8, stream, Clock(), show=False)
    assert stream.getvalue() == ""


# ---------------------------------------------------------------------------- on a terminal
def test_a_terminal_gets_one_line_redrawn_in_place_and_a_final_newline():
    term, clock = Terminal(), Clock()
    count_to(4, term, clock)
    text = term.getvalue()
    assert text.endswith("\n") and text.count("\n") == 1
    frames = text.rstrip("\n").split("\r")[1:]  # text starts with "\r": nothing before it
    assert text.startswith("\r")
    # The start, one redraw an item (each more than redraw_s after the last), the final one.
    assert len(frames) == 1 + 4 + 1
    assert frames[0].rstrip() == "things [" + "-" * 30 + "] 0/4 (0 %) 0.0 s"
    assert frames[2].rstrip() == "things [" + "#" * 15 + "-" * 15 + "] 2/4 (50 %) 2.0 s, ETA 2.0 s"
    assert frames[-1].rstrip() == "things [" + "#" * 30 + "] 4/4 (100 %) in 4.0 s"
    # A shorter line is padded with spaces so that nothing of the longer one before it shows.
    assert len(frames[-1]) == len(frames[-2])


def test_a_terminal_is_redrawn_at_most_every_redraw_s():
    term, clock = Terminal(), Clock()
    count_to(10, term, clock, seconds_each=0.25, redraw_s=1.0)
    frames = term.getvalue().rstrip("\n").split("\r")[1:]
    counts = [frame.split("] ")[1].split(" ")[0] for frame in frames]
    # Drawn at 0 s, then whenever 1 s has passed since the last drawing, and at the end.
    assert counts == ["0/10", "4/10", "8/10", "10/10"]


def test_a_log_record_meanwhile_starts_on_a_cleared_line():
    term, clock = Terminal(), Clock()
    handler = logging.StreamHandler(term)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        with Progress(4, "things", stream=term, clock=clock) as bar:
            clock.now += 1.0
            bar.update()
            drawn = len(term.getvalue().split("\r")[-1])
            logging.getLogger("ftmtl.test").warning("a.xml: 3 points outside the image")
            clock.now += 0.01  # less than redraw_s: the bar comes back all the same
            bar.update()
            bar.update(2)
        assert handler.filters == []  # the bar leaves the handler as it found it
    finally:
        root.removeHandler(handler)
    lines = term.getvalue().split("\n")
    # The bar's line is blanked and the cursor put back before the record is written.
    assert lines[0].endswith("\r" + " " * drawn + "\rWARNING a.xml: 3 points outside the image")
    assert lines[1].startswith("\rthings [") and "2/4" in lines[1]
    assert lines[1].split("\r")[-1].startswith("things [" + "#" * 30 + "] 4/4 (100 %) in")
    assert lines[2] == ""


# ------------------------------------------------------------------------------ its users
def test_reading_an_inbreast_folder_shows_progress_only_when_asked(tmp_path, capsys):
    generate_synthetic_inbreast(tmp_path, n_patients=1, image_shape=(96, 64))
    capsys.readouterr()
    INbreastDataset().load_inbreast(tmp_path, image_size=64)
    assert "reading INbreast" not in capsys.readouterr().err
    INbreastDataset().load_inbreast(tmp_path, image_size=64, progress=True)
    lines = [line for line in capsys.readouterr().err.splitlines()
             if line.startswith("reading INbreast")]
    assert lines[0] == f"reading INbreast in {tmp_path}: 4 to do"
    assert lines[-1].startswith(f"reading INbreast in {tmp_path}: 4/4 done in ")
    assert len(lines) == 5  # start, three quarters, end


def test_synth_and_the_readers_never_import_tensorflow_or_keras():
    code = ("import sys\n"
            "import ftmtl.inbreast.synthetic, ftmtl.datasets.loader, mrcnn.progress\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras')))")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_synth_into_files_writes_a_few_progress_lines_to_stderr_and_no_redraws(tmp_path):
    out_file, err_file = tmp_path / "stdout.txt", tmp_path / "stderr.txt"
    with open(out_file, "w") as stdout, open(err_file, "w") as stderr:
        done = subprocess.run([sys.executable, "-m", "ftmtl.cli", "synth", "--out",
                               str(tmp_path / "data"), "--patients", "2", "--size", "64x64"],
                              cwd=REPO, stdout=stdout, stderr=stderr, timeout=120,
                              env={**os.environ, "PYTHONWARNINGS": "ignore"})
    out, err = out_file.read_text(), err_file.read_text()
    assert done.returncode == 0, err
    progress = [line for line in err.splitlines() if line.startswith("writing synthetic")]
    assert len(progress) == 5, err
    assert progress[0] == "writing synthetic INbreast: 8 to do"
    for line, quarter in zip(progress[1:4], ("2/8 (25 %)", "4/8 (50 %)", "6/8 (75 %)"),
                             strict=True):
        assert re.fullmatch(rf"writing synthetic INbreast: {re.escape(quarter)}, "
                            r"[\d.]+ s, ETA [\d.]+ s", line), line
    assert progress[-1].startswith("writing synthetic INbreast: 8/8 done in ")
    assert "\r" not in err + out and ANSI_ESCAPE not in err + out
    assert "writing synthetic" not in out and "synthetic INbreast written to" in out


def test_synth_quiet_writes_no_progress(tmp_path, capsys):
    assert main(["-q", "synth", "--out", str(tmp_path), "--patients", "1", "--size",
                 "64x64"]) == 0
    captured = capsys.readouterr()
    assert "writing synthetic" not in captured.err + captured.out
    assert "synthetic INbreast written to" in captured.out
