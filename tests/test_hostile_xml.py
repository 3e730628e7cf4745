"""Hostile XML against the ROI reader: refused or parsed safely, in bounded time and memory.

The corpus in tests/data/hostile_xml/ holds the small files; the big ones (deep nesting, huge
text and attribute, 60 MB, millions of elements) are generated here in tmp_path. Each file is
read by read_rois in a fresh Python process, so that peak memory (ru_maxrss) and CPU time belong
to that file alone and a hang is cut by a timeout. External entities point at three traps: a
file holding a secret string (which must never appear in any output), a FIFO (opening it for
reading would block, so a reader that tries to load it hangs and fails here), and an HTTP URL on
a local listening socket (any connection attempt is seen in its accept queue).
"""

from __future__ import annotations

import codecs
import json
import os
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
CORPUS = Path(__file__).parent / "data" / "hostile_xml"
SECRET = "INBREAST-SECRET-7f3a9c1e"
CPU_SECONDS_BOUND = 2.0  # a hang guard: observed times are below 0.4 s
RSS_GROWTH_BOUND_MB = 200.0
TRIANGLE = [[10.0, 10.0], [30.0, 10.0], [20.0, 30.0]]

# Run in a child: read one file, report what came out, CPU time and peak-RSS growth.
# The package __init__ imports scikit-learn and more that the reader does not need; an empty
# package module in its place keeps each child at about 0.2 s instead of 1.5 s.
CHILD = r"""
import json, logging, resource, sys, time, types
import ftmtl
package = types.ModuleType("ftmtl.inbreast")
package.__path__ = [sys.argv[2]]
sys.modules["ftmtl.inbreast"] = package
from ftmtl.inbreast.records import InbreastFormatError
from ftmtl.inbreast.rois import read_rois

warnings = []
class Collect(logging.Handler):
    def emit(self, record):
        warnings.append(record.getMessage())
logger = logging.getLogger("ftmtl.inbreast")
logger.addHandler(Collect(logging.WARNING))
logger.setLevel(logging.WARNING)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = time.process_time()
try:
    rois = read_rois(sys.argv[1])
    result = {"outcome": "parsed", "rois": [[r.name, r.points_px.tolist()] for r in rois]}
except InbreastFormatError as err:
    result = {"outcome": "refused", "message": str(err)}
result["cpu_s"] = time.process_time() - start
result["rss_growth_mb"] = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
result["warnings"] = warnings
print(json.dumps(result))
"""


@dataclass
class Traps:
    secret_file: Path
    fifo: Path
    listener: socket.socket

    @property
    def substitutions(self) -> dict[str, str]:
        port = self.listener.getsockname()[1]
        return {
            "@SECRET_FILE_URI@": self.secret_file.as_uri(),
            "@SECRET_FIFO_URI@": self.fifo.as_uri(),
            "@SECRET_URL@": f"http://127.0.0.1:{port}",
        }

    def assert_untouched(self) -> None:
        try:
            connection, _ = self.listener.accept()
        except BlockingIOError:
            return
        connection.close()
        pytest.fail("the reader opened a network connection")


@pytest.fixture(scope="module")
def traps(tmp_path_factory):
    folder = tmp_path_factory.mktemp("traps")
    secret_file = folder / "secret.txt"
    secret_file.write_text(f"{SECRET}\n")
    fifo = folder / "secret.fifo"
    os.mkfifo(fifo)
    listener = socket.create_server(("127.0.0.1", 0))
    listener.setblocking(False)
    yield Traps(secret_file, fifo, listener)
    listener.close()


def instantiated_text(template: Path, traps: Traps) -> tuple[str, str]:
    """The corpus file's text with its @PLACEHOLDERS@ pointed at the traps, and its encoding."""
    data = template.read_bytes()
    encoding = "utf-16" if data[:2] in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE) else "utf-8"
    text = data.decode(encoding)
    for placeholder, value in traps.substitutions.items():
        text = text.replace(placeholder, value)
    return text, encoding


def instantiate(template: Path, traps: Traps, folder: Path) -> Path:
    text, encoding = instantiated_text(template, traps)
    path = folder / template.name
    path.write_bytes(text.encode(encoding))
    return path


def read_in_child(path: Path, traps: Traps) -> dict:
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    try:
        done = subprocess.run(
            [sys.executable, "-c", CHILD, str(path), str(REPO_ROOT / "ftmtl" / "inbreast")],
            capture_output=True, text=True, timeout=60, cwd=REPO_ROOT, env=env,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"{path.name}: no answer in 60 s: a hang (did the reader open {traps.fifo}?)")
    traps.assert_untouched()
    assert SECRET not in done.stdout + done.stderr, f"{path.name}: the secret leaked"
    assert done.returncode == 0, f"{path.name}: the reader crashed:\n{done.stderr[-3000:]}"
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["cpu_s"] < CPU_SECONDS_BOUND, (path.name, result["cpu_s"])
    assert result["rss_growth_mb"] < RSS_GROWTH_BOUND_MB, (path.name, result["rss_growth_mb"])
    return result


def assert_outcome(path: Path, result: dict, expected: tuple[str, str]) -> None:
    outcome, detail = expected
    assert result["outcome"] == outcome, (path.name, result)
    if outcome == "refused":
        assert str(path) in result["message"] and detail in result["message"], result["message"]
    elif detail == "triangle":
        assert result["rois"] == [["Mass", TRIANGLE]]
        assert result["warnings"] == []
    else:
        assert result["rois"] == [] and any(detail in w and str(path) in w
                                            for w in result["warnings"]), result


# What each corpus file must give: refused with words in the message, or the one Mass triangle.
CORPUS_EXPECTED = {
    "xxe_local_file.xml": ("refused", "declares entities"),
    "xxe_url.xml": ("refused", "declares entities"),
    "parameter_entity_local.xml": ("refused", "declares entities"),
    "parameter_entity_url.xml": ("refused", "declares entities"),
    "billion_laughs.xml": ("refused", "declares entities"),
    "quadratic_blowup.xml": ("refused", "declares entities"),
    "utf16_internal_entity.xml": ("refused", "declares entities"),
    "utf16_external_entity.xml": ("refused", "declares entities"),
    "undeclared_entity.xml": ("refused", "not well-formed XML"),
    "xinclude.xml": ("refused", "holds elements"),
    "xinclude_value.xml": ("refused", "unknown plist element"),
    "external_dtd_local.xml": ("parsed", "triangle"),
    "external_dtd_url.xml": ("parsed", "triangle"),
    "utf16_doctype_only.xml": ("parsed", "triangle"),
    "stylesheet_pi.xml": ("parsed", "triangle"),
}


def test_the_corpus_is_what_the_table_describes():
    assert sorted(p.name for p in CORPUS.glob("*.xml")) == sorted(CORPUS_EXPECTED)
    for name in ("utf16_internal_entity.xml", "utf16_external_entity.xml"):
        data = (CORPUS / name).read_bytes()
        assert data[:2] in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)
        assert b"<!ENTITY" not in data  # so the parser's own defences are what is tested


@pytest.mark.parametrize("name", sorted(CORPUS_EXPECTED))
def test_corpus_file_is_refused_or_parsed_safely(name, traps, tmp_path):
    path = instantiate(CORPUS / name, traps, tmp_path)
    assert_outcome(path, read_in_child(path, traps), CORPUS_EXPECTED[name])


def test_utf7_external_entity_is_refused(traps, tmp_path):
    """UTF-7 writes '<' as '+ADw-': a byte search cannot see the declaration, the DTD check can."""
    text, _ = instantiated_text(CORPUS / "xxe_local_file.xml", traps)
    data = text.replace('encoding="UTF-8"', 'encoding="UTF-7"').encode("utf-7")
    data = data.replace(b"<!ENTITY", b"+ADw-!ENTITY")  # the encoder leaves "<" as is
    assert b"<!ENTITY" not in data
    path = tmp_path / "utf7_external_entity.xml"
    path.write_bytes(data)
    assert_outcome(path, read_in_child(path, traps), ("refused", "declares entities"))


# --- big files, generated ----------------------------------------------------------------------


def write_chunks(path: Path, *parts: tuple[bytes, int]) -> None:
    """Write each (chunk, count) part without building the whole file in memory."""
    with open(path, "wb") as handle:
        for chunk, count in parts:
            for _ in range(count // 1000):
                handle.write(chunk * 1000)
            handle.write(chunk * (count % 1000))


def roi_file(name: bytes, point: bytes = b"(20.000000, 30.000000)") -> tuple[bytes, bytes]:
    """A one-ROI plist cut around the Name value: (head, tail)."""
    head = (b"<plist><dict><key>Images</key><array><dict><key>ROIs</key><array><dict>"
            b"<key>Name</key><string>" + name)
    tail = (b"</string><key>Point_px</key><array><string>(10.000000, 10.000000)</string>"
            b"<string>(30.000000, 10.000000)</string><string>" + point + b"</string></array>"
            b"</dict></array></dict></array></dict></plist>")
    return head, tail


def deep_arrays(path: Path) -> None:
    write_chunks(path, (b"<plist>", 1), (b"<array>", 100_000), (b"</array>", 100_000),
                 (b"</plist>", 1))


def deep_dicts(path: Path) -> None:
    write_chunks(path, (b"<plist>", 1), (b"<dict><key>k</key>", 100_000), (b"<true/>", 1),
                 (b"</dict>", 100_000), (b"</plist>", 1))


def nesting_under_the_parser_limit(path: Path) -> None:
    write_chunks(path, (b"<plist>", 1), (b"<array>", 250), (b"</array>", 250),
                 (b"</plist>", 1))


def huge_text_node(path: Path) -> None:
    head, tail = roi_file(b"Mass")
    write_chunks(path, (head, 1), (b"A", 12 * 2**20), (tail, 1))


def huge_attribute(path: Path) -> None:
    write_chunks(path, (b'<plist version="', 1), (b"1", 12 * 2**20),
                 (b'"><string>x</string></plist>', 1))


def file_of_60_mb(path: Path) -> None:
    head, tail = roi_file(b"Mass")
    write_chunks(path, (head, 1), (b"<!-- padding -->", 60 * 2**20 // 16), (tail, 1))


def millions_of_elements(path: Path) -> None:
    write_chunks(path, (b"<plist><array>", 1), (b"<true/>", 2_000_000), (b"</array></plist>", 1))


def huge_integer(path: Path) -> None:
    write_chunks(path, (b"<plist><dict><key>Images</key><integer>", 1), (b"9", 2**20),
                 (b"</integer></dict></plist>", 1))


def long_point_string(path: Path) -> None:
    head, tail = roi_file(b"Mass", point=b"(" + b"1" * 5 * 2**20 + b", 2)")
    write_chunks(path, (head + tail, 1))


GENERATED = {
    "deep_arrays_100k": (deep_arrays, ("refused", "not well-formed XML")),
    "deep_dicts_100k": (deep_dicts, ("refused", "not well-formed XML")),
    "nesting_250": (nesting_under_the_parser_limit, ("refused", "nested deeper than 32")),
    "huge_text_node_12mb": (huge_text_node, ("refused", "not well-formed XML")),
    "huge_attribute_12mb": (huge_attribute, ("refused", "not well-formed XML")),
    "file_60mb": (file_of_60_mb, ("refused", "above the limit")),
    "elements_2m": (millions_of_elements, ("refused", "more than 200000 XML elements")),
    "integer_1m_digits": (huge_integer, ("refused", "unreadable")),
    "point_string_5mb": (long_point_string, ("parsed", "characters, above 256")),
}


@pytest.mark.parametrize("name", sorted(GENERATED))
def test_big_generated_file_is_refused_or_parsed_safely(name, traps, tmp_path):
    build, expected = GENERATED[name]
    path = tmp_path / f"{name}.xml"
    build(path)
    try:
        assert_outcome(path, read_in_child(path, traps), expected)
    finally:
        path.unlink()  # do not leave tens of MB in the temporary folder
