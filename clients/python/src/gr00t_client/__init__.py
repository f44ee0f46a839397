"""Light client for a GR00T N1.6 policy server (`gr00t-serve`): pyzmq, msgpack and numpy only.

    from gr00t_client import PolicyClient

    client = PolicyClient(host="10.0.0.5", port=5555)
    action = client.get_action(observation)   # {action_key: float32 [B, horizon, D]}

`PolicyClient` is a `Policy`, like the local `gr00t.policy.Gr00tPolicy`: code written against
`Policy` runs with either. The wire format (`gr00t_client.protocol`) is the reference GR00T one:
msgpack messages, numpy arrays as ``np.save`` bytes, parsed without pickle.
"""

from gr00t_client.base import Policy
from gr00t_client.client import PolicyClient
from gr00t_client.protocol import DEFAULT_PORT, ProtocolError, ServerError

__version__ = "0.1.0"
__all__ = ["DEFAULT_PORT", "Policy", "PolicyClient", "ProtocolError", "ServerError", "__version__"]
