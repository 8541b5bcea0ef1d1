"""The numbered ClickHouse schema files, shipped inside the collector as `spanmeter.schema`."""
