"""Where the work runs: the executor that maps a step over the parts of a table, in this process
or on a Dask cluster, and the cluster itself."""
