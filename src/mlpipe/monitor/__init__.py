"""Monitoring: drift between a reference period and current data (Evidently), its HTML report
and the retrain decision."""
