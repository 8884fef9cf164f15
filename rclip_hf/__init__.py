"""rclip-hf: RemoteCLIP, the remote-sensing vision-language model, native to Hugging Face transformers.

Importing the package registers the config, model, tokenizer and processor with transformers' Auto classes.
"""

from transformers import (
    AutoConfig,
    AutoImageProcessor,
    AutoModel,
    AutoModelForZeroShotImageClassification,
    AutoProcessor,
    AutoTokenizer,
)

from ._compat import prefer_pil_image_processor
from .configuration_remoteclip import (
    PRESETS,
    RESNET_VISION_MODEL_TYPE,
    RemoteCLIPConfig,
    RemoteCLIPResNetVisionConfig,
)
from .modeling_remoteclip import RemoteCLIPModel, RemoteCLIPResNetVisionModel
from .processing_remoteclip import (
    RemoteCLIPImageProcessor,
    RemoteCLIPProcessor,
    RemoteCLIPTokenizer,
    build_image_processor,
    build_processor,
    build_tokenizer,
)

__version__ = "0.1.0"

AutoConfig.register(RESNET_VISION_MODEL_TYPE, RemoteCLIPResNetVisionConfig, exist_ok=True)
AutoConfig.register(RemoteCLIPConfig.model_type, RemoteCLIPConfig, exist_ok=True)
AutoModel.register(RemoteCLIPResNetVisionConfig, RemoteCLIPResNetVisionModel, exist_ok=True)
AutoModel.register(RemoteCLIPConfig, RemoteCLIPModel, exist_ok=True)
AutoModelForZeroShotImageClassification.register(RemoteCLIPConfig, RemoteCLIPModel, exist_ok=True)
AutoImageProcessor.register(RemoteCLIPConfig, image_processor_classes={"pil": RemoteCLIPImageProcessor}, exist_ok=True)
prefer_pil_image_processor(RemoteCLIPImageProcessor.__name__)  # open_clip's exact transform exists only as PIL
AutoTokenizer.register(RemoteCLIPConfig, fast_tokenizer_class=RemoteCLIPTokenizer, exist_ok=True)
AutoProcessor.register(RemoteCLIPConfig, RemoteCLIPProcessor, exist_ok=True)

__all__ = [
    "PRESETS",
    "RemoteCLIPConfig",
    "RemoteCLIPImageProcessor",
    "RemoteCLIPModel",
    "RemoteCLIPProcessor",
    "RemoteCLIPResNetVisionConfig",
    "RemoteCLIPResNetVisionModel",
    "RemoteCLIPTokenizer",
    "build_image_processor",
    "build_processor",
    "build_tokenizer",
]
