"""The synthetic county: seeded linked health and social care records with a known truth."""

from synthetic.config import CountyConfig, GenerationSummary
from synthetic.generate import generate

__all__ = ["CountyConfig", "GenerationSummary", "generate"]
