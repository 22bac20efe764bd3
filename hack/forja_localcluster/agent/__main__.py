from forja_localcluster.agent.agent import main

raise SystemExit(main())
