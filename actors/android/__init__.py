"""Android user space: lmkd and its reaper threads, the camera launch and its preview, periodic render threads."""
