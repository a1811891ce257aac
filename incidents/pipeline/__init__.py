"""The stages a stored alert passes through after ingestion."""
