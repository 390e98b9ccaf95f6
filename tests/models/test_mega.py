"""MEGA (removed from Transformers 5) against references recorded with Transformers 4.57.1
(tests/models/removed_golden/record_mega.py: four tiny configs, see its docstring). Every head
through the public ``from_preset``, the backbone's last hidden state, ``save_to_preset`` reloads,
and the errors of bad configs and inputs."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from keras import ops

import keras_models as km
from keras_models.errors import ConfigError, InputError
from tests.parity import assert_close, to_numpy

GOLDEN = Path(__file__).parent / "removed_golden"


def golden():
    data = dict(np.load(GOLDEN / "mega.npz"))
    inputs = {k[3:]: v for k, v in data.items() if k.startswith("in_")}
    return inputs, data


def check(case, model=None):
    """``case`` (``<config>_<Task>``) loaded from its recorded checkpoint (or ``model``) against the
    recorded head outputs and hidden state."""
    inputs, data = golden()
    if not case.startswith("base"):
        inputs.pop("token_type_ids")
    task = case.split("_", 1)[1]
    model = model or getattr(km, task).from_preset(GOLDEN / "mega" / case)
    assert type(model).__name__ == "Mega" + task and model.head_from_checkpoint
    mask = inputs["attention_mask"]
    out = model(inputs)
    if task == "QuestionAnswerer":
        for k in ("start_logits", "end_logits"):
            assert_close(out[k], data[f"{case}__{k}"], mask=mask, what=f"mega {case} {k}")
    elif task == "TextClassifier":
        assert_close(out, data[f"{case}__logits"], what=f"mega {case}")
    else:
        assert_close(out, data[f"{case}__logits"], mask=mask, what=f"mega {case}")
    assert_close(model.backbone(inputs), data[f"{case}__hidden"], mask=mask, what=f"mega {case} backbone")
    return model


# --- base: bidirectional EMA, rotary bias, softmax, ScaleNorm, 3 token types, tied MLM head ------
@pytest.mark.one_case_per_pass("task")
@pytest.mark.parametrize("task", ["MaskedLM", "TextClassifier", "TokenClassifier", "QuestionAnswerer"])
def test_mega_heads(task):
    check(f"base_{task}")


# --- odd configs: chunks of 4 (one all-padding chunk), simple bias, truncated one-sided EMA,
# post-norm LayerNorm, untied MLM head; causal laplace attention with BatchNorm; relu2 with
# Mega's weight-only RMSNorm --------------------------------------------------------------------
@pytest.mark.parametrize("case", ["chunked_MaskedLM", "chunked_TextClassifier", "causal_MaskedLM",
                                  "rms_TokenClassifier"])
def test_mega_configs(case):
    check(case)


def test_mega_save_to_preset_reloads(tmp_path):
    for case in ("chunked_MaskedLM", "base_MaskedLM"):  # untied, then tied
        model = km.MaskedLM.from_preset(GOLDEN / "mega" / case)
        model.save_to_preset(tmp_path / case)
        config = json.loads((tmp_path / case / "config.json").read_text())
        assert config["model_type"] == "mega" and config["architectures"] == ["MegaForMaskedLM"]
        check(case, km.MaskedLM.from_preset(tmp_path / case))
    assert config["add_token_type_embeddings"] and config["tie_word_embeddings"]


def test_mega_errors(tmp_path):
    inputs, _ = golden()
    inputs.pop("token_type_ids")
    model = km.Backbone.from_preset(GOLDEN / "mega" / "chunked_MaskedLM")
    with pytest.raises(InputError, match="multiple of chunk_size=4"):
        model({k: v[:, :6] for k, v in inputs.items()})
    model({k: v[:, :3] for k, v in inputs.items()})  # shorter than a chunk: one
    source = GOLDEN / "mega" / "rms_TokenClassifier"
    with pytest.raises(InputError, match="simple relative bias"):  # max_positions 16
        km.Backbone.from_preset(source)({"input_ids": np.ones((1, 17), "int32")})
    base = json.loads((source / "config.json").read_text())
    for change, match in (({"normalization_type": "groupnorm"}, "normalization_type"),
                          ({"add_cross_attention": True}, "add_cross_attention"),
                          ({"use_chunking": True}, "chunk_size"),
                          ({"is_decoder": True, "bidirectional": True}, "bidirectional"),
                          ({"attention_activation": "gelu"}, "attention_activation")):
        folder = tmp_path / "bad"
        shutil.copytree(source, folder, dirs_exist_ok=True)
        (folder / "config.json").write_text(json.dumps({**base, **change}))
        with pytest.raises(ConfigError, match=match):
            km.Backbone.from_preset(folder)


def test_mega_ema_direct_convolution():
    """The Toeplitz path (lengths unknown until run time) equals the FFT path."""
    from keras_models.models.mega.backbone import _causal_conv, _causal_conv_direct

    rng = np.random.RandomState(0)
    x, kernel = rng.randn(2, 3, 7).astype("float32"), rng.randn(3, 5).astype("float32")
    want = np.stack([[np.convolve(x[b, d], kernel[d])[:7] for d in range(3)] for b in range(2)])
    x, kernel = ops.convert_to_tensor(x), ops.convert_to_tensor(kernel)
    np.testing.assert_allclose(to_numpy(_causal_conv(x, kernel, 7)), want, atol=1e-5)
    np.testing.assert_allclose(to_numpy(_causal_conv_direct(x, kernel)), want, atol=1e-5)
