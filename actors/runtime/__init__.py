"""The runtime: deterministic virtual-time actors on trio (actor), the event log, the model's quantities in
integer ns, config validators, samplers. Imports nothing else of the model."""
