"""Whisper (audio encoder + BART-like decoder) against a tiny random Transformers model: encoder
states and LM logits (padded decoder batch), save_to_preset reloaded by Transformers, and
generate (greedy, beam, language / task prompt, language detection, prompt_ids, suppress and
begin-suppress tokens) equal to Transformers' Whisper generate; with a second tiny model that has
timestamp tokens: return_timestamps (greedy, beam, language detection), segments, and sequential
long-form transcription (batched with attention_mask, max_length, prompt_ids)."""

import inspect
import json

import numpy as np
import pytest

import keras_models as km
from tests.parity import assert_close, cached_folder, hf_reference, to_numpy

# ids above NO_TS would be timestamp tokens (Transformers cuts segments at them): NO_TS is the last id
EOS, START, EN, FR, TRANSLATE, TRANSCRIBE, NO_TS = 93, 94, 95, 96, 97, 98, 99
GENERATION = dict(lang_to_id={"<|en|>": EN, "<|fr|>": FR}, task_to_id={"translate": TRANSLATE, "transcribe": TRANSCRIBE},
                  no_timestamps_token_id=NO_TS, is_multilingual=True, suppress_tokens=[3, 25],
                  begin_suppress_tokens=[75, 82])


def _whisper():
    import torch
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    cfg = WhisperConfig(vocab_size=100, d_model=32, encoder_layers=2, decoder_layers=1, encoder_attention_heads=4,
                        decoder_attention_heads=2, encoder_ffn_dim=48, decoder_ffn_dim=40, num_mel_bins=10,
                        max_source_positions=12, max_target_positions=40, decoder_start_token_id=START,
                        eos_token_id=EOS, pad_token_id=EOS, bos_token_id=EOS, suppress_tokens=None,
                        begin_suppress_tokens=None, activation_function="gelu_new")
    model = WhisperForConditionalGeneration(cfg)
    with torch.no_grad():  # decisive logits, norms and biases off 1 / 0
        for name, p in model.named_parameters():
            if "embed_positions" in name and "encoder" in name:
                continue
            p.add_(torch.randn_like(p) * (0.3 if p.ndim == 1 else 0.5))
        model.model.decoder.embed_tokens.weight[EOS] *= 4.0  # some rows stop early
    for k, v in GENERATION.items():
        setattr(model.generation_config, k, v)
    return model


def _inputs():
    rng = np.random.RandomState(0)
    feats = rng.randn(2, 10, 24).astype("float32")
    dec = np.array([[START, EN, TRANSCRIBE, NO_TS, 5, 17, 33], [START, FR, TRANSLATE, NO_TS, 8, 0, 0]], "int64")
    mask = np.array([[1] * 7, [1] * 5 + [0] * 2], "int64")
    return {"input_features": feats, "decoder_input_ids": dec, "decoder_attention_mask": mask}


def _reference():
    return hf_reference("whisper", _whisper, _inputs())


PROMPT = np.array([[START, EN, TRANSCRIBE, NO_TS]] * 2)
SETTINGS = {
    "greedy": dict(language="en", task="transcribe", max_new_tokens=10),
    "beam2": dict(language="en", task="transcribe", max_new_tokens=10, num_beams=2),
    "language_task": dict(language="fr", task="translate", max_new_tokens=10),
    "detect_language": dict(max_new_tokens=10),
    "prompt_ids": dict(prompt_ids=np.array([92, 5, 6]), language="en", max_new_tokens=8),
}


def _generate_reference():
    """Transformers' Whisper generate under every SETTINGS entry (built once, cached)."""
    import hashlib

    src = inspect.getsource(inspect.getmodule(_generate_reference))
    key = "whisper-generate-" + hashlib.sha1(src.encode()).hexdigest()[:10]
    feats = _inputs()["input_features"]

    def build(tmp):
        import torch

        torch.manual_seed(0)
        _whisper().eval().save_pretrained(tmp / "model")
        out = {}
        with torch.no_grad():
            for name, setting in SETTINGS.items():  # the same model afresh each time
                torch.manual_seed(0)
                model = _whisper().eval()
                args = {k: torch.tensor(v) if isinstance(v, np.ndarray) else v for k, v in setting.items()}
                out[name] = model.generate(torch.tensor(feats), do_sample=False, **args).numpy()
        np.savez(tmp / "expected.npz", **out)

    folder = cached_folder(key, build)
    return folder / "model", feats, dict(np.load(folder / "expected.npz"))


def test_logits_and_encoder_match_transformers(tmp_path):
    folder, expected = _reference()
    inputs = _inputs()
    model = km.Seq2SeqLM.from_preset(folder)
    assert type(model).__name__ == "WhisperSeq2SeqLM"
    mask = inputs["decoder_attention_mask"]
    assert_close(model(inputs), expected["logits"], mask=mask, what="logits")
    backbone = km.Backbone.from_preset(folder)
    out = backbone(inputs)
    assert_close(out["encoder_last_hidden_state"], expected["encoder_last_hidden_state"], what="encoder")
    assert_close(model.backbone(inputs)["last_hidden_state"], to_numpy(out["last_hidden_state"]), atol=1e-5,
                 mask=mask, what="decoder")
    # channels-last features (batch, frames, mels) give the same encoder states
    swapped = dict(inputs, input_features=inputs["input_features"].transpose(0, 2, 1))
    assert_close(backbone(swapped)["encoder_last_hidden_state"], expected["encoder_last_hidden_state"],
                 what="channels-last encoder")
    with pytest.raises(ValueError, match="24 frames"):
        backbone.encode(inputs["input_features"][:, :, :20])


def test_save_to_preset_reloads_in_transformers(tmp_path):
    import torch
    from transformers import WhisperForConditionalGeneration

    folder, expected = _reference()
    km.Seq2SeqLM.from_preset(folder).save_to_preset(tmp_path / "saved")
    hf = WhisperForConditionalGeneration.from_pretrained(tmp_path / "saved").eval()
    with torch.no_grad():
        logits = hf(**{k: torch.tensor(v) for k, v in _inputs().items()}).logits.numpy()
    assert_close(logits, expected["logits"], mask=_inputs()["decoder_attention_mask"], what="reloaded logits")
    assert hf.generation_config.lang_to_id == GENERATION["lang_to_id"]


@pytest.mark.parametrize("setting", list(SETTINGS))
def test_generate_matches_transformers(setting):
    folder, feats, expected = _generate_reference()
    model = km.Seq2SeqLM.from_preset(folder)
    out = model.generate(feats, do_sample=False, **SETTINGS[setting])
    np.testing.assert_array_equal(out, expected[setting])


def test_explicit_decoder_prompt_equals_the_forced_prompt():
    """decoder_input_ids given explicitly = the language / task prompt Transformers builds (its own
    Whisper generate treats explicit decoder_input_ids differently, so the check is against ours)."""
    folder, feats, expected = _generate_reference()
    model = km.Seq2SeqLM.from_preset(folder)
    for setting, extra in (("greedy", {}), ("beam2", {"num_beams": 2})):
        out = model.generate(feats, do_sample=False, decoder_input_ids=PROMPT, max_new_tokens=10, **extra)
        np.testing.assert_array_equal(out, expected[setting])


def test_cross_kv_filled_by_the_prefill_only():
    """The shared seq2seq adapter's cross-attention K/V: a zero-length placeholder in ``init_cache``
    (same tree and batch axis as the filled buffer), filled by the prefill and never recomputed by
    a loop step (no per-step cond: under jax that made XLA copy every K/V buffer each step), for
    greedy and beam, with Transformers' ids."""
    from keras_models.tasks.seq2seq_generation import Seq2SeqDecoderAdapter

    folder, feats, expected = _generate_reference()
    model = km.Seq2SeqLM.from_preset(folder)
    assert issubclass(model.decoder_adapter, Seq2SeqDecoderAdapter)
    model._gen_extra = {"encoder_states": np.zeros((2, 12, 32), "float32")}
    try:
        cache = model.decoder_adapter(model).init_cache(2, 8)
    finally:
        model._gen_extra = None
    assert tuple(cache["cross_kv"][0][0].shape) == (2, 2, 0, 16)
    calls = []
    own = model.backbone.cross_kv_cache
    model.backbone.cross_kv_cache = lambda states: calls.append(1) or own(states)
    for setting in ("greedy", "beam2"):
        calls.clear()
        np.testing.assert_array_equal(model.generate(feats, do_sample=False, **SETTINGS[setting]), expected[setting])
        assert len(calls) == 1, setting  # the prefill; a loop step (traced or eager) never calls it


def test_language_names_are_transformers():
    """Full language names (``language="french"``) resolve as in Transformers, without importing it."""
    from transformers.models.whisper.tokenization_whisper import TO_LANGUAGE_CODE

    from keras_models.models.whisper.tasks import LANGUAGE_CODES

    assert LANGUAGE_CODES == TO_LANGUAGE_CODE


# --- timestamps and sequential long-form transcription -------------------------------------------
# A second tiny model whose vocabulary has the 13 timestamp ids (0.00 .. 0.24 s for a 24-frame window)
# above NO_TS; their embeddings scaled up so that windows close segments, end with single
# timestamps and seek back.
TS_VOCAB = NO_TS + 1 + 13
TS_GENERATION = dict(GENERATION, max_initial_timestamp_index=4)


def _whisper_ts():
    import torch
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    cfg = WhisperConfig(vocab_size=TS_VOCAB, d_model=32, encoder_layers=1, decoder_layers=1, encoder_attention_heads=4,
                        decoder_attention_heads=2, encoder_ffn_dim=48, decoder_ffn_dim=40, num_mel_bins=10,
                        max_source_positions=12, max_target_positions=40, decoder_start_token_id=START,
                        eos_token_id=EOS, pad_token_id=EOS, bos_token_id=EOS, suppress_tokens=None,
                        begin_suppress_tokens=None, activation_function="gelu_new")
    torch.manual_seed(0)
    model = WhisperForConditionalGeneration(cfg).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "embed_positions" in name and "encoder" in name:
                continue
            p.add_(torch.randn_like(p) * (0.3 if p.ndim == 1 else 0.5))
        model.model.decoder.embed_tokens.weight[NO_TS + 1:] *= 3.0
    for k, v in TS_GENERATION.items():
        setattr(model.generation_config, k, v)
    return model


def _ts_inputs():
    rng = np.random.RandomState(0)
    short = rng.randn(2, 10, 24).astype("float32")
    long = rng.randn(2, 10, 70).astype("float32")
    mask = np.ones((2, 70), "int64")
    mask[1, 50:] = 0
    return short, long, mask


TS_SETTINGS = {  # name -> (input, generate kwargs); the jax pass runs the first, tensorflow the second
    "long_greedy": ("long", dict(language="en", max_new_tokens=6)),
    "short_greedy": ("short", dict(return_timestamps=True, language="en", max_new_tokens=8)),
    "short_beam2": ("short", dict(return_timestamps=True, language="en", max_new_tokens=8, num_beams=2)),
    "short_detect": ("short", dict(return_timestamps=True, max_new_tokens=8)),
    "short_no_timestamps": ("short", dict(language="en", max_new_tokens=8)),  # one segment per row
    "long_max_length": ("long", dict(language="fr", task="translate", max_length=4)),
    "long_prompt_ids": ("long1", dict(language="en", max_new_tokens=5, prompt_ids=np.array([92, 5, 6]))),
}


def _ts_call_inputs(kind):
    short, long, mask = _ts_inputs()
    if kind == "short":
        return short, {}
    if kind == "long1":
        return long[:1], {}
    return long, {"attention_mask": mask}


def _ts_reference():
    """Transformers' generate(..., return_segments=True) under every TS_SETTINGS entry (cached)."""
    import hashlib

    src = inspect.getsource(inspect.getmodule(_ts_reference))
    key = "whisper-ts-" + hashlib.sha1(src.encode()).hexdigest()[:10]

    def build(tmp):
        import torch

        model = _whisper_ts()
        model.generation_config._from_model_config = False
        model.save_pretrained(tmp / "model")
        ids, segs = {}, {}
        with torch.no_grad():
            for name, (kind, setting) in TS_SETTINGS.items():
                feats, extra = _ts_call_inputs(kind)
                args = {k: torch.tensor(v) if isinstance(v, np.ndarray) else v for k, v in {**setting, **extra}.items()}
                out = _whisper_ts().generate(torch.tensor(feats), do_sample=False, return_segments=True, **args)
                ids[name] = out["sequences"].numpy()
                segs[name] = [[[float(s["start"]), float(s["end"]), s["tokens"].tolist()] for s in row]
                              for row in out["segments"]]
        np.savez(tmp / "expected.npz", **ids)
        (tmp / "segments.json").write_text(json.dumps(segs))

    folder = cached_folder(key, build)
    return (folder / "model", dict(np.load(folder / "expected.npz")),
            json.loads((folder / "segments.json").read_text()))


@pytest.mark.one_case_per_pass("setting")
@pytest.mark.parametrize("setting", list(TS_SETTINGS))
def test_timestamps_and_long_form_match_transformers(setting):
    folder, expected, segments = _ts_reference()
    model = km.Seq2SeqLM.from_preset(folder)
    kind, kwargs = TS_SETTINGS[setting]
    feats, extra = _ts_call_inputs(kind)
    out = model.generate(feats, do_sample=False, return_segments=True, **kwargs, **extra)
    np.testing.assert_array_equal(out["sequences"], expected[setting])
    got = [[[s["start"], s["end"], s["tokens"].tolist()] for s in row] for row in out["segments"]]
    assert [[s[2] for s in row] for row in got] == [[s[2] for s in row] for row in segments[setting]]
    np.testing.assert_allclose([s[:2] for row in got for s in row], [s[:2] for row in segments[setting] for s in row],
                               atol=1e-9)
    if setting == "long_greedy":  # the plain ids, as Transformers returns them without return_segments
        np.testing.assert_array_equal(model.generate(feats, **kwargs, **extra), expected[setting])


def test_timestamp_and_long_form_errors():
    folder, _, _ = _ts_reference()
    model = km.Seq2SeqLM.from_preset(folder)
    _, long, mask = _ts_inputs()
    with pytest.raises(ValueError, match="attention_mask"):
        model.generate(long, max_new_tokens=2)
    with pytest.raises(ValueError, match="return_timestamps=True"):
        model.generate(long, attention_mask=mask, return_timestamps=False, max_new_tokens=2)
    with pytest.raises(ValueError, match="no_speech_threshold needs logprob_threshold"):
        model.generate(long, attention_mask=mask, no_speech_threshold=0.5, max_new_tokens=2)
