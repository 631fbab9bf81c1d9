"""`python -m tokdist_core.cli`: the same as the `tokdist` command."""

from . import main

raise SystemExit(main())
