"""More encoder families (ConvBERT, XLM, FlauBERT, MobileBERT): backbone and every head against tiny
random Transformers models (padded batches, non-default switches), the saved preset reloading in
Transformers, and a short ``fit`` per family."""

import numpy as np
import pytest

import keras
import keras_models as km
from tests.models.test_encoders import SUFFIX, TINY, check_parity
from tests.models.test_fit_heads import B, S, _sce
from tests.models.test_fit_heads import TINY as FIT_TINY
from tests.models.test_fit_heads import _inputs as _fit_inputs
from tests.parity import assert_close, assert_keras_round_trip, hf_reference, text_inputs

STD = ("Backbone", "MaskedLM", "TextClassifier", "TokenClassifier", "QuestionAnswerer")
XLM_TINY = dict(vocab_size=99, emb_dim=16, n_layers=2, n_heads=2, max_position_embeddings=40)
# HF architecture suffixes where a family departs from SUFFIX
XLM_SUFFIX = {"MaskedLM": "WithLMHeadModel", "QuestionAnswerer": "ForQuestionAnsweringSimple"}

# spec name -> (HF class prefix, config class, config kwargs, input style, tasks)
SPECS = {
    "convbert": ("ConvBert", "ConvBertConfig", dict(TINY, num_attention_heads=4, embedding_size=12, conv_kernel_size=3,
                                                    num_groups=2, hidden_act="gelu_new", layer_norm_eps=1e-6),
                 "bert", STD),
    "convbert_one_head": ("ConvBert", "ConvBertConfig", dict(TINY, embedding_size=16, head_ratio=4, conv_kernel_size=5),
                          "bert", ("Backbone", "TextClassifier")),
    "xlm": ("XLM", "XLMConfig", dict(XLM_TINY, n_langs=3, gelu_activation=False, layer_norm_eps=1e-6,
                                     summary_activation="tanh"), "xlm_langs", STD),
    "xlm_token_types": ("XLM", "XLMConfig", dict(XLM_TINY, n_layers=1, sinusoidal_embeddings=True, summary_type="mean"),
                        "xlm_types", ("Backbone", "MaskedLM", "TextClassifier")),
    "flaubert": ("Flaubert", "FlaubertConfig", dict(XLM_TINY, layer_norm_eps=1e-5), "xlm", STD),
    "flaubert_pre_norm": ("Flaubert", "FlaubertConfig", dict(XLM_TINY, pre_norm=True, n_langs=2, layerdrop=0.2,
                                                             summary_type="last"),
                          "xlm_langs", ("Backbone", "MaskedLM", "TextClassifier")),
    "mobilebert": ("MobileBert", "MobileBertConfig", dict(TINY, embedding_size=8, intra_bottleneck_size=12,
                                                          num_feedforward_networks=3, hidden_act="gelu"),
                   "bert", STD),
    "mobilebert_layer_norm": ("MobileBert", "MobileBertConfig", dict(TINY, embedding_size=12, trigram_input=False,
                                                                     normalization_type="layer_norm",
                                                                     layer_norm_eps=1e-3, use_bottleneck_attention=True,
                                                                     num_feedforward_networks=1, intra_bottleneck_size=8,
                                                                     classifier_activation=False),
                              "bert", ("Backbone", "MaskedLM", "TextClassifier")),
    "mobilebert_no_bottleneck": ("MobileBert", "MobileBertConfig", dict(TINY, embedding_size=16, use_bottleneck=False,
                                                                        key_query_shared_bottleneck=False,
                                                                        num_feedforward_networks=2, hidden_dropout_prob=0.1),
                                 "bert", ("Backbone", "TokenClassifier")),
}
CASES = [(spec, task) for spec, (*_, tasks) in SPECS.items() for task in tasks]


def _inputs(style):
    if style.startswith("xlm"):  # XLM pads with 2; its token_type_ids index the word embeddings
        inputs = text_inputs(pad_id=2, token_types=style == "xlm_types")
        if style == "xlm_langs":
            inputs["langs"] = (np.arange(9)[None, :] % 2 * inputs["attention_mask"]).astype("int64")
        return inputs
    return text_inputs(pad_id=0, token_types=style != "none")


class _NoLayerCache:
    """Transformers 5.24's FlauBERT ``pre_norm`` path indexes its cache per layer (``cache[i]``),
    which its own default cache object does not support; this stand-in means "no cache"."""

    def get_seq_length(self):
        return 0

    def __getitem__(self, index):
        return None


def _hf_class(spec, task):
    import transformers

    prefix = SPECS[spec][0]
    suffix = (XLM_SUFFIX.get(task) if prefix in ("XLM", "Flaubert") else None) or SUFFIX[task]
    return getattr(transformers, prefix + suffix)


def _build(spec, task):
    import transformers

    prefix, config_cls, kwargs, _, _ = SPECS[spec]
    cfg = getattr(transformers, config_cls)(**kwargs, num_labels=2 if task == "QuestionAnswerer" else 3)
    model = _hf_class(spec, task)(cfg)
    if kwargs.get("pre_norm"):
        base = getattr(model, "transformer", model)
        base.register_forward_pre_hook(lambda m, a, kw: (a, {**kw, "cache": _NoLayerCache()}), with_kwargs=True)
    return model


def _ref(spec, task):
    inputs = _inputs(SPECS[spec][3])
    folder, expected = hf_reference(f"encb-{spec}-{task}", lambda: _build(spec, task), inputs)
    return folder, inputs, expected


@pytest.mark.one_case_per_pass("task")
@pytest.mark.parametrize("spec,task", CASES)
def test_parity(spec, task):
    folder, inputs, expected = _ref(spec, task)
    check_parity(SPECS[spec][0], spec, task, folder, inputs, expected)


ROUND_TRIP = [spec for spec in SPECS if not spec.endswith(("_one_head", "_token_types", "_pre_norm", "_bottleneck"))]


@pytest.mark.parametrize("spec", ROUND_TRIP)
def test_save_to_preset_reloads_in_transformers(spec, tmp_path):
    """config_to_hf + exported weights: Transformers reloads the saved preset with no missing or
    unexpected tensors and computes the same hidden states."""
    import torch
    import transformers

    folder, inputs, expected = _ref(spec, "Backbone")
    km.Backbone.from_preset(folder).save_to_preset(tmp_path / "saved")
    model, info = transformers.AutoModel.from_pretrained(tmp_path / "saved", output_loading_info=True)
    assert type(model).__name__ == SPECS[spec][0] + "Model"
    missing = [k for k in info["missing_keys"] if "pooler" not in k]
    assert not missing and not info["unexpected_keys"] and not info["mismatched_keys"], info
    with torch.no_grad():
        out = model.eval()(**{k: torch.tensor(v) for k, v in inputs.items()}).last_hidden_state.numpy()
    assert_close(out, expected["last_hidden_state"], mask=inputs["attention_mask"], what=f"{spec} round trip")


TASK_ROUND_TRIP = [("convbert", "MaskedLM"), ("convbert", "TextClassifier"), ("xlm", "MaskedLM"),
                   ("xlm", "TextClassifier"), ("flaubert", "QuestionAnswerer"), ("mobilebert", "MaskedLM"),
                   ("mobilebert_layer_norm", "TextClassifier")]


@pytest.mark.parametrize("spec,task", TASK_ROUND_TRIP)
def test_task_save_to_preset_reloads_in_transformers(spec, task, tmp_path):
    """Heads export too: the saved task preset reloads in its Transformers class, same logits."""
    import torch

    folder, inputs, expected = _ref(spec, task)
    getattr(km, task).from_preset(folder).save_to_preset(tmp_path / "saved")
    model, info = _hf_class(spec, task).from_pretrained(tmp_path / "saved", output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info
    with torch.no_grad():
        out = model.eval()(**{k: torch.tensor(v) for k, v in inputs.items()})
    for key in ("start_logits", "end_logits") if task == "QuestionAnswerer" else ("logits",):
        mask = None if task == "TextClassifier" else inputs["attention_mask"]
        assert_close(getattr(out, key).numpy(), expected[key], mask=mask, what=f"{spec} {task} round trip")


# --- fit: one head per family trains (loss decreases over a few steps on one tiny batch) ----------
def _fit_case(family):
    rng = np.random.RandomState(1)
    m = km.models
    if family == "convbert":
        model = m.ConvBertTokenClassifier(m.ConvBertBackbone(**FIT_TINY, embedding_size=8, num_groups=2,
                                                             conv_kernel_size=3), num_classes=4)
        return model, _fit_inputs(), rng.randint(0, 4, (B, S)), _sce()
    if family == "xlm":
        model = m.XLMMaskedLM(m.XLMBackbone(**FIT_TINY, num_languages=2))
        x = _fit_inputs(pad_id=2)
        x["langs"] = (np.arange(S)[None, :] % 2 * x["attention_mask"]).astype("int32")
        return model, x, rng.randint(0, 50, (B, S)), _sce()
    if family == "flaubert":
        model = m.FlaubertTextClassifier(m.FlaubertBackbone(**FIT_TINY, norm_first=True, layerdrop=0.3),
                                         num_classes=3)
        return model, _fit_inputs(pad_id=2), rng.randint(0, 3, (B,)), _sce()
    if family == "mobilebert":
        y = {"start_logits": rng.randint(0, S, (B,)), "end_logits": rng.randint(0, S, (B,))}
        model = m.MobileBertQuestionAnswerer(m.MobileBertBackbone(**FIT_TINY, embedding_size=8, bottleneck_size=8,
                                                                  num_feedforward_networks=2, initializer_range=0.2))
        return model, _fit_inputs(), y, {"start_logits": _sce(), "end_logits": _sce()}
    raise AssertionError(family)


@pytest.mark.parametrize("family", ["convbert", "xlm", "flaubert", "mobilebert"])
def test_fit_loss_decreases(family):
    keras.utils.set_random_seed(0)
    model, x, y, loss = _fit_case(family)
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss=loss)
    history = model.fit(x, y, batch_size=B, epochs=6, shuffle=False, verbose=0)
    losses = history.history["loss"]
    assert np.all(np.isfinite(losses)), losses
    assert losses[-1] < 0.97 * losses[0], f"{family}: loss did not decrease: {losses}"


# --- .keras save / load restores every switch and the weights ------------------------------------
def _keras_case(name):
    m = km.models
    return {
        "convbert": lambda: m.ConvBertMaskedLM(m.ConvBertBackbone(**FIT_TINY, embedding_size=8, num_groups=2,
                                                                  head_ratio=1, conv_kernel_size=5)),
        "xlm": lambda: m.XLMTextClassifier(m.XLMBackbone(**FIT_TINY, num_languages=3, sinusoidal_embeddings=True),
                                           num_classes=2, summary_type="mean", summary_activation="tanh"),
        "flaubert": lambda: m.FlaubertMaskedLM(m.FlaubertBackbone(**FIT_TINY, norm_first=True, layerdrop=0.1),
                                               tie_word_embeddings=False),
        "mobilebert": lambda: m.MobileBertMaskedLM(m.MobileBertBackbone(
            **FIT_TINY, embedding_size=8, bottleneck_size=8, normalization="layer_norm", bottleneck_attention=True,
            num_feedforward_networks=3), tie_word_embeddings=False),
        "mobilebert_no_pooler": lambda: m.MobileBertTextClassifier(m.MobileBertBackbone(
            **FIT_TINY, embedding_size=16, trigram_input=False, use_bottleneck=False, classifier_activation=False),
            num_classes=3),
    }[name]()


@pytest.mark.parametrize("name", ["convbert", "xlm", "flaubert", "mobilebert", "mobilebert_no_pooler"])
def test_keras_save_load(name, tmp_path):
    model = _keras_case(name)
    ids = np.array([[5, 6, 7, 8, 3], [9, 10, 11, 2, 2]], "int32")
    x = {"input_ids": ids, "attention_mask": (ids != 2).astype("int32")}
    assert_keras_round_trip(model, x, tmp_path)


def test_xlm_sinusoidal_table_matches_transformers():
    """A fresh XLM backbone with sinusoidal_embeddings=True starts from Transformers' fixed table
    (checkpoints store it, so parity tests read it like any weight)."""
    import torch
    from transformers.models.xlm.modeling_xlm import create_sinusoidal_embeddings

    model = km.models.XLMBackbone(**FIT_TINY, sinusoidal_embeddings=True).build_from_dummy()
    want = create_sinusoidal_embeddings(16, 16, torch.empty(16, 16)).numpy()
    np.testing.assert_allclose(keras.ops.convert_to_numpy(model.position_embedding.embeddings), want, atol=1e-6)


def test_xlm_mask_from_padding_without_attention_mask():
    """Without attention_mask, XLM masks everything after the non-pad token count (like Transformers)."""
    folder, inputs, expected = _ref("flaubert", "Backbone")
    out = km.Backbone.from_preset(folder)({"input_ids": inputs["input_ids"]})
    assert_close(out, expected["last_hidden_state"], mask=inputs["attention_mask"], what="no attention_mask")
