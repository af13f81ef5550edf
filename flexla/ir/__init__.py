from .graph import Graph, Node, make_node
from .ops import C, K, V, Op
from .verify import VerifyError, verify

__all__ = ["Graph", "Node", "make_node", "Op", "C", "K", "V", "verify", "VerifyError"]
