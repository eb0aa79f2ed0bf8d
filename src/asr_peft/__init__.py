"""asr-peft: parameter-efficient fine-tuning of OWSM speech foundation models under domain shift."""

__version__ = "0.1.0"
