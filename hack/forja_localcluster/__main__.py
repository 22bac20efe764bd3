from forja_localcluster.cli import main

raise SystemExit(main())
