"""graphopt: a compiler-style graph optimizer for deep-learning inference on CPUs."""
from ._native import cpu_info, set_num_threads
from .errors import GraphoptError
__version__ = "0.1.0"
