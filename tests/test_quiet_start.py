"""TensorFlow's start-up notices are recognised and dropped; every other line written to the
process's stderr during an import is kept, in order."""

from __future__ import annotations

import sys

from mrcnn.quiet_start import import_without_notices, is_startup_notice, without_startup_notices

# As TensorFlow 2.21 prints them (the long lines shortened after the part that is matched).
NOTICES = [
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
    "I0000 00:00:1796603554.677933   32385 port.cc:153] oneDNN custom operations are on. "
    "You may see slightly different numerical results",
    "I0000 00:00:1796603554.728680   32385 cpu_feature_guard.cc:227] This TensorFlow binary "
    "is optimized to use available CPU instructions in performance-critical operations.",
    "To enable the following instructions: AVX2 AVX512F FMA, in other operations, rebuild "
    "TensorFlow with the appropriate compiler flags.",
]
KEPT = [
    "E0000 00:00:1796603601.087271   32486 util.cc:131] some real error of this run",
    "Traceback (most recent call last):",
    "WARNING ftmtl.inbreast.masks: a.xml: mass ROI 0 has 50 of 96 points outside the image",
    "I0000 00:00:1.0   1 port.cc:153] another info line",
]


def test_the_notices_are_recognised_and_nothing_else():
    assert all(is_startup_notice(line) for line in NOTICES)
    assert not any(is_startup_notice(line) for line in KEPT)


def test_other_lines_are_kept_in_order():
    text = "\n".join([NOTICES[0], KEPT[0], NOTICES[1], KEPT[1], NOTICES[3]]) + "\n"
    assert without_startup_notices(text) == f"{KEPT[0]}\n{KEPT[1]}\n"


def test_an_import_that_writes_to_file_descriptor_2_keeps_only_the_real_lines(
        tmp_path, monkeypatch, capfd):
    module = tmp_path / "noisy_module_for_quiet_start.py"
    lines = [NOTICES[0], KEPT[0], NOTICES[1]]
    module.write_text("import os\n" + "".join(
        f"os.write(2, {(line + chr(10)).encode()!r})\n" for line in lines) + "VALUE = 7\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    imported = import_without_notices("noisy_module_for_quiet_start")
    try:
        assert imported.VALUE == 7
        assert capfd.readouterr().err == KEPT[0] + "\n"
        # Imported before: returned as it is, nothing written.
        assert import_without_notices("noisy_module_for_quiet_start") is imported
        assert capfd.readouterr().err == ""
    finally:
        sys.modules.pop("noisy_module_for_quiet_start", None)
