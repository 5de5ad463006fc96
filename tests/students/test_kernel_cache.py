"""The fused kernels' library is loaded only from a private cache folder and only with the SHA-256 recorded when this
package built it: a library planted under its name (real, compiled here, with a constructor that writes a marker
file when anything loads it) never runs, and a cache folder of another owner or writable by others is refused with a
message (the kernels are then built in a private temporary folder)."""

from __future__ import annotations

import hashlib
import os
import shlex
import shutil
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from secret_moe.students import fused

COMPILER = shlex.split(os.environ.get("CXX", "c++"))
pytestmark = pytest.mark.skipif(shutil.which(COMPILER[0]) is None, reason="no C++ compiler to build libraries with")

# A process that loads the package's kernels as training does, and says whether it got them.
LOAD = textwrap.dedent(
    """
    import logging
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s %(message)s")
    from secret_moe.students import fused
    print("kernels loaded" if fused.library() is not None else "no kernels")
    """
)


def load_kernels(cache: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "XDG_CACHE_HOME": str(cache), "SECRET_MOE_FUSED": "1"}
    done = subprocess.run([sys.executable, "-c", LOAD], capture_output=True, text=True, env=env, check=False)
    assert done.returncode == 0, done.stderr
    return done


def plant(folder: Path, marker: Path) -> Path:
    """Compile a real shared library whose constructor writes `marker`, and put it where the kernels are looked for,
    under their name."""
    source = folder.parent / "planted.cpp"
    source.write_text(
        "#include <cstdio>\n"
        "__attribute__((constructor)) static void planted() {\n"
        f'  if (FILE *f = std::fopen("{marker}", "w")) {{\n'
        '    std::fputs("the planted library ran\\n", f);\n'
        "    std::fclose(f);\n"
        "  }\n"
        "}\n"
    )
    library = folder / fused.library_name()
    subprocess.run([*COMPILER, "-shared", "-fPIC", str(source), "-o", str(library)], check=True, capture_output=True)
    return library


def record(library: Path) -> Path:
    """A SHA-256 record of the library, as the build writes one (so only the folder's privacy can refuse it)."""
    file = library.with_name(library.name + ".sha256")
    file.write_text(f"{hashlib.sha256(library.read_bytes()).hexdigest()}  {library.name}\n")
    return file


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    """$XDG_CACHE_HOME for the processes of a test; the kernels' folder is cache/secret_moe."""
    return tmp_path / "cache"


def test_the_planted_library_runs_when_loaded(tmp_path, cache):
    """The control: the planted library is real, and loading it writes the marker."""
    (cache / "secret_moe").mkdir(parents=True)
    library = plant(cache / "secret_moe", tmp_path / "marker")
    subprocess.run([sys.executable, "-c", f"import ctypes; ctypes.CDLL({str(library)!r})"], check=True)
    assert (tmp_path / "marker").read_text() == "the planted library ran\n"


@pytest.mark.parametrize("forged", [False, True], ids=["no-record", "record-of-another-file"])
def test_a_planted_library_with_the_right_name_is_not_loaded(tmp_path, cache, forged):
    folder = cache / "secret_moe"
    folder.mkdir(parents=True, mode=0o700)
    library = plant(folder, tmp_path / "marker")
    if forged:  # a record, but of the bytes this package builds, not of the planted file
        (folder / (library.name + ".sha256")).write_text(f"{'0' * 64}  {library.name}\n")
    done = load_kernels(cache)
    assert not (tmp_path / "marker").exists(), done.stderr
    assert "kernels loaded" in done.stdout, done.stderr
    assert ("does not match its SHA-256 record" in done.stderr) == forged, done.stderr
    # rebuilt in its place, and recorded
    assert record(library).read_text() == (folder / (library.name + ".sha256")).read_text()


def test_the_cache_is_created_private_and_a_cached_library_loads_without_a_build(cache):
    first = load_kernels(cache)
    assert "kernels loaded" in first.stdout and "fused CPU kernels: built" in first.stderr, first.stderr
    folder, name = cache / "secret_moe", fused.library_name()
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in [folder, *folder.iterdir()]}
    assert modes == {"secret_moe": 0o700, name: 0o700, f"{name}.sha256": 0o600}
    recorded = (folder / f"{name}.sha256").read_text()
    assert recorded == f"{hashlib.sha256((folder / name).read_bytes()).hexdigest()}  {name}\n"
    second = load_kernels(cache)
    assert "kernels loaded" in second.stdout and "built" not in second.stderr, second.stderr


def test_a_truncated_library_is_rebuilt(cache):
    load_kernels(cache)
    library = cache / "secret_moe" / fused.library_name()
    library.write_bytes(library.read_bytes()[:4096])
    done = load_kernels(cache)
    assert "does not match its SHA-256 record; rebuilding it" in done.stderr
    assert "kernels loaded" in done.stdout and library.stat().st_size > 4096


def test_a_library_writable_by_others_is_not_loaded(tmp_path, cache):
    folder = cache / "secret_moe"
    folder.mkdir(parents=True, mode=0o700)
    library = plant(folder, tmp_path / "marker")
    record(library)
    library.chmod(0o777)
    done = load_kernels(cache)
    assert not (tmp_path / "marker").exists()
    assert f"cache file '{library.name}' is not private: its group or others may write to it (mode 0777)" in done.stderr
    assert "kernels loaded" in done.stdout and stat.S_IMODE(library.stat().st_mode) == 0o700


def refused_folder(tmp_path: Path, cache: Path, why: str) -> None:
    """A folder that is not private holds a planted library with a matching record: the folder is refused with one
    warning naming it and why, nothing in it is loaded or written, and the kernels come from a private build."""
    folder = cache / "secret_moe"
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    done = load_kernels(cache)
    assert not (tmp_path / "marker").exists(), done.stderr
    warnings = [line for line in done.stderr.splitlines() if line.startswith("WARNING")]
    assert warnings == [
        f"WARNING secret_moe.students.kernel_cache fused CPU kernels: cache folder '{folder}' is not private: {why} "
        "(`chmod 700` a folder of your own, or set XDG_CACHE_HOME to another); building them in a private temporary "
        "folder for this process"
    ], done.stderr
    assert "kernels loaded" in done.stdout
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before


def test_a_cache_folder_writable_by_others_is_refused(tmp_path, cache):
    folder = cache / "secret_moe"
    folder.mkdir(parents=True)
    record(plant(folder, tmp_path / "marker"))
    folder.chmod(0o777)
    refused_folder(tmp_path, cache, "its group or others may write to it (mode 0777)")


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can give a folder to another owner")
def test_a_cache_folder_of_another_owner_is_refused(tmp_path, cache):
    folder = cache / "secret_moe"
    folder.mkdir(parents=True, mode=0o700)
    library = plant(folder, tmp_path / "marker")
    for path in (folder, library, record(library)):
        os.chown(path, 65534, 65534)
    refused_folder(tmp_path, cache, "it is owned by uid 65534, not by this user (uid 0)")
