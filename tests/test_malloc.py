"""mrcnn.malloc: when the tuning applies and when it steps aside."""

import platform

import pytest

from mrcnn import malloc

GLIBC = platform.libc_ver()[0] == "glibc"


@pytest.mark.parametrize("environ, chose", [
    ({}, False),
    ({"MRCNN_MALLOC_TUNING": "1"}, False),
    ({"MRCNN_MALLOC_TUNING": "0"}, True),
    ({"MALLOC_TRIM_THRESHOLD_": "0"}, True),
    ({"MALLOC_MMAP_THRESHOLD_": "65536", "MRCNN_MALLOC_TUNING": "1"}, True),
    ({"OTHER": "x"}, False),
])
def test_user_choice_is_read_from_the_environment(environ, chose):
    assert malloc.user_chose_malloc(environ) is chose


def test_opt_out_applies_nothing(monkeypatch):
    monkeypatch.setenv("MRCNN_MALLOC_TUNING", "0")
    monkeypatch.setattr(malloc, "_glibc", lambda: pytest.fail("libc must not be touched"))
    assert malloc._apply() is False


@pytest.mark.skipif(not GLIBC, reason="mallopt with these parameters is glibc's")
def test_glibc_accepts_every_setting(monkeypatch):
    for name in (*malloc.SETTINGS, malloc.OPT_OUT):
        monkeypatch.delenv(name, raising=False)
    assert malloc._glibc() is not None
    assert malloc._apply() is True


def test_tune_malloc_runs_once(monkeypatch):
    calls = []
    monkeypatch.setattr(malloc, "_applied", None)
    monkeypatch.setattr(malloc, "_apply", lambda: calls.append(1) or True)
    assert malloc.tune_malloc() is True
    assert malloc.tune_malloc() is True
    assert calls == [1]


def test_settings_fit_in_a_c_int():
    for _, value in malloc.SETTINGS.values():
        assert 0 < value < 2**31
