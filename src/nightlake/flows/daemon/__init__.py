"""The on-site ingest daemon: files registered in place as the telescopes write them.

`run` (life cycle: checks, lock, journal; `request`: what was asked) → `loop` (resume, the batches,
the pipeline's thread, drain) over `triggers` (what is ready: `<file>.trigger`,
found by rescans) → `describe` (a file read once, verified and named from its header, or set
aside in `invalid/`) → batches fed to the ingest pipeline (`flows.ingest.pipeline.Ingest`, in
place), so a daemon registers with the same bulk calls and the same journal as `ingest`; `lock`
keeps it to one daemon per directory.
"""
