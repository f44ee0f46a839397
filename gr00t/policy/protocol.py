"""The wire format of `gr00t-serve`, shared with the light client package.

Defined once in `gr00t_client.protocol` (msgpack, numpy as ``np.save`` bytes parsed without
pickle; the reference GR00T protocol); the server and the client import the same code.
"""

from gr00t_client.protocol import *  # noqa: F403
from gr00t_client.protocol import __all__  # noqa: F401
