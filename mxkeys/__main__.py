from mxkeys.cli import main

raise SystemExit(main())
