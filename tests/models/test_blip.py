"""BLIP against Transformers 5: BlipModel (km.ZeroShotImageClassifier), BlipForConditionalGeneration
(km.ImageToText) and BlipForImageTextRetrieval (km.ImageTextMatcher), all from one tiny config with
options that change the numbers: a 24-wide vision tower (quick_gelu, eps 1e-6) under a 32-wide text
tower (gelu_new, eps 1e-7), so cross-attention reads another width; projection_dim 20 and
image_text_hidden_size 12; special ids off Transformers' defaults (bos 60, sep 3). References are
built once (weights of unit variance per fan-in, vectors moved off 1 / 0: tests/parity.py) into
one cache folder: the three models, their outputs on a right-padded batch, and greedy ``generate``
from pixel_values with and without a prompt and from raw images through BlipImageProcessor.
"""

import hashlib
import inspect
import json

import keras
import numpy as np
import pytest

import keras_models as km
from keras_models.errors import ConfigError, InputError
from keras_models.preprocessing.image import ImageProcessor
from tests.parity import assert_close, cached_folder, randomize_weights, to_numpy

VISION = dict(hidden_size=24, intermediate_size=36, num_hidden_layers=2, num_attention_heads=2, image_size=16,
              patch_size=8, hidden_act="quick_gelu", layer_norm_eps=1e-6)
TEXT = dict(vocab_size=64, hidden_size=32, intermediate_size=40, num_hidden_layers=2, num_attention_heads=4,
            max_position_embeddings=40, hidden_act="gelu_new", layer_norm_eps=1e-7, bos_token_id=60, eos_token_id=2,
            pad_token_id=0, sep_token_id=3)
HEADS = ("model", "caption", "retrieval", "vqa")
NEW_TOKENS = 6
PROMPT = np.array([[1, 5, 7, 3], [1, 9, 11, 3]])  # [CLS] text [SEP], as BlipProcessor makes it
WORDS = ["[PAD]", "[CLS]", "[UNK]", "[SEP]", "[MASK]"] + [f"w{i}" for i in range(55)] + ["[DEC]", "[ENC]", "a", "b"]


def _inputs():
    rng = np.random.RandomState(3)
    return {"pixel_values": rng.randn(2, 3, 16, 16).astype("float32"),
            "input_ids": np.array([[1, 5, 7, 9, 11, 3], [1, 9, 13, 3, 0, 0]]),
            "attention_mask": np.array([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0]])}


def _images():
    return list((np.random.RandomState(4).rand(2, 20, 24, 3) * 255).astype("uint8"))


def _config(head="model"):
    import transformers as T

    # question answering feeds the question's states to the answer decoder's cross-attention, whose
    # width is the vision tower's: Transformers needs the two widths equal there
    vision = dict(VISION, hidden_size=32, num_attention_heads=4) if head == "vqa" else VISION
    return T.BlipConfig(vision_config=vision, text_config=TEXT, projection_dim=20, image_text_hidden_size=12,
                        logit_scale_init_value=1.5)


def _vqa_logits(model, inputs):
    """BlipForQuestionAnswering's answer-decoder logits (its forward returns none): the question
    encoded over the image, then the causal answer decoder over the question's states."""
    image = model.vision_model(pixel_values=inputs["pixel_values"]).last_hidden_state
    question = model.text_encoder(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"],
                                  encoder_hidden_states=image).last_hidden_state
    return model.text_decoder(input_ids=inputs["decoder_input_ids"], attention_mask=inputs["decoder_attention_mask"],
                              encoder_hidden_states=question, encoder_attention_mask=inputs["attention_mask"]).logits


def _vqa_inputs():
    answer = np.array([[60, 8, 12, 3], [60, 14, 3, 0]])
    return dict(_inputs(), decoder_input_ids=answer, decoder_attention_mask=(answer != 0).astype("int64"))


def _reference():
    src = inspect.getsource(inspect.getmodule(_reference)) + inspect.getsource(randomize_weights)
    key = "blip-" + hashlib.sha1(src.encode()).hexdigest()[:10]

    def build(tmp):
        import torch
        import transformers as T

        inputs = {k: torch.tensor(v) for k, v in _inputs().items()}
        vocab = tmp / "vocab.txt"
        vocab.write_text("\n".join(WORDS) + "\n")
        tokenizer = T.BertTokenizer(str(vocab), bos_token="[DEC]")
        processor = T.BlipImageProcessorPil(size={"height": 16, "width": 16}, image_mean=[0.5, 0.4, 0.3],
                                            image_std=[0.2, 0.3, 0.4])
        out = {}
        for i, (head, cls) in enumerate(zip(HEADS, (T.BlipModel, T.BlipForConditionalGeneration,
                                                    T.BlipForImageTextRetrieval, T.BlipForQuestionAnswering))):
            torch.manual_seed(i)
            model = randomize_weights(cls(_config(head)), seed=i).eval()
            model.save_pretrained(tmp / head)
            processor.save_pretrained(tmp / head)
            tokenizer.save_pretrained(tmp / head)
            model = cls.from_pretrained(tmp / head).eval()  # the saved weights, reloaded
            with torch.no_grad():
                if head == "model":
                    o = model(**inputs)
                    for name in ("logits_per_image", "text_embeds", "image_embeds"):
                        out[f"model_{name}"] = getattr(o, name).numpy()
                    out["model_vision"] = o.vision_model_output.last_hidden_state.numpy()
                elif head == "caption":
                    o = model(**inputs)
                    out["caption_logits"], out["caption_vision"] = o.logits.numpy(), o.last_hidden_state.numpy()
                    pixels = inputs["pixel_values"]
                    out["ids"] = model.generate(pixel_values=pixels, do_sample=False, max_new_tokens=NEW_TOKENS).numpy()
                    out["ids_prompt"] = model.generate(pixel_values=pixels, input_ids=torch.tensor(PROMPT),
                                                       do_sample=False, max_new_tokens=NEW_TOKENS).numpy()
                    processed = processor(images=_images(), return_tensors="pt").pixel_values
                    out["processed"] = processed.numpy()
                    out["processed_defaults"] = T.BlipImageProcessorPil()(images=_images()[:1], return_tensors="np")[
                        "pixel_values"]
                    out["ids_images"] = model.generate(pixel_values=processed, do_sample=False,
                                                       max_new_tokens=NEW_TOKENS).numpy()
                    text = tokenizer(["w5 w9 a", "b w7"], padding=True)
                    out["tok_ids"], out["tok_mask"] = np.array(text["input_ids"]), np.array(text["attention_mask"])
                elif head == "vqa":
                    out["vqa_logits"] = _vqa_logits(model, {k: torch.tensor(v) for k, v in _vqa_inputs().items()}).numpy()
                    out["vqa_ids"] = model.generate(**inputs, do_sample=False, max_new_tokens=NEW_TOKENS).numpy()
                else:
                    out["itm"] = model(**inputs).itm_score.numpy()
                    out["cosine"] = model(**inputs, use_itm_head=False).itm_score.numpy()
        np.savez(tmp / "expected.npz", **out)

    folder = cached_folder(key, build)
    return folder, dict(np.load(folder / "expected.npz"))


def _ours(inputs):
    return dict(inputs, pixel_values=inputs["pixel_values"].transpose(0, 2, 3, 1))


def test_blip_heads_match_transformers():
    """Logits / embeddings of the three heads, the vision tower's states, the backbone from any head."""
    folder, expected = _reference()
    inputs = _ours(_inputs())
    mask = inputs["attention_mask"]

    model = km.ZeroShotImageClassifier.from_preset(folder / "model")
    assert type(model).__name__ == "BlipZeroShotImageClassifier"
    out = model(inputs)
    for name in ("logits_per_image", "text_embeds", "image_embeds"):
        assert_close(out[name], expected[f"model_{name}"], what=f"BlipModel {name}")
    vision = model.backbone.vision_model({"pixel_values": inputs["pixel_values"]})
    assert_close(vision, expected["model_vision"], what="BlipModel vision tower")

    model = km.ImageToText.from_preset(folder / "caption")
    assert type(model).__name__ == "BlipImageToText"
    assert_close(model(inputs), expected["caption_logits"], mask=mask, what="captioning logits")
    assert_close(model.backbone.image_states(inputs["pixel_values"]), expected["caption_vision"],
                 what="captioning vision tower")

    matcher = km.ImageTextMatcher.from_preset(folder / "retrieval")
    assert type(matcher).__name__ == "BlipImageTextMatcher"
    assert_close(matcher(inputs), expected["itm"], what="itm logits")
    assert_close(matcher(inputs, use_itm_head=False), expected["cosine"], what="itm cosine")

    model = km.ImageTextToText.from_preset(folder / "vqa")
    assert type(model).__name__ == "BlipQuestionAnswering"
    vqa = _ours(_vqa_inputs())
    assert_close(model(vqa), expected["vqa_logits"], mask=vqa["decoder_attention_mask"], what="vqa answer logits")
    if keras.backend.backend() == "torch":  # the captioning decode loop, compiled in the generate test
        out = model.generate({k: vqa[k] for k in ("input_ids", "attention_mask", "pixel_values")}, do_sample=False,
                             max_new_tokens=NEW_TOKENS)
        np.testing.assert_array_equal(np.asarray(out), expected["vqa_ids"])

    # the backbone reads the text tower under the retrieval checkpoint's name (text_encoder.)
    backbone = km.Backbone.from_preset(folder / "retrieval")
    out = backbone(inputs)
    np.testing.assert_allclose(to_numpy(out["last_hidden_state"]),
                               to_numpy(matcher.backbone(inputs)["last_hidden_state"]), atol=1e-5)


def test_blip_generate_and_preprocessing_match_transformers():
    """Greedy captions (no prompt; a prompt; raw images through the image processor), the
    image processor's pixel_values and the BERT tokenizer BLIP ships, against Transformers."""
    folder, expected = _reference()
    model = km.ImageToText.from_preset(folder / "caption")
    pixels = _inputs()["pixel_values"].transpose(0, 2, 3, 1)
    new = np.concatenate([expected["ids"][:, 1:], expected["ids_prompt"][:, 3:], expected["ids_images"][:, 1:]])
    assert len(set(new.ravel().tolist())) > 2  # varied tokens
    out = model.generate({"input_ids": PROMPT, "pixel_values": pixels}, do_sample=False, max_new_tokens=NEW_TOKENS)
    np.testing.assert_array_equal(np.asarray(out), expected["ids_prompt"])
    processed = model.preprocessor(_images())["pixel_values"]
    np.testing.assert_allclose(processed, expected["processed"].transpose(0, 2, 3, 1), atol=1e-5)
    defaults = ImageProcessor.from_config({"image_processor_type": "BlipImageProcessor"})  # the class defaults
    np.testing.assert_allclose(defaults(_images()[:1])["pixel_values"],
                               expected["processed_defaults"].transpose(0, 2, 3, 1), atol=1e-5)
    if keras.backend.backend() == "torch":
        # without a prompt (from [bos]) only the host-side prompt differs; under jax / tensorflow it
        # would compile a second decode loop (another prompt length), so it runs in the eager pass
        out = model.generate({"pixel_values": pixels}, do_sample=False, max_new_tokens=NEW_TOKENS)
        np.testing.assert_array_equal(np.asarray(out), expected["ids"])
        out = model.generate(_images(), do_sample=False, max_new_tokens=NEW_TOKENS)
        np.testing.assert_array_equal(np.asarray(out), expected["ids_images"])
    tok = model.preprocessor.tokenizer(["w5 w9 a", "b w7"], padding=True, return_tensors="np")
    np.testing.assert_array_equal(np.asarray(tok["input_ids"]), expected["tok_ids"])
    np.testing.assert_array_equal(np.asarray(tok["attention_mask"]), expected["tok_mask"])
    with pytest.raises(InputError, match="pixel_values"):
        model.generate({"input_ids": PROMPT})


def test_blip_bad_config_names_the_key(tmp_path):
    folder, _ = _reference()
    config = json.loads((folder / "caption" / "config.json").read_text())
    config["vision_config"] = dict(config["vision_config"], model_type="clip_vision_model")
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ConfigError, match="vision_config"):
        km.ImageToText.from_preset(tmp_path, load_weights=False)
    folder, _ = _blip2_reference()
    config = json.loads((folder / "blip2" / "config.json").read_text())
    for change, message in (({"text_config": {"model_type": "t5", "is_encoder_decoder": True}}, "text_config"),
                            ({"image_token_index": None}, "image_token_index")):
        (tmp_path / "config.json").write_text(json.dumps(dict(config, **change)))
        with pytest.raises(ConfigError, match=message):
            km.ImageTextToText.from_preset(tmp_path, load_weights=False)


def test_blip_reloads_in_transformers(tmp_path):
    """Our save_to_preset of the captioning and retrieval models, reloaded by Transformers."""
    import torch
    import transformers as T

    folder, expected = _reference()
    inputs = {k: torch.tensor(v) for k, v in _inputs().items()}
    km.ImageToText.from_preset(folder / "caption").save_to_preset(tmp_path / "caption")
    hf = T.BlipForConditionalGeneration.from_pretrained(tmp_path / "caption").eval()
    with torch.no_grad():
        logits = hf(**inputs).logits.numpy()
    assert_close(logits, expected["caption_logits"], mask=_inputs()["attention_mask"], what="reloaded captioning")
    km.ImageTextToText.from_preset(folder / "vqa").save_to_preset(tmp_path / "vqa")
    hf = T.BlipForQuestionAnswering.from_pretrained(tmp_path / "vqa").eval()
    with torch.no_grad():
        logits = _vqa_logits(hf, {k: torch.tensor(v) for k, v in _vqa_inputs().items()}).numpy()
    assert_close(logits, expected["vqa_logits"], mask=_vqa_inputs()["decoder_attention_mask"], what="reloaded vqa")
    km.ImageTextMatcher.from_preset(folder / "retrieval").save_to_preset(tmp_path / "retrieval")
    hf = T.BlipForImageTextRetrieval.from_pretrained(tmp_path / "retrieval").eval()
    with torch.no_grad():
        assert_close(hf(**inputs).itm_score.numpy(), expected["itm"], what="reloaded itm")


# --- BLIP-2 and InstructBLIP ---------------------------------------------------------------------
IMAGE_TOKEN = 63
QUERIES = 3
VISION2 = dict(VISION, layer_norm_eps=1e-5, hidden_act="gelu")
QFORMER = dict(vocab_size=30, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=20,
               max_position_embeddings=20, cross_attention_frequency=2, hidden_act="gelu_new", layer_norm_eps=1e-6)
OPT = dict(vocab_size=64, hidden_size=32, ffn_dim=40, num_hidden_layers=2, num_attention_heads=4,
           max_position_embeddings=40, word_embed_proj_dim=32, pad_token_id=1, bos_token_id=2, eos_token_id=3)
LLAMA = dict(vocab_size=64, hidden_size=32, intermediate_size=40, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2, max_position_embeddings=64, pad_token_id=0, bos_token_id=1, eos_token_id=2,
             tie_word_embeddings=False)


def _blip2_inputs(kind):
    """[image tokens; text], the second row left-padded (InstructBLIP: a right-padded instruction)."""
    rng = np.random.RandomState(5)
    img = [IMAGE_TOKEN] * QUERIES
    bos, pad = (2, 1) if kind == "blip2" else (1, 0)
    out = {"pixel_values": rng.randn(2, 3, 16, 16).astype("float32"),
           "input_ids": np.array([img + [bos, 5, 7, 9], [pad, pad] + img + [bos, 11]]),
           "attention_mask": np.array([[1] * 7, [0, 0] + [1] * 5])}
    if kind == "instructblip":
        out["qformer_input_ids"] = np.array([[1, 5, 8, 2], [1, 9, 2, 0]])
        out["qformer_attention_mask"] = np.array([[1, 1, 1, 1], [1, 1, 1, 0]])
    return out


def _blip2_reference():
    src = inspect.getsource(inspect.getmodule(_blip2_reference)) + inspect.getsource(randomize_weights)
    key = "blip2-" + hashlib.sha1(src.encode()).hexdigest()[:10]

    def build(tmp):
        import torch
        import transformers as T

        out = {}
        for seed, kind in ((2, "blip2"), (1, "instructblip")):  # seeds giving image-dependent captions
            if kind == "blip2":  # OPT (tied head); the Q-Former's unused text feed-forward is saved
                cfg = T.Blip2Config(vision_config=VISION2, qformer_config=dict(QFORMER, use_qformer_text_input=True),
                                    text_config=T.OPTConfig(**OPT), num_query_tokens=QUERIES,
                                    image_token_index=IMAGE_TOKEN)
                cls = T.Blip2ForConditionalGeneration
            else:  # Llama with GQA and an untied head; vision attention without qkv biases
                cfg = T.InstructBlipConfig(vision_config=dict(VISION2, qkv_bias=False), qformer_config=QFORMER,
                                           text_config=T.LlamaConfig(**LLAMA), num_query_tokens=QUERIES,
                                           image_token_index=IMAGE_TOKEN)
                cls = T.InstructBlipForConditionalGeneration
            torch.manual_seed(seed)
            randomize_weights(cls(cfg), seed=seed).save_pretrained(tmp / kind)
            model = cls.from_pretrained(tmp / kind).eval()
            inputs = {k: torch.tensor(v) for k, v in _blip2_inputs(kind).items()}
            with torch.no_grad():
                out[f"{kind}_logits"] = model(**inputs).logits.numpy()
                prompt = {k: v[:1] for k, v in inputs.items()}  # one row: no padding inside the prompt
                out[f"{kind}_ids"] = model.generate(**prompt, do_sample=False, max_new_tokens=NEW_TOKENS).numpy()
                if kind == "blip2":
                    out["blip2_ids_no_prompt"] = model.generate(pixel_values=inputs["pixel_values"], do_sample=False,
                                                                max_new_tokens=NEW_TOKENS).numpy()
        np.savez(tmp / "expected.npz", **out)

    folder = cached_folder(key, build)
    return folder, dict(np.load(folder / "expected.npz"))


@pytest.mark.parametrize("kind", ["blip2", "instructblip"])
def test_blip2_logits_and_generate_match_transformers(kind):
    """Logits on real tokens on every backend; greedy generate from a prompt and (BLIP-2) from no
    prompt in the torch pass: only the image features (computed before the loop, checked by the
    logits) are BLIP-2's own, the compiled decode loop is the shared ImageTextToText one that the
    LLaVA tests compile under jax and tensorflow."""
    folder, expected = _blip2_reference()
    model = km.ImageTextToText.from_preset(folder / kind)
    assert type(model).__name__ == {"blip2": "Blip2ImageTextToText", "instructblip": "InstructBlipImageTextToText"}[kind]
    inputs = _ours(_blip2_inputs(kind))
    assert_close(model(inputs), expected[f"{kind}_logits"], mask=inputs["attention_mask"], what=f"{kind} logits")
    if keras.backend.backend() != "torch":
        return
    prompt = {k: v[:1] for k, v in inputs.items()}
    out = model.generate(prompt, do_sample=False, max_new_tokens=NEW_TOKENS)
    np.testing.assert_array_equal(np.asarray(out), expected[f"{kind}_ids"])
    if kind == "blip2":
        out = model.generate({"pixel_values": inputs["pixel_values"]}, do_sample=False, max_new_tokens=NEW_TOKENS)
        np.testing.assert_array_equal(np.asarray(out), expected["blip2_ids_no_prompt"])
        with pytest.raises(InputError, match="image tokens"):  # text prompts: the processor's job
            model.generate("a photo of", pixel_values=inputs["pixel_values"][:1])


def test_blip2_reloads_in_transformers(tmp_path):
    """Our save_to_preset of BLIP-2 (OPT) and InstructBLIP (Llama), reloaded by Transformers."""
    import torch
    import transformers as T

    folder, expected = _blip2_reference()
    for kind, cls in (("blip2", T.Blip2ForConditionalGeneration), ("instructblip", T.InstructBlipForConditionalGeneration)):
        km.ImageTextToText.from_preset(folder / kind).save_to_preset(tmp_path / kind)
        hf = cls.from_pretrained(tmp_path / kind).eval()
        inputs = _blip2_inputs(kind)
        with torch.no_grad():
            logits = hf(**{k: torch.tensor(v) for k, v in inputs.items()}).logits.numpy()
        assert_close(logits, expected[f"{kind}_logits"], mask=inputs["attention_mask"], what=f"reloaded {kind}")
