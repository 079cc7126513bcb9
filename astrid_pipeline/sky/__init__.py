"""The sky branch as plain Python: its step table, the steps and its products (no Dagster here)."""
