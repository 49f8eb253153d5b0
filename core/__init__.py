"""What every app of Crier shares and none owns: the one application error type (``errors``), the one
seam for outbound HTTP (``http``), bounded JSON reading (``json``), the Redis connections and locks (``connections``) and the admin's
read-only base (``admin``). No models, and it imports nothing of the apps."""
