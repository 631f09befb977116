"""Deterministic simulator: many real node cores in one process on a virtual clock.

See docs/simulator.md. Entry point: :func:`simulations.runner.run_scenario`.
"""
