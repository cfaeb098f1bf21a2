"""Hugging Face model directories through transformers, optionally with a LoRA adapter.

With a CUDA GPU the weights load in 4-bit (bitsandbytes nf4, placed by accelerate's device
map), so a 7B model fits in about 5 GB of GPU memory; on CPU they stay in full precision,
because bitsandbytes' 4-bit kernels need CUDA. On CPU this engine decodes the default model at
1-2 tokens/s against llama.cpp's ~10, so it is for adapters being tried and for GPU machines.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

from hybrid_llm.config import Config
from hybrid_llm.errors import UserError
from hybrid_llm.llm.base import Message, configured_adapter, register_backend


class TransformersBackend:
    """A causal LM from a local directory, streamed with TextIteratorStreamer."""

    def __init__(self, model_dir: Path, *, n_ctx: int, adapter_dir: Path | None = None) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from transformers.utils import logging as transformers_logging

        # Progress bars and warnings would land in the middle of the REPL.
        transformers_logging.set_verbosity_error()
        transformers_logging.disable_progress_bar()
        self._torch = torch
        self._tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(
            model_dir, local_files_only=True, **_load_options(torch)
        )
        if adapter_dir is not None:
            from peft import PeftModel

            with warnings.catch_warnings():  # peft trips transformers' deprecation notices
                warnings.simplefilter("ignore", FutureWarning)
                model = PeftModel.from_pretrained(model, adapter_dir)
        self.model = model.eval()
        limit = getattr(model.config, "max_position_embeddings", None) or n_ctx
        self.context_length = min(n_ctx, limit)
        suffix = f"+{adapter_dir.name}" if adapter_dir else ""
        self.name = f"transformers:{model_dir.name}{suffix}"
        self._cancelled = threading.Event()

    def stream(
        self,
        messages: Sequence[Message],
        *,
        max_tokens: int,
        temperature: float,
        top_p: float,
        top_k: int,
        stop: Sequence[str] = (),
    ) -> Iterator[str]:
        from transformers import StoppingCriteriaList, TextIteratorStreamer

        self._cancelled.clear()
        inputs = self.encode_chat(messages)
        streamer = TextIteratorStreamer(self._tokenizer, skip_prompt=True, skip_special_tokens=True)
        options = {
            **inputs,
            "max_new_tokens": max_tokens,
            "streamer": streamer,
            "stopping_criteria": StoppingCriteriaList([_CancelCriteria(self._cancelled)]),
            "pad_token_id": self._tokenizer.pad_token_id or self._tokenizer.eos_token_id,
        }
        if temperature > 0:
            options.update(do_sample=True, temperature=temperature, top_p=top_p, top_k=top_k or None)
        else:
            options.update(do_sample=False)
        if stop:
            options.update(stop_strings=list(stop), tokenizer=self._tokenizer)
        failure: list[BaseException] = []

        def generate() -> None:
            try:
                with self._torch.inference_mode():
                    self.model.generate(**options)
            except BaseException as exc:  # noqa: BLE001 - re-raised on the caller's thread
                failure.append(exc)
                streamer.end()

        worker = threading.Thread(target=generate, name="transformers-generate", daemon=True)
        worker.start()
        try:
            for text in streamer:
                if text:
                    yield text
        finally:
            if worker.is_alive():
                self._cancelled.set()  # the caller stopped reading: stop generating too
            worker.join()
        if failure:
            raise failure[0]

    def encode_chat(self, messages: Sequence[Message]) -> dict:
        """Token ids of the chat, with the model's own template and the assistant header."""
        return self._tokenizer.apply_chat_template(
            list(messages), add_generation_prompt=True, return_dict=True, return_tensors="pt"
        ).to(self.model.device)

    def count_tokens(self, text: str) -> int:
        return len(self._tokenizer.encode(text, add_special_tokens=False))

    def cancel(self) -> None:
        self._cancelled.set()

    def close(self) -> None:
        self.model = None


class _CancelCriteria:
    """A StoppingCriteria: generate() asks it after every token."""

    def __init__(self, flag: threading.Event) -> None:
        self._flag = flag

    def __call__(self, input_ids, scores, **kwargs) -> bool:
        return self._flag.is_set()


def _load_options(torch) -> dict:
    if not torch.cuda.is_available():
        return {"dtype": torch.float32}
    from transformers import BitsAndBytesConfig

    quantization = BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_compute_dtype=torch.bfloat16,
        bnb_4bit_use_double_quant=True,
    )
    return {"quantization_config": quantization, "device_map": "auto"}


def _is_model_dir(path: Path) -> bool:
    return path.is_dir() and (path / "config.json").is_file()


@register_backend("transformers", claims=_is_model_dir)
def create_transformers_backend(config: Config, model_path: Path | None) -> TransformersBackend:
    assert model_path is not None
    if not _is_model_dir(model_path):
        raise UserError(f"{model_path} is not a Hugging Face model directory (no config.json)")
    adapter = configured_adapter(config)
    return TransformersBackend(
        model_path, n_ctx=config.model.n_ctx, adapter_dir=adapter.peft_dir if adapter else None
    )
