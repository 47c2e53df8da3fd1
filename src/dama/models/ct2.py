"""Read and write CTranslate2 ``model.bin`` files and map Whisper specs to Hugging Face.

faster-whisper ships Whisper as a CTranslate2 model directory (``model.bin``,
``tokenizer.json``, ``config.json``). We parse the binary format ourselves (it is
small and documented in ``docs/models.md``) so conversion needs no ``ctranslate2``
install; the ``ctranslate2`` package is only used by tests to cross-check us.

Layout (binary version 6, little-endian): u32 version, string spec name, u32 spec
revision, u32 variable count, then per variable: string name, u8 rank, rank x u32
dims, u8 dtype, u32 byte count, raw bytes; then u32 alias count and (alias, target)
string pairs. A string is a u16 length (with trailing NUL) then the bytes.
"""

from __future__ import annotations

import io
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from dama.errors import ModelError

_DTYPES = {
    0: np.dtype("<f4"),
    1: np.dtype("i1"),
    2: np.dtype("<i2"),
    3: np.dtype("<i4"),
    4: np.dtype("<f2"),
    5: np.dtype("<u2"),  # bfloat16: raw bits, widened on conversion
}
_DTYPE_CODES = {np.dtype("<f4"): 0, np.dtype("i1"): 1, np.dtype("<i2"): 2, np.dtype("<i4"): 3, np.dtype("<f2"): 4}
SUPPORTED_BINARY_VERSION = 6


@dataclass
class CT2Model:
    """The raw content of a ``model.bin``: named arrays plus aliases (tied weights)."""

    spec: str
    revision: int
    variables: dict[str, np.ndarray]
    aliases: dict[str, str] = field(default_factory=dict)

    def get(self, name: str) -> np.ndarray:
        name = self.aliases.get(name, name)
        if name not in self.variables:
            raise ModelError(f"model.bin has no variable {name!r}; is this a Whisper CTranslate2 model?")
        return self.variables[name]

    def scalar(self, name: str, default: int | None = None) -> int | None:
        if name not in self.variables:
            return default
        return int(self.variables[name].reshape(-1)[0])


class _Reader:
    def __init__(self, data: bytes, path: Path):
        self.buf = io.BytesIO(data)
        self.size = len(data)
        self.path = path

    def read(self, n: int) -> bytes:
        b = self.buf.read(n)
        if len(b) != n:
            raise ModelError(
                f"{self.path}: truncated CTranslate2 model (wanted {n} bytes at offset "
                f"{self.buf.tell() - len(b)} of {self.size}). Re-download or re-assemble the file."
            )
        return b

    def u8(self) -> int:
        return self.read(1)[0]

    def u16(self) -> int:
        return struct.unpack("<H", self.read(2))[0]

    def u32(self) -> int:
        return struct.unpack("<I", self.read(4))[0]

    def string(self) -> str:
        n = self.u16()
        return self.read(n).rstrip(b"\0").decode("utf-8")


def read_ct2(path: str | Path) -> CT2Model:
    """Parse a CTranslate2 ``model.bin`` into numpy arrays (no ``ctranslate2`` needed)."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: no such model file")
    r = _Reader(path.read_bytes(), path)
    version = r.u32()
    if version != SUPPORTED_BINARY_VERSION:
        raise ModelError(
            f"{path}: CTranslate2 binary version {version}; dama reads version {SUPPORTED_BINARY_VERSION}. "
            "Re-convert the model with a current ctranslate2."
        )
    spec = r.string()
    revision = r.u32()
    variables: dict[str, np.ndarray] = {}
    for _ in range(r.u32()):
        name = r.string()
        rank = r.u8()
        dims = [r.u32() for _ in range(rank)]
        code = r.u8()
        if code not in _DTYPES:
            raise ModelError(f"{path}: variable {name!r} has unknown dtype code {code}")
        nbytes = r.u32()
        raw = r.read(nbytes)
        arr = np.frombuffer(raw, dtype=_DTYPES[code])
        if code == 5:  # bfloat16 -> float32 by shifting the bits into the high half
            arr = (arr.astype(np.uint32) << 16).view(np.float32)
        expected = int(np.prod(dims)) if dims else 1
        if arr.size != expected:
            raise ModelError(f"{path}: variable {name!r} holds {arr.size} values, its shape {dims} needs {expected}")
        variables[name] = arr.reshape(dims)
    aliases = {}
    for _ in range(r.u32()):
        alias = r.string()
        aliases[alias] = r.string()
    if r.buf.tell() != r.size:
        raise ModelError(f"{path}: {r.size - r.buf.tell()} unexpected trailing bytes; the file may be corrupt")
    return CT2Model(spec, revision, variables, aliases)


def write_ct2(path: str | Path | io.BufferedIOBase, model: CT2Model) -> None:
    """Write ``model`` in the binary format ``read_ct2`` (and ``ctranslate2``) reads, to a file or to a
    binary stream (e.g. ``io.BytesIO``, for ``ctranslate2``'s in-memory ``files=``)."""

    def string(s: str) -> bytes:
        b = s.encode("utf-8") + b"\0"
        return struct.pack("<H", len(b)) + b

    out = [struct.pack("<I", SUPPORTED_BINARY_VERSION), string(model.spec), struct.pack("<I", model.revision)]
    out.append(struct.pack("<I", len(model.variables)))
    for name, arr in model.variables.items():
        arr = np.require(arr, requirements="C")  # (ascontiguousarray would turn scalars into 1-d)
        if arr.dtype not in _DTYPE_CODES:
            raise ModelError(f"cannot write variable {name!r} of dtype {arr.dtype}")
        out += [string(name), struct.pack("<B", arr.ndim), *(struct.pack("<I", d) for d in arr.shape)]
        out += [struct.pack("<B", _DTYPE_CODES[arr.dtype]), struct.pack("<I", arr.nbytes), arr.tobytes()]
    out.append(struct.pack("<I", len(model.aliases)))
    for alias, target in model.aliases.items():
        out += [string(alias), string(target)]
    if hasattr(path, "write"):
        path.write(b"".join(out))
    else:
        Path(path).write_bytes(b"".join(out))


# ---------------------------------------------------------------------------
# Whisper: CTranslate2 names <-> Hugging Face WhisperForConditionalGeneration names
# ---------------------------------------------------------------------------

_LN = {"gamma": "weight", "beta": "bias"}


def _count_layers(ct: CT2Model, stack: str) -> int:
    pat = re.compile(rf"^{stack}/layer_(\d+)/")
    ids = {int(m.group(1)) for n in ct.variables if (m := pat.match(n))}
    if not ids:
        raise ModelError(f"model.bin has no {stack} layers; is this a Whisper CTranslate2 model?")
    return max(ids) + 1


def whisper_config_from_ct2(ct: CT2Model) -> dict:
    """Architecture hyper-parameters recovered from tensor shapes (and scalars when present)."""
    if ct.spec != "WhisperSpec":
        raise ModelError(f"model.bin holds a {ct.spec}, not a WhisperSpec; dama adapts Whisper models only")
    d_model = ct.get("decoder/embeddings/weight").shape[1]
    enc_ffn = ct.get("encoder/layer_0/ffn/linear_0/weight").shape[0]
    dec_ffn = ct.get("decoder/layer_0/ffn/linear_0/weight").shape[0]
    # Mirror B of whisper-base omits some scalars; every Whisper size uses 64-dim heads.
    return {
        "vocab_size": ct.get("decoder/embeddings/weight").shape[0],
        "num_mel_bins": ct.get("encoder/conv1/weight").shape[1],
        "d_model": d_model,
        "encoder_layers": _count_layers(ct, "encoder"),
        "decoder_layers": _count_layers(ct, "decoder"),
        "encoder_attention_heads": ct.scalar("encoder/num_heads", d_model // 64),
        "decoder_attention_heads": ct.scalar("decoder/num_heads", d_model // 64),
        "encoder_ffn_dim": enc_ffn,
        "decoder_ffn_dim": dec_ffn,
        "max_source_positions": ct.get("encoder/position_encodings/encodings").shape[0],
        "max_target_positions": ct.get("decoder/position_encodings/encodings").shape[0],
    }


def _split(arr: np.ndarray, parts: int) -> list[np.ndarray]:
    if arr.shape[0] % parts:
        raise ModelError(f"cannot split fused projection of shape {arr.shape} into {parts}")
    return np.split(arr, parts, axis=0)


def _name_map(stack: str, layers: int):
    """Each Hugging Face Whisper module of one stack and the CTranslate2 variable it is stored as, in
    both directions (:func:`ct2_to_hf_state_dict`, :func:`hf_to_ct2`): ``(kind, hf, ct2)`` with kind
    "ln" (a layer norm), "lin" (a linear or conv layer) or "fused" (several HF projections stacked
    into one CT2 matrix; ``hf`` is then their list). The convolutions are the encoder's only."""
    p = f"model.{stack}"
    yield "ln", f"{p}.layer_norm", f"{stack}/layer_norm"
    for i in range(layers):
        hf, ct = f"{p}.layers.{i}", f"{stack}/layer_{i}"
        yield "ln", f"{hf}.self_attn_layer_norm", f"{ct}/self_attention/layer_norm"
        yield "fused", [f"{hf}.self_attn.{x}_proj" for x in "qkv"], f"{ct}/self_attention/linear_0"
        yield "lin", f"{hf}.self_attn.out_proj", f"{ct}/self_attention/linear_1"
        if stack == "decoder":
            yield "ln", f"{hf}.encoder_attn_layer_norm", f"{ct}/attention/layer_norm"
            yield "lin", f"{hf}.encoder_attn.q_proj", f"{ct}/attention/linear_0"
            yield "fused", [f"{hf}.encoder_attn.k_proj", f"{hf}.encoder_attn.v_proj"], f"{ct}/attention/linear_1"
            yield "lin", f"{hf}.encoder_attn.out_proj", f"{ct}/attention/linear_2"
        yield "ln", f"{hf}.final_layer_norm", f"{ct}/ffn/layer_norm"
        yield "lin", f"{hf}.fc1", f"{ct}/ffn/linear_0"
        yield "lin", f"{hf}.fc2", f"{ct}/ffn/linear_1"
    if stack == "encoder":
        for c in ("conv1", "conv2"):
            yield "lin", f"{p}.{c}", f"{stack}/{c}"


def ct2_to_hf_state_dict(ct: CT2Model) -> dict[str, torch.Tensor]:
    """Rename and un-fuse CTranslate2 Whisper tensors into a HF ``state_dict`` (float32)."""
    sd: dict[str, np.ndarray] = {}

    def ln(dst: str, src: str) -> None:
        for a, b in _LN.items():
            sd[f"{dst}.{b}"] = ct.get(f"{src}/{a}")

    def lin(dst: str, src: str) -> None:
        sd[f"{dst}.weight"] = ct.get(f"{src}/weight")
        sd[f"{dst}.bias"] = ct.get(f"{src}/bias")

    def fused(dsts: list[str], src: str) -> None:
        ws = _split(ct.get(f"{src}/weight"), len(dsts))
        bs = _split(ct.get(f"{src}/bias"), len(dsts))
        for dst, w, b in zip(dsts, ws, bs):
            sd[f"{dst}.weight"] = w
            if not dst.endswith("k_proj"):  # Whisper's key projections have no bias (CT2 stores zeros)
                sd[f"{dst}.bias"] = b

    by_kind = {"ln": ln, "lin": lin, "fused": fused}
    for stack in ("encoder", "decoder"):
        sd[f"model.{stack}.embed_positions.weight"] = ct.get(f"{stack}/position_encodings/encodings")
        for kind, hf, ct_name in _name_map(stack, _count_layers(ct, stack)):
            by_kind[kind](hf, ct_name)
    sd["model.decoder.embed_tokens.weight"] = ct.get("decoder/embeddings/weight")
    return {k: torch.from_numpy(np.array(v, dtype=np.float32)) for k, v in sd.items()}


def hf_to_ct2(state_dict: dict[str, torch.Tensor], config, dtype: str = "float16") -> CT2Model:
    """Inverse of :func:`ct2_to_hf_state_dict`: export a HF Whisper to CTranslate2 layout.

    Used to deploy adapted (merged) models with faster-whisper, and by tests to make
    tiny CTranslate2 models without a hub.
    """
    np_dtype = np.float16 if dtype == "float16" else np.float32
    g = {k: v.detach().cpu().float().numpy() for k, v in state_dict.items()}
    var: dict[str, np.ndarray] = {}

    def ln(src: str, dst: str) -> None:
        for a, b in _LN.items():
            var[f"{dst}/{a}"] = g[f"{src}.{b}"]

    def lin(src: str, dst: str) -> None:
        var[f"{dst}/weight"] = g[f"{src}.weight"]
        var[f"{dst}/bias"] = g[f"{src}.bias"]

    def fused(srcs: list[str], dst: str) -> None:
        var[f"{dst}/weight"] = np.concatenate([g[f"{s}.weight"] for s in srcs])
        var[f"{dst}/bias"] = np.concatenate(
            [g.get(f"{s}.bias", np.zeros(g[f"{s}.weight"].shape[0], np.float32)) for s in srcs]
        )

    by_kind = {"ln": ln, "lin": lin, "fused": fused}
    for stack, n in (("encoder", config.encoder_layers), ("decoder", config.decoder_layers)):
        var[f"{stack}/num_heads"] = np.array(getattr(config, f"{stack}_attention_heads"), dtype=np.int16)
        var[f"{stack}/position_encodings/encodings"] = g[f"model.{stack}.embed_positions.weight"]
        for kind, hf, ct_name in _name_map(stack, n):
            by_kind[kind](hf, ct_name)
    var["decoder/embeddings/weight"] = g["model.decoder.embed_tokens.weight"]
    out = {}
    for k, v in sorted(var.items()):
        out[k] = v if v.dtype.kind == "i" else v.astype(np_dtype)
    # Scalars the CTranslate2 Whisper spec carries (GELU activation, pre-norm, ...).
    out.update(
        {
            "decoder/activation": np.array(3, dtype=np.int8),
            "decoder/pre_norm": np.array(1, dtype=np.int8),
            "decoder/scale_embeddings": np.array(0, dtype=np.int8),
            "decoder/alibi": np.array(0, dtype=np.int8),
            "decoder/alibi_use_positive_positions": np.array(0, dtype=np.int8),
            "decoder/scale_alibi": np.array(0, dtype=np.int8),
            "decoder/start_from_zero_embedding": np.array(0, dtype=np.int8),
            "decoder/alignment_layer": np.array(-1, dtype=np.int16),
            "decoder/alignment_heads": np.array(1, dtype=np.int16),
        }
    )
    out = dict(sorted(out.items()))
    return CT2Model("WhisperSpec", 3, out, {"decoder/projection/weight": "decoder/embeddings/weight"})
