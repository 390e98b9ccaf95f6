"""hf:// handles through huggingface_hub against a local hub cache the test builds (offline)."""

import json
import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np

from tests.parity import REPO
from tests.presets.fixtures import tiny_classifier

COMMIT = "0123456789abcdef0123456789abcdef01234567"
COMMIT_V1 = "fedcba9876543210fedcba9876543210fedcba98"


def _build_hub_cache(hf_home, folder):
    repo = hf_home / "hub" / "models--tiny-org--tiny-bert"
    for commit in (COMMIT, COMMIT_V1):
        shutil.copytree(folder, repo / "snapshots" / commit)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(COMMIT)
    (repo / "refs" / "v1").write_text(COMMIT_V1)
    # Revision v1 carries different classifier weights: proves the revision is honoured.
    from keras_models.presets.safetensors_io import SafetensorsFile, save_file

    path = repo / "snapshots" / COMMIT_V1 / "model.safetensors"
    st = SafetensorsFile(path)
    tensors = {k: np.array(st.get(k)) for k in st.keys()}
    st.close()
    tensors["classifier.bias"] = tensors["classifier.bias"] + 1.0
    path.unlink()
    save_file(tensors, path)


def test_hf_handles_offline(tmp_path):
    folder, inputs, expected = tiny_classifier()
    hf_home = tmp_path / "hf_home"
    _build_hub_cache(hf_home, folder)
    np.savez(tmp_path / "inputs.npz", **inputs)
    script = textwrap.dedent(
        f"""
        import numpy as np, keras, keras_models as km
        from keras_models.errors import PresetError
        inputs = dict(np.load({str(tmp_path / 'inputs.npz')!r}))
        main = km.TextClassifier.from_preset("hf://tiny-org/tiny-bert")
        v1 = km.TextClassifier.from_preset("hf://tiny-org/tiny-bert@v1")
        pinned = km.TextClassifier.from_preset("hf://tiny-org/tiny-bert@{COMMIT}")
        np.save({str(tmp_path / 'main.npy')!r}, keras.ops.convert_to_numpy(main(inputs)))
        np.save({str(tmp_path / 'v1.npy')!r}, keras.ops.convert_to_numpy(v1(inputs)))
        np.save({str(tmp_path / 'pinned.npy')!r}, keras.ops.convert_to_numpy(pinned(inputs)))
        # a bare hub id, as from_pretrained takes it (no local folder or named preset of that name)
        bare = km.TextClassifier.from_preset("tiny-org/tiny-bert")
        np.save({str(tmp_path / 'bare.npy')!r}, keras.ops.convert_to_numpy(bare(inputs)))
        try:
            km.Backbone.from_preset("tiny-org/not-cached-either")
        except PresetError as e:
            assert "as a hub id" in str(e) and "HF_HUB_OFFLINE" in str(e), e
        else:
            raise AssertionError("uncached bare id loaded offline")
        # A named preset falls through its sources in order: missing package -> hub cache.
        named = km.TextClassifier.from_preset("tiny-named")
        np.save({str(tmp_path / 'named.npy')!r}, keras.ops.convert_to_numpy(named(inputs)))
        assert "tiny-named" in km.list_presets()
        try:
            km.Backbone.from_preset("hf://tiny-org/not-cached")
        except PresetError as e:
            assert "HF_HUB_OFFLINE" in str(e) and "tiny-org/not-cached" in str(e), e
        else:
            raise AssertionError("uncached repo loaded offline")
        """
    )
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    (manifests / "tiny.json").write_text(json.dumps({
        "name": "tiny-named",
        "sources": ["package:keras_models_no_such_package", "hf://tiny-org/tiny-bert@v1"],
    }))
    env = dict(os.environ, HF_HOME=str(hf_home), HF_HUB_OFFLINE="1", PYTHONPATH=str(REPO),
               KERAS_MODELS_PRESETS=str(manifests))
    env.pop("HF_HUB_CACHE", None)
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    np.testing.assert_allclose(np.load(tmp_path / "main.npy"), expected, atol=1e-4)
    np.testing.assert_allclose(np.load(tmp_path / "pinned.npy"), expected, atol=1e-4)
    np.testing.assert_allclose(np.load(tmp_path / "bare.npy"), expected, atol=1e-4)
    np.testing.assert_allclose(np.load(tmp_path / "v1.npy"), expected + 1.0, atol=1e-4)
    np.testing.assert_allclose(np.load(tmp_path / "named.npy"), expected + 1.0, atol=1e-4)


def test_download_patterns_cover_every_file_the_library_reads():
    """hf:// downloads only the files matching resolve._ALLOW_PATTERNS (never pickles): every file
    name the library reads from a preset (a quoted literal in its sources) must match one, or a
    hub checkpoint loads without it (Marian's source.spm / BERTweet's bpe.codes were missed)."""
    import fnmatch
    import re

    from keras_models.presets.resolve import _ALLOW_PATTERNS

    names = set()
    for path in (REPO / "keras_models").rglob("*.py"):
        names |= set(re.findall(r"[\"']([\w\-]+(?:\.[\w\-]+)*\.(?:spm|codes|model|txt|json|safetensors|jinja))[\"']",
                                path.read_text(encoding="utf-8")))
    assert {"source.spm", "bpe.codes", "tokenizer.json", "vocab.txt"} <= names  # the scan finds them
    missed = sorted(n for n in names if not any(fnmatch.fnmatch(n, p) for p in _ALLOW_PATTERNS))
    assert not missed, f"files read from presets but not downloaded by hf://: {missed}"
    for unsafe in ("pytorch_model.bin", "model.ckpt.index", "flax_model.msgpack", "tf_model.h5"):
        assert not any(fnmatch.fnmatch(unsafe, p) for p in _ALLOW_PATTERNS), unsafe


def test_push_to_hub_and_upload_preset_through_a_stand_in_endpoint(tmp_path):
    """push_to_hub / upload_preset go through huggingface_hub to HF_ENDPOINT (here a local stand-in
    of the hub's API), and what lands there loads back through hf:// with the same logits."""
    from tests.presets.hub_server import HubStandIn

    folder, inputs, expected = tiny_classifier()
    np.savez(tmp_path / "inputs.npz", **inputs)
    (tmp_path / "not_a_preset").mkdir()
    (tmp_path / "pickled").mkdir()
    shutil.copy(folder / "config.json", tmp_path / "pickled" / "config.json")
    shutil.copy(folder / "model.safetensors", tmp_path / "pickled" / "model.safetensors")
    (tmp_path / "pickled" / "pytorch_model.bin").write_bytes(b"not really a pickle")
    script = textwrap.dedent(
        f"""
        import numpy as np, keras, keras_models as km
        from keras_models.errors import PresetError
        inputs = dict(np.load({str(tmp_path / 'inputs.npz')!r}))
        model = km.TextClassifier.from_preset({str(folder)!r})
        info = model.push_to_hub("tiny-org/pushed", commit_message="first push")
        print("COMMIT", info.oid)
        km.upload_preset("hf://tiny-org/pushed@v2", {str(folder)!r})  # a branch, created on the way
        back = km.TextClassifier.from_preset("hf://tiny-org/pushed")
        np.save({str(tmp_path / 'back.npy')!r}, keras.ops.convert_to_numpy(back(inputs)))
        for handle, path, words in (("tiny-org/x", {str(tmp_path / 'not_a_preset')!r}, "no config.json"),
                                    ("tiny-org/x", {str(tmp_path / 'pickled')!r}, "pytorch_model.bin"),
                                    ("no-namespace", {str(folder)!r}, "no namespace")):
            try:
                km.upload_preset(handle, path)
            except PresetError as e:
                assert words in str(e), e
            else:
                raise AssertionError(f"uploaded {{path}}")
        """
    )
    with HubStandIn() as hub:
        env = dict(os.environ, HF_HOME=str(tmp_path / "hf_home"), HF_HUB_OFFLINE="0", HF_ENDPOINT=hub.url,
                   HF_TOKEN="hf_stand_in_token", PYTHONPATH=str(REPO), HF_HUB_DISABLE_TELEMETRY="1")
        env.pop("HF_HUB_CACHE", None)
        proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        uploaded = hub.files("tiny-org/pushed")
        assert {"config.json", "model.safetensors", "tokenizer.json"} <= set(uploaded), sorted(uploaded)
        assert uploaded["config.json"] != b"" and json.loads(uploaded["config.json"])["model_type"] == "bert"
        # the branch holds the original folder's files byte for byte
        branch = hub.files("tiny-org/pushed", "v2")
        assert branch["model.safetensors"] == (folder / "model.safetensors").read_bytes()
        assert "tiny-org/x" not in hub.repos  # refused folders are checked before anything is sent
    np.testing.assert_allclose(np.load(tmp_path / "back.npy"), expected, atol=1e-4)
