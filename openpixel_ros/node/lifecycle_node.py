"""openpixel_lifecycle_node: openpixel_node as a managed (lifecycle) node.

The same class as openpixel_node (:class:`.openpixel_node.OpenPixelNode`), with the same
parameters, topics and services, driven through lifecycle_msgs (`ros2 lifecycle set /openpixel
configure`, then `activate`) instead of configuring and activating itself at start:

- configure: validate the parameters and load the engine; create the output publishers (lifecycle
  publishers: silent unless active). A bad model (or any invalid parameter) fails the transition
  with one ERROR line, and the node stays unconfigured.
- activate: subscribe to the camera and clicks, start the inference worker and the services
  (~/segment_at_points, ~/enable).
- deactivate: release the camera subscription and stop the worker (the engine stays loaded).
  Every prompt call already accepted or still waiting is answered first (success=false,
  "node deactivating"); the running one has 2 s to finish, else it gets that answer too.
- cleanup: free the engine and the publishers. shutdown: as deactivate + cleanup.

/diagnostics carries a status in every state: while active the node's own (rates, drops, ...);
otherwise one that names the state ("unconfigured", "inactive: not processing", "finalized"),
under the same status name, every diagnostics_period seconds. At start it logs one line saying
it waits for configure.
"""
from __future__ import annotations

import sys

from . import openpixel_node


def main(args=None) -> int:
    return openpixel_node.main(args, managed=True)


if __name__ == "__main__":
    sys.exit(main())
