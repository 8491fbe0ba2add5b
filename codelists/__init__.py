"""Clinical code lists as data: the CSV lists, their index, and the checks run when they load."""

from codelists.checks import icd10_plain, icd10_valid, snomed_valid
from codelists.lists import (
    CODELISTS_ENV,
    CodeListError,
    CodeLists,
    ListInfo,
    folder_from_env,
    packaged_folder,
)

__all__ = [
    "CODELISTS_ENV",
    "CodeListError",
    "CodeLists",
    "ListInfo",
    "folder_from_env",
    "icd10_plain",
    "icd10_valid",
    "packaged_folder",
    "snomed_valid",
]
