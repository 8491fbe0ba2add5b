"""How a trained model is found once logged: the one place for the registry's aliases and the
bundle's artifact path. Training registers and promotes with these; serving imports with them.

The registered model's name is the outcome's (`Outcome.model_name` in features/outcomes.py:
carerisk-falls), which also names its MLflow experiment and its copy in the BentoML store.
"""

from __future__ import annotations

CHALLENGER = "challenger"  # the alias a newly trained version gets
CHAMPION = "champion"  # the alias the gate moves, and the version the service serves
BUNDLE_ARTIFACT = "bundle"  # the run's artifact folder (and the BentoML model's folder) of files
