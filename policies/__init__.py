"""Swappable remedy policies (kill, reap, swap release), plugged into the model's interfaces."""
