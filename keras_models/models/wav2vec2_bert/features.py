"""SeamlessM4T feature extractor (Wav2Vec2-BERT's, SeamlessM4T's speech encoder's): Kaldi-style log
mel filter banks of 16-bit-scaled audio, normalised per mel bin, padded, then every ``stride``
consecutive frames stacked into one: ``input_features`` (batch, frames // stride,
num_mel_bins * stride) float32 and ``attention_mask`` (batch, frames // stride) int32."""

from __future__ import annotations

import numpy as np

from keras_models.errors import ConfigError, InputError
from keras_models.preprocessing.audio import AudioFeatureExtractor, _frames, _pad_target, _register, mel_filter_bank


@_register("SeamlessM4TFeatureExtractor")
class SeamlessM4TFeatureExtractor(AudioFeatureExtractor):
    feature_extractor_type = "SeamlessM4TFeatureExtractor"
    model_input_names = ("input_features", "attention_mask")
    defaults = {"feature_size": 80, "sampling_rate": 16000, "num_mel_bins": 80, "padding_value": 0.0, "stride": 2,
                "return_attention_mask": True, "padding_side": "right"}

    def __init__(self, **config):
        super().__init__(**config)
        stride = self.config["stride"]
        if not isinstance(stride, int) or isinstance(stride, bool) or not 0 < stride <= 64:
            raise ConfigError(f"preprocessor_config.json: stride must be an integer in 1..64, got {stride!r}")
        self.mel_filters = mel_filter_bank(257, int(self.num_mel_bins), 20, self.sampling_rate // 2, self.sampling_rate,
                                           norm=None, mel_scale="kaldi", triangularize_in_mel_space=True)
        self.window = np.power(np.hanning(400), 0.85)  # Povey

    def fbank(self, waveform):
        """(frames, num_mel_bins) float32: 400-sample frames every 160 samples of the waveform scaled
        to 16-bit range, DC removal, pre-emphasis 0.97, Povey window, 512-point power spectrum,
        Kaldi mel filters, natural log floored at float32 epsilon."""
        w = (np.asarray(waveform, np.float32) * np.float32(2 ** 15)).astype(np.float64)
        frames = np.array(_frames(w, 400, 160), dtype=np.float64)
        frames = frames - frames.mean(axis=1, keepdims=True)
        prev = np.concatenate([frames[:, :1], frames[:, :-1]], axis=1)
        frames = (frames - 0.97 * prev) * self.window
        power = np.abs(np.fft.rfft(frames, n=512, axis=-1)) ** 2
        mel = np.maximum(1.192092955078125e-07, power @ self.mel_filters)
        return np.log(mel).astype(np.float32)

    def __call__(self, waveforms, sampling_rate=None, padding=True, pad_to_multiple_of=2, max_length=None,
                 truncation=False, return_attention_mask=None, do_normalize_per_mel_bins=True, resample=True,
                 **kwargs):
        waves, _ = self.prepare(waveforms, sampling_rate, resample, kwargs.pop("name", "waveforms"))
        if kwargs:
            raise TypeError(f"{type(self).__name__}: unexpected arguments {sorted(kwargs)}")
        for i, w in enumerate(waves):
            if len(w) < 400:
                raise InputError(f"waveforms[{i}]: {len(w)} samples, fewer than one 400-sample frame")
        feats = [self.fbank(w) for w in waves]
        if do_normalize_per_mel_bins:
            feats = [(f - f.mean(0, keepdims=True)) / np.sqrt(f.var(0, ddof=1, keepdims=True) + 1e-7) for f in feats]
        if truncation and max_length is not None:
            feats = [f[:max_length] for f in feats]
        _, target = _pad_target([len(f) for f in feats], padding, max_length, pad_to_multiple_of, False)
        if target is None:
            if len({len(f) for f in feats}) > 1:
                raise InputError("waveforms: padding=False needs waveforms of one length for a batch")
            target = len(feats[0])
        mels = feats[0].shape[1]
        values = np.full((len(feats), target, mels), self.padding_value, np.float32)
        mask = np.zeros((len(feats), target), np.int32)
        for i, f in enumerate(feats):
            n = min(len(f), target)
            if self.padding_side == "left":
                values[i, target - n:], mask[i, target - n:] = f[len(f) - n:], 1
            else:
                values[i, :n], mask[i, :n] = f[:n], 1
        stride = int(self.stride)
        keep = target - target % stride
        values = values[:, :keep].reshape(len(feats), keep // stride, mels * stride)
        out = {"input_features": values}
        want_mask = self.return_attention_mask if return_attention_mask is None else return_attention_mask
        if want_mask:
            out["attention_mask"] = mask[:, :keep][:, np.arange(keep) % stride == 1]
        return out


__all__ = ["SeamlessM4TFeatureExtractor"]
