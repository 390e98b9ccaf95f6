"""The family table (keras_models/tokenizers/_classes.FAMILIES) that tokenizer construction reads."""

import dataclasses

from keras_models.tokenizers import _classes


def test_every_class_family_has_a_row():
    for name, info in _classes.CLASSES.items():
        assert info["family"] in _classes.FAMILIES, name


def test_every_named_function_resolves():
    for family, spec in _classes.FAMILIES.items():
        for field in ("pipeline", "post_processor", "loader", "finish", "spm"):
            ref = getattr(spec, field)
            if ref is not None:
                assert callable(_classes.resolve(ref)), (family, field, ref)


def test_rows_are_consistent():
    for family, spec in _classes.FAMILIES.items():
        # a loader reports its source file; only loaders' files are copied back on save
        assert (spec.loader is None) == (spec.source is None), family
        if spec.files is not None:
            assert spec.loader is not None, family
        # rows without a loader are read from tokenizer.json (family None: as written); a row there
        # sets the class's pipeline, or keeps tokenizer.json's and finishes the tokenizer its own way
        if spec.loader is None and family is not None:
            assert spec.pipeline is not None or spec.finish is not None, family
        assert not (spec.word_end_bpe and spec.byte_level), family
    assert dataclasses.is_dataclass(_classes.Family)
