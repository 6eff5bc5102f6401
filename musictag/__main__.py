"""`python -m musictag ...` runs the `musictag` command."""

from musictag.cli import main

raise SystemExit(main())
