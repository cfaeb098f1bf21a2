"""`python -m hybrid_llm` runs the same CLI as the `hybrid-llm` console script."""

from hybrid_llm.cli import main

# The guard matters: a multiprocessing spawn child re-imports __main__ and must not rerun the CLI.
if __name__ == "__main__":
    raise SystemExit(main())
