from forja_server.cli import main

raise SystemExit(main())
