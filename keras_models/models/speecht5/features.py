"""SpeechT5FeatureExtractor (numpy): the ``audio`` path of Transformers' extractor, raw waveforms as
``input_values`` (batch, samples) with their ``attention_mask``, optionally normalised to zero mean and
unit variance over each row's real samples (``do_normalize``, off by default) — Wav2Vec2's rules with
SpeechT5's defaults. The ``audio_target`` path (log-mel training targets) is not implemented."""

from keras_models.errors import InputError
from keras_models.preprocessing.audio import Wav2Vec2FeatureExtractor, _register


@_register("SpeechT5FeatureExtractor")
class SpeechT5FeatureExtractor(Wav2Vec2FeatureExtractor):
    feature_extractor_type = "SpeechT5FeatureExtractor"
    defaults = {"feature_size": 1, "sampling_rate": 16000, "padding_value": 0.0, "do_normalize": False,
                "num_mel_bins": 80, "hop_length": 16, "win_length": 64, "win_function": "hann_window",
                "frame_signal_scale": 1.0, "fmin": 80, "fmax": 7600, "mel_floor": 1e-10, "reduction_factor": 2,
                "return_attention_mask": True, "padding_side": "right"}

    def __call__(self, audio=None, sampling_rate=None, audio_target=None, **kwargs):
        if audio_target is not None:
            raise InputError("SpeechT5FeatureExtractor: audio_target (log-mel training targets) is not supported; "
                             "pass the waveforms as audio")
        if audio is None:
            audio = kwargs.pop("waveforms", None)
        if audio is None:
            raise InputError("SpeechT5FeatureExtractor: pass the waveforms as audio")
        return super().__call__(audio, sampling_rate=sampling_rate, **kwargs)


__all__ = ["SpeechT5FeatureExtractor"]
