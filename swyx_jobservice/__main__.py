"""`python -m swyx_jobservice [--host H] [--port P]`: the job service on its own (as
`rundruf-jobservice`)."""

from swyx_jobservice.cli import main

raise SystemExit(main())
