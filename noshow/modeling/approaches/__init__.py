"""The two ways of fine-tuning, as objects found by name: what differs between them (model
class, encode, loss, score, answer text) lives in one small object per approach, so the
recipe, the predictor and the model card never compare approach names.

    from noshow.modeling.approaches import get_approach
    approach = get_approach(config.train.approach)    # GENERATIVE or CLASSIFIER
"""

from __future__ import annotations

from noshow.modeling.approaches.classifier import CLASSIFIER, ClassifierApproach
from noshow.modeling.approaches.generative import GENERATIVE, GenerativeApproach

Approach = GenerativeApproach | ClassifierApproach
REGISTRY: dict[str, Approach] = {a.name: a for a in (GENERATIVE, CLASSIFIER)}


def get_approach(name: str) -> Approach:
    """The approach called `name`; ValueError naming the choices otherwise."""
    try:
        return REGISTRY[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"Unknown approach {name!r}: choose one of {', '.join(REGISTRY)}."
        ) from None
