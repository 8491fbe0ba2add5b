from tests.models.conftest import config, trained

__all__ = ["config", "trained"]
