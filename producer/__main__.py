"""``python -m producer``: enqueue, status, report, cancel."""

from producer.cli import main

raise SystemExit(main())
