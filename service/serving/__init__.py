"""The serving runtime: models held, admission, step-level batching, the engine thread. No HTTP."""
