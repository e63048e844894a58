"""Datasets: loaders for UJIIndoorLoc and the in-home BLE layout, the synthetic house,
and the prepared-dataset contract (``train.npz``/``val.npz``/``test.npz`` + ``meta.json``)."""

from tinyloc_tf.data.prepared import PreparedDataset, Split, load_prepared, write_prepared

__all__ = ["PreparedDataset", "Split", "load_prepared", "write_prepared"]
