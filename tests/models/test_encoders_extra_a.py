"""More encoder families on the shared encoder (DeBERTa v1, X-MOD, Splinter, LUKE): backbone and
every head against tiny random Transformers models, padded batches and non-default switches, a
Transformers reload of ``save_to_preset`` and a short ``fit`` per family."""

import numpy as np
import pytest

import keras
import keras_models as km
from tests.models.test_encoders import STD, SUFFIX, TINY, check_parity
from tests.models.test_fit_heads import B, S, _sce
from tests.models.test_fit_heads import TINY as FIT_TINY
from tests.models.test_fit_heads import _inputs as fit_inputs
from tests.parity import assert_close, assert_keras_round_trip, hf_reference, text_inputs, to_numpy

DEBERTA = dict(TINY, relative_attention=True, pos_att_type=["p2c", "c2p"], max_relative_positions=6,
               hidden_act="gelu_new", layer_norm_eps=1e-6, type_vocab_size=2)
XMOD = dict(TINY, pad_token_id=1, languages=["en_XX", "de_DE", "fr_XX"], default_language="de_DE")
LUKE = dict(TINY, pad_token_id=1, entity_vocab_size=11, entity_emb_size=8)

# spec name -> (HF class prefix, config class, config kwargs, input style, tasks)
SPECS = {
    "deberta": ("Deberta", "DebertaConfig", DEBERTA, "bert", STD),
    "deberta_c2p_no_abs": ("Deberta", "DebertaConfig", dict(TINY, relative_attention=True, pos_att_type="c2p",
                                                            position_biased_input=False), "bert",
                           ("Backbone", "MaskedLM")),
    "deberta_no_relative": ("Deberta", "DebertaConfig", dict(TINY, pos_att_type=["c2p", "p2c"]), "bert",
                            ("Backbone", "TextClassifier")),
    # lang_ids pick a non-default adapter per example (default de_DE, rows use fr_XX and en_XX)
    "xmod": ("Xmod", "XmodConfig", dict(XMOD, hidden_act="gelu_new"), "xmod", STD),
    "xmod_default_language": ("Xmod", "XmodConfig", XMOD, "roberta", ("Backbone", "MaskedLM")),
    "xmod_pre_norm": ("Xmod", "XmodConfig", dict(XMOD, pre_norm=True, adapter_layer_norm=True, ln_before_adapter=False,
                                                 adapter_reduction_factor=4, layer_norm_eps=1e-5), "xmod",
                      ("Backbone", "TextClassifier")),
    "xmod_no_adapter_norm": ("Xmod", "XmodConfig", dict(XMOD, adapter_reuse_layer_norm=False, ln_before_adapter=False,
                                                        hidden_act="relu"), "xmod_tokens", ("Backbone",)),
    # the question token (id 7) sits at different positions per row (the first one counts)
    "splinter": ("Splinter", "SplinterConfig", dict(TINY, question_token_id=7, hidden_act="gelu_new",
                                                    layer_norm_eps=1e-6), "splinter", ("Backbone", "QuestionAnswerer")),
    # no row holds the question token (98): position 0 is the question
    "splinter_no_question": ("Splinter", "SplinterConfig", dict(TINY, question_token_id=98), "bert",
                             ("QuestionAnswerer",)),
    # SplinterForPreTraining: explicit question_positions -> (batch, questions, seq) logits
    "splinter_pretraining": ("Splinter", "SplinterConfig", dict(TINY, question_token_id=7), "splinter_positions",
                             ("PreTraining",)),
    # word-only LUKE; the checkpoints carry (unused) entity embeddings and entity-aware queries
    "luke": ("Luke", "LukeConfig", dict(LUKE, hidden_act="gelu_new", layer_norm_eps=1e-6), "luke", STD),
    # mLUKE-shaped (XLM-R-like: one token type, eps 1e-5)
    "luke_mluke": ("Luke", "LukeConfig", dict(LUKE, type_vocab_size=1, layer_norm_eps=1e-5), "roberta",
                   ("Backbone", "MaskedLM", "TokenClassifier")),
}
CASES = [(spec, task) for spec, (*_, tasks) in SPECS.items() for task in tasks]
SUFFIX = dict(SUFFIX, PreTraining="ForPreTraining")


def _inputs(style):
    if style == "roberta":
        return text_inputs(pad_id=1, token_types=False)
    if style == "luke":
        return text_inputs(pad_id=1, token_types=True)
    if style == "xmod":
        return dict(text_inputs(pad_id=1, token_types=False), lang_ids=np.array([2, 0]))
    if style == "xmod_tokens":  # per-token languages
        return dict(text_inputs(pad_id=1, token_types=False), lang_ids=np.arange(18).reshape(2, 9) % 3)
    inputs = text_inputs(pad_id=0, token_types=style != "none")
    if style == "splinter":
        inputs["input_ids"][0, 3] = inputs["input_ids"][0, 5] = inputs["input_ids"][1, 1] = 7
    if style == "splinter_positions":
        inputs["question_positions"] = np.array([[3, 0, 5], [1, 2, 2]])
    return inputs


def _build(spec, task):
    import transformers

    prefix, config_cls, kwargs, _, _ = SPECS[spec]
    cfg = getattr(transformers, config_cls)(**kwargs, num_labels=2 if task == "QuestionAnswerer" else 3)
    return getattr(transformers, prefix + SUFFIX[task])(cfg)


def _ref(spec, task):
    inputs = _inputs(SPECS[spec][3])
    folder, expected = hf_reference(f"enc-a-{spec}-{task}", lambda: _build(spec, task), inputs)
    return folder, inputs, expected


@pytest.mark.one_case_per_pass("task")
@pytest.mark.parametrize("spec,task", CASES)
def test_parity(spec, task):
    folder, inputs, expected = _ref(spec, task)
    cls = km.QuestionAnswerer if task == "PreTraining" else None
    out = check_parity(SPECS[spec][0], spec, task, folder, inputs, expected, cls=cls)
    if task in ("QuestionAnswerer", "PreTraining"):
        for k in ("start_logits", "end_logits"):  # padding gets the dtype's minimum, as in Transformers
            np.testing.assert_array_equal(to_numpy(out[k]) < -1e30, expected[k] < -1e30)


ROUND_TRIP = ["deberta", "deberta_c2p_no_abs", "xmod", "xmod_pre_norm", "splinter", "luke"]


@pytest.mark.parametrize("spec", ROUND_TRIP)
def test_save_to_preset_reloads_in_transformers(spec, tmp_path):
    import torch
    import transformers

    folder, inputs, expected = _ref(spec, "Backbone")
    km.Backbone.from_preset(folder).save_to_preset(tmp_path / "saved")
    model, info = transformers.AutoModel.from_pretrained(tmp_path / "saved", output_loading_info=True)
    assert type(model).__name__ == SPECS[spec][0] + "Model"
    # LUKE's entity-side weights are not part of the word-only model (Transformers initialises them)
    unused = ("pooler", "entity_embeddings", "w2e_query", "e2w_query", "e2e_query")
    missing = [k for k in info["missing_keys"] if not any(u in k for u in unused)]
    assert not missing and not info["unexpected_keys"] and not info["mismatched_keys"], info
    with torch.no_grad():
        out = model.eval()(**{k: torch.tensor(v) for k, v in inputs.items()}).last_hidden_state.numpy()
    assert_close(out, expected["last_hidden_state"], mask=inputs["attention_mask"], what=f"{spec} round trip")


def _fit_case(family):
    rng = np.random.RandomState(1)
    m = km.models
    if family == "deberta":
        backbone = m.DebertaBackbone(**FIT_TINY, relative_attention=True, pos_att_type=["c2p", "p2c"],
                                     max_relative_positions=4)
        return m.DebertaTextClassifier(backbone, num_classes=3), fit_inputs(), rng.randint(0, 3, (B,)), _sce()
    if family == "xmod":  # per-example languages
        backbone = m.XmodBackbone(**FIT_TINY, languages=["en_XX", "de_DE"])
        x = dict(fit_inputs(pad_id=1), lang_ids=np.array([0, 1, 1, 0]))
        return m.XmodTokenClassifier(backbone, num_classes=4), x, rng.randint(0, 4, (B, S)), _sce()
    if family == "splinter":
        x = fit_inputs()
        x["input_ids"][:, 1] = 7  # the question token
        y = {"start_logits": rng.randint(0, S - 3, (B,)), "end_logits": rng.randint(0, S - 3, (B,))}
        model = m.SplinterQuestionAnswerer(m.SplinterBackbone(**FIT_TINY, question_token_id=7))
        return model, x, y, {"start_logits": _sce(), "end_logits": _sce()}
    if family == "luke":  # untied MLM decoder
        model = m.LukeMaskedLM(m.LukeBackbone(**FIT_TINY), tie_word_embeddings=False)
        return model, fit_inputs(pad_id=1), rng.randint(0, 50, (B, S)), _sce()
    raise AssertionError(family)


@pytest.mark.parametrize("family", ["deberta", "xmod", "splinter", "luke"])
def test_fit_loss_decreases(family):
    keras.utils.set_random_seed(0)
    model, x, y, loss = _fit_case(family)
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss=loss)
    losses = model.fit(x, y, batch_size=B, epochs=6, shuffle=False, verbose=0).history["loss"]
    assert np.all(np.isfinite(losses)), losses
    assert losses[-1] < 0.97 * losses[0], f"{family}: loss did not decrease: {losses}"


def _keras_case(name):
    m, t = km.models, dict(FIT_TINY, num_layers=2)
    return {
        "deberta": lambda: m.DebertaMaskedLM(m.DebertaBackbone(**t, relative_attention=True, pos_att_type=["c2p"],
                                                               max_relative_positions=3, embedding_size=8)),
        "xmod": lambda: m.XmodQuestionAnswerer(m.XmodBackbone(**t, languages=["en_XX", "de_DE"], default_language="de_DE",
                                                              adapter_layer_norm=True, norm_first=True,
                                                              final_norm=True)),
        "splinter": lambda: m.SplinterQuestionAnswerer(m.SplinterBackbone(**t, question_token_id=7)),
        "luke": lambda: m.LukeMaskedLM(m.LukeBackbone(**t, entity_vocab_size=7, entity_emb_size=4),
                                       tie_word_embeddings=False),
    }[name]()


@pytest.mark.parametrize("name", ["deberta", "xmod", "splinter", "luke"])
def test_keras_save_load(name, tmp_path):
    """.keras save/load restores every switch and weight."""
    model = _keras_case(name)
    ids = np.array([[5, 6, 7, 8, 3], [9, 10, 11, 1, 1]], "int32")
    x = {"input_ids": ids, "attention_mask": (ids != 1).astype("int32")}
    assert_keras_round_trip(model, x, tmp_path)


def test_luke_entity_inputs_are_refused():
    folder, inputs, _ = _ref("luke", "Backbone")
    model = km.Backbone.from_preset(folder)
    with pytest.raises(ValueError, match="entity"):
        model(dict(inputs, entity_ids=np.ones((2, 1), "int64")))
