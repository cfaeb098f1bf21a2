"""Installing LoRA adapters trained in the Colab notebook, for both local engines.

`qwen-finetuned.zip` holds the peft adapter (`adapter_config.json`, `adapter_model.safetensors`)
and `manifest.json` naming the base model it was trained on. An adapter only works on that exact
base, so the manifest is checked against the configured model twice: by name, and, when the model
is on disk, by shape (hidden size and layer count), which catches renamed files. The install in
`models/adapters/<name>/` keeps the peft files for the transformers backend and adds a GGUF LoRA
converted locally for llama.cpp; it is built in a temporary directory and renamed into place, so
a failed install leaves any previous version intact.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from hybrid_llm.config import Config, models_dir
from hybrid_llm.errors import UserError
from hybrid_llm.finetune.lora_gguf import check_supported, convert_peft_lora

MANIFEST_FILE = "manifest.json"
MANIFEST_FORMAT = "hybrid-llm-adapter"
MANIFEST_VERSION = 1
PEFT_FILES = ("adapter_config.json", "adapter_model.safetensors")
GGUF_FILE = "adapter.gguf"
_MAX_UNCOMPRESSED = 2 * 1024**3  # an r=16 adapter for 7B is ~160 MB; anything near this is not one
_QUANT_SUFFIX = re.compile(r"[-.](?:i?q\d[\w-]*|f16|f32|bf16|fp16)$")


def model_key(name: str) -> str:
    """Compare model names across forms: `Qwen/Qwen2.5-Coder-1.5B-Instruct`,
    `qwen2.5-coder-1.5b-instruct-q4_k_m`, `Qwen2.5-Coder-1.5B-Instruct-GGUF` all give one key."""
    key = re.sub(r"[\s_]+", "-", name.strip().lower().rstrip("/").rsplit("/", 1)[-1])
    key = key.removesuffix(".gguf").removesuffix("-gguf")
    return _QUANT_SUFFIX.sub("", key)


@dataclass(frozen=True)
class AdapterManifest:
    """What `manifest.json` promises about the adapter (written by the notebook)."""

    name: str
    base_model: str
    base_config: dict
    lora: dict
    training: dict
    files: dict[str, str]

    @classmethod
    def parse(cls, raw: object, source: str) -> AdapterManifest:
        if not isinstance(raw, dict) or raw.get("format") != MANIFEST_FORMAT:
            raise UserError(f"{source}: manifest.json is not a hybrid-llm adapter manifest")
        if raw.get("version") != MANIFEST_VERSION:
            raise UserError(f"{source}: manifest version {raw.get('version')} is not supported "
                            f"(expected {MANIFEST_VERSION}): update hybrid-llm")
        name, base = raw.get("name"), raw.get("base_model")
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", name):
            raise UserError(f"{source}: manifest name {name!r} must be letters, digits, '.', '_' or '-'")
        if not isinstance(base, str) or not base:
            raise UserError(f"{source}: manifest does not name its base_model")
        return cls(name, base, dict(raw.get("base_config") or {}), dict(raw.get("lora") or {}),
                   dict(raw.get("training") or {}), dict(raw.get("files") or {}))


@dataclass(frozen=True)
class InstalledAdapter:
    """An adapter under `models/adapters/<name>/`, ready for either engine."""

    name: str
    path: Path
    manifest: AdapterManifest

    @property
    def peft_dir(self) -> Path:
        """For `PeftModel.from_pretrained(model, adapter.peft_dir)`."""
        return self.path

    @property
    def gguf_path(self) -> Path:
        """For `Llama(model_path=..., lora_path=str(adapter.gguf_path))`."""
        return self.path / GGUF_FILE

    @property
    def base_model(self) -> str:
        return self.manifest.base_model

    def describe(self) -> str:
        rank = self.manifest.lora.get("r", "?")
        return (
            f"installed adapter {self.name} (LoRA r={rank}, base {self.base_model}) in {self.path}; "
            f'use it with "adapter": "{self.name}" in the "model" section of config.json'
        )


def adapters_dir(models_root: Path | None = None) -> Path:
    return (models_root or models_dir()) / "adapters"


def installed_adapter(config: Config, *, models_root: Path | None = None) -> InstalledAdapter | None:
    """The adapter `config.model.adapter` selects, or None when none is set."""
    name = config.model.adapter
    if not name:
        return None
    path = adapters_dir(models_root) / name
    manifest_path = path / MANIFEST_FILE
    if not manifest_path.is_file() or not (path / GGUF_FILE).is_file():
        raise UserError(f"model.adapter {name!r} is not installed: run `hybrid-llm models add-adapter FILE.zip`")
    manifest = AdapterManifest.parse(json.loads(manifest_path.read_text(encoding="utf-8")), str(manifest_path))
    return InstalledAdapter(name, path, manifest)


def _model_on_disk(config: Config) -> tuple[set[str], Path | None]:
    """Names the configured model goes by, and its file or directory when it exists."""
    from hybrid_llm.llm.models import model_file, spec_for

    if config.model.path:
        path = Path(config.model.path).expanduser()
        names = {model_key(path.name if path.is_dir() else path.stem), model_key(config.model.name)}
        return names, path if path.exists() else None
    names = {model_key(config.model.name)}
    spec = spec_for(config.model.name)
    if spec is not None:
        names.add(model_key(spec.hf_repo))
    path = model_file(config.model.name)
    return names, path if path.exists() else None


def _shape_of(path: Path) -> tuple[dict, set[str]]:
    """Hidden size and layer count of a GGUF file or HF model dir, plus names found inside it."""
    if path.is_dir():
        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
        names = {model_key(config["_name_or_path"])} if config.get("_name_or_path") else set()
        return {"hidden_size": config.get("hidden_size"), "num_hidden_layers": config.get("num_hidden_layers")}, names
    from hybrid_llm.finetune.gguf_metadata import read_gguf_metadata

    fields = read_gguf_metadata(path)
    arch = fields.get("general.architecture")
    names = {model_key(fields["general.name"])} if isinstance(fields.get("general.name"), str) else set()
    shape = {"hidden_size": fields.get(f"{arch}.embedding_length"),
             "num_hidden_layers": fields.get(f"{arch}.block_count")}
    return shape, names


def check_base_model(manifest: AdapterManifest, config: Config) -> None:
    """Refuse, in one line, an adapter trained on a different model than the configured one."""
    names, path = _model_on_disk(config)
    shape: dict = {}
    if path is not None:
        shape, inside = _shape_of(path)
        names |= inside
    configured = config.model.path or config.model.name
    if model_key(manifest.base_model) not in names:
        raise UserError(
            f"adapter {manifest.name} was trained on {manifest.base_model}, but the configured model is "
            f"{configured}: switch model.name/model.path to that model, or retrain on this one"
        )
    for key, label in (("hidden_size", "hidden size"), ("num_hidden_layers", "layer count")):
        expected, actual = manifest.base_config.get(key), shape.get(key)
        if expected is not None and actual is not None and int(expected) != int(actual):
            raise UserError(
                f"adapter {manifest.name} expects {label} {expected} ({manifest.base_model}), but "
                f"{configured} has {actual}: it is a different model"
            )


def _open_zip(zip_path: Path) -> zipfile.ZipFile:
    if not zip_path.is_file():
        raise UserError(f"{zip_path}: no such file")
    try:
        return zipfile.ZipFile(zip_path)
    except zipfile.BadZipFile:
        raise UserError(f"{zip_path}: not a zip file (expected qwen-finetuned.zip from the notebook)") from None


def _read_manifest(archive: zipfile.ZipFile, zip_path: Path) -> AdapterManifest:
    missing = [name for name in (MANIFEST_FILE, *PEFT_FILES) if name not in archive.namelist()]
    if missing:
        raise UserError(f"{zip_path}: missing {', '.join(missing)}: not an adapter made by "
                        "notebooks/colab_training.ipynb")
    if sum(info.file_size for info in archive.infolist()) > _MAX_UNCOMPRESSED:
        raise UserError(f"{zip_path}: unpacks to more than 2 GB, which no LoRA adapter does")
    try:
        raw = json.loads(archive.read(MANIFEST_FILE))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{zip_path}: manifest.json is not valid JSON ({exc})") from None
    return AdapterManifest.parse(raw, str(zip_path))


def _verified(archive: zipfile.ZipFile, manifest: AdapterManifest, name: str, zip_path: Path) -> bytes:
    """A member's bytes, checked against the manifest's sha256 (read by name: no zip path is trusted)."""
    data = archive.read(name)
    expected = manifest.files.get(name)
    if expected and hashlib.sha256(data).hexdigest() != expected:
        raise UserError(f"{zip_path}: {name} does not match its checksum in manifest.json: the zip is damaged")
    return data


def add_adapter(zip_path: Path, config: Config, *, models_root: Path | None = None) -> InstalledAdapter:
    """Validate `zip_path` against the configured base model and install it for both engines.

    Installing a name that exists replaces it. Nothing under `models/adapters/` changes unless
    every step (checksums, base model, GGUF conversion) succeeded.
    """
    zip_path = Path(zip_path)
    with _open_zip(zip_path) as archive:
        manifest = _read_manifest(archive, zip_path)
        files = {name: _verified(archive, manifest, name, zip_path) for name in PEFT_FILES}
        files[MANIFEST_FILE] = archive.read(MANIFEST_FILE)
    check_base_model(manifest, config)
    try:
        check_supported(json.loads(files["adapter_config.json"]))
    except json.JSONDecodeError as exc:
        raise UserError(f"{zip_path}: adapter_config.json is not valid JSON ({exc})") from None
    root = adapters_dir(models_root)
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{manifest.name}-", dir=root))
    final = root / manifest.name
    try:
        for name, data in files.items():
            (staging / name).write_bytes(data)
        convert_peft_lora(staging, staging / GGUF_FILE)
        if final.exists():
            retired = Path(tempfile.mkdtemp(prefix=f".{manifest.name}-old-", dir=root))
            final.rename(retired / manifest.name)
            shutil.rmtree(retired)
        staging.rename(final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return InstalledAdapter(manifest.name, final, manifest)
