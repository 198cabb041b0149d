"""The lab: configs and their schema checks, and the simulated world assembled from them."""
