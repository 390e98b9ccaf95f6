"""LayoutXLM's tokenizer (Transformers' ``LayoutXLMTokenizer``): XLM-R's unigram vocabulary in
fairseq's id layout (``<s> <pad> </s> <unk>``, the pieces, ``<mask>`` last) with its own text
stages: the model's precompiled normaliser, trailing spaces stripped, runs of 2+ spaces made one
"▁", then a Metaspace pre-tokenizer (no whitespace split, unlike XLM-R's). Words and their boxes
become per-token boxes in keras_models/models/layout_encoders/layoutlmv2_processor.py."""

from __future__ import annotations

from tokenizers import Regex, decoders, normalizers, pre_tokenizers

from keras_models.tokenizers.pipelines import _add_prefix_space


def pipeline(backend, config: dict, charsmap: bytes | None = None):
    steps = [normalizers.Precompiled(charsmap)] if charsmap else []
    steps += [normalizers.Strip(left=False, right=True), normalizers.Replace(Regex(" {2,}"), "▁")]
    backend.normalizer = normalizers.Sequence(steps)
    if _add_prefix_space(config, True):
        scheme = "always" if config.get("legacy", True) in (True, None) else "first"
    else:
        scheme = "never"
    backend.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme=scheme)
    backend.decoder = decoders.Metaspace(replacement="▁", prepend_scheme=scheme)


def spm(model, config: dict):
    """A lone sentencepiece.bpe.model: XLM-R's fairseq numbering, LayoutXLM's text stages."""
    from keras_models.tokenizers.spm_convert import _xlm_roberta

    backend = _xlm_roberta(model, config)
    pipeline(backend, config, model.normalizer_spec.precompiled_charsmap)
    return backend
