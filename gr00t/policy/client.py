"""`PolicyClient`, shared with the light client package (defined in `gr00t_client.client`).

On a robot computer install only the client (``pip install ./clients/python``) and import
`gr00t_client`; within gr00t both names are the same class.
"""

from gr00t_client.client import PolicyClient

__all__ = ["PolicyClient"]
