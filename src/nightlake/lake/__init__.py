"""The local data lake: a real Rucio server, PostgreSQL and XRootD RSEs, all on 127.0.0.1."""
