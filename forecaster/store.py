"""A versioned store of trained models whose files are data, never code.

A store is a directory (a local path, or any fsspec URL such as ``s3://bucket/models``).
Each training run writes a new version beside the old ones and then points ``LATEST`` at
it, so a crash half-way through a save leaves the previous version in force::

    DIR/LATEST                          the version in force, e.g. 20261122T0930Z-3f9a1c2e
    DIR/20261122T0930Z-3f9a1c2e/
        manifest.json                   metadata and the SHA-256 of every other file
        model.json                      parameters and fitted state, as plain JSON
        arrays.npz                      the state's numeric arrays (loaded without pickle)

``model.json`` holds every model of the run (several when ``--model auto`` chose different
models for different series): each as its class name, taken from an allow-list of this
package's forecasters, its parameters and its fitted attributes (those ending in ``_``).
Arrays go to ``arrays.npz`` and are read with ``allow_pickle=False``; Prophet models use
Prophet's own JSON serialisation. Loading therefore never executes code from the files.

Loading refuses, with a :class:`StoreError` that says why: a missing or unparsable file, a
checksum that does not match (tampered or truncated), a format newer than this code, a
class outside the allow-list, and, when a signing key is configured, a missing or wrong
signature. A refused artefact never yields a forecast.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import logging
import os
import platform
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata as importlib_metadata
from typing import Any

import fsspec
import numpy as np
import pandas as pd

from forecaster.frames import validate_series
from forecaster.models import (
    ConformalCalibrator,
    GradientBoostingForecaster,
    LastValue,
    LinearForecaster,
    ProphetForecaster,
    SeasonalNaive,
    SeasonalQuantile,
)

FORMAT = 1
"""Version of the file layout; bumped on any change old code could not read."""

MODEL_CLASSES: dict[str, type] = {
    cls.__name__: cls
    for cls in (
        SeasonalNaive,
        SeasonalQuantile,
        LastValue,
        GradientBoostingForecaster,
        LinearForecaster,
        ProphetForecaster,
        ConformalCalibrator,
    )
}
"""The only classes a stored file may name."""

RESERVED = frozenset(
    {
        "format",
        "version",
        "created_at",
        "data_fingerprint",
        "models",
        "libraries",
        "files",
        "signature",
    }
)
"""Manifest keys :func:`save` writes itself, which its ``metadata`` may not set."""

KEY_ENV = "SURGECAST_MODEL_KEY"
"""Environment variable with a secret that signs manifests (optional)."""

logging.getLogger("prophet.plot").setLevel(logging.CRITICAL)  # "Importing plotly failed"

LIBRARIES = ("surgecast", "numpy", "pandas", "scikit-learn", "prophet", "holidays")


class StoreError(Exception):
    """A stored model that cannot be trusted or read; the message says which and why."""


@dataclass(frozen=True)
class StoredModels:
    """What :func:`load` returns: the fitted models by name and the manifest."""

    models: dict[str, Any]
    manifest: dict[str, Any]

    @property
    def version(self) -> str:
        return str(self.manifest["version"])

    @property
    def step(self) -> pd.Timedelta | None:
        """The series' interval: ``surgecast train`` records it in the manifest; a store
        saved from Python (``save``) may not, and its fitted models then tell it. ``None``
        when neither does."""
        if "step" in self.manifest:
            return pd.Timedelta(str(self.manifest["step"]))
        known = [pd.Timedelta(m.step_) for m in self.models.values() if hasattr(m, "step_")]
        return min(known, default=None)


# --- encoding fitted state as JSON + arrays -------------------------------------------------


def encode(value: Any, arrays: dict[str, np.ndarray]) -> Any:
    """``value`` as JSON-able data; arrays are moved into ``arrays`` and referenced by key.

    Tags starting with ``$`` mark what plain JSON cannot say (tuples, non-string keys,
    timestamps, non-finite floats, arrays, models). Anything else is refused, so a model
    that grows an attribute of a new type fails loudly at save, not silently at load.
    """
    if isinstance(value, np.generic):
        return encode(value.item(), arrays)
    if value is None or isinstance(value, bool | str | int):
        return value
    if isinstance(value, float):
        return value if np.isfinite(value) else {"$float": repr(value)}
    if isinstance(value, np.ndarray):
        if value.dtype == object:
            raise TypeError("cannot store an object array")
        key = f"a{len(arrays)}"
        arrays[key] = value
        return {"$array": key}
    if isinstance(value, pd.Timestamp):
        return {"$timestamp": value.isoformat()}
    if isinstance(value, pd.Timedelta):
        return {"$timedelta": int(value.value)}
    if isinstance(value, tuple):
        return {"$tuple": [encode(v, arrays) for v in value]}
    if isinstance(value, list):
        return [encode(v, arrays) for v in value]
    if isinstance(value, dict):
        if all(isinstance(k, str) and not k.startswith("$") for k in value):
            return {k: encode(v, arrays) for k, v in value.items()}
        return {"$dict": [[encode(k, arrays), encode(v, arrays)] for k, v in value.items()]}
    if MODEL_CLASSES.get(type(value).__name__) is type(value):
        return encode_model(value, arrays)
    if type(value).__module__.startswith("prophet"):
        from prophet.serialize import model_to_json

        return {"$prophet": model_to_json(value)}
    raise TypeError(f"cannot store a value of type {type(value).__name__}")


def encode_model(model: Any, arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    """A forecaster as its class name, parameters and fitted attributes."""
    fitted = {k: v for k, v in vars(model).items() if k.endswith("_") and not k.startswith("_")}
    return {
        "$model": type(model).__name__,
        "params": encode(model.get_params(deep=False), arrays),
        "state": encode(fitted, arrays),
    }


def decode(value: Any, arrays: dict[str, np.ndarray]) -> Any:
    """The inverse of :func:`encode`; unknown tags and classes raise :class:`StoreError`."""
    if isinstance(value, list):
        return [decode(v, arrays) for v in value]
    if not isinstance(value, dict):
        return value
    tags = [k for k in value if k.startswith("$")]
    if not tags:
        return {k: decode(v, arrays) for k, v in value.items()}
    tag = tags[0]
    body = value[tag]
    if tag == "$float":
        return float(body)
    if tag == "$array":
        if body not in arrays:
            raise StoreError(f"model.json refers to array {body!r}, which arrays.npz lacks")
        return arrays[body]
    if tag == "$timestamp":
        return pd.Timestamp(body)
    if tag == "$timedelta":
        return pd.Timedelta(int(body))
    if tag == "$tuple":
        return tuple(decode(v, arrays) for v in body)
    if tag == "$dict":
        return {decode(k, arrays): decode(v, arrays) for k, v in body}
    if tag == "$model":
        return decode_model(value, arrays)
    if tag == "$prophet":
        from prophet.serialize import model_from_json

        return model_from_json(body)
    raise StoreError(f"unknown tag {tag!r} in model.json")


def decode_model(value: Any, arrays: dict[str, np.ndarray]) -> Any:
    if not isinstance(value, dict) or not isinstance(value.get("$model"), str):
        raise StoreError("model.json holds something that is not a model")
    name = value["$model"]
    if name not in MODEL_CLASSES:
        raise StoreError(f"model class {name!r} is not one this version of surgecast can load")
    params, fitted = decode(value.get("params"), arrays), decode(value.get("state"), arrays)
    if not isinstance(params, dict) or not isinstance(fitted, dict):
        raise StoreError(f"{name} in model.json lacks its parameters or its fitted state")
    try:
        model = MODEL_CLASSES[name](**params)
    except TypeError as exc:
        raise StoreError(f"{name} parameters do not fit this version: {exc}") from exc
    for key, state in fitted.items():
        # Only what encode_model() writes: a fitted attribute, never a method or __dict__.
        if not (isinstance(key, str) and key.endswith("_") and not key.startswith("_")):
            raise StoreError(f"{name} in model.json sets {key!r}, which is no fitted attribute")
        setattr(model, key, state)
    return model


# --- files ------------------------------------------------------------------------------------


def fingerprint(frame: pd.DataFrame) -> str:
    """SHA-256 of a series frame's content, so a model names the exact data it learned."""
    canonical = validate_series(frame)
    hashed = pd.util.hash_pandas_object(canonical[["unique_id", "ds", "y"]], index=False)
    return hashlib.sha256(hashed.to_numpy().tobytes()).hexdigest()


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            versions[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            continue
    return versions


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _signature(manifest: dict[str, Any], key: str) -> str:
    unsigned = {k: v for k, v in manifest.items() if k != "signature"}
    body = json.dumps(unsigned, sort_keys=True, separators=(",", ":")).encode()
    return hmac.new(key.encode(), body, hashlib.sha256).hexdigest()


def save(
    models: dict[str, Any],
    url: str,
    metadata: dict[str, Any],
    data_fingerprint: str,
    now: datetime,
    key: str | None = None,
) -> str:
    """Write a new version of ``models`` under ``url`` and make it the one in force.

    ``metadata`` (series, training window, backtest scores, settings) goes into the
    manifest as given, and must be JSON-able. ``now`` names the version and is recorded as
    ``created_at`` (naive: UTC). ``key`` (default: ``$SURGECAST_MODEL_KEY``)
    signs the manifest. Returns the version.
    """
    key = key if key is not None else os.environ.get(KEY_ENV)
    # Checked before a version folder is claimed, which would otherwise stay behind empty.
    # A key the store writes itself replaced it: {"version": "v2"} named a version that
    # --version could not find, {"format": 2} one that load() refused.
    taken = sorted(set(metadata) & RESERVED)
    if taken:
        raise ValueError(f"metadata may not set {', '.join(taken)}: the store writes them")
    json.dumps(_plain(metadata), allow_nan=False)  # TypeError for what JSON cannot hold
    fs, root = fsspec.core.url_to_fs(url)
    root = root.rstrip("/")
    arrays: dict[str, np.ndarray] = {}
    state = {name: encode_model(model, arrays) for name, model in models.items()}
    files = {"model.json": json.dumps(state, allow_nan=False).encode()}
    buffer = io.BytesIO()
    # allow_pickle=False: an object array would fail here rather than be pickled (encode()
    # rejects them already); spelled out, it also tells mypy no ``**arrays`` key is meant.
    np.savez_compressed(buffer, allow_pickle=False, **arrays)
    files["arrays.npz"] = buffer.getvalue()
    # A naive ``now`` is UTC, as every time in surgecast; astimezone() took it for the
    # machine's local time, and the version and created_at moved by the UTC offset.
    now = now.replace(tzinfo=UTC) if now.tzinfo is None else now.astimezone(UTC)
    version = _claim(fs, root, f"{now:%Y%m%dT%H%M%SZ}-{data_fingerprint[:8]}")
    manifest = {
        "format": FORMAT,
        "version": version,
        "created_at": now.isoformat(),
        "data_fingerprint": data_fingerprint,
        "models": {
            name: {"class": type(model).__name__, "params": _describe(model.get_params())}
            for name, model in models.items()
        },
        **metadata,
        "libraries": library_versions(),
        "files": {name: _sha256(data) for name, data in files.items()},
    }
    manifest = _plain(manifest)
    if key:
        manifest["signature"] = _signature(manifest, key)
    text = json.dumps(manifest, indent=2, allow_nan=False)
    folder = f"{root}/{version}"
    for name, data in files.items():
        fs.pipe_file(f"{folder}/{name}", data)
    _replace(fs, f"{folder}/manifest.json", text.encode())
    _replace(fs, f"{root}/LATEST", f"{version}\n".encode())
    return version


def _claim(fs: Any, root: str, name: str) -> str:
    """A version folder no other save has: ``name``, else ``name.2``, ``name.3``...

    Two saves of the same data in the same second (a script retraining with another model,
    two processes) named the same version, and the second rewrote the first's files in
    place: the older version was lost, and a reader of the one in force could meet one
    file of each. On a local disk the folder is created with ``mkdir``, which only one of
    two racing processes wins; an object store has no folders, and there a name is taken
    once its folder holds a file.
    """
    fs.makedirs(root, exist_ok=True)
    n = 1
    while True:
        version = name if n == 1 else f"{name}.{n}"
        folder = f"{root}/{version}"
        try:
            if not fs.exists(folder):
                fs.mkdir(folder, create_parents=False)
                return version
        except FileExistsError:
            pass  # another save created it between the two calls
        n += 1


def _replace(fs: Any, path: str, data: bytes) -> None:
    """Write ``path`` whole or not at all: written in place, a file is empty for a moment
    (which a controller loading ``LATEST`` then met as "version '' not found"), and stays
    so after a crash. A rename replaces it at once on a disk; an object store's upload is
    whole anyway."""
    temporary = f"{path}.{uuid.uuid4().hex}.tmp"
    fs.pipe_file(temporary, data)
    fs.mv(temporary, path)


def _plain(value: Any) -> Any:
    """Metadata as strict JSON: NaN and infinities (an undefined score) become null,
    NumPy scalars Python ones, timestamps ISO strings."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    if isinstance(value, pd.Timestamp | datetime):
        return value.isoformat()
    return value


def _describe(params: dict[str, Any]) -> dict[str, Any]:
    """Parameters for people reading the manifest (nested models by their repr)."""
    return {
        k: v if v is None or isinstance(v, bool | int | float | str) else repr(v)
        for k, v in params.items()
    }


def versions(url: str) -> list[str]:
    """Every version stored under ``url``, oldest first."""
    fs, root = fsspec.core.url_to_fs(url)
    if not fs.exists(root):
        return []
    names = [p.rstrip("/").rsplit("/", 1)[-1] for p in fs.ls(root, detail=False)]
    stored = [n for n in names if fs.exists(f"{root.rstrip('/')}/{n}/manifest.json")]
    return sorted(stored, key=_order)


def _order(version: str) -> tuple[str, int]:
    """Sort key of a version: its name, then the number :func:`_claim` added (``.10``
    after ``.9``, which text order puts before ``.2``)."""
    name, dot, n = version.rpartition(".")
    return (name, int(n)) if dot and n.isdigit() else (version, 1)


def manifest(url: str, version: str | None = None) -> dict[str, Any]:
    """The manifest of ``version`` (default: the one in ``LATEST``) without loading its
    models, which may be large; :class:`StoreError` as from :func:`load`, but neither the
    signature nor the model files are checked."""
    fs, root = fsspec.core.url_to_fs(url)
    root = root.rstrip("/")
    version = _resolve(fs, root, url, version)
    return _read_manifest(fs, f"{root}/{version}", url, version)


def load(url: str, version: str | None = None, key: str | None = None) -> StoredModels:
    """The models of ``version`` (default: the one in ``LATEST``), after every check."""
    key = key if key is not None else os.environ.get(KEY_ENV)
    fs, root = fsspec.core.url_to_fs(url)
    root = root.rstrip("/")
    version = _resolve(fs, root, url, version)
    folder = f"{root}/{version}"
    manifest = _read_manifest(fs, folder, url, version)
    signature = str(manifest.get("signature", "")).encode()  # bytes: any text compares
    if key and not hmac.compare_digest(signature, _signature(manifest, key).encode()):
        raise StoreError(f"{url} {version}: the manifest's signature does not match the key")
    files = {}
    for name, digest in manifest["files"].items():
        try:
            files[name] = fs.cat_file(f"{folder}/{name}")
        except FileNotFoundError:
            raise StoreError(f"{url} {version}: {name} is missing") from None
        if _sha256(files[name]) != digest:
            raise StoreError(
                f"{url} {version}: {name} does not match its checksum (modified or truncated)"
            )
    try:
        with np.load(io.BytesIO(files["arrays.npz"]), allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
    except Exception as exc:  # zipfile, zlib and NumPy's header parser: many kinds
        # A damaged archive raises BadZipFile, zlib.error, EOFError, TokenError or
        # NotImplementedError; escaping load(), they were a traceback instead of a refusal.
        raise StoreError(f"{url} {version}: arrays.npz is unreadable: {exc!r}") from exc
    try:
        state = json.loads(files["model.json"])
        if not isinstance(state, dict):
            raise StoreError(f"{url} {version}: model.json is not a set of models by name")
        models = {name: decode_model(value, arrays) for name, value in state.items()}
    except (ValueError, KeyError, OSError, TypeError) as exc:
        # TypeError: a tag whose body has the wrong shape ({"$dict": 3}) in an edited file.
        raise StoreError(f"{url} {version}: unreadable model files: {exc}") from exc
    return StoredModels(models, manifest)


def _resolve(fs: Any, root: str, url: str, version: str | None) -> str:
    """``version``, or the one ``LATEST`` names, once it is known to be a name in ``root``."""
    if version is None:
        try:
            version = fs.cat_file(f"{root}/LATEST").decode().strip()
        except FileNotFoundError:
            raise StoreError(f"{url}: no model store here (no LATEST file)") from None
    if version in ("", ".", "..") or "/" in version or "\\" in version:
        # "../other/…" in --version or in an edited LATEST loaded another store's models,
        # and reported them as a version of this one.
        raise StoreError(f"{url}: {version!r} is not the name of a version in this store")
    return version


def _read_manifest(fs: Any, folder: str, url: str, version: str) -> dict[str, Any]:
    try:
        manifest = json.loads(fs.cat_file(f"{folder}/manifest.json"))
    except FileNotFoundError:
        raise StoreError(f"{url}: version {version} not found") from None
    except ValueError as exc:
        raise StoreError(f"{url} {version}: manifest.json is not valid JSON: {exc}") from exc
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), dict):
        raise StoreError(f"{url} {version}: manifest.json lacks the list of files")
    if not isinstance(manifest.get("version"), str):
        raise StoreError(f"{url} {version}: manifest.json lacks its version")
    if manifest.get("format") != FORMAT:
        raise StoreError(
            f"{url} {version}: stored in format {manifest.get('format')!r}; this version of"
            f" surgecast reads format {FORMAT} (retrain, or use the version that wrote it)"
        )
    if set(manifest["files"]) != {"model.json", "arrays.npz"}:
        raise StoreError(f"{url} {version}: manifest lists unexpected files")
    return manifest
