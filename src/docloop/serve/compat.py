"""Import KServe without letting it read our command line.

``kserve.model_server`` parses ``sys.argv`` when it is imported (``parse_known_args`` with
abbreviations allowed), so ``docloop serve --model PATH`` would set its ``--model_name`` and a
pytest flag such as ``--timeout`` would match its ``--timeout-keep-alive``; a value it cannot parse
exits the process. Every docloop module imports KServe through this one, which hides ``sys.argv``
for the duration of the first import. Every KServe setting docloop needs is passed explicitly.
"""

from __future__ import annotations

import sys

_argv = sys.argv
sys.argv = _argv[:1]
try:
    import kserve
    from kserve import model_server
    from kserve.errors import InvalidInput
    from kserve.protocol.infer_type import InferInput, InferOutput, InferRequest, InferResponse
finally:
    sys.argv = _argv

__all__ = [
    "InferInput",
    "InferOutput",
    "InferRequest",
    "InferResponse",
    "InvalidInput",
    "kserve",
    "model_server",
]
