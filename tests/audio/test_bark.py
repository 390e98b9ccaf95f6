"""Bark against a tiny random Transformers ``BarkModel`` (one reference for everything).

* semantic (bias, 2 layers, 24 wide), coarse (``bias=False``: LayerNorms and Linears without bias,
  1 layer, 16 wide), fine (4 codebooks, tied heads, 2 layers, 20 wide) and a 4-codebook EnCodec.
* Logits of each sub-model on a padded batch (semantic / coarse: causal with a padding mask; fine:
  bidirectional, the head of codebook 2 and of codebook 3); a fine model alone with untied heads and
  ``bias=False``, through km.Backbone.
* ``BarkModel.generate`` greedy end to end through our ``km.TextToAudio``: the semantic tokens (text
  + speaker history embedded together, suppressed tokens, eos), the coarse sliding windows with the
  alternating codebooks, the fine windows and EnCodec's waveform; once plain, once with a speaker
  prompt (a voice preset from ``speaker_embeddings_path.json``) and ``min_eos_p``.
* The tokenizer as BarkProcessor runs it (no special tokens, padded to max_input_semantic_length).
"""

import json
import types

import numpy as np
import pytest

import keras_models as km
from tests.parity import assert_close, cached_folder, jit_under_jax, randomize_weights, to_numpy

ENCODEC = dict(hidden_size=8, num_filters=4, codebook_size=16, sampling_rate=1000, kernel_size=5, last_kernel_size=3,
               upsampling_ratios=[2, 2], target_bandwidths=[4.0], num_lstm_layers=1)
SEMANTIC = dict(block_size=40, input_vocab_size=60, output_vocab_size=24, num_layers=2, num_heads=2, hidden_size=24)
COARSE = dict(block_size=40, input_vocab_size=56, output_vocab_size=52, num_layers=1, num_heads=4, hidden_size=16,
              bias=False)
FINE = dict(block_size=40, input_vocab_size=20, output_vocab_size=20, num_layers=2, num_heads=2, hidden_size=20,
            n_codes_total=4, n_codes_given=1)
GENERATION = dict(
    semantic_config=dict(eos_token_id=20, max_new_tokens=12, text_encoding_offset=24, text_pad_token=55,
                         semantic_infer_token=57, semantic_vocab_size=20, max_input_semantic_length=8),
    coarse_acoustics_config=dict(coarse_semantic_pad_token=52, coarse_infer_token=53, max_coarse_input_length=10,
                                 max_coarse_history=12, sliding_window_len=6),
    fine_acoustics_config=dict(max_fine_history_length=6, max_fine_input_length=12, n_fine_codebooks=4),
    codebook_size=16, sample_rate=1000)
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "hello", "world", "my", "dog", "is", "cute", "a", "the", "sing",
         "##s", "##ing", "and", "bark", ",", ".", "!", "i", "need", "him", "in", "life", "so", "very", "much", "x"]
TEXTS = ["Hello world, my dog is cute!", "the dog barks"]
VOICE = "v2/en_speaker_0"


def _key():
    import hashlib
    import inspect
    import sys

    import transformers

    return hashlib.sha1((inspect.getsource(sys.modules[__name__]) + transformers.__version__).encode()).hexdigest()[:10]


def _voice():
    rng = np.random.RandomState(7)
    return {"semantic_prompt": rng.randint(0, 20, 9), "coarse_prompt": rng.randint(0, 16, (2, 14)),
            "fine_prompt": rng.randint(0, 16, (4, 10))}


def _inputs(case):
    rng = np.random.RandomState(3)
    if case == "semantic":
        ids = rng.randint(0, 60, (2, 7))
    elif case == "coarse":
        ids = rng.randint(0, 56, (2, 7))
    else:
        ids = rng.randint(0, 17, (2, 7, 4))
    mask = np.ones((2, 7), "int64")
    mask[1, 5:] = 0
    return ids, mask


def _reference():
    def build(tmp):
        import torch
        import transformers
        from transformers.models.bark.generation_configuration_bark import BarkGenerationConfig

        torch.manual_seed(0)
        folder = tmp / "model"
        config = transformers.BarkConfig(semantic_config=SEMANTIC, coarse_acoustics_config=COARSE,
                                         fine_acoustics_config=FINE,
                                         codec_config=transformers.EncodecConfig(**ENCODEC).to_dict())
        model = transformers.BarkModel(config).eval()
        randomize_weights(model)
        with torch.no_grad():  # EnCodec's codebooks: buffers (zeros in Transformers' init)
            for layer in model.codec_model.quantizer.layers:
                layer.codebook.embed.normal_()
            # raise the eos logit a little (along the final norm's bias), so that one row of the batch ends early
            b = model.semantic.layernorm_final.bias
            model.semantic.lm_head.weight[20] += 0.3 * b / b.norm() ** 2
        model.save_pretrained(folder)
        # BarkGenerationConfig cannot save itself (it skips GenerationConfig.__init__): its to_dict, by hand
        (folder / "generation_config.json").write_text(json.dumps(BarkGenerationConfig(**GENERATION).to_dict()))
        (folder / "vocab.txt").write_text("\n".join(VOCAB) + "\n")
        tok = transformers.BertTokenizer(str(folder / "vocab.txt"))
        tok.save_pretrained(folder)
        voice_dir = folder / "speaker_embeddings" / "v2"
        voice_dir.mkdir(parents=True)
        paths = {}
        for key, arr in _voice().items():
            np.save(voice_dir / f"en_speaker_0_{key}.npy", arr)
            paths[key] = f"speaker_embeddings/v2/en_speaker_0_{key}.npy"
        (folder / "speaker_embeddings_path.json").write_text(json.dumps({"repo_or_path": ".", VOICE: paths}))

        model = transformers.BarkModel.from_pretrained(folder).eval()
        # Transformers 5's BarkModel.generate reads the sub-configs as dicts (its own BarkGenerationConfig
        # holds objects there and fails): hand it the plain values
        model.generation_config = types.SimpleNamespace(**GENERATION)
        expected = {}
        with torch.no_grad():
            for case, sub in (("semantic", model.semantic), ("coarse", model.coarse_acoustics)):
                ids, mask = _inputs(case)
                expected[case] = sub(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask)).logits.numpy()
            ids, mask = _inputs("fine")
            for idx in (2, 3):
                expected[f"fine_{idx}"] = model.fine_acoustics(idx, torch.tensor(ids),
                                                               attention_mask=torch.tensor(mask)).logits.numpy()
            # the fine model alone, untied heads and bias-free Linears
            torch.manual_seed(1)
            alone = transformers.BarkFineModel(transformers.BarkFineConfig(**{**FINE, "bias": False},
                                                                           tie_word_embeddings=False)).eval()
            randomize_weights(alone)
            alone.save_pretrained(tmp / "fine_untied")
            alone = transformers.BarkFineModel.from_pretrained(tmp / "fine_untied").eval()
            expected["fine_untied"] = alone(2, torch.tensor(ids), attention_mask=torch.tensor(mask)).logits.numpy()
        processor = transformers.BarkProcessor.from_pretrained(folder)
        for run, extra in (("plain", {}), ("voice", {"voice_preset": VOICE})):
            enc = processor(TEXTS, max_length=8, **extra)
            expected[f"{run}_ids"] = enc["input_ids"].numpy()
            expected[f"{run}_mask"] = enc["attention_mask"].numpy()
            kwargs = {"history_prompt": enc["history_prompt"], "semantic_min_eos_p": 0.1} if extra else {}
            seen = {}
            coarse_generate = model.coarse_acoustics.generate

            def record_semantic(semantic, *args, _generate=coarse_generate, **kw):
                seen["semantic"] = semantic.numpy().copy()
                return _generate(semantic, *args, **kw)

            model.coarse_acoustics.generate = record_semantic
            fine_generate = model.fine_acoustics.generate

            def record(coarse, *args, _generate=fine_generate, **kw):
                seen["coarse"] = coarse.numpy().copy()
                out = _generate(coarse, *args, **kw)
                seen["fine"] = out.numpy().copy()
                return out

            model.fine_acoustics.generate = record
            with torch.no_grad():
                audio = model.generate(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"],
                                       do_sample=False, **kwargs)
            model.fine_acoustics.generate = fine_generate
            model.coarse_acoustics.generate = coarse_generate
            expected[f"{run}_semantic"] = seen["semantic"]
            expected[f"{run}_coarse"] = seen["coarse"]
            expected[f"{run}_fine"] = seen["fine"]
            expected[f"{run}_audio"] = audio.numpy()
        np.savez(tmp / "expected.npz", **expected)

    folder = cached_folder(f"audio-bark-{_key()}", build)
    return folder / "model", dict(np.load(folder / "expected.npz"))


def test_sub_model_logits_parity():
    folder, expected = _reference()
    model = km.TextToAudio.from_preset(folder)
    assert type(model).__name__ == "BarkTextToAudio"
    b = model.backbone
    fine_ids, fine_mask = _inputs("fine")

    def forward(sem, sem_mask, coarse, coarse_mask, fine, fine_mask):  # one compiled program under jax
        out = model({"semantic_input_ids": sem, "semantic_attention_mask": sem_mask, "coarse_input_ids": coarse,
                     "coarse_attention_mask": coarse_mask, "fine_input_ids": fine, "fine_attention_mask": fine_mask},
                    fine_codebook_idx=2)
        hidden = b.fine_acoustics.codebook_hidden(fine, 3, fine_mask)
        return out, b.fine_acoustics.codebook_logits(hidden, 3)

    out, fine3 = jit_under_jax(forward)(*_inputs("semantic"), *_inputs("coarse"), fine_ids, fine_mask)
    assert_close(out["semantic_logits"], expected["semantic"], mask=_inputs("semantic")[1], what="semantic logits")
    assert_close(out["coarse_logits"], expected["coarse"], mask=_inputs("coarse")[1], what="coarse logits")
    assert_close(out["fine_logits"], expected["fine_2"], mask=fine_mask, what="fine logits (codebook 2)")
    assert_close(fine3, expected["fine_3"], mask=fine_mask, what="fine logits (codebook 3)")
    alone = km.Backbone.from_preset(folder.parent / "fine_untied")
    assert type(alone).__name__ == "BarkFineBackbone" and alone.lm_heads
    hidden = alone({"input_ids": fine_ids, "attention_mask": fine_mask}, codebook_idx=2)
    assert_close(alone.codebook_logits(hidden, 2), expected["fine_untied"], mask=fine_mask, what="untied fine")


@pytest.mark.backend_independent
def test_tokenizer_as_bark_processor():
    folder, expected = _reference()
    tok = km.Tokenizer.from_preset(folder)
    enc = tok(TEXTS, add_special_tokens=False, padding="max_length", max_length=8, truncation=True,
              return_tensors=None)
    np.testing.assert_array_equal(np.asarray(enc["input_ids"]), expected["plain_ids"])
    np.testing.assert_array_equal(np.asarray(enc["attention_mask"]), expected["plain_mask"])


def test_generate_parity():
    folder, expected = _reference()
    model = km.TextToAudio.from_preset(folder)
    for run, extra in (("plain", {}), ("voice", {"voice_preset": VOICE, "semantic_min_eos_p": 0.1})):
        got = model.generate(TEXTS, do_sample=False, return_codes=True, **extra)
        want = expected[f"{run}_fine"]
        assert len(np.unique(want)) > 5, "degenerate reference: the codes hardly vary"
        np.testing.assert_array_equal(got["audio_codes"], want, err_msg=run)
        assert_close(got["audio_values"][:, 0], expected[f"{run}_audio"], what=f"{run} audio")



def test_bark_reloads_in_transformers(tmp_path):
    """save_to_preset (config, weights, generation_config.json) read back by Transformers; the causal
    and fine sub-models' checkpoints alone through km.CausalLM / km.Backbone."""
    import torch
    import transformers

    folder, expected = _reference()
    km.TextToAudio.from_preset(folder).save_to_preset(tmp_path / "bark")
    assert json.loads((tmp_path / "bark" / "generation_config.json").read_text())["coarse_acoustics_config"][
        "sliding_window_len"] == 6
    processor = transformers.BarkProcessor.from_pretrained(tmp_path / "bark")  # the voices travel along
    voice = processor(TEXTS, max_length=8, voice_preset=VOICE)["history_prompt"]
    for key, arr in _voice().items():
        np.testing.assert_array_equal(voice[key].numpy(), arr)
    model = transformers.BarkModel.from_pretrained(tmp_path / "bark").eval()
    ids, mask = _inputs("coarse")
    with torch.no_grad():
        out = model.coarse_acoustics(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask)).logits.numpy()
        fine = model.fine_acoustics(3, torch.tensor(_inputs("fine")[0]),
                                    attention_mask=torch.tensor(_inputs("fine")[1])).logits.numpy()
    np.testing.assert_allclose(out[mask == 1], expected["coarse"][mask == 1], atol=1e-5)
    np.testing.assert_allclose(fine[mask == 1], expected["fine_3"][mask == 1], atol=1e-5)
    model.semantic.save_pretrained(tmp_path / "semantic")
    lm = km.CausalLM.from_preset(tmp_path / "semantic")
    assert type(lm).__name__ == "BarkCausalLM"
    ids, mask = _inputs("semantic")
    got = to_numpy(lm({"input_ids": ids, "attention_mask": mask}))
    assert_close(got, expected["semantic"], mask=mask, what="semantic alone")
    model.fine_acoustics.save_pretrained(tmp_path / "fine")
    assert type(km.Backbone.from_preset(tmp_path / "fine")).__name__ == "BarkFineBackbone"


@pytest.mark.backend_independent
def test_bad_config_and_voice_presets(tmp_path):
    from keras_models.errors import ConfigError, InputError
    from keras_models.models.bark import BarkCausalSpec, BarkFineSpec, load_voice_preset

    with pytest.raises(ConfigError, match="n_codes_given"):
        BarkFineSpec.from_hf({**FINE, "n_codes_given": 4})
    with pytest.raises(ConfigError, match="num_heads"):
        BarkCausalSpec.from_hf({**SEMANTIC, "num_heads": 5})
    with pytest.raises(InputError, match="coarse_prompt"):
        load_voice_preset({"semantic_prompt": np.zeros(3, "int64"), "fine_prompt": np.zeros((4, 3), "int64")})
    np.savez(tmp_path / "objects.npz", semantic_prompt=np.array([{"a": 1}], dtype=object))
    with pytest.raises(InputError, match="pickled"):
        load_voice_preset(tmp_path / "objects.npz")  # never unpickled
    with pytest.raises(InputError, match="neither"):
        load_voice_preset("no/such/voice", {"v2/en_speaker_0": {}})


if __name__ == "__main__":
    f, e = _reference()
    for k, v in e.items():
        print(k, v.shape, v if v.dtype.kind == "i" and v.size < 200 else "")
