"""Per-class conventions of Transformers' tokenizer classes, as data.

Checkpoints name their tokenizer class in ``tokenizer_config.json`` (``tokenizer_class``) or, failing
that, through ``config.json``'s ``model_type``. The class decides the defaults a checkpoint does not
spell out: which inputs the model takes, the padding side, and the special tokens. A class's
``family`` names its row of :data:`FAMILIES`: how its tokenizer is built from the checkpoint's files.
"""

from __future__ import annotations

import functools
import importlib
from dataclasses import dataclass

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
    # XLNet: a Unigram tokenizer.json (X <sep> <cls>); the class pads on the left (a class attribute,
    # not written to tokenizer_config.json). Its spiece.model-only folders are not converted here.
    "XLNetTokenizer": {
        "family": None,
        "inputs": _NO_TYPES,
        "padding_side": "left",
        "specials": {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "sep_token": "<sep>",
                     "pad_token": "<pad>", "cls_token": "<cls>", "mask_token": "<mask>"},
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
    # LayoutLMv2 / LayoutXLM: words + boxes (keras_models/models/layout_encoders/layoutlmv2_processor.py)
    "LayoutLMv2Tokenizer": {"family": "wordpiece", "inputs": _WITH_TYPES, "specials": _BERT_SPECIALS},
    "LayoutXLMTokenizer": {"family": "layoutxlm", "inputs": _NO_TYPES, "specials": _ROBERTA_SPECIALS},
    "LlamaTokenizer": {
        "family": "llama",
        "inputs": _NO_TYPES,
        "padding_side": "left",
        "specials": {"unk_token": "<unk>", "bos_token": "<s>", "eos_token": "</s>"},
    },
    # Llama's pipeline plus infilling: ``tok(prefix, suffix=...)`` or a text holding fill_token gives
    # <PRE> prefix <SUF> suffix <MID> (see Tokenizer._infill); the four infilling pieces are extra specials
    "CodeLlamaTokenizer": {
        "family": "llama",
        "inputs": _NO_TYPES,
        "padding_side": "left",
        "specials": {"unk_token": "<unk>", "bos_token": "<s>", "eos_token": "</s>"},
        "named_specials": {"prefix_token": "▁<PRE>", "middle_token": "▁<MID>", "suffix_token": "▁<SUF>",
                           "eot_token": "▁<EOT>", "fill_token": "<FILL_ME>"},
        "infill": True,
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
    # NLLB-style language codes: __src__ A </s>, targets </s> __tgt__ A </s> (seamless.finish_seamless)
    "SeamlessM4TTokenizer": {
        "family": "seamless_m4t",
        "inputs": _NO_TYPES,
        "specials": {"bos_token": "<s>", "eos_token": "</s>", "sep_token": "</s>", "cls_token": "<s>",
                     "pad_token": "<pad>", "unk_token": "<unk>"},
    },
    "PLBartTokenizer": {"family": "plbart", "inputs": _NO_TYPES, "specials": _ROBERTA_SPECIALS},
    # mBART-50: the language code first, </s> last (translation.finish_mbart50); <mask> strips the space before it
    "MBart50Tokenizer": {
        "family": "mbart50", "inputs": _NO_TYPES,
        "specials": {"eos_token": "</s>", "sep_token": "</s>", "cls_token": "<s>", "unk_token": "<unk>",
                     "pad_token": "<pad>", "mask_token": {"content": "<mask>", "lstrip": True, "special": True}},
    },
    # Reformer: a lone spiece.model converted to BPE (keras_models/tokenizers/reformer.py), nothing added
    "ReformerTokenizer": {
        "family": "reformer", "inputs": _NO_TYPES, "specials": {"eos_token": "</s>", "unk_token": "<unk>"},
    },
    # BARThez (French BART): its own SentencePiece pieces and normalizer
    "BarthezTokenizer": {
        "family": "barthez", "inputs": _NO_TYPES,
        "specials": {**_ROBERTA_SPECIALS, "mask_token": {"content": "<mask>", "lstrip": True, "special": True}},
    },
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
        "config_defaults": {"clean_up_tokenization_spaces": True},
        "empty_pair_is_pair": True,
        # added tokens are matched on the raw text, before the class's own lower-casing
        "raw_added_tokens": True,
    },
    # python-only in Transformers 4.x (removed in 5): a SentencePiece model named prophetnet.tokenizer,
    # fairseq-style ids shifted by 12 (keras_models/tokenizers/xlm_prophetnet.py); only [SEP] appended
    "XLMProphetNetTokenizer": {
        "family": "xlm_prophetnet",
        "inputs": _NO_TYPES,
        "specials": {"bos_token": "[SEP]", "eos_token": "[SEP]", "sep_token": "[SEP]", "unk_token": "[UNK]",
                     "pad_token": "[PAD]", "cls_token": "[CLS]", "mask_token": "[MASK]"},
        "empty_pair_is_pair": True,
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
    # python-only in Transformers: characters over vocab.json, CTC decoding (keras_models/tokenizers/wav2vec2_ctc.py)
    "Wav2Vec2CTCTokenizer": {
        "family": "wav2vec2_ctc", "inputs": _NO_TYPES, "tokenize_gives_pieces": True,  # unknown characters as written
        "specials": {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>"},
    },
    # python-only in Transformers: space-separated phonemes over vocab.json, CTC decoding joined by spaces.
    # Text -> phonemes (do_phonemize, the `phonemizer` package + espeak) is refused: only phoneme input
    "Wav2Vec2PhonemeCTCTokenizer": {
        "family": "wav2vec2_phoneme", "inputs": _NO_TYPES, "phonemize": True, "tokenize_gives_pieces": True,
        "specials": {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>"},
    },
    # python-only in Transformers: BERT's basic tokenizer + WordPiece or characters over vocab.txt; the
    # MeCab / Sudachi / Juman++ word tokenizers are refused (keras_models/tokenizers/bert_japanese.py)
    "BertJapaneseTokenizer": {"family": "bert_japanese", "inputs": _NO_TYPES, "specials": _BERT_SPECIALS},
    # python-only in Transformers: spiece.model after the class's clean-up, no ids added (gpt_sw3.py)
    "GPTSw3Tokenizer": {
        "family": "gpt_sw3", "inputs": _NO_TYPES, "empty_pair_is_pair": True,
        "specials": {"pad_token": "<pad>", "unk_token": "<unk>", "eos_token": "<|endoftext|>", "bos_token": "<s>"},
    },
    # python-only in Transformers: spm_char.model run by SentencePiece, </s> appended (speecht5.py)
    "SpeechT5Tokenizer": {
        "family": "speecht5", "inputs": _NO_TYPES,
        "specials": {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>"},
    },
    # python-only in Transformers: UTF-8 bytes (id = byte + 6) after six specials (perceiver.py)
    "PerceiverTokenizer": {
        "family": "perceiver", "inputs": _NO_TYPES, "fixed_vocab_size": 256, "latin1_byte_tokens": True,
        "specials": {"pad_token": "[PAD]", "bos_token": "[BOS]", "eos_token": "[EOS]", "mask_token": "[MASK]",
                     "cls_token": "[CLS]", "sep_token": "[SEP]"},
    },
    # CPM: jieba words joined by spaces (spaces / line breaks as "\u2582" / "\u2583") before XLNet's
    # tokenizer.json pipeline (X <sep> <cls>); keras_models/tokenizers/cpm.py
    "CpmTokenizer": {
        "family": None,
        "inputs": _WITH_TYPES,
        "specials": {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "sep_token": "<sep>",
                     "pad_token": "<pad>", "cls_token": "<cls>",
                     "mask_token": {"content": "<mask>", "lstrip": True, "special": True}},
    },
    # python-only in Transformers: jieba words cut into the longest vocab.txt entries, <s> first (cpm.py)
    "CpmAntTokenizer": {
        "family": "cpmant", "inputs": _NO_TYPES, "padding_side": "left",
        "specials": {"bos_token": "<s>", "eos_token": "</s>", "pad_token": "<pad>", "unk_token": "<unk>"},
        "named_specials": {"bod_token": "<d>", "eod_token": "</d>"},  # space_token / line_token: not added
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
    "layoutlmv2": "LayoutLMv2Tokenizer",
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
    "seamless_m4t": "SeamlessM4TTokenizer",
    "seamless_m4t_v2": "SeamlessM4TTokenizer",
    "plbart": "PLBartTokenizer",
    "blenderbot-small": "BlenderbotSmallTokenizer",
    "prophetnet": "ProphetNetTokenizer",
    "xlm-prophetnet": "XLMProphetNetTokenizer",
    "fsmt": "FSMTTokenizer",
    "wav2vec2": "Wav2Vec2CTCTokenizer",
    "speecht5": "SpeechT5Tokenizer",
    "cpmant": "CpmAntTokenizer",
    "reformer": "ReformerTokenizer",
    "fastspeech2_conformer": "FastSpeech2ConformerTokenizer",
    "fastspeech2_conformer_with_hifigan": "FastSpeech2ConformerTokenizer",
}


@dataclass(frozen=True)
class Family:
    """How Transformers' classes of one family build their tokenizer (a row of :data:`FAMILIES`).

    Functions are named ``"module:function"`` (a module of ``keras_models.tokenizers``, imported when
    first used: see :func:`resolve`)."""

    # normalizer / pre-tokenizer / decoder the class sets, over tokenizer.json's too: fn(backend, config, charsmap)
    pipeline: str | None = None
    # post-processor of a vocab-only checkpoint: fn(tok, config); None: bos / eos from add_bos_token / add_eos_token
    post_processor: str | None = None
    # the class sets its post-processor over the one in tokenizer.json as well
    class_post_processor: bool = False
    # python-only class: fn(folder, config, class_name, info) -> backend reads its own files (no tokenizer.json)
    loader: str | None = None
    source: str | None = None  # the file the loader reports as Tokenizer.source_format
    # the loader's files, copied back by save_to_preset (None: tokenizer.json is written, or ``finish`` sets them)
    files: tuple[str, ...] | None = None
    # fn(tok, folder) run on the new Tokenizer instead of setting the post-processor
    finish: str | None = None
    vocab_txt: bool = False  # a lone vocab.txt is rebuilt as its WordPiece vocabulary
    word_end_bpe: bool = False  # vocab.json + merges.txt is XLM-style BPE ("</w>" ends a word)
    byte_level: bool = False  # vocab.json + merges.txt is byte-level BPE
    spm: str | None = None  # converter of a lone SentencePiece .model: fn(model, config)


_FAIRSEQ_POST = "builders:fairseq_processor"  # <s> A </s></s> B </s>
FAMILIES: dict[str | None, Family] = {
    None: Family(byte_level=True),  # generic classes: tokenizer.json as written
    "wordpiece": Family(
        pipeline="pipelines:wordpiece", post_processor="builders:cls_sep_processor", class_post_processor=True,
        vocab_txt=True,
    ),
    "prophetnet": Family(
        pipeline="pipelines:prophetnet", post_processor="builders:sep_processor",
        loader="loading:prophetnet_backend", source="prophetnet.tokenizer", files=("prophetnet.tokenizer",),
    ),
    "xlm_prophetnet": Family(
        post_processor="builders:sep_processor", loader="xlm_prophetnet:xlm_prophetnet_backend",
        source="prophetnet.tokenizer", files=("prophetnet.tokenizer",),
    ),
    "herbert": Family(
        pipeline="pipelines:herbert", post_processor="builders:herbert_processor", class_post_processor=True,
        word_end_bpe=True,
    ),
    "gpt2": Family(pipeline="pipelines:byte_level", byte_level=True),
    "roberta": Family(
        pipeline="pipelines:byte_level", post_processor="builders:roberta_processor", class_post_processor=True,
        byte_level=True,
    ),
    "gpt_neox": Family(pipeline="pipelines:gpt_neox", class_post_processor=True, byte_level=True),
    "qwen2": Family(pipeline="pipelines:qwen2", byte_level=True),
    "t5": Family(
        pipeline="pipelines:t5", post_processor="builders:t5_processor", class_post_processor=True,
        spm="spm_convert:_t5",
    ),
    "xlm_roberta": Family(
        pipeline="pipelines:xlm_roberta", post_processor="builders:xlm_roberta_processor",
        class_post_processor=True, spm="spm_convert:_xlm_roberta",
    ),
    "layoutxlm": Family(  # keras_models/tokenizers/layoutxlm.py
        pipeline="layoutxlm:pipeline", post_processor="builders:xlm_roberta_processor", class_post_processor=True,
        spm="layoutxlm:spm",
    ),
    "albert": Family(
        pipeline="pipelines:albert", post_processor="builders:albert_processor", spm="spm_convert:_albert"
    ),
    "llama": Family(pipeline="pipelines:llama", spm="spm_convert:_llama"),
    "gemma": Family(pipeline="pipelines:gemma"),
    # python-only classes in Transformers: their own files, not tokenizer.json
    "byt5": Family(  # no vocabulary file: bytes are the vocabulary
        post_processor="builders:byt5_processor", loader="builders:byt5_loader", source="tokenizer_config.json",
        files=(),
    ),
    "bartpho": Family(
        post_processor=_FAIRSEQ_POST, loader="loading:bartpho_backend", source="dict.txt",
        files=("sentencepiece.bpe.model", "dict.txt"),
    ),
    "fastbpe": Family(
        post_processor=_FAIRSEQ_POST, loader="loading:fastbpe_backend", source="bpe.codes",
        files=("vocab.txt", "bpe.codes"),
    ),
    "blenderbot_small": Family(  # "@@" pieces
        loader="loading:blenderbot_small_backend", source="merges.txt", files=("vocab.json", "merges.txt")
    ),
    "fsmt": Family(  # Moses + "</w>" BPE, source / target vocabularies
        loader="fsmt:fsmt_backend", source="vocab-src.json", files=("vocab-src.json", "vocab-tgt.json", "merges.txt"),
        finish="fsmt:finish_fsmt",
    ),
    # source.spm / target.spm over vocab.json; the target pipeline is attached by translation.attach_target
    "marian": Family(loader="translation:marian_backend", source="source.spm"),
    "m2m100": Family(  # sentencepiece.bpe.model over vocab.json
        loader="translation:m2m100_backend", source="sentencepiece.bpe.model", finish="translation:finish_m2m100"
    ),
    "wav2vec2_ctc": Family(  # characters over vocab.json, CTC decoding
        loader="wav2vec2_ctc:ctc_backend", source="vocab.json", files=("vocab.json",), finish="wav2vec2_ctc:finish_ctc"
    ),
    "wav2vec2_phoneme": Family(  # phonemes over vocab.json, CTC decoding
        loader="wav2vec2_ctc:phoneme_backend", source="vocab.json", files=("vocab.json",),
        finish="wav2vec2_ctc:finish_ctc",
    ),
    "seamless_m4t": Family(finish="seamless:finish_seamless"),  # tokenizer.json only (no .model conversion)
    "mbart50": Family(pipeline="pipelines:mbart50", spm="spm_convert:_mbart50", finish="translation:finish_mbart50"),
    # BARThez: tokenizer.json's own post-processor (<s> A </s>); Transformers 5 sets none when it converts a
    # lone sentencepiece.bpe.model, so no <s> / </s> are added then either
    "barthez": Family(pipeline="pipelines:barthez", spm="spm_convert:_barthez"),
    "reformer": Family(pipeline="reformer:pipeline", spm="reformer:spm_backend"),
    "bert_japanese": Family(
        post_processor="builders:cls_sep_processor", loader="bert_japanese:bert_japanese_backend", source="vocab.txt",
        files=("vocab.txt",),
    ),
    "gpt_sw3": Family(loader="gpt_sw3:gpt_sw3_backend", source="spiece.model", finish="gpt_sw3:finish_gpt_sw3"),
    "speecht5": Family(loader="speecht5:speecht5_backend", source="spm_char.model", files=("spm_char.model",),
                       finish="speecht5:finish_speecht5"),
    "perceiver": Family(  # no vocabulary file: bytes are the vocabulary
        post_processor="perceiver:perceiver_processor", loader="perceiver:perceiver_backend",
        source="tokenizer_config.json", files=(),
    ),
    "cpmant": Family(post_processor="cpm:cpmant_processor", loader="cpm:cpmant_backend", source="vocab.txt",
                     files=("vocab.txt",)),
    "plbart": Family(  # sentencepiece.bpe.model, fairseq ids
        loader="translation:plbart_backend", source="sentencepiece.bpe.model", finish="translation:finish_plbart"
    ),
}


@functools.lru_cache(maxsize=None)
def resolve(ref: str):
    """The function a :class:`Family` field names (``"module:function"``)."""
    module, _, name = ref.partition(":")
    return getattr(importlib.import_module(f"keras_models.tokenizers.{module}"), name)


def family_of(class_name: str | None) -> Family:
    return FAMILIES[class_info(class_name).get("family")]


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
    if not isinstance(name, str):
        from keras_models.errors import TokenizerFileError

        raise TokenizerFileError(f"tokenizer_config.json: tokenizer_class must be a class name, got {name!r}")
    if name == "PreTrainedTokenizerFast":
        return name
    return name[: -len("Fast")] if name.endswith("Fast") else name


def class_info(name: str | None) -> dict:
    return CLASSES.get(normalise_class_name(name) or "", CLASSES["TokenizersBackend"])
