from ssmdiag.cli import main

raise SystemExit(main())
