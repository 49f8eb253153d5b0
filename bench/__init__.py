"""`make bench`: Crier measured against a bare Celery baseline and the Teams emulator."""
