"""rclip-hf: RemoteCLIP, the remote-sensing vision-language model, native to Hugging Face transformers."""

__version__ = "0.1.0"
