"""Dataset report (stats → HTML + JSON figures) and the sample viewer for analysts."""
