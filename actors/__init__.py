"""The simulated system: the actor runtime and every actor of the modelled device."""
