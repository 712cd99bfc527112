from streamdrift.cli import main

raise SystemExit(main())
