"""Session clustering: membership, the authenticated channel, DeltaManager and BackupManager.

See docs/clustering.md. Layout: `frames` (wire codec, sans-IO), `membership` (sans-IO),
`config` (the `[cluster]` table), `channel` + `service` (asyncio shell), `merge` (the
per-attribute merge rule, sans-IO), `delta` (DeltaManager), `backup` (BackupManager).
"""
