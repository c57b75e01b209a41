"""``python -m client.cli``: the ``swarm`` command."""

import sys

from client.cli.command import main

sys.exit(main())
