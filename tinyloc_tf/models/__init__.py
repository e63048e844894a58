"""Models: MDCSA, Mamba and MLP encoders with a linear-chain CRF head.

Importing this package registers every custom layer with Keras, so
``keras.models.load_model("m.keras")`` works after ``import tinyloc_tf.models``.

``build_model(family, features=F, classes=K, hidden=H, layers=L, steps=T)`` returns a
:class:`SequenceTagger`; see ``docs/models.md``.
"""

from tinyloc_tf.models import ensemble, layers, mamba, mdcsa, mlp, shortcut  # noqa: F401  (register custom layers)
from tinyloc_tf.models.crf import CRF
from tinyloc_tf.models.tagger import SequenceTagger, build_model

__all__ = ["CRF", "SequenceTagger", "build_model"]
