"""Tiny example presets for the documentation: ``keras-models demo --make-examples DIR``.

The docs' examples load small local folders (``tiny-bert``, ``tiny-sentiment``, ``tiny-llama``,
...). This module writes them: each is a Hugging Face-layout preset (config.json, safetensors,
tokenizer / image-processor files) of a tiny *randomly initialised* model, built with this
library alone (no Transformers, no network), so every example runs anywhere in seconds. Their
outputs are meaningless; swap in a real checkpoint (``hf://org/name``) for real predictions.
Transformers loads them too (they are ordinary checkpoints).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

WORDS = (
    "the cat sat on mat paris is in france john lives new york what where does who capital of city "
    "london berlin hello world good bad movie great this was terrible mary works at google"
).split()
BERT_VOCAB = (["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + list(".,?!'")
              + [chr(c) for c in range(97, 123)] + ["##" + chr(c) for c in range(97, 123)]
              + WORDS + ["##s", "##ing", "##ed"])
LM_TEXT = ["the cat sat on the mat", "john lives in paris", "hello world, good movie", "where does mary work?",
           "summarize: translate English to German:"] * 5
CHAT_TEMPLATE = ("{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}</s>{% endfor %}"
                 "{% if add_generation_prompt %}<|assistant|>{% endif %}")


def _bert(architecture, **extra):
    return {"model_type": "bert", "architectures": [architecture], "vocab_size": len(BERT_VOCAB),
            "hidden_size": 16, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 24,
            "max_position_embeddings": 64, "type_vocab_size": 2, "pad_token_id": 0, **extra}


def _labels(names):
    return {"id2label": {str(i): n for i, n in enumerate(names)}, "label2id": {n: i for i, n in enumerate(names)}}


def _write_bert_tokenizer(folder):
    (folder / "vocab.txt").write_text("\n".join(BERT_VOCAB) + "\n", encoding="utf-8")
    (folder / "tokenizer_config.json").write_text(json.dumps(
        {"tokenizer_class": "BertTokenizer", "do_lower_case": True, "model_max_length": 64}))


def _write_bpe_tokenizer(folder, specials, config):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=specials, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(LM_TEXT, trainer)
    tok.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(json.dumps(
        {"tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": 64, **config}))


def _specs():
    ner = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
    return {
        "tiny-bert": ("Backbone", _bert("BertModel"), _write_bert_tokenizer),
        "tiny-mlm": ("MaskedLM", _bert("BertForMaskedLM"), _write_bert_tokenizer),
        "tiny-sentiment": ("TextClassifier", _bert("BertForSequenceClassification", **_labels(["NEG", "NEU", "POS"])),
                           _write_bert_tokenizer),
        "tiny-nli": ("TextClassifier", _bert("BertForSequenceClassification",
                                             **_labels(["contradiction", "neutral", "entailment"])),
                     _write_bert_tokenizer),
        "tiny-ner": ("TokenClassifier", _bert("BertForTokenClassification", **_labels(ner)), _write_bert_tokenizer),
        "tiny-qa": ("QuestionAnswerer", _bert("BertForQuestionAnswering"), _write_bert_tokenizer),
        "tiny-llama": ("CausalLM", {
            "model_type": "llama", "architectures": ["LlamaForCausalLM"], "vocab_size": 300, "hidden_size": 16,
            "intermediate_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
            "max_position_embeddings": 64, "bos_token_id": 0, "eos_token_id": 1, "pad_token_id": 1,
            "tie_word_embeddings": False},
            lambda f: _write_bpe_tokenizer(f, ["<s>", "</s>", "<|user|>", "<|assistant|>"], {
                "bos_token": "<s>", "eos_token": "</s>", "pad_token": "</s>", "chat_template": CHAT_TEMPLATE})),
        "tiny-t5": ("Seq2SeqLM", {
            "model_type": "t5", "architectures": ["T5ForConditionalGeneration"], "vocab_size": 300, "d_model": 16,
            "d_kv": 8, "d_ff": 32, "num_layers": 2, "num_heads": 2, "relative_attention_num_buckets": 8,
            "relative_attention_max_distance": 20, "pad_token_id": 0, "eos_token_id": 1,
            "decoder_start_token_id": 0,
            "task_specific_params": {"summarization": {"prefix": "summarize: ", "max_new_tokens": 4},
                                     "translation_en_to_de": {"prefix": "translate English to German: "}}},
            lambda f: _write_bpe_tokenizer(f, ["<pad>", "</s>", "<unk>"], {
                "pad_token": "<pad>", "eos_token": "</s>", "unk_token": "<unk>"})),
        "tiny-vit": ("ImageClassifier", {
            "model_type": "vit", "architectures": ["ViTForImageClassification"], "image_size": 32, "patch_size": 8,
            "num_channels": 3, "hidden_size": 16, "num_hidden_layers": 2, "num_attention_heads": 2,
            "intermediate_size": 24, **_labels(["cat", "dog", "car", "tree"])},
            lambda f: (f / "preprocessor_config.json").write_text(json.dumps({
                "image_processor_type": "ViTImageProcessor", "do_resize": True, "size": {"height": 32, "width": 32},
                "resample": 2, "do_rescale": True, "rescale_factor": 1 / 255, "do_normalize": True,
                "image_mean": [0.5, 0.4, 0.3], "image_std": [0.2, 0.3, 0.25]}))),
    }


EXAMPLES = tuple(_specs())


def make_examples(directory, names=None, seed=0, overwrite=False):
    """Write the tiny example presets (all of ``EXAMPLES``, or ``names``) under ``directory``;
    returns ``{name: path}``. An existing preset folder is kept unless ``overwrite``."""
    import keras

    import keras_models as km

    specs = _specs()
    names = list(names or specs)
    unknown = [n for n in names if n not in specs]
    if unknown:
        raise ValueError(f"make_examples: unknown example(s) {unknown}; known: {list(specs)}")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    out = {}
    for i, name in enumerate(names):
        target = directory / name
        out[name] = target
        if (target / "config.json").exists() and not overwrite:
            continue
        task, config, write_files = specs[name]
        keras.utils.set_random_seed(seed + i)
        with tempfile.TemporaryDirectory(prefix="keras_models_example_") as tmp:
            source = Path(tmp)
            (source / "config.json").write_text(json.dumps(config))
            write_files(source)
            model = getattr(km, task).from_preset(source, load_weights=False)
            model.save_to_preset(target, overwrite=overwrite)
            if task == "Backbone":  # a backbone carries no preprocessor: its preset gets the tokenizer too
                km.Tokenizer.from_preset(source).save_pretrained(target)
    return out


__all__ = ["EXAMPLES", "make_examples"]
