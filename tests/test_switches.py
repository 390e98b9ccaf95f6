"""Every KM_* fast-path switch is read by one function, so each accepts the same spellings of "off"
(docs/fast_paths.md)."""

import os
import subprocess
import sys

import pytest

from keras_models.backend_choice import switch_on


@pytest.mark.backend_independent
@pytest.mark.parametrize("value,expected", [(None, True), ("", True), ("1", True), ("on", True), ("yes", True),
                                            ("0", False), ("off", False), (" OFF ", False), ("False", False),
                                            ("no", False), ("None", False)])
def test_switch_on_spellings(monkeypatch, value, expected):
    if value is None:
        monkeypatch.delenv("KM_TEST_SWITCH", raising=False)
    else:
        monkeypatch.setenv("KM_TEST_SWITCH", value)
    assert switch_on("KM_TEST_SWITCH") is expected


@pytest.mark.backend_independent
def test_switch_on_default_false(monkeypatch):
    monkeypatch.delenv("KM_TEST_SWITCH", raising=False)
    assert switch_on("KM_TEST_SWITCH", default=False) is False
    monkeypatch.setenv("KM_TEST_SWITCH", "1")
    assert switch_on("KM_TEST_SWITCH", default=False) is True


@pytest.mark.backend_independent
def test_module_switches_read_at_import_accept_any_off_spelling():
    # Before the shared reader, "OFF" / "no" left some of these switches on.
    probe = ("import keras_models.tasks.text as t, keras_models.layers.attention as a, "
             "keras_models.generation.backend as g, keras_models.torch_kernels as k\n"
             "print(t.FIRST_TOKEN_ONLY[0], a.FUSED_ATTENTION, g.TORCH_DIRECT_OPS, k.FAST_CONV1D)")
    env = dict(os.environ, KM_FIRST_TOKEN_ONLY="OFF", KM_FUSED_ATTENTION="no", KM_TORCH_DIRECT_OPS="False",
               KM_TORCH_FAST_CONV1D=" off ")
    done = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["False"] * 4
