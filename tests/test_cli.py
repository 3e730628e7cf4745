"""The inbreast command line: help texts, synth, train and resume, detect with a bad input,
evaluate, and the quick demo (slow)."""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ftmtl import cli as inbreast
from ftmtl.cli import build_parser, main

REPO = Path(__file__).resolve().parents[1]
COMMANDS = ("synth", "train", "evaluate", "detect", "export", "crossval", "demo")
# paper_cpu crops: images prepared at 64 px, crops of 64.
TINY = ["--preset", "paper_cpu", "--image-size", "64", "--set", "IMAGE_MIN_DIM=64"]
# Training in this process leaves op determinism off: it is process-wide and would hold for
# every later test (tests/test_reproducible_cli.py runs the default in fresh processes).
FREE_OPS = "--nondeterministic"


def subcommand_parsers() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def checkpoints(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.glob("mask_rcnn_*.h5"))


# ------------------------------------------------------------------------------------ help
def test_preset_and_model_names_are_those_of_ftmtl_presets():
    from ftmtl.presets import MODELS, PRESETS

    assert set(inbreast.PRESET_NAMES) == set(PRESETS)
    assert tuple(inbreast.MODEL_NAMES) == tuple(MODELS)


@pytest.mark.parametrize("command", COMMANDS)
def test_help_of_every_subcommand(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert f"usage: inbreast {command}" in text
    for action in subcommand_parsers()[command]._actions:
        assert action.help, f"{command}: option {action.option_strings or action.dest} has no help"
        for flag in action.option_strings:
            assert flag in text


def test_every_subcommand_is_listed_in_the_main_help(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    assert all(command in text for command in COMMANDS)
    assert set(subcommand_parsers()) == set(COMMANDS)


def test_the_script_runs_from_the_checkout_and_as_the_installed_command():
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    as_file = subprocess.run([sys.executable, "samples/inbreast/inbreast.py", "detect", "--help"],
                             cwd=REPO, capture_output=True, text=True, env=env, timeout=120)
    assert as_file.returncode == 0, as_file.stderr
    assert "usage: inbreast detect" in as_file.stdout
    script = Path(sys.executable).with_name("inbreast")
    assert script.is_file(), "the console script 'inbreast' is not installed in this venv"
    installed = subprocess.run([str(script), "synth", "--help"], capture_output=True, text=True,
                               env=env, timeout=120)
    assert installed.returncode == 0, installed.stderr
    assert "usage: inbreast synth" in installed.stdout


@pytest.mark.parametrize("argv", [["synth", "--out", "x", "--size", "416"],
                                  ["synth", "--out", "x", "--patients", "0"],
                                  ["train", "--dataset", "x", "--preset", "big"],
                                  ["crossval", "--dataset", "x", "--out", "y", "--models", "rcnn"],
                                  ["crossval", "--dataset", "x", "--out", "y", "--only-folds=-1"],
                                  ["crossval", "--dataset", "x", "--out", "y", "--only-folds", "a"],
                                  ["detect", "--weights", "w", "--out", "o"]])
def test_bad_arguments_exit_with_a_usage_error(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert "error:" in capsys.readouterr().err


def test_argument_types():
    assert inbreast.image_shape_arg("416x320") == (416, 320)
    assert inbreast.override_arg("DETECTION_MIN_CONFIDENCE=0.25") == (
        "DETECTION_MIN_CONFIDENCE", 0.25)
    assert inbreast.override_arg("OPTIMIZER=adam") == ("OPTIMIZER", "adam")
    assert inbreast.override_arg("RPN_ANCHOR_SCALES=(8, 16)") == ("RPN_ANCHOR_SCALES", (8, 16))
    with pytest.raises(argparse.ArgumentTypeError, match="upper-case"):
        inbreast.override_arg("lr=3")
    assert inbreast.model_list_arg("ftmtl, maskrcnn") == ("ftmtl", "maskrcnn")
    assert inbreast.fold_list_arg("0, 2") == (0, 2)


def test_metrics_table_lists_the_chosen_numbers_of_nested_results():
    metrics = {"auc": 0.91234, "tpr_at_fpi": {"1.0": 0.5, "5.0": None}, "curve": [0.1, 0.2],
               "dice_mean": np.float64(0.75), "name": "ftmtl", "n_cases": 12, "other": 3.0}
    lines = inbreast.format_metrics_table(
        metrics, keys=("n_cases", "auc", "tpr_at_fpi", "dice_mean", "curve")).splitlines()
    assert [line.split()[0] for line in lines] == [
        "n_cases", "auc", "tpr_at_fpi.1.0", "tpr_at_fpi.5.0", "dice_mean"]
    assert [line.split()[1] for line in lines] == ["12", "0.9123", "0.5", "n/a", "0.75"]
    every = inbreast.format_metrics_table(metrics).splitlines()
    assert [line.split()[0] for line in every][-1] == "other"


# ----------------------------------------------------------------------------------- synth
def test_synth_writes_the_inbreast_layout(tmp_path, capsys, caplog):
    out = tmp_path / "synth"
    argv = ["synth", "--out", str(out), "--patients", "1", "--size", "128x96", "--seed", "4"]
    assert main(argv) == 0
    dicoms = sorted((out / "AllDICOMs").glob("*_MG_*_ANON.dcm"))
    assert len(dicoms) == 4
    assert (out / "INbreast.csv").read_bytes().startswith(b"Patient ID;Patient age;")
    assert (out / "manifest.json").is_file()
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["seed"] == 4 and manifest["image_shape"] == [128, 96]
    printed = capsys.readouterr().out
    assert "images" in printed and " 4" in printed
    # A second run refuses to mix files, unless told to overwrite.
    assert main(argv) == inbreast.EXIT_ERROR
    assert "already holds" in caplog.text
    assert main([*argv, "--overwrite"]) == 0


# ------------------------------------------------------------------------ training runs
@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory):
    from ftmtl.inbreast.synthetic import generate_synthetic_inbreast

    folder = tmp_path_factory.mktemp("inbreast")
    generate_synthetic_inbreast(folder, n_patients=2, seed=1, image_shape=(128, 96))
    return folder


@pytest.fixture(scope="module")
def trained(dataset_dir, tmp_path_factory):
    """Fold 0 of 2 trained from scratch (the one joint stage) one step an epoch for one epoch;
    then resumed with 'last' to three epochs. Returns (logs, run folder, files after the first
    run)."""
    logs = tmp_path_factory.mktemp("logs")
    common = ["-q", "train", "--dataset", str(dataset_dir), *TINY, "--steps", "1",
              "--logs", str(logs), "--folds", "2", "--fold", "0", FREE_OPS]
    assert main([*common, "--epochs", "1", "--weights", "none"]) == 0
    runs = [d for d in (logs / "fold0of2").iterdir() if d.is_dir()]
    assert len(runs) == 1
    first = checkpoints(runs[0])
    assert main([*common, "--epochs", "3", "--weights", "last"]) == 0
    return logs, runs[0], first


def test_train_writes_a_checkpoint_an_epoch_and_the_config(trained):
    _, run, first = trained
    assert first == ["mask_rcnn_ftmtl_paper_cpu_0001.h5"]
    config = json.loads((run / "config.json").read_text())
    assert config["PREPARED_IMAGE_SIZE"] == 64 and config["IMAGE_MIN_DIM"] == 64
    assert config["STEPS_PER_EPOCH"] == 1 and config["IMAGE_RESIZE_MODE"] == "crop"
    assert config["NAME"] == "ftmtl_paper_cpu" and config["TRANSFER_BRANCH"] is True


def test_train_resumes_from_the_last_checkpoint_in_the_same_run(trained):
    logs, run, _ = trained
    # Epoch 1 done; the joint stage continues 1 -> 3, counting on in the same folder (no new,
    # empty run folder is left).
    assert checkpoints(run) == [f"mask_rcnn_ftmtl_paper_cpu_{e:04d}.h5" for e in range(1, 4)]
    assert [d for d in (logs / "fold0of2").iterdir()] == [run]


def test_train_with_last_but_no_run_says_so(dataset_dir, tmp_path, caplog):
    code = main(["-q", "train", "--dataset", str(dataset_dir), *TINY, "--steps", "1",
                 "--epochs", "1", "--logs", str(tmp_path / "empty"), "--weights", "last",
                 FREE_OPS])
    assert code == inbreast.EXIT_ERROR
    assert "no checkpoint of 'ftmtl_paper_cpu'" in caplog.text


@pytest.mark.parametrize(("argv", "message"), [
    (["train", "--dataset", "D", "--weights", "imagenett"],
     "'imagenett' is neither a keyword nor a file; choose none, imagenet, coco, last, "
     "imagenet:PATH, a .h5 PATH"),
    (["train", "--dataset", "D", "--weights", "imagenet:/no/resnet.h5"],
     "the file '/no/resnet.h5' does not exist"),
    (["crossval", "--dataset", "D", "--out", "O", "--weights", "last"],
     "'last' is neither a keyword nor a file; choose none, imagenet, coco, imagenet:PATH"),
    (["evaluate", "--dataset", "D", "--out", "O", "--weights", "coco"],
     "'coco' is neither a keyword nor a file; choose last, a .h5 PATH"),
    (["detect", "x.dcm", "--out", "O", "--weights", "/no/w.h5"], "choose last, a .h5 PATH"),
])
def test_weights_are_checked_before_any_data_loads(argv, message, caplog):
    """The dataset D does not exist: the --weights error comes first, with the choices."""
    assert main(["-q", *argv]) == inbreast.EXIT_ERROR
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and message in errors[0], errors


@pytest.mark.parametrize(("argv", "verbose", "quiet"), [
    (["-v", "synth", "--out", "x"], True, False),
    (["synth", "--out", "x", "-q"], False, True),
    (["synth", "--out", "x", "--verbose"], True, False),
    (["synth", "--out", "x"], False, False),
])
def test_log_options_work_before_and_after_the_command(argv, verbose, quiet):
    args = build_parser().parse_args(argv)
    assert (args.verbose, args.quiet) == (verbose, quiet)


def test_version(capsys):
    from importlib.metadata import version

    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0
    assert capsys.readouterr().out.strip() == f"inbreast {version('ftmtl')}"


def test_progress_is_a_bar_on_a_terminal_and_a_line_an_epoch_in_a_log(monkeypatch):
    import io

    from mrcnn.model import progress_verbosity

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    monkeypatch.setattr(sys, "stdout", io.StringIO())
    assert progress_verbosity() == 2 and progress_verbosity(False) == 0
    monkeypatch.setattr(sys, "stdout", Terminal())
    assert progress_verbosity() == 1
    assert inbreast.keras_verbosity(argparse.Namespace(quiet=True)) == 0


def test_fold_options_are_checked(dataset_dir, caplog):
    code = main(["-q", "train", "--dataset", str(dataset_dir), *TINY, "--folds", "2",
                 "--fold", "2"])
    assert code == inbreast.EXIT_ERROR and "--fold must be in 0..1" in caplog.text


def test_detect_skips_an_unreadable_file_names_it_and_returns_1(trained, dataset_dir,
                                                                tmp_path, caplog):
    _, run, _ = trained
    broken = tmp_path / "in" / "broken.dcm"
    broken.parent.mkdir()
    broken.write_bytes(b"\x00" * 200 + b"not a dicom")
    good = sorted((dataset_dir / "AllDICOMs").glob("*.dcm"))[0]
    out = tmp_path / "out"
    code = main(["-q", "detect", str(broken.parent), str(good), "--weights",
                 str(run / "mask_rcnn_ftmtl_paper_cpu_0003.h5"), *TINY,
                 "--min-confidence", "0", "--out", str(out)])
    assert code == inbreast.EXIT_PARTIAL
    assert sorted(p.name for p in out.iterdir()) == [f"{good.stem}.json", f"{good.stem}.png"]
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert any("broken.dcm" in message for message in errors)
    record = json.loads((out / f"{good.stem}.json").read_text())
    assert record["image_shape"] == [128, 96]
    assert record["weights"].endswith("_0003.h5")


def test_detect_with_no_dicom_at_all_is_an_error(tmp_path, caplog):
    weights = tmp_path / "w.h5"
    weights.write_bytes(b"")
    code = main(["-q", "detect", str(tmp_path), "--weights", str(weights), "--out",
                 str(tmp_path / "o")])
    assert code == inbreast.EXIT_ERROR and "no DICOM files found" in caplog.text


def test_evaluate_writes_metrics_of_the_held_out_fold(trained, dataset_dir, tmp_path, capsys):
    logs, _, _ = trained
    out = tmp_path / "eval"
    code = main(["-q", "evaluate", "--dataset", str(dataset_dir), "--weights", "last",
                 "--logs", str(logs), "--folds", "2", "--fold", "0", *TINY, "--out", str(out)])
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    # Two patients, two folds: the held-out fold is one patient's four views.
    assert metrics["n_cases"] == 4
    assert set(metrics["tpr_at_fpi"]) == {"0.5", "1.0", "2.0", "3.67", "5.0"}
    printed = capsys.readouterr().out
    assert "metrics of 4 images written" in printed
    assert [line.split()[0] for line in printed.splitlines()[:2]] == ["n_cases", "n_labelled"]


# ------------------------------------------------------------------------ weights choices
def test_default_weights_follow_the_backbone():
    from ftmtl.presets import make_config

    assert inbreast.resolve_weights(None, make_config("paper")) == "imagenet"
    assert inbreast.resolve_weights(None, make_config("fpn_cpu")) == "none"
    assert inbreast.resolve_weights("coco", make_config("paper_cpu")) == "coco"


# ------------------------------------------------------------------------------------ demo
@pytest.mark.slow
def test_demo_quick_runs_end_to_end(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["-q", "demo", "--quick", "--out", str(out), FREE_OPS]) == 0
    assert (out / "data" / "INbreast.csv").is_file()
    assert (out / "results.md").is_file()
    assert list(out.rglob("*.png"))
    assert str(out / "results.md") in capsys.readouterr().out
