"""Hand-run benchmark of the DICOMweb server, and helpers to start a reference Orthanc.

Nothing here is a test: the benchmark prints numbers, it never asserts on timings.
"""
