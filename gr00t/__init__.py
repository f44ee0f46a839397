"""gr00t: pretrain and finetune NVIDIA GR00T N1.6 vision-language-action models."""

__version__ = "0.1.0"
