"""int16x8 lowerings: linear operators with int16 activations and int8 weights."""

from __future__ import annotations

from typing import Callable

from tinyloc_tf.deployment.aot.lowering import Lowering
from tinyloc_tf.deployment.aot.reader import Operator

LOWERINGS: dict[str, Callable[[Lowering, Operator], None]] = {}
