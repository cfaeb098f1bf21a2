"""`add_adapter`: manifest checks against the base model, install layout, both engines' files."""

from __future__ import annotations

import json
import zipfile

import pytest

from hybrid_llm.config import Config
from hybrid_llm.errors import UserError
from hybrid_llm.finetune.adapters import (
    AdapterManifest,
    add_adapter,
    check_base_model,
    installed_adapter,
    model_key,
)
from hybrid_llm.finetune.tiny_model import build_tiny_qwen2


def _config(model_path) -> Config:
    return Config.model_validate({"model": {"path": str(model_path), "backend": "transformers"}})


@pytest.mark.parametrize(
    "name",
    ["Qwen/Qwen2.5-Coder-1.5B-Instruct", "qwen2.5-coder-1.5b-instruct-q4_k_m",
     "Qwen2.5 Coder 1.5B Instruct GGUF", "Qwen/Qwen2.5-Coder-1.5B-Instruct-GGUF"],
)
def test_model_names_in_every_form_compare_equal(name):
    assert model_key(name) == "qwen2.5-coder-1.5b-instruct"
    assert model_key("Qwen/Qwen2.5-Coder-3B-Instruct") != model_key(name)


def test_install_layout_and_gguf_lora(tmp_path, tiny_model_dir, make_adapter_zip):
    import gguf

    archive = make_adapter_zip(tiny_model_dir, tmp_path / "qwen-finetuned.zip")
    installed = add_adapter(archive, _config(tiny_model_dir), models_root=tmp_path / "models")
    assert installed.path == tmp_path / "models" / "adapters" / "tiny-adapter"
    assert sorted(p.name for p in installed.path.iterdir()) == [
        "adapter.gguf", "adapter_config.json", "adapter_model.safetensors", "manifest.json"]
    reader = gguf.GGUFReader(str(installed.gguf_path))
    assert reader.get_field("general.type").contents() == "adapter"
    assert reader.get_field("general.architecture").contents() == "qwen2"
    assert reader.get_field("adapter.lora.alpha").contents() == 8.0
    shapes = {t.name: tuple(int(d) for d in t.shape) for t in reader.tensors}
    # 7 linear layers per block, 2 blocks, A and B each; ggml shape order is (in, out)
    assert len(shapes) == 2 * 7 * 2
    assert shapes["blk.0.attn_q.weight.lora_a"] == (64, 4) and shapes["blk.0.attn_q.weight.lora_b"] == (4, 64)
    assert shapes["blk.1.ffn_down.weight.lora_a"] == (128, 4)
    assert 'use it with "adapter": "tiny-adapter"' in installed.describe()
    config = _config(tiny_model_dir).model_copy(deep=True)
    config.model.adapter = "tiny-adapter"
    assert installed_adapter(config, models_root=tmp_path / "models") == installed


def test_installed_adapter_changes_the_transformers_output(tmp_path, tiny_model_dir, make_adapter_zip):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    installed = add_adapter(make_adapter_zip(tiny_model_dir, tmp_path / "a.zip"), _config(tiny_model_dir),
                            models_root=tmp_path / "models")
    ids = torch.tensor([[5, 17, 99, 300, 42]])
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    with torch.no_grad():
        before = base.generate(ids, max_new_tokens=8, do_sample=False)[0, 5:].tolist()
        tuned = PeftModel.from_pretrained(base, installed.peft_dir)
        after = tuned.generate(input_ids=ids, max_new_tokens=8, do_sample=False)[0, 5:].tolist()
    assert before != after


def test_adapter_for_another_base_model_is_refused_in_one_line(tmp_path, tiny_model_dir, make_adapter_zip):
    archive = make_adapter_zip(tiny_model_dir, tmp_path / "a.zip", base_model="Qwen/Qwen2.5-Coder-3B-Instruct")
    with pytest.raises(UserError) as refused:
        add_adapter(archive, _config(tiny_model_dir), models_root=tmp_path / "models")
    message = str(refused.value)
    assert "\n" not in message
    assert message.startswith("adapter tiny-adapter was trained on Qwen/Qwen2.5-Coder-3B-Instruct, "
                              f"but the configured model is {tiny_model_dir}")
    assert not (tmp_path / "models" / "adapters" / "tiny-adapter").exists()


def test_adapter_for_the_tiny_model_is_refused_by_the_default_config(tmp_path, tiny_model_dir, make_adapter_zip):
    archive = make_adapter_zip(tiny_model_dir, tmp_path / "a.zip")
    with pytest.raises(UserError, match="trained on hybrid-llm/tiny-qwen2, but the configured model is "
                                        "qwen2.5-coder-1.5b-instruct-q4_k_m"):
        add_adapter(archive, Config(), models_root=tmp_path / "models")


def test_same_name_but_different_shape_is_refused(tmp_path, tiny_model_dir, make_adapter_zip):
    wider = build_tiny_qwen2(tmp_path / "wide" / "tiny-qwen2", hidden_size=128)
    archive = make_adapter_zip(wider, tmp_path / "a.zip")
    with pytest.raises(UserError, match="expects hidden size 128 .* has 64: it is a different model"):
        add_adapter(archive, _config(tiny_model_dir), models_root=tmp_path / "models")


def test_damaged_or_foreign_zips_are_refused(tmp_path, tiny_model_dir, make_adapter_zip):
    config, root = _config(tiny_model_dir), tmp_path / "models"
    (tmp_path / "notes.zip").write_text("not a zip")
    with pytest.raises(UserError, match="not a zip file"):
        add_adapter(tmp_path / "notes.zip", config, models_root=root)
    with zipfile.ZipFile(tmp_path / "other.zip", "w") as archive:
        archive.writestr("adapter_config.json", "{}")
    with pytest.raises(UserError, match="missing manifest.json, adapter_model.safetensors"):
        add_adapter(tmp_path / "other.zip", config, models_root=root)
    good = make_adapter_zip(tiny_model_dir, tmp_path / "a.zip")
    with zipfile.ZipFile(good) as source, zipfile.ZipFile(tmp_path / "bad.zip", "w") as damaged:
        for name in source.namelist():
            data = source.read(name)
            damaged.writestr(name, data[:-8] + b"\0" * 8 if name.endswith(".safetensors") else data)
    with pytest.raises(UserError, match="does not match its checksum"):
        add_adapter(tmp_path / "bad.zip", config, models_root=root)
    assert not (root / "adapters").exists()  # refused before anything was written


def test_a_failed_conversion_leaves_no_trace(tmp_path, tiny_model_dir, make_adapter_zip):
    import hashlib

    import torch
    from safetensors.torch import save

    good = make_adapter_zip(tiny_model_dir, tmp_path / "a.zip")
    weights = save({"base_model.model.model.rotary.lora_A.weight": torch.zeros(4, 64)})
    with zipfile.ZipFile(good) as source, zipfile.ZipFile(tmp_path / "odd.zip", "w") as odd:
        manifest = json.loads(source.read("manifest.json"))
        manifest["files"]["adapter_model.safetensors"] = hashlib.sha256(weights).hexdigest()
        odd.writestr("manifest.json", json.dumps(manifest))
        odd.writestr("adapter_config.json", source.read("adapter_config.json"))
        odd.writestr("adapter_model.safetensors", weights)
    with pytest.raises(UserError, match="targets a module llama.cpp does not have"):
        add_adapter(tmp_path / "odd.zip", _config(tiny_model_dir), models_root=tmp_path / "models")
    assert not list((tmp_path / "models" / "adapters").iterdir())


def test_reinstall_replaces_the_previous_version(tmp_path, tiny_model_dir, make_adapter_zip):
    config, root = _config(tiny_model_dir), tmp_path / "models"
    add_adapter(make_adapter_zip(tiny_model_dir, tmp_path / "a.zip", seed=1), config, models_root=root)
    second = add_adapter(make_adapter_zip(tiny_model_dir, tmp_path / "b.zip", seed=2), config, models_root=root)
    manifest = json.loads((second.path / "manifest.json").read_text())
    with zipfile.ZipFile(tmp_path / "b.zip") as archive:
        assert manifest == json.loads(archive.read("manifest.json"))
    assert [p.name for p in (root / "adapters").iterdir()] == ["tiny-adapter"]


def test_unknown_configured_adapter_names_the_fix(tmp_path):
    config = Config.model_validate({"model": {"adapter": "missing"}})
    with pytest.raises(UserError, match="run `hybrid-llm models add-adapter FILE.zip`"):
        installed_adapter(config, models_root=tmp_path)


def _manifest(base_model: str, hidden_size: int, layers: int) -> AdapterManifest:
    return AdapterManifest("qwen-finetuned", base_model, {"hidden_size": hidden_size, "num_hidden_layers": layers},
                           {"r": 16}, {}, {})


def test_the_default_model_accepts_its_own_adapters_only(default_model_file):
    """Against the real 1.1 GB GGUF header: name and shape (1536 wide, 28 layers) must both match."""
    check_base_model(_manifest("Qwen/Qwen2.5-Coder-1.5B-Instruct", 1536, 28), Config())
    with pytest.raises(UserError, match="trained on Qwen/Qwen2.5-Coder-3B-Instruct"):
        check_base_model(_manifest("Qwen/Qwen2.5-Coder-3B-Instruct", 2048, 36), Config())
    with pytest.raises(UserError, match="expects layer count 36"):
        check_base_model(_manifest("Qwen/Qwen2.5-Coder-1.5B-Instruct", 1536, 36), Config())


def test_a_gguf_base_is_checked_by_its_header(tiny_gguf):
    config = Config.model_validate({"model": {"path": str(tiny_gguf)}})
    check_base_model(_manifest("hybrid-llm/tiny-qwen2", 64, 2), config)
    with pytest.raises(UserError, match="expects hidden size 896"):
        check_base_model(_manifest("hybrid-llm/tiny-qwen2", 896, 2), config)
