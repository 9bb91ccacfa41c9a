"""The demo: the whole loop on one machine, what it measured, its report, simulated traffic."""
