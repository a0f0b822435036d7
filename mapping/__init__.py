"""The transform: mapping tables and texts (YAML, data first) and the code that reads them."""
