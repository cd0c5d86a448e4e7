"""Versioned model artifacts that are verified before a single byte is unpickled.

An artifact is a directory ``risk-model-<version>/`` with two files:

* ``model.joblib``: the pickled :class:`walletflow.risk.model.RiskModel` (joblib), with its usage
  section (:class:`walletflow.risk.usage_model.UsageModel`, ``RiskModel.usage``) inside it, so
  the one hash and the one signature cover the credit and the usage model alike;
* ``manifest.json``: format, version, created_at, feature names, labels, thresholds it was
  evaluated with, scikit-learn version, training summary, the SHA-256 of ``model.joblib`` and an
  HMAC-SHA256 ``signature`` over all of that with ``WALLETFLOW_RISK_MODEL_SIGNING_KEY``.

Unpickling runs arbitrary code, so :func:`load` trusts nothing until it has checked, in order:
the manifest's signature with the configured key (or, without a key, that the model file's hash
equals the one pinned in ``WALLETFLOW_RISK_MODEL_SHA256``), then the model file's SHA-256
against the manifest, then the scikit-learn version. Only then does joblib read the bytes that
were hashed (the same bytes in memory, so the file cannot change between check and use). Any
failure raises :class:`ArtifactRefused` and nothing is unpickled.

Artifacts made before the usage model existed (no ``usage_feature_names`` in the manifest, no
usage section in the model) still load: :func:`load` returns them with ``usage`` None, and the
worker then scores usage with the built-in usage model (trained from simulated periods at start)
and logs a warning to retrain (see :mod:`walletflow.risk.scoring`). A usage section whose
features differ from what this version computes is refused like the credit model's.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import io
import json
import os
from pathlib import Path
from typing import Any

import joblib
import sklearn

from walletflow.errors import WalletflowError
from walletflow.risk.features import MODEL_FEATURES
from walletflow.risk.model import RiskModel

FORMAT = "walletflow-risk-model"
FORMAT_VERSION = 1
MODEL_FILE = "model.joblib"
MANIFEST_FILE = "manifest.json"


class ArtifactRefused(WalletflowError):
    """The artifact failed a check; it was not unpickled."""

    code = "risk_model_refused"
    status = 422
    title = "Risk model artifact refused"


def _canonical(manifest: dict[str, Any]) -> bytes:
    body = {k: v for k, v in manifest.items() if k != "signature"}
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def sign(manifest: dict[str, Any], key: str) -> str:
    return hmac.new(key.encode(), _canonical(manifest), hashlib.sha256).hexdigest()


def save(
    model: RiskModel, out_dir: Path, signing_key: str | None, extra: dict[str, Any] | None = None,
    now: dt.datetime | None = None,
) -> Path:
    """Write a new artifact under ``out_dir``; returns its directory. Never overwrites one."""
    payload = io.BytesIO()
    joblib.dump(model, payload, compress=3)
    data = payload.getvalue()
    digest = hashlib.sha256(data).hexdigest()
    created = (now or dt.datetime.now(dt.UTC)).replace(microsecond=0)
    version = f"{created:%Y%m%dT%H%M%SZ}-{digest[:8]}"
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "version": version,
        "created_at": created.isoformat(),
        "feature_names": list(model.feature_names),
        "labels": list(model.labels),
        "sklearn_version": sklearn.__version__,
        "model_file": MODEL_FILE,
        "sha256": digest,
        "training": model.training,
        **(
            {"usage_feature_names": list(model.usage.feature_names), "usage_labels": list(model.usage.labels),
             "usage_training": model.usage.training}
            if model.usage is not None else {}
        ),
        **(extra or {}),
    }
    if signing_key:
        manifest["signature"] = sign(manifest, signing_key)
    target = out_dir / f"risk-model-{version}"
    target.mkdir(parents=True, exist_ok=False)
    (target / MODEL_FILE).write_bytes(data)
    (target / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return target


def read_manifest(path: Path) -> dict[str, Any]:
    try:
        manifest = json.loads((path / MANIFEST_FILE).read_text())
    except (OSError, ValueError) as exc:
        raise ArtifactRefused(f"{path / MANIFEST_FILE} is missing or not JSON") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ArtifactRefused(f"{path} is not a {FORMAT} artifact")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise ArtifactRefused(f"artifact format {manifest.get('format_version')} is not {FORMAT_VERSION}")
    return manifest


def load(path: Path | str, signing_key: str | None = None, pinned_sha256: str | None = None) -> tuple[RiskModel, dict[str, Any]]:
    """Verify and load an artifact; returns the model and its manifest.

    Raises:
        ArtifactRefused: no way to trust it was configured, the signature or a hash does not
            match, or it was made with another scikit-learn version.
    """
    path = Path(path)
    manifest = read_manifest(path)
    if signing_key:
        given = manifest.get("signature")
        if not isinstance(given, str) or not hmac.compare_digest(given, sign(manifest, signing_key)):
            raise ArtifactRefused(f"{path}: the manifest signature does not match the signing key")
    elif pinned_sha256:
        if not hmac.compare_digest(str(manifest.get("sha256", "")), pinned_sha256.lower()):
            raise ArtifactRefused(f"{path}: the model hash is not the pinned WALLETFLOW_RISK_MODEL_SHA256")
    else:
        raise ArtifactRefused(
            "refusing to load a model nobody vouched for: set WALLETFLOW_RISK_MODEL_SIGNING_KEY "
            "(the key it was signed with) or WALLETFLOW_RISK_MODEL_SHA256 (its model hash)"
        )
    name = manifest.get("model_file", MODEL_FILE)
    if not isinstance(name, str) or os.path.basename(name) != name:
        raise ArtifactRefused(f"{path}: model_file must be a file name inside the artifact")
    try:
        data = (path / name).read_bytes()
    except OSError as exc:
        raise ArtifactRefused(f"{path / name} cannot be read") from exc
    if not hmac.compare_digest(hashlib.sha256(data).hexdigest(), str(manifest.get("sha256", ""))):
        raise ArtifactRefused(f"{path / name} does not match the SHA-256 in its manifest")
    made_with = str(manifest.get("sklearn_version", ""))
    if made_with.split(".")[:2] != sklearn.__version__.split(".")[:2]:
        raise ArtifactRefused(
            f"{path} was trained with scikit-learn {made_with}; this process has {sklearn.__version__}: retrain it"
        )
    model = joblib.load(io.BytesIO(data))  # the verified bytes, not the file again
    if not isinstance(model, RiskModel):
        raise ArtifactRefused(f"{path} does not hold a RiskModel")
    if list(model.feature_names) != list(manifest.get("feature_names", [])):
        raise ArtifactRefused(f"{path}: the model's features differ from its manifest")
    if list(model.feature_names) != list(MODEL_FEATURES):
        raise ArtifactRefused(f"{path} was trained on other features than this version computes: retrain it")
    usage = getattr(model, "usage", None)
    if usage is not None:
        from walletflow.risk.usage_model import USAGE_MODEL_FEATURES, UsageModel

        if not isinstance(usage, UsageModel):
            raise ArtifactRefused(f"{path}: the usage section is not a UsageModel")
        if list(usage.feature_names) != list(manifest.get("usage_feature_names", [])):
            raise ArtifactRefused(f"{path}: the usage model's features differ from its manifest")
        if list(usage.feature_names) != list(USAGE_MODEL_FEATURES):
            raise ArtifactRefused(f"{path}: the usage model was trained on other features than this version computes: retrain it")
    return model.prepare(), manifest
