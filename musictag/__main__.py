"""`python -m musictag ...` runs the `musictag` command."""

from musictag.commands import main

raise SystemExit(main())
