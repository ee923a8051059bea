"""The instance secret key: generated once, shared by every process that starts on a fresh instance/."""
from __future__ import annotations

import multiprocessing
import stat

from followup import config


def test_key_is_generated_once_and_kept(tmp_path):
    first = config._instance_secret(tmp_path)
    assert len(first) == 64
    assert config._instance_secret(tmp_path) == first
    assert stat.S_IMODE((tmp_path / "secret_key").stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["secret_key"]


def test_a_key_written_meanwhile_by_another_process_wins_without_error(tmp_path, monkeypatch):
    def other_process_finishes_first(nbytes):
        (tmp_path / "secret_key").write_text("their-key")
        return "our-key"

    monkeypatch.setattr(config.secrets, "token_hex", other_process_finishes_first)
    assert config._instance_secret(tmp_path) == "their-key"
    assert [p.name for p in tmp_path.iterdir()] == ["secret_key"]


def _read_key(args):
    folder, barrier = args
    barrier.wait()
    return config._instance_secret(folder)


def test_processes_starting_together_share_one_complete_key(tmp_path):
    ctx = multiprocessing.get_context("fork")
    n = 6
    with ctx.Manager() as manager:
        barrier = manager.Barrier(n)
        with ctx.Pool(n) as pool:
            keys = pool.map(_read_key, [(tmp_path / "instance", barrier)] * n)
    assert len(set(keys)) == 1 and len(keys[0]) == 64


def test_clinics_with_several_live_links_are_read_as_ids(tmp_path):
    environ = {"SECRET_KEY": "k", "UPLOAD_LINKS_SEVERAL_CLINICS": "3, 7,"}
    assert config.from_environment(str(tmp_path), environ)["UPLOAD_LINKS_SEVERAL_CLINICS"] == {3, 7}
    assert config.from_environment(str(tmp_path), {"SECRET_KEY": "k"})["UPLOAD_LINKS_SEVERAL_CLINICS"] == set()
