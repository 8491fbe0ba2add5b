"""What a trained model is: bundle files, encoding, calibration, bands and reasons."""

from features.bands import RiskBands
from models.bundle import BundleError, ModelBundle, feature_list_hash
from models.calibration import Calibrator, choose_calibrator, fit_isotonic, fit_sigmoid
from models.encoding import EncodingError, encode, feature_from_dict, feature_to_dict
from models.reasons import Reason

__all__ = [
    "BundleError",
    "Calibrator",
    "EncodingError",
    "ModelBundle",
    "Reason",
    "RiskBands",
    "choose_calibrator",
    "encode",
    "feature_from_dict",
    "feature_list_hash",
    "feature_to_dict",
    "fit_isotonic",
    "fit_sigmoid",
]
