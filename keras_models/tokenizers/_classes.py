"""Per-class conventions of Transformers' tokenizer classes, as data.

Checkpoints name their tokenizer class in ``tokenizer_config.json`` (``tokenizer_class``) or, failing
that, through ``config.json``'s ``model_type``. The class decides the defaults a checkpoint does not
spell out: which inputs the model takes, the padding side, and the special tokens.
"""

from __future__ import annotations

_BERT_SPECIALS = {
    "unk_token": "[UNK]",
    "sep_token": "[SEP]",
    "pad_token": "[PAD]",
    "cls_token": "[CLS]",
    "mask_token": "[MASK]",
}
_ROBERTA_SPECIALS = {
    "bos_token": "<s>",
    "eos_token": "</s>",
    "sep_token": "</s>",
    "cls_token": "<s>",
    "unk_token": "<unk>",
    "pad_token": "<pad>",
    "mask_token": "<mask>",
}
_GPT2_SPECIALS = {
    "unk_token": "<|endoftext|>",
    "bos_token": "<|endoftext|>",
    "eos_token": "<|endoftext|>",
}
_WITH_TYPES = ["input_ids", "token_type_ids", "attention_mask"]
_NO_TYPES = ["input_ids", "attention_mask"]

# family: how a vocab-only checkpoint is turned into a pipeline (see builders.py / spm_convert.py)
CLASSES: dict[str, dict] = {
    "BertTokenizer": {"family": "wordpiece", "inputs": _WITH_TYPES, "specials": _BERT_SPECIALS},
    "ElectraTokenizer": {"family": "wordpiece", "inputs": _WITH_TYPES, "specials": _BERT_SPECIALS},
    "DistilBertTokenizer": {"family": "wordpiece", "inputs": _NO_TYPES, "specials": _BERT_SPECIALS},
    "GPT2Tokenizer": {"family": "gpt2", "inputs": _NO_TYPES, "specials": _GPT2_SPECIALS},
    "RobertaTokenizer": {"family": "roberta", "inputs": _NO_TYPES, "specials": _ROBERTA_SPECIALS},
    "BartTokenizer": {"family": "roberta", "inputs": _NO_TYPES, "specials": _ROBERTA_SPECIALS},
    "LongformerTokenizer": {"family": "roberta", "inputs": _NO_TYPES, "specials": _ROBERTA_SPECIALS},
    "Qwen2Tokenizer": {
        "family": "qwen2",
        "inputs": _NO_TYPES,
        "specials": {"unk_token": "<|endoftext|>", "eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>"},
    },
    "GPTNeoXTokenizer": {
        "family": "gpt_neox",
        "inputs": _NO_TYPES,
        "specials": {**_GPT2_SPECIALS, "pad_token": "<|padding|>"},
    },
    "T5Tokenizer": {
        "family": "t5",
        "inputs": _NO_TYPES,
        "specials": {"eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>"},
    },
    # python-only in Transformers: UTF-8 bytes (id = byte + 3), no vocabulary file. Its tokens are the
    # bytes as Latin-1 characters; decoding drops invalid UTF-8 (bytes.decode(errors="ignore"))
    "ByT5Tokenizer": {
        "family": "byt5",
        "inputs": _NO_TYPES,
        "specials": {"eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>"},
        "empty_pair_is_pair": True,
        "fixed_vocab_size": 256,
        "latin1_byte_tokens": True,
        "decode_errors": "ignore",
        "eos_not_repeated": True,
        "clean_up_any_model": True,
    },
    # python-only in Transformers: XLM-R's SentencePiece pieces renumbered by a fairseq dict.txt
    "BartphoTokenizer": {
        "family": "bartpho",
        "inputs": _NO_TYPES,
        "specials": _ROBERTA_SPECIALS,
        "empty_pair_is_pair": True,
        "tokenize_gives_pieces": True,
    },
    "AlbertTokenizer": {
        "family": "albert",
        "inputs": _NO_TYPES,
        "specials": {
            "bos_token": "[CLS]",
            "eos_token": "[SEP]",
            "unk_token": "<unk>",
            "sep_token": "[SEP]",
            "pad_token": "<pad>",
            "cls_token": "[CLS]",
            "mask_token": "[MASK]",
        },
    },
    # fastBPE vocab.txt + bpe.codes (python-only classes in Transformers)
    "PhobertTokenizer": {
        "family": "fastbpe", "inputs": _NO_TYPES, "specials": _ROBERTA_SPECIALS, "empty_pair_is_pair": True
    },
    "BertweetTokenizer": {
        "family": "fastbpe", "inputs": _NO_TYPES, "specials": _ROBERTA_SPECIALS, "empty_pair_is_pair": True
    },
    # XLM-style BPE (</w> ends a word) in vocab.json + merges.txt, BERT pre-tokenization
    "HerbertTokenizer": {
        "family": "herbert",
        "inputs": _NO_TYPES,
        "specials": {"cls_token": "<s>", "unk_token": "<unk>", "pad_token": "<pad>", "mask_token": "<mask>",
                     "sep_token": "</s>"},
    },
    "XLMRobertaTokenizer": {"family": "xlm_roberta", "inputs": _NO_TYPES, "specials": _ROBERTA_SPECIALS},
    "LlamaTokenizer": {
        "family": "llama",
        "inputs": _NO_TYPES,
        "padding_side": "left",
        "specials": {"unk_token": "<unk>", "bos_token": "<s>", "eos_token": "</s>"},
    },
    "GemmaTokenizer": {
        "family": "gemma",
        "inputs": _NO_TYPES,
        "padding_side": "left",
        "specials": {
            "unk_token": "<unk>",
            "bos_token": "<bos>",
            "eos_token": "<eos>",
            "pad_token": "<pad>",
            "mask_token": "<mask>",
        },
    },
    # translation checkpoints (python-only classes in Transformers, see translation.py)
    "MarianTokenizer": {
        "family": "marian",
        "inputs": _NO_TYPES,
        "specials": {"eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>"},
    },
    "M2M100Tokenizer": {
        "family": "m2m100",
        "inputs": _NO_TYPES,
        "specials": {"bos_token": "<s>", "eos_token": "</s>", "sep_token": "</s>", "pad_token": "<pad>",
                     "unk_token": "<unk>"},
    },
    "PLBartTokenizer": {"family": "plbart", "inputs": _NO_TYPES, "specials": _ROBERTA_SPECIALS},
    # python-only in Transformers: lower-cased words cut into "@@" BPE pieces (vocab.json + merges.txt)
    "BlenderbotSmallTokenizer": {
        "family": "blenderbot_small",
        "inputs": _NO_TYPES,
        "specials": {"bos_token": "__start__", "eos_token": "__end__", "unk_token": "__unk__",
                     "pad_token": "__null__"},
        "empty_pair_is_pair": True,
        "tokenize_gives_pieces": True,
    },
    # python-only in Transformers: BERT-style WordPiece over a vocabulary file named
    # prophetnet.tokenizer; no [CLS], only [SEP] appended; [X_SEP] a named special token of its own
    "ProphetNetTokenizer": {
        "family": "prophetnet",
        "inputs": _NO_TYPES,
        "specials": {"unk_token": "[UNK]", "sep_token": "[SEP]", "pad_token": "[PAD]", "mask_token": "[MASK]"},
        "named_specials": {"x_sep_token": "[X_SEP]"},
        "vocab_file": "prophetnet.tokenizer",
        "config_defaults": {"clean_up_tokenization_spaces": True},
        "empty_pair_is_pair": True,
        # added tokens are matched on the raw text, before the class's own lower-casing
        "raw_added_tokens": True,
    },
    # python-only in Transformers: Moses tokens cut into "</w>" BPE pieces; ids from vocab-src.json,
    # decoding through vocab-tgt.json + Moses detokenisation (keras_models/tokenizers/fsmt.py)
    "FSMTTokenizer": {
        "family": "fsmt",
        "inputs": _NO_TYPES,
        "specials": {"bos_token": "<s>", "sep_token": "</s>", "pad_token": "<pad>", "unk_token": "<unk>"},
        "tokenize_gives_pieces": True,
    },
    # python-only in Transformers (4.x; gone in 5.x): BART's byte-level BPE over a table flattened by
    # keras_models/tokenizers/tapex.py, lower-cased (do_lower_case) before tokenization
    "TapexTokenizer": {
        "family": "roberta", "inputs": _NO_TYPES, "specials": _ROBERTA_SPECIALS, "tapex": True,
        "source_files": ("vocab.json", "merges.txt"),
    },
    # Generic classes: the pipeline comes whole from tokenizer.json.
    "PreTrainedTokenizerFast": {"family": None, "inputs": _NO_TYPES, "specials": {}},
    "TokenizersBackend": {"family": None, "inputs": _NO_TYPES, "specials": {}},
}

# config.json model_type -> tokenizer class, when tokenizer_config.json names none
MODEL_TYPE_TO_CLASS = {
    "bert": "BertTokenizer",
    "distilbert": "BertTokenizer",
    "electra": "BertTokenizer",
    "gpt2": "GPT2Tokenizer",
    "roberta": "RobertaTokenizer",
    "bart": "BartTokenizer",
    "longformer": "LongformerTokenizer",
    "t5": "T5Tokenizer",
    "mt5": "T5Tokenizer",
    "albert": "AlbertTokenizer",
    "xlm-roberta": "XLMRobertaTokenizer",
    "llama": "LlamaTokenizer",
    "mistral": "TokenizersBackend",
    "gemma": "GemmaTokenizer",
    "qwen2": "Qwen2Tokenizer",
    "qwen2_moe": "Qwen2Tokenizer",
    "qwen3": "Qwen2Tokenizer",
    "gemma2": "GemmaTokenizer",
    "gemma3": "GemmaTokenizer",
    "gpt_neox": "GPTNeoXTokenizer",
    "olmo": "GPTNeoXTokenizer",
    "mpt": "GPTNeoXTokenizer",
    "opt": "GPT2Tokenizer",
    "gptj": "GPT2Tokenizer",
    "codegen": "GPT2Tokenizer",
    "phi": "GPT2Tokenizer",
    "starcoder2": "GPT2Tokenizer",
    "gpt_bigcode": "TokenizersBackend",
    "phi3": "TokenizersBackend",
    "mixtral": "TokenizersBackend",
    "stablelm": "TokenizersBackend",
    "marian": "MarianTokenizer",
    "m2m_100": "M2M100Tokenizer",
    "plbart": "PLBartTokenizer",
    "blenderbot-small": "BlenderbotSmallTokenizer",
    "prophetnet": "ProphetNetTokenizer",
    "fsmt": "FSMTTokenizer",
}

SPECIAL_TOKEN_KEYS = (
    "bos_token",
    "eos_token",
    "unk_token",
    "sep_token",
    "pad_token",
    "cls_token",
    "mask_token",
)


def normalise_class_name(name: str | None) -> str | None:
    if not name:
        return None
    if name == "PreTrainedTokenizerFast":
        return name
    return name[: -len("Fast")] if name.endswith("Fast") else name


def class_info(name: str | None) -> dict:
    return CLASSES.get(normalise_class_name(name) or "", CLASSES["TokenizersBackend"])
