"""Tiny BERT checkpoints with a real (tiny) WordPiece tokenizer, and Transformers' own pipeline
outputs on them, both built once into the shared test cache (see tests/parity.py)."""

from __future__ import annotations

import json

import numpy as np

from tests.parity import _key, cached_folder, hf_reference

WORDS = (
    "the cat sat on mat paris is in france john lives new york what where does who capital of city "
    "london berlin hello world good bad movie great this was terrible mary works at google"
).split()
VOCAB = (
    ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + list(".,?!'")
    + [chr(c) for c in range(97, 123)] + ["##" + chr(c) for c in range(97, 123)]
    + WORDS + ["##s", "##ing", "##ed"]
)
NER_LABELS = {0: "O", 1: "B-PER", 2: "I-PER", 3: "B-LOC", 4: "I-LOC"}


def _tokenizer_saver(model_max_length):
    def save(folder, model):
        import transformers

        tok = transformers.BertTokenizer(vocab={w: i for i, w in enumerate(VOCAB)}, model_max_length=model_max_length)
        tok.save_pretrained(folder)

    return save


def _config(**kw):
    import transformers

    base = dict(vocab_size=len(VOCAB), hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                intermediate_size=24, max_position_embeddings=64, initializer_range=0.4)
    base.update(kw)
    return transformers.BertConfig(**base)


def _build(cls_name, **cfg):
    def build():
        import transformers

        return getattr(transformers, cls_name)(_config(**cfg))

    return build


CHECKPOINTS = {
    # name -> (HF class, config overrides, tokenizer model_max_length)
    "base": ("BertModel", {}, 64),
    "mlm": ("BertForMaskedLM", {}, 64),
    "sentiment": ("BertForSequenceClassification", {"id2label": {0: "NEG", 1: "NEU", 2: "POS"}}, 64),
    "multilabel": ("BertForSequenceClassification",
                   {"num_labels": 4, "problem_type": "multi_label_classification"}, 64),
    "regression1": ("BertForSequenceClassification", {"num_labels": 1}, 64),
    "nli": ("BertForSequenceClassification",
            {"id2label": {0: "contradiction", 1: "neutral", 2: "entailment"},
             "label2id": {"contradiction": 0, "neutral": 1, "entailment": 2}}, 64),
    "ner": ("BertForTokenClassification", {"id2label": NER_LABELS}, 64),
    "ner_short": ("BertForTokenClassification", {"id2label": NER_LABELS}, 12),
    "qa": ("BertForQuestionAnswering", {}, 64),
    "qa_short": ("BertForQuestionAnswering", {}, 24),
}


def checkpoint(name):
    """Folder of the tiny checkpoint ``name`` (model + tokenizer files)."""
    cls_name, cfg, max_len = CHECKPOINTS[name]
    inputs = {"input_ids": np.array([[2, 40, 41, 3]]), "attention_mask": np.ones((1, 4), "int64")}
    folder, _ = hf_reference(f"pipe-{name}", _build(cls_name, **cfg), inputs,
                             extra_save=_tokenizer_saver(max_len), seed=7)
    return folder


def _jsonable(x):
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if hasattr(x, "tolist"):
        return x.tolist()
    return x


def hf_pipeline_outputs(task, folder, calls):
    """Transformers' ``pipeline(task, model=folder)`` on each ``(args, kwargs)`` of ``calls``,
    computed once and cached as JSON next to the checkpoint."""
    key = _key(f"hfpipe-{task}", str(folder), json.dumps(calls, sort_keys=True))

    def build(tmp):
        import transformers

        pipe = transformers.pipeline(task, model=str(folder), device="cpu")
        results = [_jsonable(pipe(*args, **kwargs)) for args, kwargs in calls]
        (tmp / "out.json").write_text(json.dumps(results))

    return json.loads((cached_folder(key, build) / "out.json").read_text())


def assert_same(ours, theirs, atol=1e-4, path="out"):
    """Equal structure, equal strings/ints, floats within ``atol``."""
    ours = _jsonable(ours)
    if isinstance(theirs, dict):
        assert isinstance(ours, dict), f"{path}: {type(ours).__name__} != dict"
        assert set(ours) == set(theirs), f"{path}: keys {sorted(ours)} != {sorted(theirs)}"
        for k in theirs:
            assert_same(ours[k], theirs[k], atol, f"{path}.{k}")
    elif isinstance(theirs, list):
        assert isinstance(ours, list), f"{path}: {type(ours).__name__} != list"
        assert len(ours) == len(theirs), f"{path}: length {len(ours)} != {len(theirs)}\n{ours}\n{theirs}"
        for i, (a, b) in enumerate(zip(ours, theirs)):
            assert_same(a, b, atol, f"{path}[{i}]")
    elif isinstance(theirs, float):
        assert isinstance(ours, (int, float)), f"{path}: {ours!r} is not a number"
        assert abs(ours - theirs) <= atol, f"{path}: {ours} != {theirs}"
    else:
        assert ours == theirs, f"{path}: {ours!r} != {theirs!r}"


_PIPES = {}


def km_pipeline(task, name):
    """``km.pipeline(task, model=checkpoint(name))``, built once per test session (loading and
    compiling is what costs time here)."""
    import keras_models as km

    if (task, name) not in _PIPES:
        _PIPES[(task, name)] = km.pipeline(task, model=checkpoint(name))
    return _PIPES[(task, name)]


CHAT_TEMPLATE = ("{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}</s>{% endfor %}"
                 "{% if add_generation_prompt %}<|assistant|>{% endif %}")
LM_TEXT = ["the cat sat on the mat", "john lives in paris", "hello world, good movie", "where does mary work?"] * 5


def _lm_tokenizer(folder, model):
    import transformers
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<s>", "</s>", "<|user|>", "<|assistant|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(LM_TEXT, trainer)
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>",
                                                pad_token="</s>", model_max_length=64)
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(folder)


def _llama():
    import transformers

    cfg = transformers.LlamaConfig(vocab_size=300, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                                   num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                                   bos_token_id=0, eos_token_id=1, pad_token_id=1, initializer_range=0.3,
                                   tie_word_embeddings=False)
    return transformers.LlamaForCausalLM(cfg)


def causal_checkpoint():
    """A tiny Llama with a byte-level BPE tokenizer and a chat template."""
    inputs = {"input_ids": np.array([[0, 40, 41, 42]]), "attention_mask": np.ones((1, 4), "int64")}
    folder, _ = hf_reference("pipe-llama", _llama, inputs, extra_save=_lm_tokenizer, seed=3)
    return folder


def _vit_extras(folder, model):
    import transformers
    from PIL import Image

    transformers.ViTImageProcessor(size={"height": 32, "width": 32}, image_mean=[0.5, 0.4, 0.3],
                                   image_std=[0.2, 0.3, 0.25]).save_pretrained(folder)
    rng = np.random.RandomState(0)
    images = folder.parent / "images"
    images.mkdir()
    for i, size in enumerate([(40, 48), (32, 32), (50, 30)]):
        Image.fromarray(rng.randint(0, 255, size=size + (3,), dtype=np.uint8)).save(images / f"img{i}.png")


def _vit():
    import transformers

    cfg = transformers.ViTConfig(image_size=32, patch_size=8, num_channels=3, hidden_size=16, num_hidden_layers=2,
                                 num_attention_heads=2, intermediate_size=24, num_labels=4, initializer_range=0.3,
                                 id2label={0: "cat", 1: "dog", 2: "car", 3: "tree"})
    return transformers.ViTForImageClassification(cfg)


def vit_checkpoint():
    """A tiny ViT classifier with its image processor; three PNG images in ``../images``."""
    inputs = {"pixel_values": np.zeros((1, 3, 32, 32), "float32")}
    folder, _ = hf_reference("pipe-vit", _vit, inputs, extra_save=_vit_extras, seed=5)
    return folder


def _t5_tokenizer(folder, model):
    import transformers
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<pad>", "</s>", "<unk>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(LM_TEXT + ["summarize: translate English to German:"], trainer)
    transformers.PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>",
                                         unk_token="<unk>", model_max_length=64).save_pretrained(folder)


def _t5():
    import transformers

    cfg = transformers.T5Config(vocab_size=300, d_model=16, d_kv=8, d_ff=32, num_layers=2, num_heads=2,
                                relative_attention_num_buckets=8, relative_attention_max_distance=20,
                                initializer_factor=3.0, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0,
                                task_specific_params={"summarization": {"prefix": "summarize: ", "max_new_tokens": 4},
                                                      "translation_en_to_de": {"prefix": "translate English to German: "}})
    return transformers.T5ForConditionalGeneration(cfg)


def seq2seq_checkpoint():
    """A tiny T5 (with summarization / translation task_specific_params) and a BPE tokenizer."""
    inputs = {"input_ids": np.array([[5, 40, 41, 1]]), "decoder_input_ids": np.array([[0, 7]])}
    folder, _ = hf_reference("pipe-t5", _t5, inputs, extra_save=_t5_tokenizer, seed=11)
    return folder
