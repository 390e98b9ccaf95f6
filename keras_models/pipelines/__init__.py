"""``km.pipeline(task, model=preset)``: Transformers' pipeline tasks over keras-models tasks.

Task names and output formats follow Transformers (4.x documented behaviour where 5.x removed a
pipeline). ``model`` is a preset handle (local folder, ``hf://org/name``, named preset) or an
already built keras-models task; ``batch_size`` batches inputs through the model and
``progress=True`` shows a progress bar for long input lists.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from keras_models.pipelines.base import Pipeline, PipelineError

# task -> (module, pipeline class, km model class used to load a preset)
TASKS = {
    "feature-extraction": ("text", "FeatureExtractionPipeline", "Backbone"),
    "sentence-similarity": ("text", "SentenceSimilarityPipeline", "TextEmbedder"),
    "text-classification": ("text", "TextClassificationPipeline", "TextClassifier"),
    "fill-mask": ("text", "FillMaskPipeline", "MaskedLM"),
    "zero-shot-classification": ("text", "ZeroShotClassificationPipeline", "TextClassifier"),
    "token-classification": ("token_classification", "TokenClassificationPipeline", "TokenClassifier"),
    "question-answering": ("question_answering", "QuestionAnsweringPipeline", "QuestionAnswerer"),
    "text-generation": ("generation", "TextGenerationPipeline", "CausalLM"),
    "text2text-generation": ("text2text", "Text2TextGenerationPipeline", "Seq2SeqLM"),
    "summarization": ("text2text", "SummarizationPipeline", "Seq2SeqLM"),
    "translation": ("text2text", "TranslationPipeline", "Seq2SeqLM"),
    "image-classification": ("image", "ImageClassificationPipeline", "ImageClassifier"),
    "image-feature-extraction": ("image", "ImageFeatureExtractionPipeline", "Backbone"),
    "zero-shot-image-classification": ("zero_shot_image", "ZeroShotImageClassificationPipeline",
                                       "ZeroShotImageClassifier"),
    "video-classification": ("video", "VideoClassificationPipeline", "VideoClassifier"),
    "depth-estimation": ("depth", "DepthEstimationPipeline", "DepthEstimator"),
    "automatic-speech-recognition": ("audio", "AutomaticSpeechRecognitionPipeline", "SpeechRecognizer"),
    "audio-classification": ("audio", "AudioClassificationPipeline", "AudioClassifier"),
    "zero-shot-audio-classification": ("audio", "ZeroShotAudioClassificationPipeline", "ZeroShotAudioClassifier"),
    "zero-shot-object-detection": ("multimodal", "ZeroShotObjectDetectionPipeline", "ZeroShotObjectDetector"),
    "image-to-text": ("multimodal", "ImageToTextPipeline", "ImageToText"),
    "visual-question-answering": ("vqa", "VisualQuestionAnsweringPipeline", "VisualQuestionAnswerer"),
    "document-question-answering": ("document_qa", "DocumentQuestionAnsweringPipeline", "QuestionAnswerer"),
    "object-detection": ("vision_tasks", "ObjectDetectionPipeline", "ObjectDetector"),
    "image-segmentation": ("vision_tasks", "ImageSegmentationPipeline", "UniversalSegmenter"),
    "image-to-image": ("vision_tasks", "ImageToImagePipeline", "ImageSuperResolution"),
    "image-text-to-text": ("image_text_to_text", "ImageTextToTextPipeline", "ImageTextToText"),
    "text-to-audio": ("text_to_audio", "TextToAudioPipeline", "TextToAudio"),
    "mask-generation": ("mask_generation", "MaskGenerationPipeline", "MaskGenerator"),
}
# task -> ((config.json architectures suffix, km model class), ...): checkpoints that load through
# another model class than the task's default.
_ARCH_MODEL_CLASSES = {
    "image-segmentation": (("ForSemanticSegmentation", "SemanticSegmenter"),),
    "text-to-audio": (("VitsModel", "Backbone"),),  # VITS / MMS-TTS: forward-only (synthesize)
}
ALIASES = {"sentiment-analysis": "text-classification", "ner": "token-classification",
           "vqa": "visual-question-answering", "text-to-speech": "text-to-audio"}

# config.json ``architectures`` suffix -> default task, when pipeline() is given no task.
_ARCH_TASKS = (
    ("ForSequenceClassification", "text-classification"),
    ("ForTokenClassification", "token-classification"),
    ("ForQuestionAnswering", "question-answering"),
    ("ForMaskedLM", "fill-mask"),
    ("ForCausalLM", "text-generation"),
    ("ForConditionalGeneration", "text2text-generation"),
    ("ForImageClassification", "image-classification"),
    ("ForVideoClassification", "video-classification"),
    ("ForDepthEstimation", "depth-estimation"),
    ("ForCTC", "automatic-speech-recognition"),
    ("ForAudioClassification", "audio-classification"),
    ("ForInstanceSegmentation", "image-segmentation"),
    ("ForUniversalSegmentation", "image-segmentation"),
    ("ForSemanticSegmentation", "image-segmentation"),
    ("ForImageSuperResolution", "image-to-image"),
)


def supported_tasks():
    """Task names ``pipeline()`` accepts (aliases included)."""
    return sorted(TASKS) + sorted(ALIASES)


def resolve_task(task):
    if not isinstance(task, str):
        raise PipelineError(f"task must be a str, got {type(task).__name__}")
    name = ALIASES.get(task, task)
    if name.startswith("translation_"):
        from keras_models.pipelines.text2text import translation_task

        if translation_task(name):
            return "translation"
    if name not in TASKS:
        raise PipelineError(f"Unknown pipeline task {task!r}; supported: {', '.join(supported_tasks())}")
    return name


def infer_task(hf_config, source="config.json"):
    """The default task of a checkpoint, from its config.json ``architectures``."""
    for arch in hf_config.get("architectures") or []:
        for suffix, task in _ARCH_TASKS:
            if arch.endswith(suffix) and task in TASKS:
                return task
    if hf_config.get("architectures"):
        return "feature-extraction"
    raise PipelineError(f"{source}: cannot infer a pipeline task (no 'architectures'); pass task=")


def pipeline(task=None, model=None, tokenizer=None, *, batch_size=1, progress=False, dtype=None, **kwargs):
    """Build a pipeline.

    Args:
        task: a Transformers task name (see ``supported_tasks()``); inferred from the checkpoint's
            config.json when None.
        model: a preset handle, or a keras-models task/backbone instance.
        tokenizer: a ``km.Tokenizer`` (default: the model's own).
        batch_size: inputs per model call.
        progress: show a progress bar over the inputs.
        dtype: compute dtype when loading a preset (e.g. ``"bfloat16"``).
        **kwargs: default call arguments of the task (``top_k``, ``aggregation_strategy`` ...).
    """
    if model is None:
        raise PipelineError("pipeline(): pass model= (a preset handle or a keras-models model)")
    dtype = _transformers_spellings(kwargs, dtype)
    hf_config = {}
    requested = task
    if isinstance(model, (str, Path)):
        from keras_models.presets.config import load_hf_config
        from keras_models.presets.resolve import resolve_preset

        folder = resolve_preset(model)
        hf_config = load_hf_config(folder)
        task = resolve_task(task) if task is not None else infer_task(hf_config, str(folder / "config.json"))
        module, cls_name, model_cls = TASKS[task]
        if task == "automatic-speech-recognition" and hf_config.get("is_encoder_decoder"):
            model_cls = "Seq2SeqLM"  # Whisper-like: generate on the feature extractor's log-mels
        if task in ("visual-question-answering", "document-question-answering"):
            from keras_models.pipelines.vqa import model_class_for

            model_cls = model_class_for(task, hf_config, model_cls)  # generative checkpoints: BLIP, Donut
        for suffix, cls_for_arch in _ARCH_MODEL_CLASSES.get(task, ()):
            if any(str(a).endswith(suffix) for a in hf_config.get("architectures") or []):
                model_cls = cls_for_arch
        import keras_models as km

        model = getattr(km, model_cls).from_preset(folder, dtype=dtype)
        if task == "image-feature-extraction" and "image_processor" not in kwargs:
            from keras_models.preprocessing.image import ImageProcessor

            kwargs["image_processor"] = ImageProcessor.from_preset(folder)
        elif tokenizer is None and getattr(model, "preprocessor", None) is None:
            tokenizer = _tokenizer_or_none(folder)
        if model_cls == "Seq2SeqLM" and module == "audio" and "feature_extractor" not in kwargs:
            from keras_models.preprocessing.audio import AudioFeatureExtractor

            kwargs["feature_extractor"] = AudioFeatureExtractor.from_preset(folder)
    else:
        if task is None:
            raise PipelineError("pipeline(): pass task= when model is a model object")
        task = resolve_task(task)
        module, cls_name, _ = TASKS[task]
        hf_config = _config_of(model)
    cls = getattr(importlib.import_module(f"keras_models.pipelines.{module}"), cls_name)
    if module == "text2text":
        kwargs["task_name"] = requested if isinstance(requested, str) else task
    return cls(model, tokenizer=tokenizer, batch_size=batch_size, progress=progress, hf_config=hf_config, **kwargs)


def _transformers_spellings(kwargs, dtype):
    """Transformers' ``pipeline`` arguments: ``torch_dtype`` is ``dtype``; ``device`` may name the
    CPU (-1, "cpu"), the only placement a pipeline chooses here: on GPU machines the backend puts
    the model on its default accelerator (choose it with CUDA_VISIBLE_DEVICES)."""
    if "torch_dtype" in kwargs:
        torch_dtype = kwargs.pop("torch_dtype")
        if dtype is not None and str(dtype) != str(torch_dtype):
            raise PipelineError(f"pipeline(): dtype={dtype!r} and torch_dtype={torch_dtype!r} disagree; pass one")
        dtype = torch_dtype
    if "device" in kwargs:
        device = kwargs.pop("device")
        name = str(device).lower()
        if device is not None and device != -1 and name != "cpu":
            import keras

            raise PipelineError(
                f"pipeline(device={device!r}): keras-models places models on the {keras.backend.backend()} "
                "backend's default device (the first visible GPU when there is one); select the GPU with "
                "CUDA_VISIBLE_DEVICES, or pass device='cpu' / -1")
        if name == "cpu":
            _check_on_cpu(device)
    if kwargs.get("device_map") not in (None, "cpu"):
        raise PipelineError(f"pipeline(device_map={kwargs['device_map']!r}): not supported (models load whole "
                            "on the backend's default device)")
    kwargs.pop("device_map", None)
    return dtype


def _check_on_cpu(device):
    """device='cpu' asks for the CPU: refuse where the backend would compute on an accelerator."""
    import keras

    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        on_accelerator = jax.default_backend() != "cpu"
    elif backend == "torch":
        from keras_models.compat import torch_device

        on_accelerator = str(torch_device()) != "cpu"
    else:
        import tensorflow as tf

        on_accelerator = bool(tf.config.list_logical_devices("GPU"))
    if on_accelerator:
        raise PipelineError(f"pipeline(device={device!r}): this {backend} backend computes on an accelerator; "
                            "hide it (CUDA_VISIBLE_DEVICES='') to run on the CPU")


def _tokenizer_or_none(folder):
    from keras_models.tasks.text import TOKENIZER_FILES

    if not any((Path(folder) / f).is_file() for f in TOKENIZER_FILES):
        return None
    from keras_models.tokenizers import Tokenizer

    return Tokenizer.from_preset(folder)


def _config_of(model):
    try:
        return model.config_to_hf()
    except Exception:  # a model without an HF config: labels come from the model itself
        return {}


__all__ = ["pipeline", "Pipeline", "PipelineError", "supported_tasks", "TASKS"]
