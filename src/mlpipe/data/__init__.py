"""The data path: reading sources, the data contract, the split and the features, each a pandas
function on one part of a table (mlpipe.engine runs them on every part)."""
