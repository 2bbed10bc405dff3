from reidlab.cli import main

raise SystemExit(main())
