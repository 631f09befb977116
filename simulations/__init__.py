"""Deterministic simulator: many real node cores in one process on a virtual clock.

See DESIGN §8. Entry point: :func:`simulations.runner.run_scenario`.
"""
