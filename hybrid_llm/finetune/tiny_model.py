"""A tiny Qwen2 built locally, so every engine and the training loop can be tested without a download.

The model has the real Qwen2 architecture (tied embeddings, biased q/k/v, grouped-query attention)
and a byte-level BPE tokenizer with Qwen2's pre-tokenizer and ChatML special tokens, trained here on
standard-library source text. Weights are random, so outputs are gibberish, but they are
deterministic for a seed: enough to show that an adapter changes them. `export_gguf` writes the
same model as a GGUF file that llama.cpp loads, which is also how adapters are converted.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path

TINY_BASE_MODEL = "hybrid-llm/tiny-qwen2"

# Qwen2's pre-tokenizer split (from its tokenizer.json); llama.cpp applies the same one for
# `tokenizer.ggml.pre = "qwen2"`, so both engines tokenize the tiny model's text identically.
_QWEN2_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
# Qwen2.5's ChatML template without its tool-calling branches.
CHATML_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)


def _training_corpus() -> list[str]:
    """Code and prose that ship with every Python, so the tokenizer is the same on any machine."""
    import argparse
    import difflib
    import textwrap

    return [inspect.getsource(module) for module in (textwrap, difflib, argparse)]


def train_tokenizer(vocab_size: int = 1024):
    """A byte-level BPE tokenizer shaped like Qwen2's; special tokens get the last ids, as in Qwen."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(_QWEN2_SPLIT), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size - len(_SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(_training_corpus(), trainer=trainer)
    tokenizer.add_special_tokens(_SPECIAL_TOKENS)
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        chat_template=CHATML_TEMPLATE,
    )


def build_tiny_qwen2(out_dir: Path, *, seed: int = 0, hidden_size: int = 64, layers: int = 2) -> Path:
    """Save a random-weight Qwen2 with a locally trained tokenizer to `out_dir` (a HF model dir).

    Loads with `AutoModelForCausalLM.from_pretrained(out_dir)`; takes about a second.
    """
    import torch
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    tokenizer = train_tokenizer()
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 2,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        rope_theta=1_000_000.0,
        rms_norm_eps=1e-6,
        bos_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(config)
    # The default init (std 0.02) makes every logit nearly equal; a wider one gives outputs that
    # differ visibly from token to token, so a change caused by an adapter is easy to see.
    with torch.no_grad():
        for param in model.parameters():
            if param.dim() == 2:
                param.normal_(0.0, 0.2)
    model.generation_config = GenerationConfig(
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, do_sample=False
    )
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir


def _rope_theta(config) -> float:
    parameters = getattr(config, "rope_parameters", None) or {}
    return float(parameters.get("rope_theta") or getattr(config, "rope_theta", 10000.0))


def _write_vocab(writer, model_dir: Path) -> None:
    import gguf

    spec = json.loads((model_dir / "tokenizer.json").read_text(encoding="utf-8"))
    vocab: dict[str, int] = dict(spec["model"]["vocab"])
    special = {entry["content"]: entry["id"] for entry in spec["added_tokens"]}
    vocab.update(special)
    tokens = [token for token, _ in sorted(vocab.items(), key=lambda item: item[1])]
    types = [
        gguf.TokenType.CONTROL if token in special else gguf.TokenType.NORMAL for token in tokens
    ]
    merges = [merge if isinstance(merge, str) else " ".join(merge) for merge in spec["model"]["merges"]]
    config = json.loads((model_dir / "tokenizer_config.json").read_text(encoding="utf-8"))
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("qwen2")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)
    writer.add_eos_token_id(vocab[config["eos_token"]])
    writer.add_pad_token_id(vocab[config["pad_token"]])
    writer.add_bos_token_id(vocab[config["pad_token"]])
    writer.add_add_bos_token(False)
    template = config.get("chat_template") or _chat_template_file(model_dir)
    if template:
        writer.add_chat_template(template)


def _chat_template_file(model_dir: Path) -> str | None:
    path = model_dir / "chat_template.jinja"
    return path.read_text(encoding="utf-8") if path.exists() else None


def export_gguf(model_dir: Path, out_path: Path, *, name: str = "tiny-qwen2") -> Path:
    """Write a Qwen2 HF model dir (tiny or merged) as a float32 GGUF that llama.cpp loads.

    llama.cpp's own converter refuses tokenizers it has no hash for, which includes any tokenizer
    trained locally; writing the few Qwen2 keys ourselves avoids that and a 10k-line dependency.
    """
    import gguf
    import torch
    from safetensors.torch import load_file
    from transformers import AutoConfig

    model_dir = Path(model_dir)
    config = AutoConfig.from_pretrained(model_dir)
    tensors = load_file(str(model_dir / "model.safetensors"))
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.QWEN2, config.num_hidden_layers)
    writer = gguf.GGUFWriter(str(out_path), gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.QWEN2])
    writer.add_type(gguf.GGUFType.MODEL)
    writer.add_name(name)
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(config.num_attention_heads)
    writer.add_head_count_kv(config.num_key_value_heads)
    writer.add_rope_freq_base(_rope_theta(config))
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    _write_vocab(writer, model_dir)
    for hf_name, tensor in tensors.items():
        if hf_name == "lm_head.weight" and config.tie_word_embeddings:
            continue
        gguf_name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if gguf_name is None:
            raise ValueError(f"no GGUF name for tensor {hf_name}")
        writer.add_tensor(gguf_name, tensor.to(torch.float32).numpy())
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return Path(out_path)
