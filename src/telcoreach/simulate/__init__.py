"""Simulator of a synthetic Beijing in the carrier formats, with ground truth.

The city stands on real public data (Beijing base stations and subway
stations, TalkingData demographics) and writes what a carrier would deliver
(cells, subscribers, daily signalling and DPI files, a past campaign,
weather), plus the hidden truth an evaluation compares against.
"""

from telcoreach.simulate._simulate import SimulationSummary, simulate_city

__all__ = ["SimulationSummary", "simulate_city"]
