"""The fine-tuned network: a backbone's feature extractor with a new head."""
from __future__ import annotations

from torch import nn


class Classifier(nn.Module):
    def __init__(self, features: nn.Module, feature_dim: int, num_classes: int, dropout: float = 0.2):
        super().__init__()
        self.features = features
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(feature_dim, num_classes))

    def forward(self, x, with_features: bool = False):
        features = self.features(x)
        logits = self.head(features)
        return (features, logits) if with_features else logits
