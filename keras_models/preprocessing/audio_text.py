"""The processor of an audio-text dual encoder (CLAP): its tokenizer and its audio feature
extractor side by side. ``processor(text=[...], audios=[...], sampling_rate=...)`` gives the
model's input dict (``input_ids``, ``attention_mask``; ``input_features``, ``is_longer``), as
Transformers' ``ClapProcessor`` does (texts padded to the longest)."""

from __future__ import annotations

from keras_models.errors import PresetError



class AudioTextProcessor:
    def __init__(self, tokenizer=None, feature_extractor=None):
        self.tokenizer, self.feature_extractor = tokenizer, feature_extractor

    @classmethod
    def from_preset(cls, folder):
        from keras_models.presets.config import read_processor_part
        from keras_models.preprocessing.audio import AudioFeatureExtractor
        from keras_models.tasks.text import TOKENIZER_FILES

        tokenizer = extractor = None
        if any((folder / f).is_file() for f in TOKENIZER_FILES):
            from keras_models.tokenizers import Tokenizer

            tokenizer = Tokenizer.from_preset(folder)
        if read_processor_part(folder, "feature_extractor") is not None:
            extractor = AudioFeatureExtractor.from_preset(folder)
        if tokenizer is None and extractor is None:
            return None
        return cls(tokenizer, extractor)

    def __call__(self, text=None, audios=None, sampling_rate=None, **kwargs):
        out = {}
        if text is not None:
            if self.tokenizer is None:
                raise PresetError("this model has no tokenizer files (tokenizer.json, vocab.json, ...): "
                                  "texts need one")
            out.update(self.tokenizer([text] if isinstance(text, str) else list(text), padding="longest"))
        if audios is not None:
            if self.feature_extractor is None:
                raise PresetError("this model has no preprocessor_config.json: audio needs a feature extractor")
            out.update(self.feature_extractor(audios, sampling_rate=sampling_rate, **kwargs))
        return out

    def save_pretrained(self, folder):
        if self.tokenizer is not None:
            self.tokenizer.save_pretrained(folder)
        if self.feature_extractor is not None:
            self.feature_extractor.save_pretrained(folder)


__all__ = ["AudioTextProcessor"]
