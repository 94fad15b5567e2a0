"""verification._cache: JAX's persistent compilation cache, on by default, where the user says,
off when asked; a second process loads what the first compiled instead of compiling again.

The cross-process tests count JAX's own monitoring events (cache hits and misses of the
persistent cache), not seconds, so they hold on a loaded machine.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from verification import _cache, _programs

ROOT = Path(__file__).resolve().parent.parent

# Runs the main job on two rows and prints JAX's persistent-cache events as the last line.
_COUNTING_RUN = """
import collections, json, sys
from jax import monitoring
events = collections.Counter()
monitoring.register_event_listener(lambda name, **kwargs: events.update([name]))
from verification.cli.report import main
status = main(sys.argv[1:])
prefixes = ("/jax/compilation_cache/", "/manual_bp/programs/")
print(json.dumps({"status": status, **{k.split("/")[-1]: v for k, v in events.items()
                                        if k.startswith(prefixes)}}))
"""
_ROWS = ["--max-examples", "3", "--dtype", "float64", "--only", "softmax", "--only", "linear"]


def _counting_run(args: list[str], cache_env: str | None) -> dict[str, int]:
    env = {k: v for k, v in os.environ.items() if k != _cache.ENV_VAR}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    if cache_env is not None:
        env[_cache.ENV_VAR] = cache_env
    done = subprocess.run(
        [sys.executable, "-c", _COUNTING_RUN, *_ROWS, *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        check=False,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    counts: dict[str, int] = json.loads(done.stdout.strip().splitlines()[-1])
    assert counts.pop("status") == 0
    return counts


def test_a_second_process_loads_every_compiled_reference_from_the_cache(tmp_path: Path) -> None:
    cache = tmp_path / "jax-cache"
    first = _counting_run([], str(cache))
    assert first.get("cache_misses", 0) > 0
    assert first.get("cache_hits", 0) == 0
    entries = list(cache.iterdir())
    assert len(entries) >= first["cache_misses"]  # every program written (plus lock files)
    if _programs.loadable():
        assert first.get("store_misses", 0) > 0  # the references, kept by their names
        assert len(list((cache / "programs").iterdir())) == first["store_misses"]
    else:  # this JAX cannot run a loaded program as its own: JAX's cache alone
        assert not (cache / "programs").exists()
    second = _counting_run([], str(cache))
    assert second.get("cache_misses", 0) == 0
    assert second.get("store_misses", 0) == 0
    # Each program of the first run is back: the references by their names (no tracing),
    # the rest from JAX's cache.
    assert second.get("store_hits", 0) == first.get("store_misses", 0)
    assert second.get("cache_hits", 0) == first["cache_misses"]


def test_the_cache_dir_flag_overrides_the_environment(tmp_path: Path) -> None:
    chosen, ignored = tmp_path / "chosen", tmp_path / "ignored"
    counts = _counting_run(["--cache-dir", str(chosen)], str(ignored))
    assert counts.get("cache_misses", 0) > 0
    assert any(chosen.iterdir())
    assert not ignored.exists() or not any(ignored.iterdir())  # at most created, never written


@pytest.mark.parametrize(
    ("args", "cache_env"), [(["--no-cache"], "{dir}"), ([], "off"), ([], "OFF")]
)
def test_turning_the_cache_off_compiles_without_reading_or_writing_it(
    tmp_path: Path, args: list[str], cache_env: str
) -> None:
    cache = tmp_path / "jax-cache"
    counts = _counting_run(args, cache_env.format(dir=cache))
    assert counts.get("compile_requests_use_cache", 0) == 0
    assert counts.get("cache_hits", 0) == counts.get("cache_misses", 0) == 0
    assert not cache.exists() or not any(cache.iterdir())  # at most created, never written


def test_the_default_directory_is_per_user_under_xdg_cache_home_or_home() -> None:
    assert _cache.default_directory({"XDG_CACHE_HOME": "/x"}) == Path("/x/manual-bp/jax")
    assert _cache.default_directory({}) == Path.home() / ".cache" / "manual-bp" / "jax"
    assert _cache.from_environment({}) == Path.home() / ".cache" / "manual-bp" / "jax"
    assert _cache.from_environment({_cache.ENV_VAR: " Off "}) is None


def test_configure_switches_the_cache_in_this_process_and_caches_small_programs(
    tmp_path: Path,
) -> None:
    before = _cache.directory()
    try:
        assert _cache.configure(tmp_path / "c") == tmp_path / "c"
        assert _cache.directory() == tmp_path / "c"
        # JAX's default keeps only programs that took 1 s to compile: ours take less.
        assert jax.config.values["jax_persistent_cache_min_compile_time_secs"] == 0.0
        jax.jit(lambda x: x * 3.0 + 1.0)(np.arange(5.0))
        assert any((tmp_path / "c").iterdir())
        assert _cache.configure(None) is None
        assert _cache.directory() is None
    finally:
        _cache.configure(before)
    assert _cache.directory() == before


def test_an_unusable_directory_turns_the_cache_off_instead_of_failing(tmp_path: Path) -> None:
    before = _cache.directory()
    (tmp_path / "file").write_text("")
    try:
        assert _cache.configure(tmp_path / "file" / "jax") is None  # cannot be created
        assert _cache.directory() is None
    finally:
        _cache.configure(before)
