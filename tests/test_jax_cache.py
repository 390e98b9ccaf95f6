"""The JAX persistent compilation cache is on by default (a second process reuses the executables
the first compiled), in the folder the user names, off on request, and never overrides the user's
own JAX setting. Subprocesses: JAX reads its cache folder once per process."""

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(os.environ.get("KERAS_BACKEND") != "jax", reason="JAX-only setting")

PROBE = """
import json, os, sys
import jax
import keras_models.models.backbone  # the import that configures the cache
import jax.numpy as jnp
before = sorted(os.listdir(sys.argv[1])) if os.path.isdir(sys.argv[1]) else []
out = {"dir": jax.config.jax_compilation_cache_dir,
       "min_secs": jax.config.jax_persistent_cache_min_compile_time_secs}
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)  # so this tiny jit is stored
jax.jit(lambda x: jnp.tanh(x @ x.T).sum())(jnp.ones((8, 8))).block_until_ready()
out["entries_before"] = len(before)
out["entries_after"] = len(os.listdir(sys.argv[1])) if os.path.isdir(sys.argv[1]) else 0
print(json.dumps(out))
"""


def _probe(env_updates, folder):
    env = {k: v for k, v in os.environ.items() if k not in ("KERAS_MODELS_JAX_CACHE", "JAX_COMPILATION_CACHE_DIR")}
    env.update(env_updates, KERAS_BACKEND="jax")
    done = subprocess.run([sys.executable, "-c", PROBE, str(folder)], env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_cache_on_by_default_under_xdg_cache_home(tmp_path):
    folder = tmp_path / "keras_models" / "jax"
    first = _probe({"XDG_CACHE_HOME": str(tmp_path)}, folder)
    assert first["dir"] == str(folder) and first["min_secs"] == 0.25
    assert first["entries_after"] > first["entries_before"] == 0  # written by the first process
    second = _probe({"XDG_CACHE_HOME": str(tmp_path)}, folder)
    assert second["entries_after"] == second["entries_before"] == first["entries_after"]  # reused, not recompiled


@pytest.fixture
def jax_cache_config():
    """The process's JAX cache settings, restored afterwards (this process compiled long ago, so
    changing the folder here writes nothing: only the settings are checked)."""
    import jax

    keys = ("jax_compilation_cache_dir", "jax_persistent_cache_min_compile_time_secs")
    saved = {k: getattr(jax.config, k) for k in keys}
    jax.config.update("jax_compilation_cache_dir", None)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
    yield jax.config
    for k, v in saved.items():
        jax.config.update(k, v)


def test_named_folder_off_switch_and_the_users_own_setting(tmp_path, monkeypatch, jax_cache_config):
    from keras_models.backend_choice import configure_jax_compilation_cache

    monkeypatch.setenv("KERAS_MODELS_JAX_CACHE", "OFF")
    assert configure_jax_compilation_cache() is None and jax_cache_config.jax_compilation_cache_dir is None
    monkeypatch.setenv("KERAS_MODELS_JAX_CACHE", str(tmp_path / "mine"))
    assert configure_jax_compilation_cache() == str(tmp_path / "mine")
    assert jax_cache_config.jax_compilation_cache_dir == str(tmp_path / "mine") and (tmp_path / "mine").is_dir()
    assert jax_cache_config.jax_persistent_cache_min_compile_time_secs == 0.25
    # the user's own folder and threshold are kept
    jax_cache_config.update("jax_compilation_cache_dir", str(tmp_path / "users"))
    jax_cache_config.update("jax_persistent_cache_min_compile_time_secs", 3.0)
    monkeypatch.setenv("KERAS_MODELS_JAX_CACHE", str(tmp_path / "ours"))
    assert configure_jax_compilation_cache() == str(tmp_path / "users")
    assert jax_cache_config.jax_persistent_cache_min_compile_time_secs == 3.0
    assert not (tmp_path / "ours").exists()
