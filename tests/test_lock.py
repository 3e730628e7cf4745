"""requirements/lock.txt against pyproject.toml: every range the project declares is pinned in the
lock by a version inside the range, and the environment the tests run in is the locked one (so CI
really installs from the lock)."""

from __future__ import annotations

import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
EXTRAS = ("cpu", "dev")  # what scripts/setup_env.sh installs


LOCK = ROOT / "requirements" / "lock.txt"
LOWER_BOUNDS = ROOT / "requirements" / "lower-bounds.txt"


def read_lock(path: Path = LOCK) -> dict[str, Version]:
    pins: dict[str, Version] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        name, sep, version = line.partition("==")
        assert sep, f"{path.name}: {line!r} is not an exact pin (name==version)"
        pins[canonicalize_name(name)] = Version(version)
    return pins


def declared_requirements(pyproject: Path = ROOT / "pyproject.toml") -> list[Requirement]:
    project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    texts = list(project["dependencies"])
    for extra in EXTRAS:
        texts += project["optional-dependencies"][extra]
    return [Requirement(text) for text in texts]


def applies_here(requirement: Requirement) -> bool:
    return requirement.marker is None or requirement.marker.evaluate({"extra": ""})


def test_the_lock_pins_every_declared_requirement_inside_its_range():
    pins = read_lock()
    checked = 0
    for requirement in filter(applies_here, declared_requirements()):
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{requirement} is declared in pyproject.toml but not in lock.txt"
        assert requirement.specifier.contains(pins[name], prereleases=True), (
            f"lock.txt pins {name}=={pins[name]}, outside pyproject.toml's {requirement}")
        checked += 1
    assert checked >= 15


def lower_bound(requirement: Requirement) -> Version | None:
    bounds = [Version(spec.version) for spec in requirement.specifier if spec.operator == ">="]
    return max(bounds, default=None)


def test_the_lower_bounds_file_pins_each_range_at_its_lower_bound():
    """The suite is run once in that environment (requirements/README.md); this keeps the file
    and the ranges from drifting apart."""
    lower, lock = read_lock(LOWER_BOUNDS), read_lock()
    assert lower.keys() == lock.keys()
    declared = {canonicalize_name(r.name): r for r in filter(applies_here, declared_requirements())}
    for name, version in lower.items():
        if name in declared:
            assert version == lower_bound(declared[name]), (
                f"lower-bounds.txt pins {name}=={version}, the range is {declared[name]}")
        else:
            assert version == lock[name], f"{name}: not declared, so it stays as locked"


def test_the_ranges_are_ranges_not_pins():
    for requirement in declared_requirements():
        assert not any(spec.operator == "==" for spec in requirement.specifier), (
            f"{requirement}: pyproject.toml declares ranges; exact versions go in lock.txt")


@pytest.mark.parametrize("platform, wanted", [
    ({"sys_platform": "linux", "platform_machine": "x86_64"}, "tensorflow-cpu"),
    ({"sys_platform": "linux", "platform_machine": "aarch64"}, "tensorflow"),
    ({"sys_platform": "darwin", "platform_machine": "arm64"}, "tensorflow"),
    ({"sys_platform": "win32", "platform_machine": "AMD64"}, "tensorflow"),
])
def test_the_cpu_extra_picks_one_tensorflow_wheel_per_platform(platform, wanted):
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    chosen = [Requirement(text).name for text in project["optional-dependencies"]["cpu"]
              if Requirement(text).marker.evaluate({**platform, "extra": ""})]
    assert chosen == [wanted]


def test_the_environment_is_the_locked_one():
    wrong = []
    for name, version in read_lock().items():
        try:
            installed = Version(metadata.version(name))
        except metadata.PackageNotFoundError:
            wrong.append(f"{name} (locked {version}) is not installed")
            continue
        if installed != version:
            wrong.append(f"{name} {installed} installed, {version} locked")
    assert not wrong, "; ".join(wrong) + " (run scripts/setup_env.sh)"
