"""The Teams emulator: a local stand-in for Entra ID's token endpoint, the Bot Connector and the Bot
Framework token issuer, served over HTTPS by its own process (``python -m emulator``).

It never imports Django. The helpers other code uses are ``emulator.process.start_emulator``
(launch a process and wait for it) and ``emulator.client.EmulatorClient`` (its control API).
"""
