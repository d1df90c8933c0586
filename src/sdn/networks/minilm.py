"""all-MiniLM-L6-v2 in plain torch: the BERT forward, mean pooling and L2 normalisation that
sentence-transformers runs for this model, without importing sentence-transformers or transformers.

Why by hand: those two libraries take about 4 s of CPU to import (2 cores), most of `sdn sample`'s
start-up, for a 6-layer encoder that is 40 lines of torch. The tokenizer is the model's own
`tokenizer.json` read by `tokenizers` (the Rust library transformers itself uses), set as
sentence-transformers sets it: truncation at 256 tokens, padding to the longest caption of a batch.
tests/test_text.py checks the embeddings against sentence-transformers' own.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F

MAX_TOKENS = 256  # sentence-transformers' max_seq_length for this model (sentence_bert_config.json)


class MiniLM:
    """A BERT encoder (weights `model.safetensors`, `config.json`, `tokenizer.json` of `folder`)
    whose `encode` gives mean-pooled, unit-length sentence embeddings."""

    def __init__(self, folder: str | Path, device: str | torch.device = "cpu"):
        from safetensors.torch import load_file
        from tokenizers import Tokenizer

        folder = Path(folder)
        self.config = json.loads((folder / "config.json").read_text())
        if self.config.get("model_type") != "bert" or self.config.get("hidden_act") != "gelu":
            raise ValueError(f"{folder} is not a BERT model with GELU activations")
        self.weights = {k: v.to(device) for k, v in load_file(folder / "model.safetensors").items()}
        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.tokenizer.enable_truncation(MAX_TOKENS)
        self.tokenizer.enable_padding(pad_id=self.config["pad_token_id"], pad_token="[PAD]")  # to the longest
        self.device = torch.device(device)

    def _layer_norm(self, x: torch.Tensor, name: str) -> torch.Tensor:
        w = self.weights
        return F.layer_norm(x, x.shape[-1:], w[f"{name}.weight"], w[f"{name}.bias"], self.config["layer_norm_eps"])

    def _linear(self, x: torch.Tensor, name: str) -> torch.Tensor:
        return F.linear(x, self.weights[f"{name}.weight"], self.weights[f"{name}.bias"])

    # Where each attention weight lives in the state dict (MPNet names them otherwise).
    ATTENTION = {"q": "attention.self.query", "k": "attention.self.key", "v": "attention.self.value",
                 "out": "attention.output.dense", "norm": "attention.output.LayerNorm"}

    def _layer(self, x: torch.Tensor, attn_mask: torch.Tensor, i: int) -> torch.Tensor:
        p, names = f"encoder.layer.{i}", self.ATTENTION
        heads = self.config["num_attention_heads"]
        b, n, d = x.shape

        def split(t):  # (B, N, D) -> (B, heads, N, D / heads)
            return t.view(b, n, heads, d // heads).transpose(1, 2)

        q, k, v = (split(self._linear(x, f"{p}.{names[name]}")) for name in "qkv")
        attended = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
        attended = self._linear(attended.transpose(1, 2).reshape(b, n, d), f"{p}.{names['out']}")
        x = self._layer_norm(attended + x, f"{p}.{names['norm']}")
        hidden = F.gelu(self._linear(x, f"{p}.intermediate.dense"))  # exact (erf) GELU, BERT's "gelu"
        return self._layer_norm(self._linear(hidden, f"{p}.output.dense") + x, f"{p}.output.LayerNorm")

    @torch.inference_mode()
    def _embed(self, ids: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        w = self.weights
        positions = torch.arange(ids.shape[1], device=ids.device)
        x = w["embeddings.word_embeddings.weight"][ids] + w["embeddings.position_embeddings.weight"][positions]
        x = self._layer_norm(x + w["embeddings.token_type_embeddings.weight"][0], "embeddings.LayerNorm")
        for i in range(self.config["num_hidden_layers"]):
            x = self._layer(x, keep[:, None, None, :], i)
        weight = keep[..., None].to(x.dtype)
        pooled = (x * weight).sum(1) / weight.sum(1).clamp_min(1e-9)  # mean over the caption's tokens
        return F.normalize(pooled, p=2, dim=1)

    def encode(self, sentences: list[str], batch_size: int = 256) -> torch.Tensor:
        """(len(sentences), hidden) float32 on the CPU. Batches hold sentences of similar length
        (less padding), as sentence-transformers batches them."""
        order = sorted(range(len(sentences)), key=lambda i: -len(sentences[i]))
        out = torch.empty(len(sentences), self.config["hidden_size"])
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            encodings = self.tokenizer.encode_batch([sentences[i] for i in chunk])
            ids = torch.tensor([e.ids for e in encodings], device=self.device)
            keep = torch.tensor([e.attention_mask for e in encodings], device=self.device).bool()
            out[chunk] = self._embed(ids, keep).float().cpu()
        return out
