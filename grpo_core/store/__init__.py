"""The experiment store: Parquet tables written append-only, read by analysis.catalog."""
