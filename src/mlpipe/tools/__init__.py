"""Tools around the pipeline that no stage imports: `make init`, `make sweep`, `make review`.

They drive DVC through its command line; editing them reruns no stage.
"""
