"""mlpipe: the library behind the DVC stages, the serving API and future distributed runners.

Every function here takes and returns plain objects (DataFrames, typed params, dicts);
none of them knows about the repository's file layout or the command line.
"""

__version__ = "0.1.0"
