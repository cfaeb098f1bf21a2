"""CI runs notebooks/colab_training.ipynb in smoke mode, then installs the adapter it produced.

Same cells as on Colab, on CPU: a tiny Qwen2 built inside the notebook (random weights, local
tokenizer), a dataset made by `hybrid-llm dataset build` from a small real codebase on disk, a
short LoRA run, and `qwen-finetuned.zip`. The adapter must then change the tiny model's output in
both engines: transformers through peft, and llama.cpp through the GGUF LoRA made by add_adapter.
"""

from __future__ import annotations

import json
import re
import time
import zipfile
from pathlib import Path

import pytest

from hybrid_llm.cli import main
from hybrid_llm.config import REPO_ROOT, Config
from hybrid_llm.finetune.adapters import add_adapter
from hybrid_llm.finetune.tiny_model import export_gguf

NOTEBOOK = REPO_ROOT / "notebooks" / "colab_training.ipynb"


def _small_codebase(root: Path) -> Path:
    """Short functions, so every example fits the tiny model's context with room to spare."""
    root.mkdir()
    for module in ("units", "money"):
        functions = [
            f"def {module}_{op}_{n}(value):\n    result = value {sign} {n}\n    return result\n"
            for n in range(2, 8)
            for op, sign in (("add", "+"), ("times", "*"))
        ]
        (root / f"{module}.py").write_text("\n\n".join(functions))
    return root


def _run_notebook(workdir: Path, dataset: Path, monkeypatch: pytest.MonkeyPatch):
    import nbformat
    from nbclient import NotebookClient

    monkeypatch.setenv("SMOKE", "1")
    monkeypatch.setenv("DATASET_DIR", str(dataset))
    monkeypatch.setenv("OUTPUT_DIR", str(workdir))
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(notebook, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(workdir)}}).execute()
    return "".join(
        output.get("text", "")
        for cell in notebook.cells if cell.cell_type == "code"
        for output in cell.get("outputs", [])
    )


def _greedy_transformers(model_dir: Path, messages, adapter_dir: Path | None) -> list[int]:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    if adapter_dir is not None:
        model = PeftModel.from_pretrained(model, adapter_dir)
    inputs = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    with torch.no_grad():
        output = model.generate(**inputs, max_new_tokens=8, do_sample=False)
    return output[0, inputs["input_ids"].shape[1]:].tolist()


def _greedy_llama_cpp(gguf_path: Path, messages, lora_path: Path | None) -> str:
    from llama_cpp import Llama

    llm = Llama(model_path=str(gguf_path), lora_path=str(lora_path) if lora_path else None,
                n_ctx=2048, n_threads=2, verbose=False, seed=0)
    reply = llm.create_chat_completion(messages=messages, max_tokens=8, temperature=0.0, top_k=1)
    return reply["choices"][0]["message"]["content"]


def _source() -> str:
    import nbformat

    notebook = nbformat.read(NOTEBOOK, as_version=4)
    return "\n".join(cell.source for cell in notebook.cells if cell.cell_type == "code")


def test_colab_installs_the_versions_the_smoke_run_tests():
    """The GPU cells only run on Colab; pinning Colab to the versions installed here means the
    API the smoke run exercises (SFTConfig, peft, ...) is the API Colab gets."""
    from importlib.metadata import version

    pinned = dict(re.findall(r'"([a-z]+)==([\w.]+)"', _source()))
    for package in ("transformers", "peft", "trl", "accelerate", "datasets"):
        assert pinned[package] == version(package), package
    assert "bitsandbytes" in pinned


def test_gpu_cells_use_the_qlora_recipe():
    source = _source()
    for setting in ('bnb_4bit_quant_type="nf4"', "bnb_4bit_use_double_quant=True", 'target_modules="all-linear"',
                    "LORA_R = 16", "torch.bfloat16 if major >= 8 else torch.float16", "activation_checkpointing=True",
                    "max_length=MAX_LENGTH"):
        assert setting in source, setting
    assert "max_seq_length" not in source  # the pre-1.0 TRL name


@pytest.mark.slow
def test_smoke_notebook_trains_and_its_adapter_changes_both_engines(tmp_path, monkeypatch, capsys):
    assert main(["dataset", "build", "--from-code", str(_small_codebase(tmp_path / "repo")),
                 "--out", str(tmp_path / "dataset")]) == 0
    workdir = tmp_path / "colab"
    workdir.mkdir()
    started = time.monotonic()
    printed = _run_notebook(workdir, tmp_path / "dataset", monkeypatch)
    notebook_seconds = time.monotonic() - started

    before, after = map(float, re.search(r"validation loss: ([\d.]+) before -> ([\d.]+) after", printed).groups())
    assert after < before, printed
    archive = workdir / "qwen-finetuned.zip"
    with zipfile.ZipFile(archive) as content:
        manifest = json.loads(content.read("manifest.json"))
    assert manifest["base_model"] == "hybrid-llm/tiny-qwen2"
    assert manifest["training"]["eval_loss_after"] == pytest.approx(after, abs=1e-4)
    assert manifest["lora"]["r"] == 16
    assert set(manifest["lora"]["target_modules"]) == {
        "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}

    base_dir = workdir / "tiny-qwen2"
    config = Config.model_validate({"model": {"path": str(base_dir), "backend": "transformers"}})
    installed = add_adapter(archive, config, models_root=tmp_path / "models")

    validation = json.loads((tmp_path / "dataset" / "validation.jsonl").read_text().splitlines()[0])
    messages = validation["prompt"]
    tuned = _greedy_transformers(base_dir, messages, installed.peft_dir)
    assert _greedy_transformers(base_dir, messages, None) != tuned
    base_gguf = export_gguf(base_dir, tmp_path / "tiny-qwen2.gguf")
    tuned = _greedy_llama_cpp(base_gguf, messages, installed.gguf_path)
    assert _greedy_llama_cpp(base_gguf, messages, None) != tuned
    with capsys.disabled():
        print(f"\nsmoke notebook: {notebook_seconds:.0f} s, validation loss {before:.3f} -> {after:.3f}")
