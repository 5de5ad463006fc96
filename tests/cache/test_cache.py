"""The private cache folder: created 0700, refused (naming the folder and why) when another user owns it or others
may write to it, files in it read only when they are private regular files, and nothing trusted from a refused one."""

from __future__ import annotations

import os
import stat

import pytest

from secret_moe.cache import open_private_file, private_dir, read_json, update_json, write_private_file
from secret_moe.errors import CacheError


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache" / "secret_moe"


def test_the_folder_is_created_private_and_files_are_written_owner_only(cache):
    old = os.umask(0)  # whatever the umask, nothing is written for others
    try:
        with private_dir() as folder:
            write_private_file(folder, "a.json", b"{}")
    finally:
        os.umask(old)
    assert stat.S_IMODE(cache.stat().st_mode) == 0o700
    assert stat.S_IMODE((cache / "a.json").stat().st_mode) == 0o600
    assert sorted(p.name for p in cache.iterdir()) == ["a.json"]  # no temporary file left


def test_a_folder_writable_by_others_is_refused_naming_it(cache):
    cache.mkdir(parents=True)
    cache.chmod(0o777)
    with pytest.raises(CacheError) as error, private_dir():
        pass
    assert f"cache folder '{cache}' is not private: its group or others may write to it (mode 0777)" in str(error.value)


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can give a folder to another owner")
def test_a_folder_of_another_owner_is_refused_naming_it(cache):
    cache.mkdir(parents=True, mode=0o700)
    os.chown(cache, 65534, 65534)
    with pytest.raises(CacheError, match=r"is not private: it is owned by uid 65534, not by this user \(uid 0\)"):
        with private_dir():
            pass


def test_a_link_or_a_file_others_may_write_is_not_opened(cache, tmp_path):
    cache.mkdir(parents=True, mode=0o700)
    (tmp_path / "elsewhere.json").write_text("{}")
    (cache / "link.json").symlink_to(tmp_path / "elsewhere.json")
    (cache / "open.json").write_text("{}")
    (cache / "open.json").chmod(0o666)
    with private_dir() as folder:
        assert open_private_file(folder, "missing.json") is None
        with pytest.raises(CacheError, match="'link.json' cannot be opened as a file"):
            open_private_file(folder, "link.json")
        with pytest.raises(CacheError, match="'open.json' is not private: its group or others may write to it"):
            open_private_file(folder, "open.json")


def test_json_entries_are_kept_and_a_refused_cache_is_not_trusted(cache):
    update_json("shapes.json", {"a": [18, 640]})
    update_json("shapes.json", {"b": [6, 512]})
    assert read_json("shapes.json") == {"a": [18, 640], "b": [6, 512]}
    cache.chmod(0o777)
    assert read_json("shapes.json") == {}
    update_json("shapes.json", {"c": [1, 2]})  # nothing written to a folder others may write to
    cache.chmod(0o700)
    assert read_json("shapes.json") == {"a": [18, 640], "b": [6, 512]}


def test_only_the_entries_added_last_are_kept(cache):
    for index in range(5):
        update_json("shapes.json", {f"file{index}": [index, 1]}, keep=3)
    update_json("shapes.json", {"file2": [2, 2]}, keep=3)  # an entry added again counts as added last
    assert read_json("shapes.json") == {"file3": [3, 1], "file4": [4, 1], "file2": [2, 2]}
