"""The real-kernel harness: ZRAM swap set up and put back (zram), victim processes and their timed kills
(victims), a real preview thread (preview), and the two commands that use them: calibrate (fit a device
profile's costs from real kills) and validate (real storms against the model's, cell by cell)."""
