"""Monitoring library: drift between a reference and a current window, and the retrain policy.

Pure functions over frames and typed config; the `monitor` stage (`pipelines/monitor.py`) does
the file IO. Nothing is re-exported here, so importing the package does not import Evidently.
"""
