"""`python -m edge_agent enroll|run|sim-call`: the agent on its own (as `rundruf-agent`)."""

from edge_agent.cli import main

raise SystemExit(main())
