"""`python -m hybrid_llm` runs the same CLI as the `hybrid-llm` console script."""

from hybrid_llm.cli import main

raise SystemExit(main())
