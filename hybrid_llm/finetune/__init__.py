"""The fine-tuning loop: request logs, datasets, and LoRA adapters."""
