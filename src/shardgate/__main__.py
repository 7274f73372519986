from shardgate.cli import main

raise SystemExit(main())
