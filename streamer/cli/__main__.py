"""``python -m streamer.cli`` runs the ``northstar`` command."""

from streamer.cli import main

raise SystemExit(main())
