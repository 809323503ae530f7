"""Attention-based explanations of vision transformers (attention rollout, gradient-weighted
attention relevance) and the machinery that reads attention probabilities."""

from .capture import AttentionMaps, attention_modules, attention_probabilities
from .methods import AttentionMethod, AttentionRelevance, AttentionRollout

__all__ = [
    "AttentionMaps",
    "AttentionMethod",
    "AttentionRelevance",
    "AttentionRollout",
    "attention_modules",
    "attention_probabilities",
]
