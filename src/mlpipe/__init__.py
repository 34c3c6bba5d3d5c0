"""mlpipe: the library behind the DVC stages and the serving API, in parts: data, model, monitor,
serving, engine, and the tools around the pipeline.

Every function here takes and returns plain objects (DataFrames, typed params, dicts);
none of them knows about the repository's file layout or the command line.
"""

__version__ = "0.1.0"
