"""Pass infrastructure: the Pass contract, context, registry (manager and instruments build on these)."""

from .context import PassContext, register_config
from .pass_ import Pass, PassResult
from .registry import get_pass, register_pass, registered_passes

__all__ = ["Pass", "PassResult", "PassContext", "register_config", "register_pass", "get_pass",
           "registered_passes"]
