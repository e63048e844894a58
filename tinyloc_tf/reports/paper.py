"""The paper's headline results (Suwannaphong et al. 2025; ``spec/MODELS.md``), for comparison.

Test-set macro-F1 and accuracy in percent; ``size_kb`` is the paper's size (the PyTorch
state-dict file / 1000), not a measured flash or RAM figure. ``accuracy`` is None where the
paper's headline table does not give it.
"""

from __future__ import annotations

PAPER_HEADLINE = {
    ("inhome", "A"): {
        64: dict(macro_f1=84.36, accuracy=None, model="MDCSA H16L1 static int8", size_kb=44),
        32: dict(macro_f1=84.76, accuracy=None, model="MDCSA H8L1 dynamic", size_kb=25),
    },
    ("inhome", "B"): {
        64: dict(macro_f1=74.11, accuracy=None, model="MDCSA H16L1 dynamic", size_kb=43),
        32: dict(macro_f1=72.79, accuracy=None, model="Mamba H8L1 KD+static", size_kb=13),
    },
    ("inhome", "C"): {
        64: dict(macro_f1=83.64, accuracy=None, model="MDCSA H16L1 dynamic", size_kb=43),
        32: dict(macro_f1=80.60, accuracy=None, model="Mamba H8L1 KD", size_kb=12),
    },
    ("inhome", "D"): {
        64: dict(macro_f1=75.71, accuracy=None, model="MDCSA H16L1 dynamic", size_kb=43),
        32: dict(macro_f1=73.17, accuracy=None, model="Mamba H16L1 static", size_kb=16),
    },
    ("ujiindoorloc", "area"): {
        64: dict(macro_f1=64.00, accuracy=78.74, model="Mamba H8L1 KD", size_kb=44),
        32: dict(macro_f1=44.56, accuracy=67.21, model="Mamba H4L1", size_kb=31),
    },
}


def paper_key(meta: dict) -> tuple[str, str] | None:
    """The paper row comparable with a prepared dataset, or None (synthetic house,
    UJIIndoorLoc by floor: the paper reports neither)."""
    if meta.get("dataset") == "ujiindoorloc":
        return ("ujiindoorloc", meta.get("labels")) if meta.get("labels") == "area" else None
    if meta.get("dataset") == "inhome" and not meta.get("synthetic", False):
        return ("inhome", str(meta.get("house")))
    return None
