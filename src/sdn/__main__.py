from sdn.cli import main

raise SystemExit(main())
