"""Data: arrays in, device-resident batches out. See ``registry`` for the datasets,
``sources`` for files / TFDS / embedded / auto, ``batches`` for on-device sampling."""
from hermite_vae.data.batches import EVAL_BINARIZATION_SEED, TrainBatches, binarize_once, eval_batches
from hermite_vae.data.formats import DataFormatError
from hermite_vae.data.registry import DATASETS, get_spec
from hermite_vae.data.sources import DataUnavailableError, LoadedData, load, load_config

__all__ = ["DATASETS", "DataFormatError", "DataUnavailableError", "EVAL_BINARIZATION_SEED",
           "LoadedData", "TrainBatches", "binarize_once", "eval_batches", "get_spec", "load",
           "load_config"]
