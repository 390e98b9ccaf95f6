"""keras-models: Hugging Face checkpoints as Keras 3 models on JAX, PyTorch or TensorFlow.

Public API (see docs/): ``Backbone``, ``Tokenizer``, the task classes, ``pipeline`` and
``models`` (architecture classes). Attributes load lazily, so ``import keras_models`` is cheap
and never imports TensorFlow unless KERAS_BACKEND=tensorflow.
"""

import importlib

from keras_models import compat

__version__ = "0.1.0"

compat.install_registry_fallback()  # keras.saving.load_model finds our classes without importing them here

_LAZY = {
    "Backbone": "keras_models.models.backbone",
    "Task": "keras_models.tasks.task",
    "Tokenizer": "keras_models.tokenizers",
    "MaskedLM": "keras_models.tasks.text",
    "TextClassifier": "keras_models.tasks.text",
    "TokenClassifier": "keras_models.tasks.text",
    "QuestionAnswerer": "keras_models.tasks.text",
    "MultipleChoice": "keras_models.tasks.multiple_choice",
    "TextEmbedder": "keras_models.tasks.embedder",
    "CausalLM": "keras_models.tasks.causal_lm",
    "Seq2SeqLM": "keras_models.tasks.seq2seq_lm",
    "ImageClassifier": "keras_models.tasks.image_classifier",
    "SemanticSegmenter": "keras_models.tasks.semantic_segmenter",
    "UniversalSegmenter": "keras_models.tasks.universal_segmenter",
    "DepthEstimator": "keras_models.tasks.depth_estimator",
    "ImageSuperResolution": "keras_models.tasks.image_super_resolution",
    "OpticalFlowEstimator": "keras_models.tasks.optical_flow",
    "ImageMatting": "keras_models.tasks.image_matting",
    "MaskGenerator": "keras_models.tasks.mask_generator",
    "InContextSegmenter": "keras_models.tasks.in_context_segmenter",
    "SceneTextRecognizer": "keras_models.tasks.scene_text_recognizer",
    "ZeroShotImageClassifier": "keras_models.tasks.zero_shot_image_classifier",
    "ZeroShotObjectDetector": "keras_models.tasks.zero_shot_object_detector",
    "ZeroShotImageSegmenter": "keras_models.tasks.zero_shot_image_segmenter",
    "ZeroShotVideoClassifier": "keras_models.tasks.zero_shot_video_classifier",
    "ZeroShotAudioClassifier": "keras_models.tasks.zero_shot_audio_classifier",
    "ObjectDetector": "keras_models.tasks.object_detector",
    "VideoClassifier": "keras_models.tasks.video_classifier",
    "VideoGrounder": "keras_models.models.tvp",
    "ImageTextToText": "keras_models.tasks.image_text_to_text",
    "ImageToText": "keras_models.tasks.image_to_text",
    "ImageTextMatcher": "keras_models.tasks.image_text_matching",
    "VisualQuestionAnswerer": "keras_models.tasks.visual_question_answering",
    "SpeechRecognizer": "keras_models.tasks.audio",
    "AudioClassifier": "keras_models.tasks.audio",
    "TextToAudio": "keras_models.tasks.text_to_audio",
    "SpeechTextScorer": "keras_models.tasks.speech_text_scorer",
    "TimeSeriesForecaster": "keras_models.tasks.time_series",
    "TrajectoryPredictor": "keras_models.tasks.trajectory",
    "GraphClassifier": "keras_models.tasks.graph",
    "TableQuestionAnswerer": "keras_models.tasks.table_question_answerer",
    "AudioFeatureExtractor": "keras_models.preprocessing.audio",
    "pipeline": "keras_models.pipelines",
    "list_presets": "keras_models.presets.named",
    "upload_preset": "keras_models.presets.hub",
}
_SUBMODULES = ("models", "layers", "tasks", "presets", "tokenizers", "preprocessing", "errors",
               "generation", "pipelines", "export")


def __getattr__(name):
    if name in _LAZY:
        module = importlib.import_module(_LAZY[name])  # families load when a preset names them
        value = getattr(module, name)
        globals()[name] = value
        return value
    if name in _SUBMODULES:
        module = importlib.import_module(f"keras_models.{name}")
        globals()[name] = module
        return module
    raise AttributeError(f"module 'keras_models' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_LAZY) + list(_SUBMODULES))


__all__ = list(_LAZY)
