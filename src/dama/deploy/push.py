"""Upload a run's adapter or an export to the Hugging Face Hub with ``huggingface_hub``.

What goes up is decided offline (:func:`push_payload`: file name in the repo -> bytes), so it can be
checked without the network (``dama push --dry-run``, and the tests): for a run, its adapter/ (or
model/) folder with the model card, ``adapter_config.json`` pointing at the base model's Hub id
instead of the local folder it was trained from, and the run's own records under ``dama/`` (config,
results, metrics); for an export, the folder as it is, with its card.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from dama.errors import DamaError

RUN_RECORDS = ("config.json", "results.json", "metrics.jsonl")  # the run's own files, uploaded under dama/


def push_payload(source: str | Path) -> tuple[str, dict[str, bytes]]:
    """(kind, {path in the repo: content}) for a run folder (kind "adapter"/"model") or an export ("hf",
    "ct2", "ggml")."""
    from dama.deploy.card import CARD, base_model_id, run_card
    from dama.deploy.export import META
    from dama.runs import RunFolder

    source = Path(source)
    if not source.is_dir():
        raise DamaError(f"{source}: not found; give a finished `dama train` run folder or a `dama export` folder")
    run = RunFolder(source)
    files: dict[str, bytes] = {}
    if run.config_path.is_file() and RunFolder.is_run_config(run.read_config()):
        if not run.is_finished():
            raise DamaError(f"{source}: the run has not finished (no {run.RESULTS}); push it once it has")
        kind, folder = ("adapter", run.adapter_path) if run.adapter_path.is_dir() else ("model", run.model_path)
        if not folder.is_dir():
            raise DamaError(f"{source}: no {run.ADAPTER}/ or {run.MODEL}/ folder to upload")
        for f in sorted(p for p in folder.rglob("*") if p.is_file()):
            files[f.relative_to(folder).as_posix()] = f.read_bytes()
        if kind == "adapter" and "adapter_config.json" in files:
            ac = json.loads(files["adapter_config.json"])
            hub_id = base_model_id(run.read_config().get("model"))
            if hub_id:  # the local folder it was trained from means nothing on the Hub
                ac["base_model_name_or_path"] = hub_id
                files["adapter_config.json"] = (json.dumps(ac, indent=2, sort_keys=True) + "\n").encode()
        if CARD not in files or b"\ndama:" not in files[CARD]:  # a run from before cards, or PEFT's placeholder
            files[CARD] = str(run_card(run, kind)).encode()
        for name in RUN_RECORDS:
            if (source / name).is_file():
                files[f"dama/{name}"] = (source / name).read_bytes()
        return kind, files
    meta_path = source / META
    if not meta_path.is_file():
        raise DamaError(f"{source}: neither a dama run (no run config.json) nor a dama export (no {META})")
    meta = json.loads(meta_path.read_text())
    for f in sorted(p for p in source.rglob("*") if p.is_file()):
        files[f.relative_to(source).as_posix()] = f.read_bytes()
    if CARD not in files and meta.get("run") and RunFolder(meta["run"]).config_path.is_file():
        files[CARD] = str(run_card(RunFolder(meta["run"]), meta.get("format", "hf"), export=meta)).encode()
    return str(meta.get("format", "hf")), files


def push(source: str | Path, repo_id: str, private: bool = False, token: str | None = None,
         commit_message: str | None = None, log=print) -> str:
    """Create ``repo_id`` (if needed) and upload :func:`push_payload` of ``source`` as one commit; returns
    the commit URL. Needs the network and a write token (``huggingface-cli login`` or ``HF_TOKEN``)."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    kind, files = push_payload(source)
    api = HfApi(token=token)
    with tempfile.TemporaryDirectory(prefix="dama-push-") as tmp:
        for name, data in files.items():
            p = Path(tmp) / name
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(data)
        try:
            api.create_repo(repo_id, private=private, exist_ok=True)
            info = api.upload_folder(folder_path=tmp, repo_id=repo_id,
                                     commit_message=commit_message or f"dama: upload {kind} from {Path(source).name}")
        except HfHubHTTPError as e:
            raise DamaError(f"could not push to {repo_id}: {str(e).splitlines()[0]} (log in with `huggingface-cli "
                            "login` or set HF_TOKEN to a token with write access)") from None
        except OSError as e:  # requests' ConnectionError is an OSError
            raise DamaError(f"could not reach the Hugging Face Hub to push {repo_id}: {e}. Pushing needs the network"
                            "; `dama push --dry-run` shows what would be uploaded") from None
    log(f"pushed {len(files)} files ({kind}) to https://huggingface.co/{repo_id}")
    return str(getattr(info, "commit_url", info))


__all__ = ["RUN_RECORDS", "push", "push_payload"]
