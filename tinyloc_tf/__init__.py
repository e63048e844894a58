"""tinyloc-tf: room-level indoor localisation from RSSI with tiny Keras models.

Package layout follows the pipeline:
``data`` -> ``models`` -> ``training`` -> ``compression`` -> ``deployment`` -> ``reports``.
"""

__version__ = "0.1.0"
