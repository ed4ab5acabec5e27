"""``python -m producer``: enqueue, status, report, cancel."""

from callq.intake.cli import main

raise SystemExit(main())
