"""save_to_preset(..., overwrite=True) never loses data: dangerous targets are refused, only the
files a save wrote are replaced (a README and .git stay), and a failure or kill -9 at any step leaves
the complete old or the complete new preset (protocol: keras_models/presets/saving.py)."""

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import keras_models as km
from keras_models.errors import PresetError
from keras_models.presets import saving
from tests.parity import to_numpy
from tests.presets.fixtures import tiny_classifier

USER_FILES = {"README.md": "my notes\n", ".git/HEAD": "ref: refs/heads/main\n", ".git/objects/ab/cdef": "blob",
              "notes.json": "{}\n"}


@pytest.fixture(scope="module")
def presets(tmp_path_factory):
    """One tiny classifier saved twice with different head biases: folders a and b; ``model`` then
    holds b's weights."""
    folder, _, _ = tiny_classifier()
    model = km.TextClassifier.from_preset(folder)
    root = tmp_path_factory.mktemp("presets")
    model.save_to_preset(root / "a")
    bias = model.trainable_weights[-1]
    marker_a = to_numpy(bias).copy()
    bias.assign(marker_a + 1.0)
    model.save_to_preset(root / "b")
    return {"model": model, "hf": folder, "a": root / "a", "b": root / "b",
            "markers": {"a": marker_a, "b": marker_a + 1.0}}


def _files(folder, skip_user=True):
    """{relative path: bytes} of every file under folder (user files left out)."""
    out = {}
    for p in Path(folder).rglob("*"):
        rel = p.relative_to(folder).as_posix()
        if p.is_file() and not (skip_user and (rel in USER_FILES or rel.startswith(".git/"))):
            out[rel] = p.read_bytes()
    return out


def _with_user_files(folder, preset):
    shutil.copytree(preset, folder)
    for rel, text in USER_FILES.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_text(text)
    return folder


def _user_files_intact(folder):
    for rel, text in USER_FILES.items():
        assert (folder / rel).read_text() == text, f"{rel} lost"


def _which(folder, presets, candidates=("a", "b")):
    """'a' / 'b' if folder holds exactly that preset's files (plus user files), None otherwise."""
    files = _files(folder)
    for name in candidates:
        if files == _files(presets[name]):
            return name
    return None


def _loads_as(folder, presets, candidates=("a", "b")):
    """folder holds one complete preset, user files intact; it loads through from_preset with that
    preset's weights. Returns its name."""
    _user_files_intact(folder)
    name = _which(folder, presets, candidates)
    assert name is not None, f"{folder} holds neither complete preset: {sorted(_files(folder))}"
    model = km.TextClassifier.from_preset(folder)
    np.testing.assert_allclose(to_numpy(model.trainable_weights[-1]), presets["markers"][name], atol=1e-6)
    return name


def _hidden_siblings(folder):
    return sorted(p.name for p in folder.parent.iterdir() if p.name.startswith("."))


def test_overwrite_keeps_user_files(presets, tmp_path):
    out = _with_user_files(tmp_path / "out", presets["a"])
    presets["model"].save_to_preset(out, overwrite=True)
    assert _loads_as(out, presets) == "b"
    assert _hidden_siblings(out) == []


def test_overwrite_of_a_folder_without_manifest_replaces_only_preset_files(presets, tmp_path):
    # A Transformers save_pretrained folder (an older Transformers also wrote vocab.txt and
    # special_tokens_map.json): its preset files are replaced or removed, the user's files stay.
    out = _with_user_files(tmp_path / "out", presets["hf"])
    (out / "vocab.txt").write_text("[PAD]\n[UNK]\n")
    (out / "special_tokens_map.json").write_text("{}")
    assert not (out / saving.MANIFEST_NAME).exists()
    presets["model"].save_to_preset(out, overwrite=True)
    assert _loads_as(out, presets) == "b"
    assert not (out / "vocab.txt").exists() and not (out / "special_tokens_map.json").exists()


def test_preset_names_cover_every_tokenizer_file():
    from keras_models.tasks.text import TOKENIZER_FILES

    assert set(TOKENIZER_FILES) <= saving.PRESET_NAMES


def test_stale_preset_files_named_in_the_manifest_are_removed(presets, tmp_path):
    out = tmp_path / "out"
    presets["model"].save_to_preset(out)
    (out / "generation_config.json").write_text("{}")  # written by an earlier save of a generator
    manifest = json.loads((out / saving.MANIFEST_NAME).read_text())
    manifest["entries"].append("generation_config.json")
    (out / saving.MANIFEST_NAME).write_text(json.dumps(manifest))
    (out / "mine.txt").write_text("mine")
    presets["model"].save_to_preset(out, overwrite=True)
    assert not (out / "generation_config.json").exists() and (out / "mine.txt").read_text() == "mine"


@pytest.mark.parametrize("target", [".", "..", "cwd", "ancestor", "sub/..", "file", "symlink", "symlink_to_file"])
def test_dangerous_targets_are_refused(presets, tmp_path, monkeypatch, target):
    work = _with_user_files(tmp_path / "work", presets["a"])
    (work / "sub").mkdir()
    (work / "data.bin").write_bytes(b"data")
    (work / "link").symlink_to(work / "sub")
    (work / "filelink").symlink_to(work / "data.bin")
    monkeypatch.chdir(work / "sub")
    path = {"cwd": str(work / "sub"), "ancestor": str(tmp_path), "file": str(work / "data.bin"),
            "symlink": str(work / "link"), "symlink_to_file": str(work / "filelink"),
            "sub/..": "../sub/.."}.get(target, target)
    before = _files(tmp_path, skip_user=False)
    with pytest.raises(PresetError, match="refusing to write to") as info:
        presets["model"].save_to_preset(path, overwrite=True)
    assert repr(path) in str(info.value)
    assert _files(tmp_path, skip_user=False) == before and os.listdir(tmp_path) == ["work"]
    assert sorted(os.listdir(work)) == sorted([*os.listdir(presets["a"]), "README.md", ".git", "notes.json",
                                               "sub", "data.bin", "link", "filelink"])


def test_non_overwrite_save_into_existing_folder(presets, tmp_path):
    (tmp_path / "empty").mkdir()
    presets["model"].save_to_preset(tmp_path / "empty")
    assert _which(tmp_path / "empty", presets) == "b"
    with pytest.raises(PresetError, match="not empty"):
        presets["model"].save_to_preset(tmp_path / "empty")


class _Fault:
    """Wrap module.name: count calls; the k-th raises OSError (k=0: never)."""

    def __init__(self, monkeypatch, module, name, k):
        self.calls = 0
        real = getattr(module, name)

        def wrapper(*args, **kwargs):
            self.calls += 1
            if self.calls == k:
                raise OSError(errno.EIO, f"injected fault: {name} call {k}")
            return real(*args, **kwargs)

        monkeypatch.setattr(module, name, wrapper)


@pytest.mark.parametrize("module,name", [(os, "replace"), (os, "rename"), (os, "mkdir"), (os, "rmdir"),
                                         (shutil, "rmtree")])
def test_fault_at_every_step_leaves_old_or_new(presets, tmp_path, monkeypatch, module, name):
    model = presets["model"]
    out = _with_user_files(tmp_path / "count", presets["a"])
    with monkeypatch.context() as m:
        counter = _Fault(m, module, name, 0)
        model.save_to_preset(out, overwrite=True)
    for k in range(1, counter.calls + 1):
        out = _with_user_files(tmp_path / f"k{k}", presets["a"])
        with monkeypatch.context() as m:
            fault = _Fault(m, module, name, k)
            try:
                model.save_to_preset(out, overwrite=True)
                raised = False
            except OSError:
                raised = True
        assert fault.calls >= k
        got = _loads_as(out, presets)
        assert got == ("a" if raised else "b"), f"fault at {name} call {k}: raised={raised}, holds {got}"
        saving.recover_preset(out)  # a fault in the final clean-up leaves a folder for later
        assert _hidden_siblings(out) == [] and _which(out, presets) == got
        shutil.rmtree(out)


def test_failure_between_moving_old_out_and_new_in_keeps_old(presets, tmp_path, monkeypatch):
    # the first move (or rename) of the new preset into the target fails
    out = _with_user_files(tmp_path / "out", presets["a"]).resolve()
    real_replace, real_rename = os.replace, os.rename
    failed = []

    def fail_into_target(real):
        def wrapper(src, dst, *args, **kwargs):
            into_target = Path(dst).resolve() == out or Path(dst).parent.resolve() == out
            from_temporary = Path(src).name.startswith(".") or Path(src).parent.name.startswith(".")
            if into_target and from_temporary and not failed:
                failed.append(dst)
                raise OSError(errno.EIO, "injected crash")
            return real(src, dst, *args, **kwargs)
        return wrapper

    monkeypatch.setattr(os, "replace", fail_into_target(real_replace))
    monkeypatch.setattr(os, "rename", fail_into_target(real_rename))
    with pytest.raises(OSError, match="injected crash"):
        presets["model"].save_to_preset(out, overwrite=True)
    monkeypatch.undo()
    assert _loads_as(out, presets) == "a"
    assert _hidden_siblings(out) == []


def test_deletion_failing_partway_keeps_a_complete_preset(presets, tmp_path, monkeypatch):
    # rmtree that deletes the folder's top-level files and then fails (as on a read-only subfolder)
    out = _with_user_files(tmp_path / "out", presets["a"])
    real_rmtree = shutil.rmtree

    def partial_rmtree(path, *args, **kwargs):
        for p in sorted(Path(path).iterdir()):
            if p.is_file():
                p.unlink()
        raise PermissionError(errno.EACCES, "injected: read-only subfolder", str(path))

    monkeypatch.setattr(shutil, "rmtree", partial_rmtree)
    try:
        presets["model"].save_to_preset(out, overwrite=True)
    except OSError:
        pass
    monkeypatch.setattr(shutil, "rmtree", real_rmtree)
    assert _loads_as(out, presets) == "b"
    presets["model"].save_to_preset(out, overwrite=True)  # the next save removes the leftover
    assert _hidden_siblings(out) == []


def test_stale_temporaries_are_cleaned_and_others_kept(presets, tmp_path):
    out = _with_user_files(tmp_path / "out", presets["a"])
    dead_pid = 2**22 + 12345  # above Linux' largest pid_max: no such process
    future = f"{(2**63 - 1):x}"
    stale = [f".out.kmsave-{dead_pid}-1.new",  # died while writing
             f".out.kmsave-{dead_pid}-2.old",  # died after its commit (its .new is gone)
             ".out.tmpab12cd_9"]  # an older keras-models' temporary folder
    kept = [f".out.kmsave-{os.getppid()}-3.new",  # its process is alive: a save still running
            f".out.kmsave-{dead_pid}-{future}.new",  # started after this save
            f".out.kmsave-{dead_pid}-5.old",  # files but no journal: not ours to judge
            f".other.kmsave-{dead_pid}-4.new", ".out.backup", ".out.tmp-mine"]
    for name in stale + kept:
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.json").write_text("{}")
    (tmp_path / stale[1] / ".keras_models_swap.json").write_text('{"old": ["config.json"], "new": ["config.json"]}')
    os.utime(tmp_path / ".out.tmpab12cd_9", (1, 1))
    presets["model"].save_to_preset(out, overwrite=True)
    assert _loads_as(out, presets) == "b"
    assert _hidden_siblings(out) == sorted(kept)
    assert all((tmp_path / name / "config.json").read_text() == "{}" for name in kept)


# The child saves presets a and b alternately over the target through the same swap, and kills itself
# with SIGKILL at its KILL_AT-th file-system step (0: never; prints the number of steps).
_CHILD = r"""
import os, shutil, signal, sys
from pathlib import Path
from keras_models.presets import saving
assert "keras" not in sys.modules
target, a, b, kill_at = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4])
steps = 0
def step(real):
    def wrapper(*args, **kwargs):
        global steps
        steps += 1
        if steps == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        return real(*args, **kwargs)
    return wrapper
for module, name in ((os, "replace"), (os, "mkdir"), (os, "rmdir"), (os, "remove"), (shutil, "rmtree")):
    setattr(module, name, step(getattr(module, name)))
def copy_of(src):
    def write(folder):
        for entry in sorted(os.listdir(src)):
            if entry != saving.MANIFEST_NAME:
                (shutil.copytree if (src / entry).is_dir() else shutil.copyfile)(src / entry, folder / entry)
    return write
for src in (a, b, a, b):
    saving.replace_folder(target, copy_of(src), overwrite=True)
print(steps)
"""


def _child(target, presets, kill_at):
    args = [sys.executable, "-c", _CHILD, str(target), str(presets["a"]), str(presets["b"]), str(kill_at)]
    return subprocess.run(args, capture_output=True, text=True, timeout=120)


def test_kill_9_at_random_steps_leaves_old_or_new(presets, tmp_path):
    out = _with_user_files(tmp_path / "out", presets["b"])
    done = _child(out, presets, 0)
    assert done.returncode == 0, done.stderr
    steps = int(done.stdout)
    assert _which(out, presets) == "b" and _hidden_siblings(out) == []
    outcomes = []
    for kill_at in sorted(np.random.default_rng(7).choice(np.arange(1, steps + 1), size=5, replace=False)):
        killed = _child(out, presets, int(kill_at))
        assert killed.returncode == -signal.SIGKILL, (kill_at, killed.stdout, killed.stderr)
        name = _which(out, presets)
        if name is None:
            # killed while moving files: the target has no config.json (it never reads as half a
            # preset); from_preset settles the save from its journal before loading
            assert not (out / "config.json").exists(), sorted(_files(out))
            km.TextClassifier.from_preset(out)  # settles it, then loads one complete preset
        outcomes.append("settled" if name is None else "complete")
        _loads_as(out, presets)
    # later saves settle what a killed one left
    assert _child(out, presets, 0).returncode == 0
    assert _loads_as(out, presets) == "b" and _hidden_siblings(out) == []
    assert set(outcomes) == {"settled", "complete"}, outcomes


def test_only_a_saves_own_temporary_folders_are_ever_deleted_whole(tmp_path):
    from keras_models.errors import PresetError
    from keras_models.presets import saving

    for user in (tmp_path / "repo", tmp_path / ".git", tmp_path / "my.kmsave-notes"):
        user.mkdir()
        (user / "README.md").write_text("keep")
        with pytest.raises(PresetError, match="refusing to delete"):
            saving._remove(user)
        assert (user / "README.md").read_text() == "keep"
    for temp in (tmp_path / ".model.kmsave-123-abc.new", tmp_path / ".model.tmpabcd1234"):
        temp.mkdir()
        (temp / "config.json").write_text("{}")
        saving._remove(temp)
        assert not temp.exists()
    # a folder that only looks like a save's (its name) but holds a repository or a README stays
    for entry in (".git", "README.md"):
        lookalike = tmp_path / f".model.kmsave-123-abc{len(entry)}.new"
        lookalike.mkdir()
        if entry == ".git":
            (lookalike / entry).mkdir()
        else:
            (lookalike / entry).write_text("keep")
        with pytest.raises(PresetError, match="refusing to delete"):
            saving._remove(lookalike)
        assert (lookalike / entry).exists()
