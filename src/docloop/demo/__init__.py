"""The demo: the whole loop on one machine (run), its HTML report, simulated traffic and reviews."""
