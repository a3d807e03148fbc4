"""Chemical reaction networks (kept for imports): see :mod:`.reaction_network` and
:mod:`.reaction_path`.

:class:`ReactionNetwork` lives in :mod:`probdyn.processes.reaction_network`,
:class:`ReactionPath` in :mod:`probdyn.processes.reaction_path`; both are re-exported
here and from :mod:`probdyn.processes`.
"""

from probdyn.processes.reaction_network import ReactionNetwork
from probdyn.processes.reaction_path import ReactionPath

__all__ = ["ReactionNetwork", "ReactionPath"]
