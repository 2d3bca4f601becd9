"""Data: sources, splits, forget requests, and the in-memory dataset the training loop slices."""
from .dataset import Arrays, load_prepared, stratified_subset
from .forget import ForgetRequestError, read_ids_file, resolve_request
from .base import DataSourceError, fingerprint
from .sources import SOURCES, Source, load_source
from .splits import SPLIT_MODES, SPLIT_NAMES, TEST, TRAIN, VAL, choose_test_split, stratified_split

__all__ = ["Arrays", "DataSourceError", "ForgetRequestError", "SOURCES", "fingerprint", "SPLIT_MODES", "SPLIT_NAMES",
           "Source", "TEST", "TRAIN", "VAL",
           "choose_test_split", "load_prepared", "load_source", "read_ids_file", "resolve_request", "stratified_split",
           "stratified_subset"]
